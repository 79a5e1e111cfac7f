from index.retrieve import reciprocal_rank_fusion


def test_rrf_rewards_agreement_and_is_deterministic() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "keyword": ["b", "d"]}, k=60)
    ids = [i for i, _ in fused]
    assert ids[0] == "b"  # ranked by both lists
    assert set(ids) == {"a", "b", "c", "d"}
    assert fused[0][1] == 1 / 62 + 1 / 61
    assert reciprocal_rank_fusion({"x": ["a", "b"]}) == reciprocal_rank_fusion({"x": ["a", "b"]})
    assert ids.index("a") < ids.index("d")  # first-appearance order breaks ties
