from index.retrieve import reciprocal_rank_fusion


def test_rrf_rewards_agreement_and_is_deterministic() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "keyword": ["b", "d"]}, k=60)
    ids = [i for i, _ in fused]
    assert ids[0] == "b"  # ranked by both lists
    assert set(ids) == {"a", "b", "c", "d"}
    assert fused[0][1] == 1 / 62 + 1 / 61
    assert reciprocal_rank_fusion({"x": ["a", "b"]}) == reciprocal_rank_fusion({"x": ["a", "b"]})
    assert ids.index("a") < ids.index("d")  # first-appearance order breaks ties



def test_a_weighted_down_keyword_vote_cannot_outrank_the_dense_top() -> None:
    dense = ["a", "b", "c", "d", "e", "f", "g", "h"]
    rankings = {"dense": dense, "keyword": ["h"]}
    plain = [i for i, _ in reciprocal_rank_fusion(rankings)]
    weighted = [i for i, _ in reciprocal_rank_fusion(rankings, weights={"keyword": {"h": 0.1}})]
    assert plain[0] == "h"  # at full weight one keyword vote lifts the dense 8th to the top
    assert weighted[0] == "a"  # a cross-language keyword match at 0.1 no longer does
    assert weighted.index("h") < dense.index("h")  # but it still moves up
