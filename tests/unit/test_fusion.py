import json
from pathlib import Path

import pytest

from index.retrieve import KeywordIndex, _read_keyword_cache, _write_keyword_cache, reciprocal_rank_fusion
from index.store import StoredChunk


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


def test_the_keyword_cache_round_trips_and_rejects_tampered_counts(tmp_path: Path) -> None:
    chunks = [StoredChunk("a", "Die Reederei betreibt das Containerschiff.", {"language": "de"}),
              StoredChunk("b", "The ship left the harbour.", {"language": "en"})]
    built = KeywordIndex(chunks)
    folder = tmp_path / "cache"
    folder.mkdir()
    _write_keyword_cache(folder, built)
    loaded = _read_keyword_cache(folder)
    assert [c.chunk_id for c in loaded.chunks] == ["a", "b"] and loaded.stemmed == built.stemmed
    assert loaded.doc_freq == built.doc_freq and loaded.compound_heads == built.compound_heads
    assert loaded.knows_word({"schiff"}) and not loaded.knows_word({"flugzeug"})  # "schiff" heads a compound
    assert [c.chunk_id for c, _ in loaded.search(["ship"], 2)] == ["b"]

    data = json.loads((folder / "chunks.json").read_text(encoding="utf-8"))
    data["doc_freq"] = {"schiff": "many"}
    (folder / "chunks.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TypeError):
        _read_keyword_cache(folder)
