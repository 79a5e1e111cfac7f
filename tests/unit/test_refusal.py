"""The refusal decision, table-driven: the decision itself on constructed retrievals, the
calibration on a real store with the real embedder, and answer types that only re-rank."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from index.answer import _LEANS_BACK, answer_type, has_type
from index.embeddings import QueryVectorCache
from index.refusal import (
    Calibration,
    RefusalDecider,
    RefusalPolicy,
    calibrate,
    calibration_questions,
    calibration_sentences,
    pseudo_question,
)
from index.retrieve import KeywordIndex, Passage, Retrieval
from index.store import StoredChunk

CORPUS = [
    ("a", "Die Firma Nordlicht AG baut Windräder in Kiel. Nordlicht beschäftigt 300 Mitarbeiter.", "de"),
    ("b", "Nordlicht AG wurde wegen Preisabsprachen vom Kartellamt gebüßt. Die Busse betrug zwei Millionen.", "de"),
    ("c", "Der Hafen von Kiel wird ausgebaut. Nordlicht liefert dafür Kräne.", "de"),
]


def _retrieval(question: str, dense: float, chunk: str = "a", language: str = "de") -> Retrieval:
    chunks = [StoredChunk(cid, text, {"article_id": cid, "language": lang, "position": 0})
              for cid, text, lang in CORPUS]
    keywords = KeywordIndex(chunks)
    best = next(c for c in chunks if c.chunk_id == chunk)
    passages = [Passage(best, dense=dense)] + [Passage(c, dense=dense - 0.05) for c in chunks if c is not best]
    return Retrieval(question, language, np.zeros(4, dtype=np.float32), passages, keywords)


CALIBRATION = Calibration(same_language=0.82, cross_language=0.78, samples=100)


@pytest.mark.parametrize(
    ("question", "dense", "chunk", "language", "reason"),
    [
        # Below the collection's threshold: not about the case.
        ("Wie wird das Wetter morgen?", 0.79, "a", "de", "off-topic"),
        # Above it, in the same language, focus present: answered.
        ("Wie viele Mitarbeiter hat Nordlicht?", 0.85, "a", "de", None),
        # A cross-language question is held to the lower cross-language threshold ...
        ("How many employees does Nordlicht have?", 0.80, "a", "en", None),
        # ... which a same-language question with that score does not reach.
        ("Wie viele Mitarbeiter hat Nordlicht?", 0.80, "a", "de", "off-topic"),
        # Same topic, missing fact: the focus ("Geschäftsführer", "Umsatz") is unknown to the
        # corpus and absent from the passages while the topic score is only just enough.
        ("Wer ist der Geschäftsführer von Nordlicht und wie hoch ist der Umsatz?", 0.83, "a", "de",
         "missing-fact"),
        # The more of the focus the corpus has never seen, the further above the threshold this reaches.
        ("Wer ist der Geschäftsführer von Nordlicht und wie hoch ist der Umsatz?", 0.848, "a", "de",
         "missing-fact"),
        # The same focus with a clearly strong topic score is left to the answer.
        ("Wer ist der Geschäftsführer von Nordlicht und wie hoch ist der Umsatz?", 0.90, "a", "de", None),
        # A short lookup whose every (rare) word stands in the best passage gets the benefit of the doubt.
        ("Kartellamt Busse Preisabsprachen?", 0.805, "b", "de", None),
    ],
)
def test_decision_table(question: str, dense: float, chunk: str, language: str, reason: str | None) -> None:
    refusal = RefusalDecider().decide(question, _retrieval(question, dense, chunk, language), CALIBRATION)
    assert (refusal.reason if refusal else None) == reason
    if refusal is not None:  # the decision carries the scores it used
        assert refusal.scores["dense"] == pytest.approx(dense)
        assert {"threshold", "focus_unknown", "focus_support", "reference"} <= set(refusal.scores)


def test_a_question_closer_to_an_off_topic_request_than_to_any_passage_is_refused() -> None:
    reference = np.eye(4, dtype=np.float32)[:1]  # one reference request, identical to the question
    decider = RefusalDecider(reference=lambda language: reference)
    retrieval = _retrieval("Schreib ein Gedicht über Nordlicht", 0.86)
    retrieval = Retrieval(retrieval.query, "de", np.array([1, 0, 0, 0], dtype=np.float32), retrieval.passages,
                          retrieval.keywords)
    refusal = decider.decide(retrieval.query, retrieval, CALIBRATION)
    assert refusal is not None and refusal.reason == "off-topic" and refusal.scores["reference"] == 1.0


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.mark.parametrize(("sentence_cosine", "reason"), [(0.95, None), (0.70, "off-topic")])
def test_the_topic_score_needs_a_sentence_of_the_best_passage_to_match(sentence_cosine: float,
                                                                       reason: str | None) -> None:
    # The best passage is near the question (0.86, above the threshold 0.82), but the decision
    # mixes in its best sentence: a passage whose every sentence is far from the question does
    # not answer it, one with a close sentence does.
    question = _unit(1, 0, 0, 0)
    sentence = _unit(sentence_cosine, float(np.sqrt(1 - sentence_cosine ** 2)), 0, 0)
    seen: list[list[str]] = []

    def sentence_vectors(texts: list[str]) -> list[np.ndarray]:
        seen.append(texts)
        return [sentence for _ in texts]

    base = _retrieval("Wie viele Mitarbeiter hat Nordlicht?", 0.86)
    retrieval = Retrieval(base.query, "de", question, base.passages, base.keywords)
    policy = RefusalPolicy(sentence_weight=0.5)
    refusal = RefusalDecider(policy, sentence_vectors=sentence_vectors).decide(retrieval.query, retrieval,
                                                                            CALIBRATION)
    assert (refusal.reason if refusal else None) == reason
    # Only the best passage's sentences are looked up, in one call.
    assert seen == [["Die Firma Nordlicht AG baut Windräder in Kiel.", "Nordlicht beschäftigt 300 Mitarbeiter."]]
    evidence = RefusalDecider(policy, sentence_vectors=sentence_vectors).evidence(retrieval.query, retrieval,
                                                                               CALIBRATION)
    assert evidence is not None and evidence.sentence == pytest.approx(sentence_cosine, abs=1e-5)
    # Without sentence vectors (or with weight 0) the topic score is the passage score: answered.
    assert RefusalDecider(policy).decide(retrieval.query, retrieval, CALIBRATION) is None
    assert RefusalDecider(RefusalPolicy(sentence_weight=0.0), sentence_vectors=sentence_vectors).decide(
        retrieval.query, retrieval, CALIBRATION) is None


def test_the_corpus_knows_a_word_that_only_ends_its_compounds() -> None:
    from index.text import word_stems

    keywords = KeywordIndex([StoredChunk("x", "Der Jahresumsatz der Nordlicht AG stieg.", {"language": "de"})])
    assert keywords.knows_word(word_stems("umsatz"))
    assert keywords.knows_word(word_stems("Jahresumsatz".lower()))
    assert not keywords.knows_word(word_stems("gewinn"))
    assert not keywords.knows_word(word_stems("satz"))  # a four-letter stem is no compound head
    english = KeywordIndex([StoredChunk("y", "A profound change.", {"language": "en"})])
    assert not english.knows_word(word_stems("found"))  # English compounds are written apart


def test_nothing_retrieved_is_refused_as_empty() -> None:
    empty = Retrieval("x", "de", np.zeros(4, dtype=np.float32), [], KeywordIndex([]))
    refusal = RefusalDecider().decide("x", empty, None)
    assert refusal is not None and refusal.reason == "empty"


def test_without_calibration_the_prior_applies_per_language_pair() -> None:
    policy = RefusalPolicy()
    decider = RefusalDecider(policy)
    assert decider.threshold(None, True) == policy.prior_threshold
    assert decider.threshold(None, False) == pytest.approx(policy.prior_threshold + policy.cross_language_offset)


def test_calibration_round_trips_and_rejects_garbage() -> None:
    assert Calibration.from_json(CALIBRATION.to_json()) == CALIBRATION
    assert Calibration.from_json("not json") is None
    assert Calibration.from_json('{"same_language": 1}') is None


def test_pseudo_question_keeps_half_the_content_words_in_order() -> None:
    import random

    sentence = "Die Firma Nordlicht AG baut seit Jahren große Windräder im Hafen von Kiel"
    question = pseudo_question(sentence, random.Random(1))
    kept = question.split()
    assert 2 <= len(kept) < len(sentence.split())
    positions = [sentence.split().index(w) for w in kept]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Wann wurde die Briefkastenfirma gegründet?", "date"),
        ("How many people were there when the bridge opened?", "number"),  # "when" as a conjunction
        ("In welchem Jahrhundert wurde die Stadt gegründet?", "year"),
        ("Wie viel Prozent der Firma gehören Mitto?", "number"),
        ("Who was reborn as a king?", "person"),
        ("Where is Mitto based?", "place"),
        ("Warum beendet Twitter die Zusammenarbeit?", None),
    ],
)
def test_answer_type_is_the_first_interrogative(question: str, kind: str | None) -> None:
    assert answer_type(question) == kind


@pytest.mark.parametrize(
    ("sentence", "kind", "expected"),
    [
        ("Die Siedlung entstand im Jahr 1066.", "year", True),
        ("Das war in den 1950er Jahren.", "year", True),
        ("Im 20. Jahrhundert wuchs die Stadt.", "year", True),
        ("It was built in 1123.", "date", True),
        ("Mitto ist hundertprozentige Mutter der Firma.", "number", True),
        ("Die Firma wurde in jenem Jahr gegründet, in dem alles begann.", "year", True),
        ("Die Firma sitzt in Zug.", "number", False),
    ],
)
def test_answer_types_recognise_facts_without_digits(sentence: str, kind: str, expected: bool) -> None:
    assert has_type(sentence, kind) is expected


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from bot.app import build_services
    from tests.conftest import DEMO_ARTICLES, make_settings

    services = build_services(make_settings(tmp_path_factory.mktemp("refusal"), Path(DEMO_ARTICLES)))
    services.case.index()
    return services


def test_indexing_stores_a_calibration_with_the_collection(demo_store) -> None:  # type: ignore[no-untyped-def]
    store = demo_store.case._store
    stored = Calibration.from_json(store.calibration())
    assert stored is not None and stored.generation == store.generation()
    assert stored.samples > 10 and 0.5 < stored.same_language < 1.0
    assert stored.cross_language < stored.same_language


def test_calibration_is_deterministic_and_moves_with_the_corpus(demo_store) -> None:  # type: ignore[no-untyped-def]
    store = demo_store.case._store
    embed = demo_store.case.answerer._retriever.embed_queries
    chunks = list(store.iter_chunks())
    first = calibrate(store, embed, chunks=chunks)
    assert calibrate(store, embed, chunks=chunks) == first
    # The measured quantile moves with the content ...
    half = calibrate(store, embed, chunks=chunks[: len(chunks) // 2])
    assert half.same_language != first.same_language and half.samples < first.samples
    # ... and is blended with the model's prior in proportion to the number of samples.
    raw = calibrate(store, embed, RefusalPolicy(prior_weight=0), chunks=chunks)
    prior = RefusalPolicy(prior_weight=10_000, prior_threshold=0.5)
    leaning = calibrate(store, embed, prior, chunks=chunks)
    assert raw.same_language != first.same_language
    assert abs(leaning.same_language - 0.5) < 0.01


def test_calibration_scores_each_pseudo_question_like_a_real_question(demo_store) -> None:  # type: ignore[no-untyped-def]
    from index.refusal import pseudo_question_scores

    answerer = demo_store.case.answerer
    store, embed = demo_store.case._store, answerer._retriever.embed_queries
    chunks = list(store.iter_chunks())
    policy = RefusalPolicy()
    pairs, sentences = pseudo_question_scores(store, embed, policy, chunks, answerer._sentence_vectors)
    assert sentences > 10 and len(pairs) > sentences  # a small case: several draws per sentence
    # The sentence cosine is that of the best passage's best sentence, so it differs from the passage's.
    assert sum(1 for dense, sentence in pairs if abs(dense - sentence) > 1e-4) > len(pairs) // 2
    without, _ = pseudo_question_scores(store, embed, policy, chunks)
    assert [dense for dense, _ in without] == pytest.approx([dense for dense, _ in pairs])
    assert all(dense == sentence for dense, sentence in without)  # no sentence vectors: passage score
    mixed = calibrate(store, embed, policy, chunks=chunks, sentence_vectors=answerer._sentence_vectors)
    passage_only = calibrate(store, embed, RefusalPolicy(sentence_weight=0.0), chunks=chunks,
                             sentence_vectors=answerer._sentence_vectors)
    assert mixed.same_language != passage_only.same_language
    assert mixed.policy == policy.calibration_key() != passage_only.policy


def test_the_calibration_s_batched_search_finds_what_one_query_finds(demo_store) -> None:  # type: ignore[no-untyped-def]
    store = demo_store.case._store
    questions = ["Wer hat Mitto gegründet?", "Twitter beendet die Zusammenarbeit", "Wie wird das Wetter?"]
    vectors = [v.tolist() for v in demo_store.case.answerer._retriever.embed_queries(questions)]
    batched = store.best_matches(vectors)
    for vector, match in zip(vectors, batched):
        [(chunk, cosine)] = store.query(vector, 1)
        assert match is not None and match[0].chunk_id == chunk.chunk_id and match[0].text == chunk.text
        assert match[0].metadata == chunk.metadata and match[1] == pytest.approx(cosine, abs=1e-6)
    assert store.best_matches([]) == []


def test_the_store_reads_the_chunks_llama_index_wrote_as_llama_index_reads_them(demo_store) -> None:  # type: ignore[no-untyped-def]
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.chroma import ChromaVectorStore

    store = demo_store.case._store
    through_llama_index = ChromaVectorStore(chroma_collection=store._collection)
    questions = ["Wer hat Mitto gegründet?", "Which US senator did Twitter inform?", "Wie wird das Wetter?"]
    for vector in demo_store.case.answerer._retriever.embed_queries(questions):
        direct = store.query(vector.tolist(), 6)
        result = through_llama_index.query(VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=6))
        assert len(direct) == 6 == len(result.nodes)
        for (chunk, cosine), node, similarity in zip(direct, result.nodes, result.similarities):
            assert chunk.chunk_id == node.node_id and chunk.text == node.get_content()
            assert chunk.metadata == dict(node.metadata)
            assert cosine == pytest.approx(1.0 + math.log(similarity), abs=1e-6)  # it reports exp(-distance)


def test_an_index_run_recalibrates_when_the_refusal_policy_changed(tmp_path: Path) -> None:
    from bot.app import build_services
    from tests.conftest import DEMO_ARTICLES, make_settings

    settings = make_settings(tmp_path, Path(DEMO_ARTICLES))
    services = build_services(settings)
    services.case.index()
    store = services.case._store
    first = Calibration.from_json(store.calibration())
    assert first is not None
    stricter = build_services(settings.model_copy(update={
        "answer": settings.answer.model_copy(update={"false_refusal_rate": 0.2})}))
    # A reader under another policy does not use the stored thresholds, and does not write its own ...
    assert stricter.case.answerer.calibration().same_language > first.same_language
    assert Calibration.from_json(store.calibration()) == first
    # ... an index run (nothing changed in the articles) stores the new policy's.
    stricter.case.index()
    second = Calibration.from_json(store.calibration())
    assert second is not None and second.quantile == 0.2 and second.same_language > first.same_language


def test_a_reader_without_a_stored_calibration_computes_one_but_never_writes(demo_store) -> None:  # type: ignore[no-untyped-def]
    from bot.app import build_services

    store = demo_store.case._store
    saved = store.calibration()
    store.set_calibration("")  # an index built by an older version
    try:
        reader = build_services(demo_store.settings).case.answerer
        calibration = reader.calibration()
        assert calibration is not None and calibration.samples > 10
        assert store.calibration() == ""  # only an index run writes collection metadata
    finally:
        store.set_calibration(saved)


@pytest.mark.parametrize(
    ("sentence", "leans_back"),
    [
        ("The X.25 protocol suite uses this network type.", True),  # a demonstrative noun phrase
        ("All of this set the stage for the project.", True),
        ("Die X.25-Protokollsuite verwendet diesen Netzwerktyp.", True),
        ("All das bereitete den Weg.", True),
        ("He was elected in 1186.", True),
        ("Temüjin was elected khan in 1186.", False),
        ("Thistle grows in Scotland.", False),  # whole words only
    ],
)
def test_a_sentence_that_refers_back_brings_its_predecessor(sentence: str, leans_back: bool) -> None:
    assert bool(_LEANS_BACK.search(sentence)) is leans_back


def _chunks(n: int, offset: int = 0) -> list[StoredChunk]:
    return [StoredChunk(f"k-{i}", f"Satz Nummer {i} erzählt von der Firma Beispiel{i} und ihrem Werk in Ort{i}.",
                        {"language": "de"}) for i in range(offset, offset + n)]


def test_calibration_sample_moves_little_when_an_article_is_added() -> None:
    policy = RefusalPolicy(calibration_samples=40)
    before = calibration_sentences(_chunks(200), policy)
    after = calibration_sentences(list(reversed(_chunks(200))) + _chunks(10, offset=200), policy)
    assert len(before) == len(after) == 40
    assert len(set(before) - set(after)) <= 10  # only sentences displaced by the 10 new ones
    assert calibration_sentences(_chunks(200) + _chunks(200), policy) == before  # duplicates count once


def test_query_vector_cache_embeds_only_queries_it_has_not_seen(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def embed(queries: list[str]) -> np.ndarray:
        calls.append(list(queries))
        return np.asarray([[len(q), q.count("a"), 1.0] for q in queries], dtype=np.float32)

    path = tmp_path / "cache" / "queries.npz"
    first = QueryVectorCache(embed, path)(["alpha", "beta", "gamma"])
    again = QueryVectorCache(embed, path)(["gamma", "alpha", "delta"])  # a new process: read from the file
    assert calls == [["alpha", "beta", "gamma"], ["delta"]]
    assert np.array_equal(again[0], first[2]) and np.array_equal(again[1], first[0])
    assert np.array_equal(again[2], embed(["delta"])[0])
    with np.load(path, allow_pickle=False) as data:
        assert len(data["keys"]) == 3  # only the last call's queries are kept
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    path.write_bytes(b"not an npz")
    calls.clear()
    assert np.array_equal(QueryVectorCache(embed, path)(["alpha"])[0], first[0])
    assert calls == [["alpha"]]  # a damaged file costs embedding again, not an error
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # the start of a zip, and nothing after it
    assert np.array_equal(QueryVectorCache(embed, path)(["alpha"])[0], first[0])


def test_a_few_sentences_give_several_pseudo_questions_each() -> None:
    sentences = [c.text for c in _chunks(5)]
    questions = calibration_questions(sentences, 30)
    assert questions == calibration_questions(sentences, 30)  # reproducible
    assert len(questions) == len(set(questions)) > len(sentences)
    assert questions[: len(sentences)] == calibration_questions(sentences, len(sentences))  # first draw first
    assert len(calibration_questions(sentences * 10, 12)) <= 12
    assert calibration_questions([], 30) == []
