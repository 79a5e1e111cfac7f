"""Sentence vectors embedded at index time, on a real embedded Chroma and the real embedder.

The answerer ranks sentences by their own vectors; the indexer stores them
(content-addressed, see index/store.py) so that answering reads instead of
embedding them. Answers must be exactly those computed without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.app import Services, build_services
from bot.settings import RetrievalSettings
from index.chunking import sentence_texts
from index.errors import StoreUnavailableError
from index.store import ChunkStore
from tests.conftest import make_settings

QUESTIONS = [
    "Welche Behörde hat Mitto ins Visier genommen?",
    "Wer ist Ilja Gorelik?",
    "Wann trennte sich Twitter von Mitto?",
    "Where is Mitto based?",
    "Wie wird das Wetter morgen?",
]


def store_of(services: Services) -> ChunkStore:
    return services.case._store  # type: ignore[attr-defined, no-any-return]


def all_sentences(store: ChunkStore) -> list[str]:
    return list(dict.fromkeys(s for c in store.iter_chunks() for s in sentence_texts(c.text)))


def count_embedding_batches(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every batch the answerer embeds (its sentence vectors)."""
    answerer = services.case.answerer
    embedding = answerer._embedding  # type: ignore[attr-defined]
    calls: list[int] = []
    original = embedding.get_text_embedding_batch

    def counted(texts: list[str], **kwargs: Any) -> Any:
        calls.append(len(texts))
        return original(texts, **kwargs)

    monkeypatch.setattr(answerer, "_embedding", _Spy(embedding, counted))
    return calls


class _Spy:
    def __init__(self, inner: Any, batch: Any) -> None:
        self._inner, self.get_text_embedding_batch = inner, batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_the_index_stores_exactly_the_vectors_the_answerer_would_embed(tmp_path: Path, articles: Path) -> None:
    services = build_services(make_settings(tmp_path / "data", articles))
    services.case.index()
    store = store_of(services)
    sentences = all_sentences(store)
    stored = store.sentence_vectors(sentences)
    assert set(stored) == set(sentences)
    assert store.missing_sentences(sentences) == []
    embedding = services.case.answerer._embedding  # type: ignore[attr-defined]
    for sentence, vector in zip(sentences, embedding.get_text_embedding_batch(sentences)):
        assert np.array_equal(stored[sentence], np.asarray(vector, dtype=np.float32))  # bit for bit


def test_answers_are_the_same_with_and_without_stored_sentence_vectors(
        tmp_path: Path, articles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_vectors = build_services(make_settings(tmp_path / "with", articles))
    without = build_services(make_settings(tmp_path / "without", articles,
                                           retrieval=RetrievalSettings(sentence_vectors=False)))
    with_vectors.case.index()
    without.case.index()
    assert store_of(without).sentence_vectors(all_sentences(store_of(without))) == {}

    batches = count_embedding_batches(with_vectors, monkeypatch)
    for question in QUESTIONS:
        with_vectors.case.answerer.clear_sentence_cache()  # type: ignore[attr-defined]
        without.case.answerer.clear_sentence_cache()  # type: ignore[attr-defined]
        assert with_vectors.case.ask(question).as_dict() == without.case.ask(question).as_dict(), question
    assert batches == []  # every ranked sentence was read from the store, none embedded


def test_a_changed_sentence_is_never_served_an_old_vector_and_a_rebuild_drops_them(
        tmp_path: Path, articles: Path) -> None:
    settings = make_settings(tmp_path / "data", articles)
    services = build_services(settings)
    services.case.index()
    store = store_of(services)
    reader = build_services(settings)  # another process's view of the same store
    assert reader.case.ask(QUESTIONS[0]).citations

    file = next(articles.glob("*.md"))
    text = file.read_text(encoding="utf-8")
    old = next(s for s in all_sentences(store) if s in text and len(s.split()) >= 6)
    new = old.replace(old.split()[0], "Gestern", 1)
    file.write_text(text.replace(old, new, 1), encoding="utf-8")
    services.case.index()
    current = all_sentences(store)
    assert new in current and old not in current
    assert store.missing_sentences(current) == []  # the new text has its own vector ...
    assert store.sentence_vectors([old]) == {}  # ... and the edited-away sentence's is deleted

    services.case.index(rebuild=True)
    assert store.missing_sentences(current) == []  # dropped with the chunks, then rebuilt for the current text
    # The reader follows the dropped collection and answers as a fresh process does.
    reader.case.answerer.clear_sentence_cache()  # type: ignore[attr-defined]
    fresh = build_services(settings)
    assert reader.case.ask(QUESTIONS[0]).as_dict() == fresh.case.ask(QUESTIONS[0]).as_dict()


def test_unreadable_sentence_vectors_are_embedded_instead(tmp_path: Path, articles: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma's Python server fails every ``get`` that includes embeddings: answers must not."""
    services = build_services(make_settings(tmp_path / "data", articles))
    services.case.index()
    expected = services.case.ask(QUESTIONS[0]).as_dict()
    store = store_of(services)
    reads: list[list[str]] = []

    def broken(keys: list[str], include: list[str]) -> dict[str, Any]:
        reads.append(include)
        raise StoreUnavailableError("The article index failed to read sentence vectors (Exception).")

    monkeypatch.setattr(store, "_sentence_get", broken)
    batches = count_embedding_batches(services, monkeypatch)
    for _ in range(2):
        services.case.answerer.clear_sentence_cache()  # type: ignore[attr-defined]
        assert services.case.ask(QUESTIONS[0]).as_dict() == expected
    # Embedded each time, the failing read tried once. Two batches per answer: the best passage's
    # sentences for the refusal decision, then the ranked sentences not embedded by the first.
    assert len(batches) == 4 and len(reads) == 1


def test_removing_an_article_deletes_the_vectors_of_its_sentences_only(tmp_path: Path, articles: Path) -> None:
    settings = make_settings(tmp_path / "data", articles)
    services = build_services(settings)
    first, second = sorted(articles.glob("*.md"))
    shared = "Dieser Satz steht in beiden Artikeln und muss nach dem Entfernen des einen bleiben."
    for file in (first, second):
        file.write_text(file.read_text(encoding="utf-8").rstrip() + "\n\n" + shared + "\n", encoding="utf-8")
    services.case.index()
    store = store_of(services)
    before = all_sentences(store)
    first_text = first.read_text(encoding="utf-8")
    only_first = [s for s in before if s in first_text and s not in second.read_text(encoding="utf-8")]
    assert only_first and shared in before

    first.unlink()
    report = services.case.index(prune=True)
    assert report.removed == 1
    after = all_sentences(store)
    assert shared in after
    assert store.sentence_vectors(only_first) == {}
    assert set(store.sentence_vectors(after)) == set(after)
    count = store._sentence_collection(create=False).count()  # type: ignore[union-attr]
    assert count == len(after)  # nothing but the remaining article's sentences is left
