"""Answers written by a language model from retrieved passages, every sentence checked.

The extractive answerer stays in charge of two things: whether to answer at
all, and what to say when the model cannot be used. For each question:

1. The extractive answer is computed first. If it refuses, the bot refuses:
   its refusal decision is calibrated on the dev sets and costs no tokens,
   while a generative model handed loosely related passages tends to write
   *something* and cite it. The model is never asked what the bot would
   refuse, so it can never override a refusal.
2. The best passages are numbered and fenced as data in the prompt
   (``prompts/<lang>/llm_*.txt``); passage sentences that address an AI
   ("ignore previous instructions") are withheld from the model.
3. The reply is checked by :func:`index.citations.check_citations`: markers
   must name supplied passages, and every sentence must be *supported* by
   the passages it cites (:class:`index.support.SupportChecker`: numbers
   present, no flipped negation, close enough in meaning); unsupported
   sentences are dropped and numbers are renumbered to the cited articles.
4. The model said ``NO_ANSWER``: the bot refuses (the model saw the passages
   and found no answer; quoting them anyway would pretend otherwise).
   No sentence survived the check: the extractive answer is sent, with a
   notice saying that the model's answer could not be verified. The model
   failed or is unreachable: the extractive answer is sent with a notice
   saying so. ``Answer.mode`` says which of these answered (``llm``,
   ``extractive-fallback:<why>``, ``refused:<why>``) and every model-written
   answer carries a notice saying so, so a reader always knows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from index.answer import Answer, Citation, ExtractiveAnswerer
from index.chunking import chunk_sentences
from index.citations import CheckedText, check_citations
from index.llm import ChatModel, Generation, LLMUnavailableError
from index.prompts import PromptLibrary
from index.retrieve import HybridRetriever, Passage
from index.support import SupportChecker, SupportVerdict
from index.text import detect_language, is_stopword, query_stems, words

log = logging.getLogger(__name__)

# Sentences in article text that speak to a model rather than to a reader.
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|prompts?|rules?|context)\b"
    r"|\b(ignoriere|vergiss|missachte)\b.{0,40}\b(anweisungen|anweisung|regeln|vorgaben|prompts?)\b"
    r"|\b(system prompt|systemprompt|you are now|du bist jetzt|as an ai|als ki)\b"
    r"|\b(assistant|assistent|language model|sprachmodell|chatbot|ki-modell|ai model)\b.{0,40}"
    r"\b(must|should|shall|soll|muss|sollst|musst)\b",
    re.IGNORECASE | re.DOTALL,
)
_FENCE = re.compile(r"</?\s*passage\b[^>]*>", re.IGNORECASE)
WITHHELD = "[…]"


@dataclass(frozen=True)
class GroundedPolicy:
    """How much the model sees and writes."""

    passages: int = 4  # passages numbered in the prompt
    max_passage_chars: int = 900
    max_prompt_chars: int = 4000  # all passages together (about 1,100 tokens)
    max_quote_chars: int = 400  # per citation in the sources
    rewrite_max_chars: int = 300


@dataclass(frozen=True)
class Trace:
    """What happened on the way to an answer (for benchmarks and logs)."""

    generation: Generation | None = None
    checked: CheckedText | None = None
    query: str = ""
    rewritten: str = ""
    error: str = ""
    verdicts: tuple[tuple[str, SupportVerdict], ...] = ()  # every cited model sentence and its verdict
    passages: tuple[Passage, ...] = ()  # what the model was shown, numbered from 1


def neutralise(text: str) -> str:
    """Article text as the model may see it: no fences, no instructions to the model.

    A sentence that addresses an AI is replaced by ``[…]``: the article is
    quoted as data, and an instruction inside it is not data the answer
    needs. The fence tag itself is removed so a passage cannot close its
    fence early.
    """
    text = _FENCE.sub("", text)
    kept = [WITHHELD if _INJECTION.search(s) else s for s in chunk_sentences(text)]
    return " ".join(kept)


def _echoes(statement: str, rules: set[str]) -> bool:
    """The statement repeats the prompt's own instructions (small models echo their prompt).

    The rules contain example markers ("for example [1]"), so an echoed rule
    would otherwise pass as a cited statement.
    """
    content = [w for w in words(statement) if len(w) > 2 and not is_stopword(w)]
    return len(content) >= 3 and sum(w in rules for w in content) >= 0.7 * len(content)


class GroundedAnswerer:
    """Answers with a language model, falling back to the extractive answerer.

    Has the extractive answerer's interface (``answer``, ``refusal``,
    ``invalidate``, ``warm_up``) so that :class:`index.case.CaseIndex` takes
    either.
    """

    def __init__(
        self,
        extractive: ExtractiveAnswerer,
        retriever: HybridRetriever,
        model: ChatModel,
        prompts: PromptLibrary,
        support: SupportChecker,
        policy: GroundedPolicy | None = None,
        default_language: str = "de",
    ) -> None:
        self._extractive = extractive
        self._retriever = retriever
        self._model = model
        self._support = support
        self._prompts = prompts
        self._policy = policy or GroundedPolicy()
        self._default_language = default_language

    # --- the extractive answerer's interface ------------------------------------

    def invalidate(self) -> None:
        self._extractive.invalidate()

    def prepare(self) -> None:
        """After indexing: the extractive side recalibrates refusal (it gates the model)."""
        self._extractive.prepare()

    def warm_up(self) -> None:
        """Load the embedder, the keyword index and a local model (failures are logged)."""
        self._extractive.warm_up()
        self._model.warm_up()

    def answer(
        self,
        question: str,
        language: str | None = None,
        retrieval_query: str | None = None,
        previous_question: str | None = None,
    ) -> Answer:
        """Answer ``question``; see the module docstring for the steps."""
        return self.answer_with_trace(question, language, retrieval_query, previous_question)[0]

    # --- the model's part ----------------------------------------------------------

    def answer_with_trace(
        self,
        question: str,
        language: str | None = None,
        retrieval_query: str | None = None,
        previous_question: str | None = None,
    ) -> tuple[Answer, Trace]:
        """:meth:`answer`, plus the model's reply and token counts."""
        language = language or detect_language(question, self._default_language)
        standalone = unavailable = ""
        if previous_question:
            try:
                standalone = self._rewrite(previous_question, question, language)
            except LLMUnavailableError as error:
                unavailable = str(error)  # do not wait for the same unreachable model twice
        query = standalone or retrieval_query or question
        fallback = self._extractive.answer(question, language, query)
        if fallback.refused:
            return fallback, Trace(query=query, rewritten=standalone)
        if unavailable:
            return self._with_notice(fallback, language), Trace(query=query, error=unavailable)
        # The extractive answerer retrieved for the same query a moment ago; asking
        # again costs one query embedding and one Chroma lookup, milliseconds next
        # to a generation, and keeps the extractive answerer's interface as it is.
        passages = self._select(self._retriever.retrieve(query, top_k=self._policy.passages * 2), fallback)
        if not passages:
            return fallback, Trace(query=query, rewritten=standalone)
        texts = [neutralise(p.chunk.text) for p in passages]
        user = self._prompts.text(language, "llm_user").format(
            passages=self._passages_block(passages, texts, language), question=standalone or question)
        system = self._prompts.text(language, "llm_system")
        try:
            generation = self._model.chat(system, user)
        except LLMUnavailableError as error:
            return self._with_notice(fallback, language), Trace(query=query, rewritten=standalone,
                                                                error=str(error))
        rules = set(words(system + " " + self._prompts.text(language, "llm_user")))
        verdicts: list[tuple[str, SupportVerdict]] = []

        def supports(statement: str, numbers: Sequence[int]) -> bool:
            if _echoes(statement, rules):
                return False
            verdict = self._support.check(statement, [texts[n - 1] for n in numbers])
            verdicts.append((statement, verdict))
            if not verdict.supported:
                log.info("dropped a model sentence (%s, score %.3f): %r", verdict.reason, verdict.score,
                         statement[:200])
            return verdict.supported

        checked = check_citations(generation.text, [p.chunk.article_id for p in passages], supports=supports)
        trace = Trace(generation, checked, query, standalone, verdicts=tuple(verdicts), passages=tuple(passages))
        if checked.no_answer:
            log.info("the model found no answer in the passages; refusing")
            return self._refusal(language, "model-no-answer"), trace
        if not checked.cited:
            why = "unsupported" if verdicts else "uncited"
            log.info("model answer dropped (%s): %r", why, generation.text[:200])
            return self._with_notice(fallback, language, "llm_unverified", f"extractive-fallback:{why}"), trace
        if checked.removed_markers or checked.removed_statements:
            log.info("citation check removed %d markers and %d statements",
                     checked.removed_markers, checked.removed_statements)
        notice = self._prompts.text(language, "llm_written")
        return Answer(text=f"{checked.text}\n\n{notice}", refused=False, language=language,
                      citations=self._citations(checked, passages), confidence=fallback.confidence,
                      mode="llm", notice=notice), trace

    def rewrite_follow_up(self, previous_question: str, question: str, language: str | None = None) -> str:
        """A stand-alone version of a follow-up question, or "" when the model cannot help.

        The rewrite is used only if it is one plausible question: one line,
        not too long, and not just the earlier question again.
        """
        try:
            return self._rewrite(previous_question, question, language)
        except LLMUnavailableError:
            return ""

    def _rewrite(self, previous_question: str, question: str, language: str | None = None) -> str:
        language = language or detect_language(question, self._default_language)
        prompt = self._prompts.text(language, "llm_rewrite").format(previous=previous_question, question=question)
        generation = self._model.chat("", prompt)
        lines = [line.strip().strip("\"'„“”*`") for line in generation.text.strip().splitlines() if line.strip()]
        rewritten = re.sub(r"^(?:rewritten question|umformulierte frage|umgeschriebene frage|question|frage)\s*:\s*", "",
                           lines[0] if lines else "", flags=re.IGNORECASE).strip()
        if (not rewritten or len(rewritten) > self._policy.rewrite_max_chars
                or rewritten.casefold() == previous_question.strip().casefold()):
            return ""
        log.debug("follow-up %r rewritten as %r", question, rewritten)
        return rewritten

    def _with_notice(self, fallback: Answer, language: str, key: str = "llm_unavailable",
                     mode: str = "extractive-fallback") -> Answer:
        """The extractive answer, saying first why the model's text is not what answers."""
        notice = self._prompts.text(language, key)
        return replace(fallback, text=f"{notice}\n\n{fallback.text}", notice=notice, mode=mode)

    def _refusal(self, language: str, reason: str) -> Answer:
        """The "the articles do not say" answer, citing nothing (as the extractive side words it)."""
        return Answer(text=self._prompts.text(language, "refusal"), refused=True, language=language,
                      mode=f"refused:{reason}")

    def _select(self, passages: Sequence[Passage], fallback: Answer | None = None) -> list[Passage]:
        """The best passages that fit the prompt budget, one entry per chunk.

        Passages holding what the extractive answer quotes come first: a
        small model leans on passage 1, and the extractive side has already
        found the sentences that answer.
        """
        quotes = [c.quote[:80] for c in (fallback.citations if fallback else ()) if c.quote]
        passages = sorted(passages, key=lambda p: not any(q in p.chunk.text for q in quotes))
        chosen: list[Passage] = []
        seen: set[str] = set()
        size = 0
        for passage in passages:
            text = passage.chunk.text[: self._policy.max_passage_chars]
            if passage.chunk.chunk_id in seen or (chosen and size + len(text) > self._policy.max_prompt_chars):
                continue
            chosen.append(passage)
            seen.add(passage.chunk.chunk_id)
            size += len(text)
            if len(chosen) >= self._policy.passages:
                break
        return chosen

    def _passages_block(self, passages: Sequence[Passage], texts: Sequence[str], language: str) -> str:
        template = self._prompts.text(language, "llm_passage")
        blocks = []
        for n, (passage, text) in enumerate(zip(passages, texts), start=1):
            meta = passage.chunk.metadata
            source = ", ".join(str(x) for x in (meta.get("outlet"), meta.get("published")) if x)
            title = str(meta.get("title", ""))
            body = text[: self._policy.max_passage_chars]
            if title:
                body = f"{title}\n{body}"
            blocks.append(template.format(n=n, source=_FENCE.sub("", source).replace('"', "'"), text=body))
        return "\n\n".join(blocks)

    def _citations(self, checked: CheckedText, passages: Sequence[Passage]) -> tuple[Citation, ...]:
        """One citation per cited article; the quote is the passage sentence closest to the statements."""
        citations = []
        for number, (article_id, passage_numbers) in enumerate(zip(checked.articles, checked.passages), start=1):
            statements = [s for s, ns in checked.statements if set(ns) & set(passage_numbers)]
            quote = self._quote([passages[n - 1] for n in passage_numbers], statements)
            meta = passages[passage_numbers[0] - 1].chunk.metadata
            citations.append(Citation(
                n=number, article_id=article_id, url=str(meta.get("url", "")), title=str(meta.get("title", "")),
                outlet=str(meta.get("outlet", "")), published=str(meta.get("published", "")), quote=quote,
            ))
        return tuple(citations)

    def _quote(self, passages: Sequence[Passage], statements: Sequence[str]) -> str:
        wanted = set(query_stems(" ".join(statements)))
        best, best_score = "", -1
        for passage in passages:
            for sentence in chunk_sentences(passage.chunk.text):
                if _INJECTION.search(sentence):
                    continue
                score = len(set(query_stems(sentence)) & wanted)
                if score > best_score:
                    best, best_score = sentence, score
        if len(best) > self._policy.max_quote_chars:
            best = best[: self._policy.max_quote_chars].rsplit(" ", 1)[0] + " …"
        return best
