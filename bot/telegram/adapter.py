"""python-telegram-bot wiring: Telegram update -> Incoming -> conversation -> Reply -> Telegram HTML.

Thin by design: who is asking, whether a group message is addressed to the
bot and who is an admin are decided here, from Telegram's data; what to
answer is decided by :class:`~bot.conversation.Conversation`; how it looks
by :mod:`bot.telegram.render`.

Behaviour in brief: in a private chat every text is a question; in groups
the bot answers a mention (``@botname``), a reply to one of its messages and
``/ask``, and stays silent otherwise. Admin commands and uploads count only
from a listed admin in a private chat (never from anonymous group admins or
channels). Updates are handled concurrently (answering never blocks
receiving), and every update is journalled before Telegram forgets it and
marked done only once answered, so a crash loses no question and a
redelivery is not answered twice (:class:`UpdateJournal`); every request honours Telegram's flood control (:class:`FloodControl`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.conversation import ADMIN_COMMANDS, PUBLIC_COMMANDS, Conversation, Incoming, Reply
from bot.feedback import FeedbackStore
from bot.logs import ExpectedErrors
from bot.settings import TelegramSettings
from bot.telegram import render
from bot.telegram.flood import FloodControl
from bot.telegram.redact import TokenRedactor
from bot.telegram.updates import JournalledApplication, JournalQueue, UpdateJournal
from index.errors import CasebotError
from index.prompts import PromptLibrary

log = logging.getLogger(__name__)

AnyApplication = Application[Any, Any, Any, Any, Any, Any]

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
"""Edited messages, channel posts and the rest are never asked for."""

LANGUAGES = ("de", "en")
FEEDBACK_PREFIX = "fb:"
_TYPING_EVERY = 4.5  # seconds; Telegram shows "typing…" for about five
_SEND_ATTEMPTS = 3
_START_ATTEMPTS = 10  # about three and a half minutes of backoff
_REMEMBERED_ANSWERS = 5_000
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def file_url_for(base_url: str) -> str:
    """PTB's ``base_file_url`` for a Bot API ``base_url``.

    A self-hosted Bot API server serves files under ``/file/bot<token>/``
    next to ``/bot<token>/``, so ``…/bot`` becomes ``…/file/bot``.
    """
    base = base_url.rstrip("/")
    if base.endswith("/bot"):
        return base[: -len("/bot")] + "/file/bot"
    return base + "/file/bot"


def parse_commands(text: str) -> list[BotCommand]:
    """``command – description`` lines (``#`` comments skipped) as BotCommands."""
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"\s+[–-]\s+", line, maxsplit=1)
        name, description = parts[0].strip().lstrip("/"), (parts[1].strip() if len(parts) > 1 else "")
        if name and description:
            commands.append(BotCommand(name, description[:256]))
    return commands


def rejected_token_message(api_base_url: str) -> str:
    """What to tell the operator when the Bot API answers 401/404 (PTB's ``InvalidToken``)."""
    hint = (" Also check CASEBOT_TELEGRAM__API_BASE_URL: it must point to a Bot API server."
            if api_base_url else "")
    return "Telegram rejected the bot token (CASEBOT_TELEGRAM__TOKEN): check it with @BotFather." + hint


class _PollingRequest(HTTPXRequest):
    """The getUpdates connection; reports each poll's outcome and when Telegram stops accepting the token."""

    def __init__(self, on_rejected: Callable[[], None], on_poll: Callable[[str | None], None],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_rejected = on_rejected
        self._on_poll = on_poll

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        try:
            status, payload = await super().do_request(*args, **kwargs)
        except TelegramError as error:
            self._on_poll(type(error).__name__)
            raise
        if status in (401, 404):  # what PTB turns into InvalidToken
            self._on_rejected()
        self._on_poll(None if status < 500 else f"HTTP {status}")
        return status, payload


class TelegramAdapter:
    """The Telegram bot: a PTB Application with a symmetric start/stop.

    Everything arrives through the constructor; nothing touches the network
    before :meth:`start`.
    """

    name = "telegram"

    def __init__(
        self,
        conversation: Conversation,
        settings: TelegramSettings,
        feedback: FeedbackStore,
        prompts: PromptLibrary,
        data_dir: Path,
        default_language: str = "de",
        concurrent_updates: int = 64,
        poll_timeout: float = 30.0,
        request_timeout: float = 20.0,
        on_fatal: Callable[[str], None] | None = None,
        thinking_message: bool = False,
    ) -> None:
        self._conversation = conversation
        self._settings = settings
        self._feedback = feedback
        self._prompts = prompts
        self._data_dir = data_dir
        self._default_language = default_language
        self._concurrent_updates = concurrent_updates
        self._poll_timeout = poll_timeout
        self._request_timeout = request_timeout
        self._on_fatal = on_fatal
        self._token_revoked = False
        # Answers written by a language model take seconds: show one placeholder
        # and replace it with the answer (one edit, never per token).
        self._thinking_message = thinking_message
        self._admins = frozenset(settings.admin_ids)
        self._app: AnyApplication | None = None
        self._requests: list[HTTPXRequest] = []
        self._redactor: TokenRedactor | None = None
        self._webhook_secret = ""
        self._queue = JournalQueue(max_in_flight=concurrent_updates)
        self._journal: UpdateJournal | None = None
        self._answers: OrderedDict[tuple[int, int], Reply] = OrderedDict()
        self._bot_id = 0
        self._username = ""
        self._poll_error: str | None = None  # why the last getUpdates failed; None after a good one
        # PTB logs a whole traceback when the network fails at its last getUpdates on stop: one line is enough.
        self._quiet = ExpectedErrors(("telegram.ext.Updater", "telegram.ext.Application"), (NetworkError,))

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect (getMe), register commands, then poll or listen for the webhook.

        Returns once updates are being received. Raises :class:`CasebotError`
        with a sentence for the operator (bad token, unreachable API, webhook
        misconfigured) after cleaning up whatever was started.
        """
        token = self._settings.token.get_secret_value().strip()
        if not token:  # `casebot run` checks this before any heavy work; kept for direct use
            raise CasebotError(
                "CASEBOT_TELEGRAM__TOKEN is not set: create a bot with @BotFather and put its token there."
            )
        self._webhook_secret = self._settings.webhook_secret.get_secret_value() or secrets.token_urlsafe(32)
        self._quiet.install()  # before the redactor, which then also redacts the error text it adds
        self._redactor = TokenRedactor(token, self._webhook_secret)
        self._redactor.install()
        try:
            self._app = self._build(token)
            await self._initialize(self._app)
            self._bot_id = self._app.bot.id
            self._username = self._app.bot.username or ""
            self._journal = UpdateJournal(self._data_dir / "telegram-updates.sqlite3", self._bot_id)
            self._queue.attach(self._journal)
            await self._register_commands(self._app)
            await self._app.start()
            replayed = self._queue.replay(self._app.bot)
            if replayed:
                log.warning("answering %s message(s) received before the last stop", replayed)
            await self._receive(self._app)
        except BaseException:
            await self.stop()
            raise
        log.info("Telegram bot @%s is receiving updates", self._username)

    async def stop(self) -> None:
        """Stop receiving, finish the updates in hand, close connections. Safe after a failed start."""
        app, self._app = self._app, None
        try:
            if app is not None:
                if app.updater is not None and app.updater.running:
                    try:
                        await app.updater.stop()
                    except InvalidToken:  # the polling loop's end, already reported by _token_rejected
                        log.info("polling had stopped: the token was rejected")
                if app.running:
                    await app.stop()
                await app.shutdown()
            for request in self._requests:  # also when initialize failed half-way
                await request.shutdown()
            self._requests.clear()
            if self._journal is not None:
                self._journal.close()
                self._journal = None
        finally:
            self._quiet.uninstall()
            if self._redactor is not None:
                self._redactor.uninstall()
                self._redactor = None

    def problem(self) -> str | None:
        """None while updates arrive (the last poll succeeded, or the webhook server runs); else why not."""
        app = self._app
        if self._token_revoked:
            return "the bot token was rejected"
        if app is None or not app.running or app.updater is None or not app.updater.running:
            return "not running"
        if not self._settings.webhook_url and self._poll_error:
            return f"polling Telegram fails ({self._poll_error})"
        return None

    def _polled(self, error: str | None) -> None:
        self._poll_error = error

    def _build(self, token: str) -> AnyApplication:
        timeout = self._request_timeout
        request = HTTPXRequest(connection_pool_size=self._concurrent_updates + 8, connect_timeout=timeout,
                               read_timeout=timeout, write_timeout=timeout, pool_timeout=timeout)
        polling = _PollingRequest(self._token_rejected, self._polled, connection_pool_size=2,
                                  connect_timeout=timeout,
                                  read_timeout=timeout + self._poll_timeout, write_timeout=timeout,
                                  pool_timeout=timeout)
        self._requests = [request, polling]
        self._queue = JournalQueue(max_in_flight=self._concurrent_updates)  # bound to this run's loop
        builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder().token(token).request(request).get_updates_request(polling)
            .rate_limiter(FloodControl()).concurrent_updates(self._concurrent_updates)
            .update_queue(self._queue).application_class(JournalledApplication)
        )
        if self._settings.api_base_url:
            builder = builder.base_url(self._settings.api_base_url).base_file_url(
                self._settings.api_file_url or file_url_for(self._settings.api_base_url))
        elif self._settings.api_file_url:
            builder = builder.base_file_url(self._settings.api_file_url)
        app = builder.build()
        message = filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler(sorted(PUBLIC_COMMANDS | ADMIN_COMMANDS), self._on_command, message))
        app.add_handler(MessageHandler(message & filters.COMMAND & filters.ChatType.PRIVATE, self._on_text))
        app.add_handler(MessageHandler(message & filters.TEXT & ~filters.COMMAND, self._on_text))
        app.add_handler(MessageHandler(message & filters.Document.ALL & filters.ChatType.PRIVATE,
                                       self._on_document))
        app.add_handler(CallbackQueryHandler(self._on_feedback, pattern=rf"^{FEEDBACK_PREFIX}[+-]$"))
        app.add_error_handler(self._on_error)
        return app

    async def _initialize(self, app: AnyApplication) -> None:
        """getMe, retried with backoff while the network fails; a rejected token is final."""
        delay = 1.0
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                await app.initialize()
                return
            except InvalidToken:
                # PTB's message contains the token: never pass it on.
                raise CasebotError(rejected_token_message(self._settings.api_base_url)) from None
            except NetworkError as error:
                if attempt == _START_ATTEMPTS:
                    raise CasebotError(
                        f"Cannot reach the Telegram Bot API ({type(error).__name__}); "
                        "check the network and CASEBOT_TELEGRAM__API_BASE_URL."
                    ) from None
                log.warning("Telegram unreachable (%s), retry %d/%d in %.0f s", type(error).__name__, attempt,
                            _START_ATTEMPTS - 1, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _register_commands(self, app: AnyApplication) -> None:
        """The command menu in German and English; admins also see the admin commands."""
        bot = app.bot
        try:
            for language in LANGUAGES:
                await bot.set_my_commands(self._commands(language), language_code=language)
            await bot.set_my_commands(self._commands(self._default_language), scope=BotCommandScopeDefault())
        except TelegramError as error:
            log.warning("could not register the command menu: %s", error)
        for admin in sorted(self._admins):
            try:
                for language in LANGUAGES:
                    await bot.set_my_commands(self._commands(language, admin=True),
                                              scope=BotCommandScopeChat(admin), language_code=language)
            except TelegramError as error:  # e.g. the admin has not started a chat with the bot yet
                log.info("no admin command menu for user %s: %s", admin, error)

    def _commands(self, language: str, admin: bool = False) -> list[BotCommand]:
        commands = parse_commands(self._prompts.text(language, "bot_commands"))
        if admin:
            commands += parse_commands(self._prompts.text(language, "bot_admin_commands"))
        return commands

    async def _receive(self, app: AnyApplication) -> None:
        updater = app.updater
        assert updater is not None
        if not self._settings.webhook_url:
            await updater.start_polling(
                timeout=int(self._poll_timeout), allowed_updates=ALLOWED_UPDATES, bootstrap_retries=5,
                error_callback=self._on_polling_error,
            )
            return
        url = self._settings.webhook_url
        secret = self._webhook_secret
        if not _WEBHOOK_SECRET.fullmatch(secret):
            raise CasebotError("CASEBOT_TELEGRAM__WEBHOOK_SECRET may only contain A-Z, a-z, 0-9, _ and - "
                               "(at most 256 characters).")
        try:
            await updater.start_webhook(
                listen=self._settings.webhook_listen, port=self._settings.webhook_port,
                url_path=urlparse(url).path.lstrip("/"), webhook_url=url, secret_token=secret,
                allowed_updates=ALLOWED_UPDATES, bootstrap_retries=5,
            )
        except RuntimeError as error:
            if "webhooks" in str(error):
                raise CasebotError('Webhook mode needs "python-telegram-bot[webhooks]" installed '
                                   "(or unset CASEBOT_TELEGRAM__WEBHOOK_URL to poll).") from None
            raise

    def _on_polling_error(self, error: TelegramError) -> None:
        """Transient polling errors: PTB retries them with backoff."""
        log.warning("polling Telegram failed, retrying: %s", type(error).__name__)

    def _token_rejected(self) -> None:
        """Polling was refused (401/404): the token was revoked or changed while running.

        PTB ends its polling loop silently on ``InvalidToken``; without this
        the process would keep running deaf.
        """
        if self._token_revoked:
            return
        self._token_revoked = True
        log.error("Telegram no longer accepts the bot token; polling stopped")
        if self._on_fatal is not None:
            self._on_fatal("Telegram rejected the bot token (CASEBOT_TELEGRAM__TOKEN) while running: "
                           "it was revoked or changed; update it and restart.")

    # --- who is asking -------------------------------------------------------------

    def _is_admin(self, message: Message) -> bool:
        """A listed user, in a private chat, speaking for themselves (not a channel or anonymous admin)."""
        user = message.from_user
        return (
            message.chat.type == ChatType.PRIVATE
            and message.sender_chat is None
            and user is not None
            and not user.is_bot
            and user.id in self._admins
        )

    def _incoming(self, message: Message, text: str) -> Incoming:
        sender = message.sender_chat
        user = message.from_user
        user_id = f"chat:{sender.id}" if sender else str(user.id if user else message.chat_id)
        chat_id = str(message.chat_id)
        if message.is_topic_message and message.message_thread_id:
            chat_id += f":{message.message_thread_id}"  # follow-ups stay within a forum topic
        language = self._user_language(message) if text.startswith("/") else None
        return Incoming(chat_id=chat_id, user_id=user_id, text=text, is_admin=self._is_admin(message),
                        language=language)

    def _user_language(self, message: Message) -> str | None:
        """The person's app language when the bot speaks it (for commands, which carry no language)."""
        user = message.from_user
        code = (user.language_code or "")[:2].lower() if user and message.sender_chat is None else ""
        return code if code in LANGUAGES else None

    def _addressed_text(self, message: Message) -> str | None:
        """The question in ``message``, or None when a group message is not meant for the bot."""
        text = message.text or ""
        if message.chat.type == ChatType.PRIVATE:
            return text
        username = self._username.lower()
        mentioned = any(
            (entity.type == MessageEntity.MENTION and value.lower() == f"@{username}")
            or (entity.type == MessageEntity.TEXT_MENTION and entity.user is not None
                and entity.user.id == self._bot_id)
            for entity, value in message.parse_entities(
                [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]).items()
        )
        if mentioned:
            return re.sub(rf"@{re.escape(self._username)}\b", " ", text, flags=re.IGNORECASE).strip()
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == self._bot_id:
            return text
        return None

    # --- handlers ------------------------------------------------------------------

    async def _on_command(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        command = message.text.split(maxsplit=1)[0].lstrip("/").split("@")[0].lower()
        await self._answer(message, message.text, typing=command in ("ask", "reindex", "stats"))

    async def _on_text(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        text = self._addressed_text(message)
        if text is None:
            return  # group chatter
        await self._answer(message, text, typing=not text.startswith("/"))

    async def _answer(self, message: Message, text: str, typing: bool) -> None:
        incoming = self._incoming(message, text)
        placeholder = None
        if self._thinking_message and typing and self._conversation.is_question(text):
            language = self._user_language(message) or self._default_language
            placeholder = await self._send_text(message, self._prompts.text(language, "llm_thinking"), None, None)
        async with self._typing(message, enabled=typing):
            reply = await self._conversation.handle(incoming)
        await self._send(message, reply, placeholder)

    async def _on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.document is None:
            return
        document = message.document
        incoming = self._incoming(message, "")
        language = self._user_language(message) or self._default_language
        name = document.file_name or ""
        refusal = self._conversation.check_upload(name, document.file_size or 0, incoming.is_admin,
                                                  incoming.user_id, language)
        if refusal is not None:
            await self._send(message, refusal)
            return
        async with self._typing(message):
            try:
                file = await context.bot.get_file(document.file_id)
                content = bytes(await file.download_as_bytearray())
            except TelegramError as error:
                log.warning("downloading %r failed: %s", name, error)
                detail = self._redactor.redact(str(error)) if self._redactor else type(error).__name__
                reason = self._prompts.text(language, "upload_failed").format(reason=detail)
                await self._send(message, Reply("error", reason, language))
                return
            reply = await self._conversation.add_article(name, content, incoming.is_admin, incoming.user_id,
                                                         language)
        log.info("upload %r by user %s: %s", name, incoming.user_id, reply.text)
        await self._send(message, reply)

    async def _on_feedback(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Store a 👍/👎 with the question, answer and citations; thank the reader."""
        query = update.callback_query
        if query is None or query.data is None:
            return
        rating = 1 if query.data.endswith("+") else -1
        language = (query.from_user.language_code or "")[:2]
        language = language if language in LANGUAGES else self._default_language
        message = query.message
        if not isinstance(message, Message):
            await query.answer(self._prompts.text(language, "feedback_expired"))
            return
        reply = self._answers.get((message.chat_id, message.message_id))
        if reply is not None and reply.answer is not None:
            question, answer = reply.question, reply.text
            citations = [c.as_dict() for c in reply.answer.citations]
            language = reply.language
        else:  # from before a restart: what the message itself still shows
            question = (message.reply_to_message.text or "") if message.reply_to_message else ""
            answer = message.text or ""
            links = [e.url for e in message.entities if e.type == MessageEntity.TEXT_LINK and e.url]
            citations = [{"url": url} for url in dict.fromkeys(links)]
        await asyncio.to_thread(
            self._feedback.record, "telegram", str(message.chat_id), str(query.from_user.id),
            f"{message.chat_id}:{message.message_id}", rating, question, answer, citations,
        )
        await query.answer(self._prompts.text(language, "feedback_thanks"))
        if message.chat.type == ChatType.PRIVATE:
            with suppress(BadRequest):  # "message is not modified": the same button again
                await query.edit_message_reply_markup(self._feedback_keyboard(rating))

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log what failed (the redactor keeps the token out); tell the person if possible."""
        error = context.error
        update_id = update.update_id if isinstance(update, Update) else None
        if update_id is not None and isinstance(error, NetworkError) and not isinstance(error, BadRequest):
            self._queue.unsent(update_id)  # the reply did not go out: answered again at the next start
        log.error("handling update %s failed: %s", update_id, error, exc_info=error)
        message = update.effective_message if isinstance(update, Update) else None
        if message is not None and not isinstance(error, TelegramError):
            with suppress(TelegramError):
                await self._send(message, self._conversation.failure(self._user_language(message)))

    # --- sending -------------------------------------------------------------------

    @asynccontextmanager
    async def _typing(self, message: Message, enabled: bool = True) -> AsyncIterator[None]:
        """Show "typing…" in the chat until the block ends (the task is always cancelled)."""
        if not enabled:
            yield
            return
        task = asyncio.create_task(self._keep_typing(message), name="telegram-typing")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _keep_typing(self, message: Message) -> None:
        while True:
            try:
                await message.get_bot().send_chat_action(
                    message.chat_id, ChatAction.TYPING, message_thread_id=self._thread_of(message))
            except TelegramError as error:
                log.debug("typing action failed: %s", error)
            await asyncio.sleep(_TYPING_EVERY)

    @staticmethod
    def _thread_of(message: Message) -> int | None:
        return message.message_thread_id if message.is_topic_message else None

    @staticmethod
    def _feedback_keyboard(chosen: int = 0) -> InlineKeyboardMarkup:
        up = "👍 ✓" if chosen > 0 else "👍"
        down = "👎 ✓" if chosen < 0 else "👎"
        return InlineKeyboardMarkup([[InlineKeyboardButton(up, callback_data=f"{FEEDBACK_PREFIX}+"),
                                      InlineKeyboardButton(down, callback_data=f"{FEEDBACK_PREFIX}-")]])

    async def _send(self, message: Message, reply: Reply, placeholder: Message | None = None) -> None:
        """Send ``reply`` as one or more messages replying to ``message``; buttons under answers.

        With a ``placeholder`` ("thinking…"), its text is replaced by the
        first part instead of sending a new message.
        """
        if reply.kind == "silent":  # a reader still flooding after the rate-limit notice
            if placeholder is not None:
                with suppress(TelegramError):
                    await placeholder.delete()
            return
        parts = render.render(reply, self._prompts)
        rateable = reply.answer is not None
        sent: Message | None = None
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            markup = self._feedback_keyboard() if rateable and last else None
            if index == 0 and placeholder is not None:
                sent = await self._edit_part(placeholder, part, markup)
            else:
                sent = await self._send_part(message, part, markup)
        if rateable and sent is not None:
            self._answers[(sent.chat_id, sent.message_id)] = reply
            while len(self._answers) > _REMEMBERED_ANSWERS:
                self._answers.popitem(last=False)

    async def _send_part(self, message: Message, part: render.Message,
                         markup: InlineKeyboardMarkup | None) -> Message:
        """HTML first; if Telegram cannot parse it, the same part as plain text."""
        try:
            return await self._send_text(message, part.html, ParseMode.HTML, markup)
        except BadRequest as error:
            if "parse" not in error.message.lower() and "entit" not in error.message.lower():
                raise
            log.warning("Telegram rejected the HTML (%s); sending plain text", error.message)
            return await self._send_text(message, part.plain, None, markup)

    async def _edit_part(self, placeholder: Message, part: render.Message,
                         markup: InlineKeyboardMarkup | None) -> Message:
        """Replace the placeholder's text with ``part`` (HTML, else plain text)."""
        options = LinkPreviewOptions(is_disabled=True)
        try:
            edited = await placeholder.edit_text(part.html, parse_mode=ParseMode.HTML, reply_markup=markup,
                                                 link_preview_options=options)
        except BadRequest as error:
            if "parse" not in error.message.lower() and "entit" not in error.message.lower():
                raise
            log.warning("Telegram rejected the HTML (%s); sending plain text", error.message)
            edited = await placeholder.edit_text(part.plain, reply_markup=markup, link_preview_options=options)
        return edited if isinstance(edited, Message) else placeholder

    async def _send_text(self, message: Message, text: str, parse_mode: str | None,
                         markup: InlineKeyboardMarkup | None) -> Message:
        """sendMessage, retried with backoff when the connection fails before the request is sent.

        A timed-out request is not repeated: Telegram may have delivered it,
        and a duplicate answer is worse than a late error in the log.
        """
        delay = 1.0
        for attempt in range(1, _SEND_ATTEMPTS + 1):
            try:
                return await message.get_bot().send_message(
                    message.chat_id, text, parse_mode=parse_mode, reply_markup=markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                    reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
                    message_thread_id=self._thread_of(message),
                )
            except TimedOut:
                raise
            except NetworkError as error:
                if isinstance(error, BadRequest) or attempt == _SEND_ATTEMPTS:
                    raise
                log.warning("sending to chat %s failed (%s), retrying in %.0f s", message.chat_id, error, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

