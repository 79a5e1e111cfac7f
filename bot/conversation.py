"""Platform-neutral conversation: a message in, a reply out.

Written once, used by every adapter (terminal, Telegram, Matrix). It knows
commands, admin checks, rate limits, question length and follow-ups; it
knows nothing about how a platform delivers or renders messages. Blocking
work (retrieval, indexing) runs in worker threads behind a semaphore, so an
adapter's event loop never blocks and concurrency stays bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.feedback import FeedbackStore
from bot.settings import ChatSettings
from index.answer import Answer
from index.articles import SUPPORTED_SUFFIXES
from index.case import CaseIndex
from index.errors import CasebotError
from index.pipeline import IndexReport
from index.prompts import PromptLibrary
from index.store import ArticleRecord
from index.text import detect_language, is_stopword, words

log = logging.getLogger(__name__)

ADMIN_COMMANDS = frozenset({"reindex", "stats"})
PUBLIC_COMMANDS = frozenset({"start", "help", "sources", "about", "ask"})
_COMMAND = re.compile(r"^[/!](?P<name>[A-Za-z_]+)(?:@\S+)?(?:\s+(?P<args>.*))?$", re.DOTALL)
# A command written in a reply text ("/help", "/ask"), not a path or URL.
_TEXT_COMMAND = re.compile(r"(?<![\w/:.])/(?=[A-Za-z_]+\b)")
_FOLLOW_UP_START = re.compile(
    r"^(und|aber|also|dann|und wie|und wer|und wann|and|but|so|what about|how about|then)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Incoming:
    """A message addressed to the bot, already stripped of platform syntax.

    ``chat_id`` scopes follow-ups (a Telegram chat, a Matrix thread);
    ``is_admin`` is decided by the adapter from its platform's admin list.
    ``command_prefix`` is how commands are written on the platform (``/`` on
    Telegram, ``!`` on Matrix); help and usage texts are shown with it.
    """

    chat_id: str
    user_id: str
    text: str
    is_admin: bool = False
    language: str | None = None
    command_prefix: str = "/"


@dataclass(frozen=True)
class Reply:
    """What to send back. ``answer`` or ``articles`` carry structure to render."""

    kind: str  # answer | help | sources | about | stats | reindex | notice | error
    text: str
    language: str
    answer: Answer | None = None
    articles: tuple[ArticleRecord, ...] = ()
    question: str = ""


@dataclass
class _Exchange:
    question: str
    retrieval_query: str
    language: str


@dataclass
class Counters:
    """Since start: questions answered and refused."""

    answered: int = 0
    refused: int = 0
    by_user: dict[str, deque[float]] = field(default_factory=dict)


AnswerObserver = Callable[[Answer | None, float], Awaitable[None]]
"""Told every answered question: the answer (None: answering failed) and the seconds it took."""


class Conversation:
    """The bot's behaviour, shared by all adapters."""

    def __init__(
        self,
        case: CaseIndex,
        prompts: PromptLibrary,
        settings: ChatSettings,
        default_language: str = "de",
        case_name: str = "",
        clock: Callable[[], float] = time.monotonic,
        feedback: FeedbackStore | None = None,
        counters: Counters | None = None,
        on_answer: AnswerObserver | None = None,
    ) -> None:
        self._case = case
        self._feedback = feedback
        self._prompts = prompts
        self._settings = settings
        self._default_language = default_language
        self._case_name = case_name
        self._clock = clock
        self._history: OrderedDict[str, _Exchange] = OrderedDict()
        self._slots = asyncio.Semaphore(settings.max_concurrent_answers)
        self.counters = counters or Counters()  # injected with the totals stored before a restart
        self._on_answer = on_answer

    # --- entry point -------------------------------------------------------------

    async def handle(self, message: Incoming) -> Reply:
        """Turn one incoming message into one reply. Never raises for bad input.

        Commands named in help and notice texts are written with the
        message's ``command_prefix``; answers are never rewritten.
        """
        reply = await self._handle(message)
        if message.command_prefix != "/" and reply.kind in ("help", "notice"):
            text = _TEXT_COMMAND.sub(lambda _: message.command_prefix, reply.text)
            reply = dataclasses.replace(reply, text=text)
        return reply

    async def _handle(self, message: Incoming) -> Reply:
        text = message.text.strip()
        language = message.language or detect_language(text, self._language_of(message.chat_id))
        match = _COMMAND.match(text)
        if match:
            name = match.group("name").lower()
            args = (match.group("args") or "").strip()
            if name == "ask":
                if not args:
                    return self._notice("ask_usage", language)
                return await self._question(message, args)
            return await self._command(name, message, language)
        if not text:
            return self._notice("empty_question", language)
        return await self._question(message, text)

    @staticmethod
    def is_question(text: str) -> bool:
        """True if ``text`` would be answered from the articles (a question or ``/ask``)."""
        match = _COMMAND.match(text.strip())
        return bool(text.strip()) and (match is None or match.group("name").lower() == "ask")

    # --- questions ---------------------------------------------------------------

    async def _question(self, message: Incoming, question: str) -> Reply:
        language = message.language or detect_language(question, self._language_of(message.chat_id))
        if len(question) > self._settings.max_question_chars:
            return self._notice("too_long", language, limit=self._settings.max_question_chars)
        if self._rate_limited(message.user_id):
            return self._notice("rate_limited", language)
        retrieval_query = self._with_context(message.chat_id, question)
        # A follow-up also passes the earlier question, so an LLM answerer can rewrite it.
        previous = self._history.get(message.chat_id) if retrieval_query != question else None
        started = time.perf_counter()  # waiting for a slot is part of what the person waits
        try:
            async with self._slots:
                answer = await asyncio.to_thread(self._case.ask, question, language, retrieval_query,
                                                 previous.retrieval_query if previous else None)
        except CasebotError as error:
            log.warning("answering failed: %s", error)
            if self._on_answer is not None:
                await self._on_answer(None, time.perf_counter() - started)
            return Reply("error", self._prompts.text(language, "error").format(reason=error), language)
        if self._on_answer is not None:
            await self._on_answer(answer, time.perf_counter() - started)
        self._remember(message.chat_id, _Exchange(question, retrieval_query, answer.language))
        if answer.refused:
            self.counters.refused += 1
        else:
            self.counters.answered += 1
        return Reply("answer", answer.text, answer.language, answer=answer, question=question)

    def _with_context(self, chat_id: str, question: str) -> str:
        """Expand a follow-up ("und wann war das?") with the previous question."""
        previous = self._history.get(chat_id)
        if previous is None:
            return question
        content = [w for w in words(question) if not is_stopword(w) and len(w) > 1]
        if len(content) <= 2 or _FOLLOW_UP_START.match(question.strip()):
            # A chain of follow-ups keeps only the most recent context.
            context = previous.retrieval_query[-self._settings.max_question_chars:]
            return f"{context} {question}"
        return question

    def _remember(self, chat_id: str, exchange: _Exchange) -> None:
        self._history[chat_id] = exchange
        self._history.move_to_end(chat_id)
        while len(self._history) > self._settings.history_chats:
            self._history.popitem(last=False)

    def _language_of(self, chat_id: str) -> str:
        previous = self._history.get(chat_id)
        return previous.language if previous else self._default_language

    def _rate_limited(self, user_id: str) -> bool:
        now = self._clock()
        window = self.counters.by_user.setdefault(user_id, deque())
        while window and now - window[0] > self._settings.rate_limit_seconds:
            window.popleft()
        if len(window) >= self._settings.rate_limit_count:
            return True
        window.append(now)
        return False

    # --- commands ----------------------------------------------------------------

    async def _command(self, name: str, message: Incoming, language: str) -> Reply:
        if name in ADMIN_COMMANDS:
            if not message.is_admin:
                log.warning("refused admin command /%s from user %s", name, message.user_id)
                return self._notice("admin_only", language)
            if name == "reindex":
                return await self.reindex(language)
            return await self._stats(language)
        if name in ("start", "help"):
            stats = await asyncio.to_thread(self._case.stats)
            text = self._prompts.text(language, "help").format(case=self._case_name, articles=stats.articles)
            return Reply("help", text, language)
        if name == "about":
            return Reply("about", self._prompts.text(language, "about"), language)
        if name == "sources":
            articles = tuple(await asyncio.to_thread(self._case.sources))
            heading = self._prompts.text(language, "sources_list").format(count=len(articles))
            return Reply("sources", heading, language, articles=articles)
        return self._notice("unknown_command", language, command=name)

    async def reindex(self, language: str) -> Reply:
        """Re-scan the articles folder (incrementally) and report the summary line.

        Articles whose files were deleted are removed too: in a chat, the
        folder is the newsroom's list of what the bot should know.
        """
        started = self._clock()
        try:
            report = await asyncio.to_thread(self._case.index, None, False, True)
        except CasebotError as error:
            return Reply("error", self._prompts.text(language, "error").format(reason=error), language)
        text = self._prompts.text(language, "reindexed").format(
            summary=report.summary(), seconds=self._clock() - started
        )
        for failure in report.failures[:10]:
            text += f"\n- {failure}"
        return Reply("reindex", text, language)

    async def add_article(
        self, filename: str, content: bytes, is_admin: bool, user_id: str, language: str | None = None
    ) -> Reply:
        """Save an uploaded article into the articles folder and index it.

        Admins only. The name is reduced to a safe base name; the file is
        written to a temporary name and renamed, and removed again if it
        cannot be indexed, so nothing half-written or unusable stays behind.
        """
        refusal = self.check_upload(filename, len(content), is_admin, user_id, language)
        if refusal is not None:
            return refusal
        language = language or self._default_language
        name = _safe_filename(filename)
        assert name is not None  # check_upload refused every unusable name
        target = self._case.articles_dir / name
        try:
            report = await asyncio.to_thread(_save_and_index, self._case, target, content)
        except CasebotError as error:
            return Reply("error", self._prompts.text(language, "error").format(reason=error), language)
        if report.failures:
            return self._notice("upload_failed", language, reason=report.failures[0].reason)
        return self._notice("upload_indexed", language, name=name, summary=report.summary())

    def check_upload(
        self, filename: str, size: int, is_admin: bool, user_id: str, language: str | None = None
    ) -> Reply | None:
        """The refusal for an upload, or None if :meth:`add_article` would accept it.

        Lets an adapter refuse before downloading a file that is too large
        or of the wrong kind, with the same texts as :meth:`add_article`.
        """
        language = language or self._default_language
        if not is_admin:
            log.warning("refused article upload from user %s", user_id)
            return self._notice("admin_only", language)
        if _safe_filename(filename) is None:
            return self._notice("upload_unsupported", language, name=filename[:80])
        if size > self._settings.max_upload_bytes:
            return self._notice("upload_too_large", language, limit=self._settings.max_upload_bytes // 1000)
        return None

    async def _stats(self, language: str) -> Reply:
        stats = await asyncio.to_thread(self._case.stats)
        text = self._prompts.text(language, "stats").format(
            answered=self.counters.answered, refused=self.counters.refused,
            articles=stats.articles, chunks=stats.chunks,
        )
        if self._feedback is not None:
            up, down = await asyncio.to_thread(self._feedback.counts)
            text += "\n" + self._prompts.text(language, "stats_feedback").format(up=up, down=down)
        return Reply("stats", text, language)

    def _notice(self, key: str, language: str, **values: object) -> Reply:
        return Reply("notice", self._prompts.text(language, key).format(**values), language)


def _safe_filename(filename: str) -> str | None:
    """A plain base name with a supported suffix, or None."""
    base = Path(filename.replace("\\", "/")).name
    base = re.sub(r"[^\w.\-]+", "_", base).lstrip(".")
    if not base or Path(base).suffix.lower() not in SUPPORTED_SUFFIXES:
        return None
    return base[:150]


def _save_and_index(case: CaseIndex, target: Path, content: bytes) -> IndexReport:
    """Write atomically, index that one file, and undo the write if it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = target.read_bytes() if target.exists() else None
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".upload-", delete=False) as tmp:
        tmp.write(content)
        tmp_path = Path(tmp.name)
    try:
        tmp_path.replace(target)
        report = case.index([target])
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        _restore(target, previous)
        raise
    if report.failures:
        _restore(target, previous)
    return report


def _restore(target: Path, previous: bytes | None) -> None:
    if previous is None:
        target.unlink(missing_ok=True)
    else:
        target.write_bytes(previous)
