"""Extractive answers with numbered citations.

No language model is involved: the answer quotes the sentences of the
retrieved passages that best answer the question, numbers each quoted
article once (``[1]``, ``[2]``) and lists only those articles. Whether to
answer at all is :mod:`index.refusal`'s decision, made before any sentence
is chosen; this module only selects and composes.

Sentence choice: sentences of the best passages are scored by their own
vector, their passage's and the question words they contain; a sentence with
the kind of fact the question asks for (a date, a number, a place, a person)
gets a bonus but nothing is refused for lacking one. When the best sentence
leans on its neighbour (it opens with a pronoun or demonstrative, or it only
restates the question while the neighbour has the asked-for fact), the
neighbour is quoted too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index.chunking import chunk_sentences
from index.embeddings import Embedder, QueryVectorCache, embedding_identity
from index.files import private_dir
from index.prompts import PromptLibrary
from index.refusal import Calibration, RefusalDecider, RefusalPolicy, calibrate, focus_weights
from index.retrieve import HybridRetriever, Passage, Retrieval
from index.store import ChunkStore
from index.text import LANGUAGES, detect_language, stems, supports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Citation:
    """One cited article and the words quoted from it."""

    n: int
    article_id: str
    url: str
    title: str
    outlet: str
    published: str
    quote: str

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n, "url": self.url, "title": self.title, "outlet": self.outlet,
            "published": self.published, "quote": self.quote, "article_id": self.article_id,
        }


@dataclass(frozen=True)
class Answer:
    """A reply to one question: the text, whether it refused, and its sources."""

    text: str
    refused: bool
    language: str
    citations: tuple[Citation, ...] = ()
    confidence: float = 0.0
    mode: str = "extractive"
    notice: str = ""  # e.g. "the language model was unreachable"
    scores: dict[str, float] = field(default_factory=dict)  # what the refusal decision looked at

    def as_dict(self) -> dict[str, object]:
        return {
            "answer": self.text,
            "refused": self.refused,
            "language": self.language,
            "citations": [c.as_dict() for c in self.citations],
            "confidence": round(self.confidence, 4),
            "mode": self.mode,
            "notice": self.notice,
            "scores": self.scores,
        }


@dataclass(frozen=True)
class AnswerPolicy:
    """How many passages and sentences an extractive answer may use, and how they are scored."""

    passages: int = 4  # passages the answer may quote from
    max_sentences: int = 4  # the character budget and the score slack bind before a fourth sentence does
    max_quote_chars: int = 700
    lexical_weight: float = 0.06
    sentence_slack: float = 0.03  # how far behind the best a further sentence may score ...
    other_article_slack: float = 0.015  # ... and one from another article (it adds a citation)
    other_article_lexical: float = 0.3  # ... which must also contain this share of the question's words
    min_sentence_words: int = 4
    rerank_sentences: int = 6  # sentences embedded one by one per question
    sentence_weight: float = 0.6  # sentence vs. passage similarity in the final score
    typed_bonus: float = 0.03  # for a sentence with the kind of fact the question asks for
    short_sentence_chars: int = 300  # a best sentence shorter than this brings its successor
    sentence_cache_size: int = 20_000


@dataclass
class _Candidate:
    sentence: str
    passage: Passage
    order: int  # position in the passage, to quote in reading order
    score: float = 0.0
    lexical: float = 0.0


# --- answer types: what kind of fact a question asks for ---------------------------
# Only the first interrogative of a question counts ("How many ... when ..." asks for
# a number), and words match whole ("born" is not "reborn").

_TYPE_WORDS: tuple[tuple[str, str], ...] = (
    ("year", r"in welchem jahr|seit welchem jahr|what year|which year|in welchem jahrhundert|what century|which century"),
    ("number", r"wie ?viele?n?|wie hoch|wie gro(?:ß|ss)|wie teuer|wie lange|wie alt|wie weit|was kostet|"
               r"welche summe|welchen anteil|wie viel prozent|how many|how much|how high|how large|how big|"
               r"how long|how old|how far|what percentage|what share|what proportion"),
    ("date", r"wann|seit wann|bis wann|an welchem tag|when|since when|what date|which date|how long ago"),
    ("place", r"wo|woher|wohin|in welche[rmn]? (?:stadt|land|ort|staat|region)|where|in which (?:city|country|town|state|region)|"
              r"what (?:city|country|town)|which (?:city|country|town)"),
    ("person", r"wer|wem|wen|who|whom|whose"),
)
_TYPE_Q = re.compile(r"\b(" + "|".join(f"(?P<{name}>{pattern})" for name, pattern in _TYPE_WORDS) + r")\b",
                     re.IGNORECASE)
_MONTHS = ("januar|jänner|februar|märz|april|mai|juni|juli|august|september|oktober|november|dezember|"
           "january|february|march|may|june|july|october|december")
_NUMBER_WORDS = ("eins|zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|zwanzig|dreißig|hundert|"
                 "tausend|million(?:en)?|milliarden?|dutzend|hälfte|drittel|viertel|hundertprozentige?n?|"
                 "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundred|"
                 "thousand|millions?|billions?|dozens?|half|third|quarter|percent|prozent")
_TYPE_A = {
    "year": re.compile(r"\b(\d{3,4}(?:er|s)?|\d{1,2}\.\s?jahrhundert|\d{1,2}(?:st|nd|rd|th)\s+century|"
                       r"jahr|year)\b", re.IGNORECASE),
    "number": re.compile(rf"(\d|\b({_NUMBER_WORDS})\b)", re.IGNORECASE),
    "date": re.compile(rf"\b(\d{{3,4}}(?:er|s)?|{_MONTHS}|montag|dienstag|mittwoch|donnerstag|freitag|samstag|"
                       r"sonntag|monday|tuesday|wednesday|thursday|friday|saturday|sunday|gestern|vorgestern|"
                       r"yesterday|jahrhundert|century|jahr|year|\d{1,2}\.\s?\d{1,2}\.(\d{2,4})?|\d{4}-\d{2}-\d{2})\b",
                       re.IGNORECASE),
    # Places and people are names: a capitalised word that does not open the sentence.
    "place": re.compile(r"(?<=[a-zäöüß,;:] )[A-ZÄÖÜ][\w-]+"),
    "person": re.compile(r"(?<=[a-zäöüß,;:] )[A-ZÄÖÜ][\w-]+"),
}
# Sentences that lean on the one before them for what they talk about: they open with a
# pronoun or a linking adverb, or refer back with a demonstrative ("these devices").
_LEANS_BACK = re.compile(
    r"^\W*(er|sie|es|dies|diese[rsmn]?|das|dort|damals|deshalb|dafür|dabei|darauf|daher|zudem|außerdem|"
    r"he|she|it|they|this|these|those|that|there|its|his|her|their|then|thus|therefore|"
    r"all(?: of)? (?:this|that|these)|all (?:dies|das))\b"
    r"|\b(diese[rsmn]?|jene[rsmn]?|this|these|those|such)\s+\w",
    re.IGNORECASE)
# A person asked about may stand in the previous sentence when this one says "they".
_PERSONAL = re.compile(r"\b(er|sie|ihnen|ihm|ihr|ihre[rnms]?|sein|seine[rnms]?|he|she|they|them|him|his|her|their)\b",
                       re.IGNORECASE)


def answer_type(question: str) -> str | None:
    """The kind of fact ``question`` asks for ("year", "number", "date", "place", "person"), if any."""
    match = _TYPE_Q.search(question)
    if match is None:
        return None
    return next(name for name, _ in _TYPE_WORDS if match.group(name))


def has_type(sentence: str, kind: str | None) -> bool:
    """True if ``sentence`` contains a fact of ``kind`` (always true for no kind)."""
    return kind is None or bool(_TYPE_A[kind].search(sentence))


class ExtractiveAnswerer:
    """Answers a question from retrieved passages, quoting and citing them."""

    def __init__(
        self,
        retriever: HybridRetriever,
        embedding: Embedder,
        prompts: PromptLibrary,
        policy: AnswerPolicy | None = None,
        default_language: str = "de",
        cache_dir: Path | None = None,
        store: ChunkStore | None = None,
        refusal_policy: RefusalPolicy | None = None,
    ) -> None:
        self._retriever = retriever
        self._store = store
        self._cache_dir = cache_dir
        self._embedding = embedding
        self._prompts = prompts
        self._policy = policy or AnswerPolicy()
        self._default_language = default_language
        self._reference: dict[str, np.ndarray] = {}
        self._sentence_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the caches are shared by the worker threads of one process
        self._decider = RefusalDecider(refusal_policy, self._reference_vectors, self._sentence_vectors)
        self._calibration: Calibration | None = None
        self._calibration_generation = -1

    def _reference_vectors(self, language: str) -> np.ndarray:
        """Vectors of the off-topic reference requests in ``language``.

        Embedding them costs about half a second, which a one-shot
        ``casebot ask`` would pay every time; so they are kept in memory and,
        given a cache folder, on disk under a name that changes with the
        model and the texts (a plain ``.npy`` array, read without pickle).
        """
        with self._lock:
            if language in self._reference:
                return self._reference[language]
        texts = self._prompts.offtopic_reference(language)
        path = None
        if self._cache_dir is not None:
            key = hashlib.sha256("\n".join([embedding_identity(self._embedding), *texts]).encode()).hexdigest()[:16]
            path = self._cache_dir / f"offtopic-{language}-{key}.npy"
            if path.is_file():
                try:
                    vectors = np.load(path, allow_pickle=False)
                    with self._lock:
                        self._reference[language] = vectors
                    return vectors
                except (OSError, ValueError):
                    pass  # a damaged cache file is recomputed below
        vectors = np.asarray(self._embedding.get_text_embedding_batch(texts), dtype=np.float32)
        if path is not None:
            try:
                private_dir(path.parent)
                with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as tmp:  # 0600
                    np.save(tmp, vectors)
                Path(tmp.name).replace(path)
                for old in path.parent.glob(f"offtopic-{language}-*.npy"):  # another model's or older texts'
                    if old != path:
                        old.unlink(missing_ok=True)
            except OSError as error:  # a read-only data dir costs half a second per process, not the answer
                log.warning("could not cache the off-topic reference vectors: %s", error)
        with self._lock:
            self._reference[language] = vectors
        return vectors

    # --- calibration ------------------------------------------------------------------

    def calibration(self) -> Calibration | None:
        """The collection's refusal calibration, as stored by the last index run.

        Re-read whenever the store's generation moved (another process may
        have re-indexed). Only an index run writes it (:meth:`prepare`):
        Chroma's metadata has no compare-and-set, so a reader that wrote
        could undo a concurrent indexer's generation bump. A reader that
        finds none that fits its policy (an index built by an older version, or
        another false-refusal rate) computes one in
        memory and keeps it until the content changes.
        """
        if self._store is None:
            return None
        generation = self._retriever.generation()
        with self._lock:
            known, seen = self._calibration, self._calibration_generation
        if known is not None and seen == generation:
            return known
        stored = self._stored_calibration()
        if stored is None and self._store.count():
            stored = self._calibrate()
        with self._lock:
            self._calibration, self._calibration_generation = stored, generation
        return stored

    def _stored_calibration(self) -> Calibration | None:
        """The stored calibration, if it was computed under the current refusal policy."""
        assert self._store is not None
        stored = Calibration.from_json(self._store.calibration())
        if stored is not None and stored.policy != self._decider.policy.calibration_key():
            return None  # an older version's or another policy's thresholds would not fit the scores
        return stored

    def _calibrate(self) -> Calibration:
        """Calibrate on the chunks the keyword index already holds, reusing the last run's query vectors."""
        assert self._store is not None
        path = None
        if self._cache_dir is not None:
            path = self._cache_dir / f"calibration-queries-{embedding_identity(self._embedding)}.npz"
        chunks = self._retriever.keyword_index().chunks
        return calibrate(self._store, QueryVectorCache(self._retriever.embed_queries, path),
                         self._decider.policy, chunks=chunks, sentence_vectors=self._sentence_vectors)

    def recalibrate(self) -> Calibration | None:
        """Compute the refusal calibration for the store's current content and store it (index runs only)."""
        if self._store is None:
            return None
        result = self._calibrate()
        self._store.set_calibration(result.to_json())
        with self._lock:
            self._calibration, self._calibration_generation = result, self._retriever.generation()
        return result

    def invalidate(self) -> None:
        """The index changed: check the keyword index and the calibration before the next answer."""
        self._retriever.invalidate()
        with self._lock:
            self._calibration = None

    def prepare(self) -> None:
        """After indexing: recompute the calibration if the content changed, warm the caches.

        Done at index time so that the first question after ``casebot
        index`` is as fast as any later one.
        """
        if self._store is not None and self._store.count():
            stored = self._stored_calibration()  # None also when the policy changed (e.g. the rate)
            if stored is None or stored.generation != self._store.generation():
                self.recalibrate()
        self.warm_up()

    def warm_up(self) -> None:
        """Load the model, the reference vectors, the keyword index and the calibration now."""
        for language in LANGUAGES:
            self._reference_vectors(language)
        self._retriever.keyword_index()
        self.calibration()

    # --- answering --------------------------------------------------------------------

    def retrieve(self, question: str, language: str, retrieval_query: str | None = None) -> Retrieval:
        """The retrieval an answer to ``question`` rests on (shared with the LLM answerer)."""
        return self._retriever.search(retrieval_query or question, language, max(self._policy.passages * 2, 8))

    def answer(self, question: str, language: str | None = None, retrieval_query: str | None = None,
               previous_question: str | None = None) -> Answer:
        """Answer ``question`` (in ``language``, else its detected language).

        ``retrieval_query`` overrides what is searched for (a follow-up
        question expanded with the previous one) while the reply's language
        and the answer type still follow ``question``. ``previous_question``
        is accepted for the :class:`index.case.Answerer` interface and not
        needed here: ``retrieval_query`` already carries it.
        """
        language = language or detect_language(question, self._default_language)
        retrieval = self.retrieve(question, language, retrieval_query)
        # A follow-up is judged on what it searched for ("und wann?" has no focus of its own).
        refusal = self._decider.decide(retrieval.query, retrieval, self.calibration())
        if refusal is not None:
            return self.refusal(language, refusal.reason, scores=refusal.scores)
        chosen = self._select(question, retrieval)
        if not chosen:
            return self.refusal(language, "no-sentence")
        return self._compose(chosen, language, chosen[0].score)

    def _select(self, question: str, retrieval: Retrieval) -> list[_Candidate]:
        """Rank the sentences of the best passages; keep the best and what it needs.

        A cheap first pass scores every sentence of the best passages by its
        passage's similarity and by the question words it contains (IDF
        weighted, stemmed in both languages). The best few are then embedded
        one by one, because a chunk's vector cannot tell which of its
        sentences answers; sentence vectors come from the store (the
        indexer embeds every sentence) or are embedded here, and are cached.
        """
        policy = self._policy
        passages = retrieval.passages
        focus = focus_weights(retrieval.query, retrieval.keywords.idf)
        total = sum(weight for _, weight in focus.values()) or 1.0
        kind = answer_type(question)
        top_dense = max(p.dense for p in passages)
        # Passages within reach of the best one by meaning, or found by BM25 among the top.
        pool = [p for p in passages[: policy.passages * 2]
                if p.dense >= top_dense - 0.04 or p.ranks.get("keyword", 99) <= 2][: policy.passages]
        candidates: dict[str, _Candidate] = {}
        for passage in pool:
            language = str(passage.chunk.metadata.get("language", "de"))
            for order, sentence in enumerate(chunk_sentences(passage.chunk.text)):
                if len(sentence.split()) < policy.min_sentence_words:
                    continue
                sentence_stems = set(stems(sentence, language))
                lexical = sum(weight for variants, weight in focus.values() if supports(variants, sentence_stems, language)) / total
                score = passage.dense + policy.lexical_weight * lexical
                key = sentence.strip()
                known = candidates.get(key)
                if known is None or score > known.score:
                    candidates[key] = _Candidate(key, passage, order, score, lexical)
        ordered = sorted(candidates.values(), key=lambda c: -c.score)[: policy.rerank_sentences]
        if not ordered:
            return []
        vectors = self._sentence_vectors([c.sentence for c in ordered])
        for candidate, vector in zip(ordered, vectors):
            candidate.score = (
                policy.sentence_weight * float(vector @ retrieval.vector)
                + (1 - policy.sentence_weight) * candidate.passage.dense
                + policy.lexical_weight * candidate.lexical
                + (policy.typed_bonus if kind is not None and has_type(candidate.sentence, kind) else 0.0)
            )
        ordered.sort(key=lambda c: -c.score)
        best = ordered[0]
        chosen = [best, *self._neighbours(best, kind)]
        size = sum(len(c.sentence) for c in chosen)
        for candidate in ordered[1:]:
            if len(chosen) >= policy.max_sentences or candidate.score < best.score - policy.sentence_slack:
                break
            if candidate.passage.chunk.article_id != best.passage.chunk.article_id and (
                    candidate.score < best.score - policy.other_article_slack
                    or candidate.lexical < policy.other_article_lexical):
                continue  # another article is cited only for a sentence nearly as good and on the point
            if size + len(candidate.sentence) > policy.max_quote_chars or candidate.sentence in {
                c.sentence for c in chosen
            }:
                continue
            chosen.append(candidate)
            size += len(candidate.sentence)
        return chosen

    def _neighbours(self, best: _Candidate, kind: str | None) -> list[_Candidate]:
        """The sentence next to the best one that it needs to be an answer, if any.

        * the previous sentence when the best one opens with a pronoun or a
          demonstrative (it names what "he" or "these devices" are);
        * a neighbour with the asked-for kind of fact when the best sentence
          lacks it (the best one then restates the question);
        * the next sentence when the best one is short (a sentence that
          matches a question often restates it, and the reason or the name
          follows), or when the next one leans back on it.
        """
        policy = self._policy
        sentences = chunk_sentences(best.passage.chunk.text)

        def neighbour(index: int) -> _Candidate | None:
            if 0 <= index < len(sentences) and len(sentences[index].split()) >= policy.min_sentence_words:
                return _Candidate(sentences[index].strip(), best.passage, index, best.score, 0.0)
            return None

        before, after = neighbour(best.order - 1), neighbour(best.order + 1)
        chosen: _Candidate | None = None
        if before is not None and (_LEANS_BACK.search(best.sentence)
                                   or (kind == "person" and _PERSONAL.search(best.sentence))):
            chosen = before
        elif kind is not None and not has_type(best.sentence, kind):
            chosen = next((c for c in (after, before) if c is not None and has_type(c.sentence, kind)), None)
        if chosen is None and after is not None and (
                _LEANS_BACK.search(after.sentence) or len(best.sentence) < policy.short_sentence_chars):
            chosen = after
        if chosen is None or len(best.sentence) + len(chosen.sentence) > policy.max_quote_chars:
            return []
        return [chosen]

    def _sentence_vectors(self, sentences: list[str]) -> list[np.ndarray]:
        with self._lock:
            missing = [s for s in dict.fromkeys(sentences) if s not in self._sentence_cache]
        computed: dict[str, np.ndarray] = {}
        if missing and self._store is not None:
            # Written by the indexer (see ChunkStore.sentence_vectors): the same vectors, read, not embedded.
            computed = self._store.sentence_vectors(missing)
            missing = [s for s in missing if s not in computed]
        if missing:
            vectors = self._embedding.get_text_embedding_batch(missing)
            computed.update({s: np.asarray(v, dtype=np.float32) for s, v in zip(missing, vectors)})
        with self._lock:
            self._sentence_cache.update(computed)
            result: list[np.ndarray] = []
            for sentence in sentences:
                cached = self._sentence_cache.get(sentence)
                if cached is None:  # evicted by another thread meanwhile (rare): embed it again
                    cached = computed.get(sentence)
                    if cached is None:
                        cached = np.asarray(self._embedding.get_text_embedding(sentence), dtype=np.float32)
                else:
                    self._sentence_cache.move_to_end(sentence)
                result.append(cached)
            while len(self._sentence_cache) > self._policy.sentence_cache_size:
                self._sentence_cache.popitem(last=False)
        return result

    def clear_sentence_cache(self) -> None:
        """Forget every cached sentence vector (benchmarks measure uncached answers)."""
        with self._lock:
            self._sentence_cache.clear()

    def _compose(self, chosen: list[_Candidate], language: str, confidence: float) -> Answer:
        """Group quotes by article, number articles in order of first use."""
        numbers: dict[str, int] = {}
        quotes: dict[str, list[_Candidate]] = {}
        for candidate in chosen:
            article_id = candidate.passage.chunk.article_id
            numbers.setdefault(article_id, len(numbers) + 1)
            quotes.setdefault(article_id, []).append(candidate)
        parts = []
        citations = []
        for article_id, n in numbers.items():
            group = sorted(quotes[article_id],
                           key=lambda c: (int(c.passage.chunk.metadata.get("position", 0)), c.order))
            quote = " ".join(dict.fromkeys(c.sentence for c in group))
            parts.append(self._prompts.text(language, "quote").format(quote=quote, n=n))
            meta = group[0].passage.chunk.metadata
            citations.append(Citation(
                n=n, article_id=article_id, url=str(meta.get("url", "")),
                title=str(meta.get("title", "")), outlet=str(meta.get("outlet", "")),
                published=str(meta.get("published", "")), quote=quote,
            ))
        intro = self._prompts.text(language, "answer_intro")
        text = intro + "\n" + "\n".join(parts)
        return Answer(text=text, refused=False, language=language,
                      citations=tuple(citations), confidence=confidence)

    def refusal(self, language: str, reason: str, confidence: float = 0.0,
                scores: dict[str, float] | None = None) -> Answer:
        """The "the articles do not say" answer, citing nothing."""
        return Answer(text=self._prompts.text(language, "refusal"), refused=True,
                      language=language, confidence=confidence, mode=f"refused:{reason}",
                      scores=dict(scores or {}))


def format_attribution(outlet: str, published: str) -> str:
    """"Outlet, date" as shown after a cited article's title (parts left out when empty)."""
    return ", ".join(x for x in (outlet, published) if x)


def sources_block(citations: Sequence[Citation], language: str, prompts: PromptLibrary) -> str:
    """Plain-text list of cited articles: ``[n] Title — Outlet, date — URL``."""
    if not citations:
        return ""
    lines = [prompts.text(language, "sources_heading")]
    for c in citations:
        attribution = format_attribution(c.outlet, c.published)
        line = f"[{c.n}] {c.title}"
        if attribution:
            line += f" — {attribution}"
        if c.url:
            line += f" — {c.url}"
        lines.append(line)
    return "\n".join(lines)

