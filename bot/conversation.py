"""Platform-neutral conversation: a message in, a reply out.

Written once, used by every adapter (terminal, Telegram, Matrix). It knows
commands, admin checks, rate limits, question length and follow-ups; it
knows nothing about how a platform delivers or renders messages. Blocking
work (retrieval, indexing) runs in worker threads behind a semaphore, so an
adapter's event loop never blocks and concurrency stays bounded; every
answer has a deadline that frees its slot with a reply.

It is also the one error path: :meth:`Conversation.handle` never raises. An
unexpected exception becomes the same sentence on every platform plus a log
line with the traceback for the operator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import tempfile
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.feedback import FeedbackStore
from bot.followup import is_follow_up
from bot.settings import ChatSettings
from index.answer import Answer
from index.articles import SUPPORTED_SUFFIXES, load_article
from index.case import CaseIndex
from index.errors import CasebotError
from index.pipeline import IndexReport
from index.prompts import PromptLibrary
from index.store import ArticleRecord
from index.text import detect_language

log = logging.getLogger(__name__)

ADMIN_COMMANDS = frozenset({"reindex", "stats"})
PUBLIC_COMMANDS = frozenset({"start", "help", "sources", "about", "ask"})
_COMMAND = re.compile(r"^[/!](?P<name>[A-Za-z_]+)(?:@\S+)?(?:\s+(?P<args>.*))?$", re.DOTALL)
# A command written in a reply text ("/help", "/ask"), not a path or URL.
_TEXT_COMMAND = re.compile(r"(?<![\w/:.])/(?=[A-Za-z_]+\b)")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # Unicode category Cc, but newline and tab
MAX_NAME_BYTES = 255
"""What Linux file systems take for one file name, in bytes of UTF-8."""
MAX_TRACKED_USERS = 20_000
"""Per-user rate-limit windows kept at most (least recently active forgotten first)."""


def clean_text(text: str) -> str:
    """``text`` safe to process and to send: no lone surrogates, no control characters.

    A lone surrogate (from a file name, say) cannot be encoded as UTF-8 or
    UTF-16 and would make every platform's send fail; it becomes U+FFFD.
    NUL and other control characters (but newline and tab) become spaces:
    a NUL would otherwise end the text at that point in the embedder.
    """
    return _CONTROL.sub(" ", _SURROGATE.sub("\ufffd", text))


def is_blank(text: str) -> bool:
    """True if a chat would show no text: only whitespace, control and format characters.

    Telegram refuses such a message; Matrix clients show an empty bubble.
    """
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp") for c in text)


def clean_reply(reply: Reply) -> Reply:
    """``reply`` with :func:`clean_text` applied to every text in it (answer, citations, articles).

    Renderers call it first: titles and URLs come from article files and
    may carry anything a file can.
    """
    cleaned = _clean_value(reply)
    assert isinstance(cleaned, Reply)
    return cleaned


def _clean_value(value: object) -> object:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, tuple):
        return tuple(_clean_value(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _clean_value(getattr(value, f.name)) for f in dataclasses.fields(value)
                   if f.init and isinstance(getattr(value, f.name), str | tuple | Answer | ArticleRecord)}
        return dataclasses.replace(value, **changes)
    return value


def normalise_question(text: str) -> str:
    """A question as it is answered: :func:`clean_text`, NFC, whitespace runs collapsed, stripped."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", clean_text(text))).strip()


@dataclass(frozen=True)
class Incoming:
    """A message addressed to the bot, already stripped of platform syntax.

    ``chat_id`` scopes follow-ups (a Telegram chat, a Matrix thread);
    ``is_admin`` is decided by the adapter from its platform's admin list.
    ``command_prefix`` is how commands are written on the platform (``/`` on
    Telegram, ``!`` on Matrix); help and usage texts are shown with it.
    ``local_operator`` is the person running the process at its terminal
    (``casebot chat``): not rate-limited.
    """

    chat_id: str
    user_id: str
    text: str
    is_admin: bool = False
    language: str | None = None
    command_prefix: str = "/"
    local_operator: bool = False


@dataclass(frozen=True)
class Reply:
    """What to send back. ``answer`` or ``articles`` carry structure to render.

    Kind ``silent`` means: send nothing (a reader still flooding after being
    told once about the rate limit).
    """

    kind: str  # answer | help | sources | about | stats | reindex | notice | error | silent
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


class RateLimiter:
    """At most ``count`` messages per ``seconds`` and user, with bounded memory.

    Windows are kept least-recently-active first and forgotten once they are
    older than the window (nothing left to limit) or when more than
    ``max_users`` users are tracked, so a flood of distinct ids cannot grow
    the state without bound.
    """

    def __init__(self, count: int, seconds: float, clock: Callable[[], float],
                 max_users: int = MAX_TRACKED_USERS) -> None:
        self._count = count
        self._seconds = seconds
        self._clock = clock
        self._max_users = max_users
        self._windows: OrderedDict[str, deque[float]] = OrderedDict()
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, user_id: str) -> str:
        """``ok`` (and counted), ``limited`` (tell the user), or ``quiet`` (told already: say nothing)."""
        now = self._clock()
        self._expire(now)
        window = self._windows.pop(user_id, None) or deque()
        self._windows[user_id] = window
        while window and now - window[0] > self._seconds:
            window.popleft()
        if len(window) >= self._count:
            if user_id in self._warned:
                return "quiet"
            self._warned.add(user_id)
            return "limited"
        self._warned.discard(user_id)
        window.append(now)
        while len(self._windows) > self._max_users:
            old, _ = self._windows.popitem(last=False)
            self._warned.discard(old)
        return "ok"

    def _expire(self, now: float) -> None:
        while self._windows:
            user_id, window = next(iter(self._windows.items()))
            if window and now - window[-1] <= self._seconds:
                return
            del self._windows[user_id]
            self._warned.discard(user_id)


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
        self._limiter = RateLimiter(settings.rate_limit_count, settings.rate_limit_seconds, clock)
        self.counters = counters or Counters()  # injected with the totals stored before a restart
        self._on_answer = on_answer

    # --- entry point -------------------------------------------------------------

    async def handle(self, message: Incoming) -> Reply:
        """Turn one incoming message into one reply. Never raises for bad input.

        Commands named in help and notice texts are written with the
        message's ``command_prefix``; answers are never rewritten. Any
        unexpected exception is logged with its traceback and answered with
        the ``internal_error`` sentence, the same on every platform.
        """
        try:
            reply = await self._handle(message)
        except Exception:
            log.exception("answering a message from user %s failed", message.user_id)
            reply = self.failure(message.language or self._language_of(message.chat_id))
        if message.command_prefix != "/" and reply.kind in ("help", "notice"):
            text = _TEXT_COMMAND.sub(lambda _: message.command_prefix, reply.text)
            reply = dataclasses.replace(reply, text=text)
        return reply

    def failure(self, language: str | None = None) -> Reply:
        """The reply to an unexpected failure: one sentence a reader understands (no exception names).

        Adapters use it for failures of their own around :meth:`handle`
        (an upload download, say), so every path says the same.
        """
        language = language if language in ("de", "en") else self._default_language
        return Reply("error", self._prompts.text(language, "internal_error"), language)

    async def _handle(self, message: Incoming) -> Reply:
        text = normalise_question(message.text)
        match = _COMMAND.match(text)
        if match:
            # Commands carry no language of their own: the conversation's, else the person's app's.
            previous = self._history.get(message.chat_id)
            language = previous.language if previous else (message.language or self._default_language)
        else:
            language = message.language or detect_language(text, self._language_of(message.chat_id))
        if not message.local_operator:
            verdict = self._limiter.check(message.user_id)
            if verdict == "quiet":
                return Reply("silent", "", language)
            if verdict == "limited":
                return self._notice("rate_limited", language)
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
        previous = self._history.get(message.chat_id)
        if previous is not None and not is_follow_up(question):
            previous = None
        # A follow-up is searched with the previous question (that one only, never a chain)
        # and passes it on, so an LLM answerer can rewrite it into a stand-alone question.
        retrieval_query = f"{previous.question} {question}" if previous else question
        deadline = self._settings.answer_timeout_seconds
        started = time.perf_counter()  # waiting for a slot is part of what the person waits
        try:
            async with self._slots:
                # On timeout the slot is freed at once; the worker thread finishes on its own
                # (the store's and the model's own timeouts bound it).
                answer = await asyncio.wait_for(asyncio.to_thread(
                    self._case.ask, question, language, retrieval_query,
                    previous.question if previous else None), deadline)
        except TimeoutError:
            log.error("answering a question from user %s took longer than %.0f s; gave up",
                      message.user_id, deadline)
            if self._on_answer is not None:
                await self._on_answer(None, time.perf_counter() - started)
            return self._notice("answer_timeout", language)
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

    def _remember(self, chat_id: str, exchange: _Exchange) -> None:
        self._history[chat_id] = exchange
        self._history.move_to_end(chat_id)
        while len(self._history) > self._settings.history_chats:
            self._history.popitem(last=False)

    def _language_of(self, chat_id: str) -> str:
        previous = self._history.get(chat_id)
        return previous.language if previous else self._default_language

    @property
    def tracked_users(self) -> int:
        """How many users' rate-limit windows are held (bounded by :data:`MAX_TRACKED_USERS`)."""
        return len(self._limiter)

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

        Admins only. Nothing in the articles folder is ever overwritten: a
        name that exists, or a ``url:`` that belongs to another indexed file,
        is refused with a notice saying so (the admin replaces a file in the
        folder itself, then sends ``/reindex``). The name is reduced to a
        safe base name of at most :data:`MAX_NAME_BYTES` bytes with its
        suffix kept; the file is written under a temporary name, linked into
        place only if the name is still free, and removed again if it cannot
        be indexed, so nothing half-written or unusable stays behind. Never
        raises: an unexpected failure is logged and answered like in :meth:`handle`.
        """
        try:
            return await self._add_article(filename, content, is_admin, user_id, language)
        except Exception:
            log.exception("saving the upload %r from user %s failed", clean_text(filename)[:80], user_id)
            return self.failure(language)

    async def _add_article(
        self, filename: str, content: bytes, is_admin: bool, user_id: str, language: str | None
    ) -> Reply:
        refusal = self.check_upload(filename, len(content), is_admin, user_id, language)
        if refusal is not None:
            return refusal
        language = language or self._default_language
        name = _safe_filename(filename)
        assert name is not None  # check_upload refused every unusable name
        target = self._case.articles_dir / name
        if target.exists() or target.is_symlink():
            return self._notice("upload_exists", language, name=name)
        try:
            outcome = await asyncio.to_thread(_save_and_index, self._case, target, content)
        except CasebotError as error:
            return Reply("error", self._prompts.text(language, "error").format(reason=error), language)
        if isinstance(outcome, _Conflict):
            key = "upload_exists" if outcome.url is None else "upload_url_taken"
            log.warning("refused upload %r: %s", name, outcome)
            return self._notice(key, language, name=name, url=outcome.url or "", other=outcome.other)
        if outcome.failures:
            return self._notice("upload_failed", language, reason=outcome.failures[0].reason)
        return self._notice("upload_indexed", language, name=name, summary=outcome.summary())

    def check_upload(
        self, filename: str, size: int, is_admin: bool, user_id: str, language: str | None = None
    ) -> Reply | None:
        """The refusal for an upload, or None if :meth:`add_article` would go on to save it.

        Lets an adapter refuse before downloading a file that is too large,
        of the wrong kind or named like an existing article, with the same
        texts as :meth:`add_article`.
        """
        language = language or self._default_language
        if not is_admin:
            log.warning("refused article upload from user %s", user_id)
            return self._notice("admin_only", language)
        name = _safe_filename(filename)
        if name is None:
            return self._notice("upload_unsupported", language, name=filename[:80])
        if size > self._settings.max_upload_bytes:
            return self._notice("upload_too_large", language, limit=self._settings.max_upload_bytes // 1000)
        target = self._case.articles_dir / name
        if target.exists() or target.is_symlink():
            return self._notice("upload_exists", language, name=name)
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
        return Reply("notice", clean_text(self._prompts.text(language, key).format(**values)), language)


def _safe_filename(filename: str) -> str | None:
    """A plain base name with a supported suffix, at most :data:`MAX_NAME_BYTES` in UTF-8, or None.

    Long names are shortened in the stem (never in the middle of a
    character), so the suffix, and with it the file type, survives.
    """
    base = Path(clean_text(filename).replace("\\", "/")).name
    base = unicodedata.normalize("NFC", base)
    base = re.sub(r"[^\w.\-]+", "_", base).lstrip(".")
    suffix = Path(base).suffix
    if not base or suffix.lower() not in SUPPORTED_SUFFIXES:
        return None
    stem = base[: -len(suffix)]
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(".") or "upload"
    return stem + suffix


@dataclass(frozen=True)
class _Conflict:
    """Why an upload was not saved: its name is taken, or its URL belongs to ``other``."""

    url: str | None
    other: str

    def __str__(self) -> str:
        return f"URL {self.url} belongs to {self.other}" if self.url else f"{self.other} exists"


def _save_and_index(case: CaseIndex, target: Path, content: bytes) -> IndexReport | _Conflict:
    """Write to a temporary file, refuse a URL of another article, link into place, index.

    ``os.link`` fails if the name was taken in the meantime, so even a race
    with another upload or an editor cannot overwrite a file. The new file is
    removed again if indexing fails.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".upload-", suffix=target.suffix,
                                     delete=False) as tmp:
        tmp.write(content)
        tmp_path = Path(tmp.name)
    try:
        conflict = _url_conflict(case, tmp_path, target)
        if conflict is not None:
            return conflict
        try:
            os.link(tmp_path, target)
        except FileExistsError:
            return _Conflict(None, target.name)
    finally:
        tmp_path.unlink(missing_ok=True)
    try:
        report = case.index([target])
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if report.failures:
        target.unlink(missing_ok=True)
    return report


def _url_conflict(case: CaseIndex, upload: Path, target: Path) -> _Conflict | None:
    """A conflict if the upload's ``url:`` is already the URL of another indexed article file."""
    try:
        url = load_article(upload).url
    except Exception:  # unusable files are reported by the indexer with its reason
        return None
    if not url:
        return None
    for record in case.sources():
        if record.url == url and Path(record.path).resolve() != target.resolve():
            return _Conflict(url, Path(record.path).name or record.title)
    return None
