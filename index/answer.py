"""Extractive answers with numbered citations, and the decision to refuse.

No language model is involved: the answer quotes the sentences of the
retrieved passages that best match the question, numbers each quoted article
once (``[1]``, ``[2]``) and lists only those articles. The bot refuses,
citing nothing, when

* the question is closer to a reference set of off-topic requests (weather,
  poems, small talk, general knowledge) than the best passage is to the
  question by a margin (the multilingual model's scores have a
  question-dependent baseline, which this margin removes), or
* the question asks for a kind of fact (a date, a number) that the best
  sentence does not contain.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding

from index.chunking import chunk_sentences
from index.prompts import PromptLibrary
from index.retrieve import HybridRetriever, KeywordIndex, Passage
from index.text import LANGUAGES, detect_language, is_stopword, stems, word_stems, words


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

    def as_dict(self) -> dict[str, object]:
        return {
            "answer": self.text,
            "refused": self.refused,
            "language": self.language,
            "citations": [c.as_dict() for c in self.citations],
            "confidence": round(self.confidence, 4),
            "mode": self.mode,
            "notice": self.notice,
        }


@dataclass(frozen=True)
class AnswerPolicy:
    """Tunable thresholds of the extractive answerer (calibrated on dev.jsonl)."""

    passages: int = 4  # passages the answer may quote from
    max_sentences: int = 3
    max_quote_chars: int = 700
    min_margin: float = -0.02  # best passage cosine minus off-topic reference cosine
    lexical_min_margin: float = -0.05  # ... enough when the best sentence has the question's words
    lexical_support: float = 0.9  # IDF-weighted share of question words in the best sentence
    weak_margin: float = 0.02  # below this, a same-language question needs some shared words ...
    weak_margin_lexical: float = 0.3  # ... at least this share
    lexical_weight: float = 0.06
    sentence_slack: float = 0.02  # how far behind the best a further sentence may score
    other_article_slack: float = 0.02  # ... when it would cite one more article
    min_sentence_words: int = 4
    rerank_sentences: int = 6  # sentences embedded one by one per question
    sentence_weight: float = 0.6  # sentence vs. passage similarity in the final score
    typed_slack: float = 0.03  # how far behind the best a sentence with the asked-for date/number may be
    short_sentence_chars: int = 160  # a best sentence shorter than this brings its successor
    sentence_cache_size: int = 20_000


@dataclass
class _Candidate:
    sentence: str
    passage: Passage
    order: int  # position in the passage, to quote in reading order
    score: float = 0.0
    lexical: float = 0.0


# Requests to perform a task instead of asking about the case: the bot only
# reports what the articles say, it does not write, translate or invent.
_TASK_REQUEST = re.compile(
    r"^\W*(bitte\s+|please\s+|can you\s+|kannst du\s+)?(schreib|schreibe|dichte|erfinde|übersetze|übersetz|"
    r"erzähl mir (einen|einen?) (witz|geschichte)|erzähle? einen witz|write|compose|translate|invent|"
    r"tell me a (joke|story)|generate|make up)\b",
    re.IGNORECASE,
)
_TEMPORAL_Q = re.compile(
    r"\b(wann|seit wann|bis wann|in welchem jahr|an welchem tag|when|what year|which year|since when|"
    r"what date|which date|how long ago)\b", re.IGNORECASE)
_QUANTITY_Q = re.compile(
    r"\b(wie ?viele?n?|wie hoch|wie groß|wie gross|wie teuer|was kostet|wie lange|welche summe|"
    r"how many|how much|how high|how large|how big|how long|what percentage|what share)\b",
    re.IGNORECASE)
_MONTHS = (
    "januar|jänner|februar|märz|april|mai|juni|juli|august|september|oktober|november|dezember|"
    "january|february|march|may|june|july|october|december"
)
_TEMPORAL_A = re.compile(
    rf"\b(1[5-9]\d\d|20\d\d|{_MONTHS}|montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|gestern|vorgestern|yesterday|"
    r"\d{1,2}\.\s?\d{1,2}\.(\d{2,4})?|\d{4}-\d{2}-\d{2})\b", re.IGNORECASE)
_NUMBER_WORDS = (
    "eins|zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|zwanzig|dreißig|hundert|tausend|"
    "million|millionen|milliarde|milliarden|one|two|three|four|five|six|seven|eight|nine|ten|"
    "twelve|twenty|hundred|thousand|millions?|billions?|dutzend|dozens?"
)
_QUANTITY_A = re.compile(rf"(\d|\b({_NUMBER_WORDS})\b)", re.IGNORECASE)
# Founding and birth dates, "since when", "which year": only a year answers these.
_YEAR_Q = re.compile(
    r"(gegründet|gründung|founded|established|geboren|born|seit wann|since when|in welchem jahr|"
    r"what year|which year)", re.IGNORECASE)
_YEAR_A = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")


def _required_answer_type(question: str) -> tuple[str, re.Pattern[str]] | None:
    """What kind of fact the question asks for, with the pattern an answer must match."""
    if _YEAR_Q.search(question):
        return "no-year", _YEAR_A
    if _TEMPORAL_Q.search(question):
        return "no-date", _TEMPORAL_A
    if _QUANTITY_Q.search(question):
        return "no-number", _QUANTITY_A
    return None


class ExtractiveAnswerer:
    """Answers a question from retrieved passages, quoting and citing them."""

    def __init__(
        self,
        retriever: HybridRetriever,
        embedding: BaseEmbedding,
        prompts: PromptLibrary,
        policy: AnswerPolicy | None = None,
        default_language: str = "de",
        cache_dir: Path | None = None,
    ) -> None:
        self._retriever = retriever
        self._cache_dir = cache_dir
        self._embedding = embedding
        self._prompts = prompts
        self._policy = policy or AnswerPolicy()
        self._default_language = default_language
        self._reference: dict[str, np.ndarray] = {}
        self._sentence_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _reference_vectors(self, language: str) -> np.ndarray:
        """Vectors of the off-topic reference requests in ``language``.

        Embedding them costs about half a second, which a one-shot
        ``casebot ask`` would pay every time; so they are kept in memory and,
        given a cache folder, on disk under a name that changes with the
        model and the texts.
        """
        if language in self._reference:
            return self._reference[language]
        texts = self._prompts.offtopic_reference(language)
        path = None
        if self._cache_dir is not None:
            key = hashlib.sha256("\n".join([type(self._embedding).__name__, self._embedding.model_name,
                                             *texts]).encode()).hexdigest()[:16]
            path = self._cache_dir / f"offtopic-{language}-{key}.npy"
            if path.is_file():
                try:
                    self._reference[language] = np.load(path)
                    return self._reference[language]
                except (OSError, ValueError):
                    pass  # a damaged cache file is recomputed below
        vectors = np.asarray(self._embedding.get_text_embedding_batch(texts), dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as tmp:
                np.save(tmp, vectors)
            Path(tmp.name).replace(path)
        self._reference[language] = vectors
        return vectors

    def invalidate(self) -> None:
        """The index changed: check the keyword index before the next answer."""
        self._retriever.invalidate()

    def warm_up(self) -> None:
        """Load the model and the keyword index now instead of on the first question."""
        for language in LANGUAGES:
            self._reference_vectors(language)
        self._retriever.keyword_index()

    def answer(self, question: str, language: str | None = None, retrieval_query: str | None = None,
               previous_question: str | None = None) -> Answer:
        """Answer ``question`` (in ``language``, else its detected language).

        ``previous_question`` is accepted for the :class:`index.case.Answerer`
        interface and not needed here: ``retrieval_query`` already carries it.

        ``retrieval_query`` overrides what is searched for (a follow-up
        question expanded with the previous one) while the reply's language
        and the type checks still follow ``question``.
        """
        language = language or detect_language(question, self._default_language)
        if _TASK_REQUEST.search(question):
            return self.refusal(language, "task")
        query = retrieval_query or question
        query_vector = self._retriever.embed_query(query)
        passages = self._retriever.retrieve(query, max(self._policy.passages * 2, 8), query_vector)
        if not passages:
            return self.refusal(language, "empty")
        best = max(passages, key=lambda p: p.dense)
        # Compared in the best passage's language, so that a German question on
        # English articles is not held against German look-alikes of small talk.
        passage_language = str(best.chunk.metadata.get("language", language))
        if passage_language not in LANGUAGES:
            passage_language = language
        off_topic = float(np.max(self._reference_vectors(passage_language) @ query_vector))
        best_dense = best.dense
        margin = best_dense - off_topic
        policy = self._policy
        if margin < min(policy.min_margin, policy.lexical_min_margin):
            return self.refusal(language, "off-topic", confidence=margin)

        keywords = self._retriever.keyword_index()
        required = _required_answer_type(question)
        chosen = self._select(query, query_vector, passages, keywords, required)
        if not chosen:
            reason = required[0] if required else "no-sentence"
            return self.refusal(language, reason, confidence=margin)
        # A short lookup ("Wer ist Erich Schmidt-Eenboom?") has a weak vector
        # margin but names words that only this case contains: a sentence that
        # contains (nearly) all of them is evidence enough.
        if margin < policy.min_margin and chosen[0].lexical < policy.lexical_support:
            return self.refusal(language, "off-topic", confidence=margin)
        # A weak margin in the articles' own language with none of the question's
        # words in the best sentence is a general-knowledge question that happens
        # to sit near the case ("Wer hat die Fußball-WM 2014 gewonnen?"). Across
        # languages the words cannot match, so the margin alone decides there.
        if (margin < policy.weak_margin and passage_language == language
                and chosen[0].lexical < policy.weak_margin_lexical):
            return self.refusal(language, "off-topic", confidence=margin)
        return self._compose(chosen, language, margin)

    def _select(
        self,
        question: str,
        query_vector: np.ndarray,
        passages: Sequence[Passage],
        keywords: KeywordIndex,
        required: tuple[str, re.Pattern[str]] | None = None,
    ) -> list[_Candidate]:
        """Rank the sentences of the best passages; keep the best few.

        A cheap first pass scores every sentence of the best passages by its
        passage's similarity and by the question words it contains (IDF
        weighted, stemmed in both languages). The best few are then embedded
        one by one, because a chunk's vector cannot tell which of its
        sentences answers; sentence vectors are cached.
        """
        policy = self._policy
        question_words = _question_words(question)
        weights = {w: max((keywords.idf(s) for s in variants), default=0.0)
                   for w, variants in question_words.items()}
        total = sum(weights.values()) or 1.0
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
                matched = sum(weights[w] for w, variants in question_words.items()
                              if variants & sentence_stems)
                lexical = matched / total
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
                policy.sentence_weight * float(vector @ query_vector)
                + (1 - policy.sentence_weight) * candidate.passage.dense
                + policy.lexical_weight * candidate.lexical
            )
        ordered.sort(key=lambda c: -c.score)
        if required is not None:
            # The answer must contain what the question asks for (a date, a
            # number); the best sentence that does, if it is nearly the best.
            typed = [c for c in ordered
                     if c.score >= ordered[0].score - policy.typed_slack and required[1].search(c.sentence)]
            if not typed:
                return []
            ordered.remove(typed[0])
            ordered.insert(0, typed[0])
        best = ordered[0]
        chosen = [best]
        size = len(best.sentence)
        follower = self._follower(best)
        if follower is not None:
            chosen.append(follower)
            size += len(follower.sentence)
        for candidate in ordered[1:]:
            if len(chosen) >= policy.max_sentences or candidate.score < best.score - policy.sentence_slack:
                break
            same_article = candidate.passage.chunk.article_id == best.passage.chunk.article_id
            if not same_article and candidate.score < best.score - policy.other_article_slack:
                continue
            if size + len(candidate.sentence) > policy.max_quote_chars or candidate.sentence in {
                c.sentence for c in chosen
            }:
                continue
            chosen.append(candidate)
            size += len(candidate.sentence)
        return chosen

    def _follower(self, best: _Candidate) -> _Candidate | None:
        """The sentence after the best one in its passage, when the best is short.

        Reasons and names often follow the sentence that matches the
        question ("Twitter beendet … . Der Grund …"); quoting it gives the
        reader the context that makes the quote an answer.
        """
        if len(best.sentence) > self._policy.short_sentence_chars:
            return None
        sentences = chunk_sentences(best.passage.chunk.text)
        index = best.order + 1
        if index >= len(sentences) or len(sentences[index].split()) < self._policy.min_sentence_words:
            return None
        return _Candidate(sentences[index].strip(), best.passage, index, best.score, 0.0)

    def _sentence_vectors(self, sentences: list[str]) -> list[np.ndarray]:
        missing = [s for s in sentences if s not in self._sentence_cache]
        if missing:
            vectors = self._embedding.get_text_embedding_batch(missing)
            for sentence, vector in zip(missing, vectors):
                self._sentence_cache[sentence] = np.asarray(vector, dtype=np.float32)
                if len(self._sentence_cache) > self._policy.sentence_cache_size:
                    self._sentence_cache.popitem(last=False)
        for sentence in sentences:
            self._sentence_cache.move_to_end(sentence)
        return [self._sentence_cache[s] for s in sentences]

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
            quote = " ".join(c.sentence for c in group)
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

    def refusal(self, language: str, reason: str, confidence: float = 0.0) -> Answer:
        """The "the articles do not say" answer, citing nothing."""
        return Answer(text=self._prompts.text(language, "refusal"), refused=True,
                      language=language, confidence=confidence, mode=f"refused:{reason}")


def _question_words(question: str) -> dict[str, set[str]]:
    """Content words of a question with their stems in every language."""
    result: dict[str, set[str]] = {}
    for word in words(question):
        if is_stopword(word) or len(word) < 2:
            continue
        result[word] = word_stems(word)
    return result


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

