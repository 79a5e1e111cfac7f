"""The Matrix adapter: matrix-nio wiring, the sync loop and end-to-end encryption.

Thin like every adapter: a Matrix event -> :class:`Incoming` ->
:meth:`Conversation.handle` -> :class:`Reply` -> :func:`render_parts` -> an
``m.notice`` in the question's thread. The decisions about events (who may
invite, what addresses the bot) are pure functions in :mod:`bot.matrix.rules`;
what must survive a restart lives in :class:`bot.matrix.state.MatrixState`.
Trust is wired here and done elsewhere: :mod:`bot.matrix.crosssigning` signs
the bot's device at start (Element's red shield and "exclude insecure
devices"), :mod:`bot.matrix.verification` decides how interactive
verification requests are declined.

Lifecycle: :meth:`start` logs in (or restores the stored device), loads the
crypto store, runs the first sync and spawns the sync loop as a kept,
logged, cancellable task; it cleans up if anything fails. :meth:`stop`
cancels every task and closes the HTTP session. It never logs out: logging
out deletes the device and with it the keys encrypted rooms depend on.

Robustness:

* The sync position is written only after the events before it were handled.
  Events older than the process start or than the bot's join of the room are
  never answered, and every answered event is recorded, so a restart
  answers nothing twice.
* Sends use a transaction id derived from the event answered: a retried
  send is deduplicated by the homeserver instead of posted twice.
* Rate limits (``M_LIMIT_EXCEEDED``, ``Retry-After``), server errors and
  network failures are retried with capped exponential backoff; an invalid
  access token stops the bot with a message naming the setting.
* Answers run in tasks, at most ``max_pending_events`` at a time, so the
  sync loop keeps syncing while the conversation works.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DownloadError,
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    KeyVerificationStart,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    ReactionEvent,
    RoomEncryptedFile,
    RoomMemberEvent,
    RoomMessageFile,
    RoomMessageText,
    RoomMessageUnknown,
    RoomSendResponse,
    SyncResponse,
    ToDeviceMessage,
    UnknownToDeviceEvent,
    WhoamiResponse,
)
from nio.crypto import ENCRYPTION_ENABLED
from nio.crypto.attachments import decrypt_attachment

from bot.conversation import ADMIN_COMMANDS, PUBLIC_COMMANDS, Conversation, Incoming, Reply
from bot.feedback import FeedbackStore
from bot.matrix import rules, verification
from bot.matrix.crosssigning import CrossSigning, KeyFile, TrustStatus, homeserver_json
from bot.matrix.render import MatrixText, render_parts, render_text
from bot.matrix.state import MatrixState, Session
from bot.settings import MatrixSettings
from index.articles import SUPPORTED_SUFFIXES
from index.errors import CasebotError
from index.prompts import PromptLibrary

log = logging.getLogger(__name__)

T = TypeVar("T")
PLATFORM = "matrix"
COMMANDS = PUBLIC_COMMANDS | ADMIN_COMMANDS
_MAX_BACKOFF_S = 60.0
_SEND_ATTEMPTS = 6
_KEEP_DAYS = 90  # how long answered events and sent answers (for 👍/👎) are remembered
# The first sync after a fresh login needs no history: nothing before the start is answered.
_FIRST_SYNC_FILTER: dict[str, Any] = {"room": {"timeline": {"limit": 1}}}


# At DEBUG, nio logs whole response bodies (a login response holds the access token) and
# peewee logs the SQL that stores the pickled keys; never below INFO, whatever the log level.
_SECRET_LOGGERS = ("nio.responses", "peewee")


def quiet_secret_loggers() -> None:
    """Keep loggers that would write tokens or key material at DEBUG at INFO or above."""
    for name in _SECRET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


class MatrixTokenError(CasebotError):
    """The homeserver no longer accepts the bot's access token."""


def request_shutdown(reason: str) -> None:
    """Default reaction to a fatal error: ask the process to stop (SIGTERM).

    :func:`bot.app.run_adapters` turns SIGTERM into an orderly stop of every
    adapter, so Telegram in the same process is shut down cleanly too.
    """
    log.warning("matrix: asking casebot to stop")
    signal.raise_signal(signal.SIGTERM)


async def probe_homeserver(session: aiohttp.ClientSession, homeserver: str) -> str:
    """``GET /_matrix/client/versions``: the newest spec version the server speaks.

    Raises :class:`CasebotError` when the URL answers but is not a Matrix
    homeserver (a web site, a proxy's error page) -- a permanent error, not
    worth retrying, and not to be reported later as a wrong password.
    Network errors propagate (the caller decides whether to retry).
    """
    url = homeserver.rstrip("/") + "/_matrix/client/versions"
    async with session.get(url, allow_redirects=True) as response:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        versions = body.get("versions") if isinstance(body, dict) else None
        if response.status != 200 or not isinstance(versions, list) or not versions:
            raise CasebotError(f"{homeserver} (CASEBOT_MATRIX__HOMESERVER) is not a Matrix homeserver: "
                               f"GET /_matrix/client/versions answered HTTP {response.status} without a "
                               "version list. Use the URL of the client API (see /.well-known/matrix/client).")
    return str(versions[-1])


def txn_id(event_id: str, purpose: str) -> str:
    """A transaction id that is the same whenever the same event is answered."""
    return "casebot." + hashlib.sha256(f"{event_id}\0{purpose}".encode()).hexdigest()[:40]


def _retry_after_seconds(response: ErrorResponse) -> float | None:
    if response.retry_after_ms:
        return response.retry_after_ms / 1000
    transport = getattr(response, "transport_response", None)
    header = transport.headers.get("Retry-After") if transport is not None else None
    try:
        return float(header) if header else None
    except ValueError:
        return None


def _status(response: ErrorResponse) -> int | None:
    transport = getattr(response, "transport_response", None)
    return int(transport.status) if transport is not None else None


def _is_token_error(response: object) -> bool:
    return isinstance(response, ErrorResponse) and response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN")


class MatrixAdapter:
    """``casebot run matrix``: one bot account on one homeserver."""

    name = PLATFORM

    def __init__(
        self,
        conversation: Conversation,
        settings: MatrixSettings,
        feedback: FeedbackStore,
        prompts: PromptLibrary,
        data_dir: Path,
        default_language: str = "de",
        on_fatal: Callable[[str], None] = request_shutdown,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._conversation = conversation
        self._settings = settings
        self._feedback = feedback
        self._prompts = prompts
        self._dir = data_dir / "matrix"
        self._state = MatrixState(self._dir / "state.sqlite3")
        self._default_language = default_language
        self._on_fatal = on_fatal
        self._clock = clock
        self._sleep = sleep
        self._client: AsyncClient | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_pending_events)
        self._since: str | None = None
        # (next_batch, tasks of that batch): the stored position advances past a
        # batch only when its tasks and every earlier batch's are done.
        self._batches: deque[tuple[str, set[asyncio.Task[None]]]] = deque()
        self._started_ms = 0
        self._joined_at: dict[str, int] = {}
        self._joining: set[str] = set()
        self._display_name = ""
        self._failed: str | None = None
        self._trust = TrustStatus(False, "not started")
        self._sync_error: str | None = None  # why the last /sync failed; None after a good one

    # --- lifecycle ---------------------------------------------------------------

    @property
    def user_id(self) -> str:
        return self._client.user_id if self._client is not None else self._settings.user_id

    @property
    def device_id(self) -> str:
        return str(self._client.device_id) if self._client is not None else ""

    async def start(self) -> None:
        """Log in, load the crypto store, sync once, then keep syncing in a task."""
        self._check_settings()
        quiet_secret_loggers()
        self._started_ms = int(self._clock() * 1000)
        try:
            self._client = self._make_client()
            await self._call("versions", self._probe)
            await self._login()
            await asyncio.to_thread(self._state.prune, _KEEP_DAYS)
            self._joined_at = await asyncio.to_thread(self._state.joined_at)
            self._since = await asyncio.to_thread(self._state.sync_token)
            await self._e2e_housekeeping()
            self._trust = await self._set_up_trust()
            profile = await self._client.get_displayname()
            self._display_name = str(getattr(profile, "displayname", "") or "")
            first = await self._sync(first=True)
            if not isinstance(first, SyncResponse):
                raise CasebotError(f"The first Matrix sync with {self._settings.homeserver} failed: {first}")
            await self._after_sync(first)
            self._sync_task = asyncio.create_task(self._sync_loop(), name="matrix-sync")
            self._sync_task.add_done_callback(self._sync_ended)
        except (aiohttp.ClientError, TimeoutError) as error:
            await self._shutdown()
            raise CasebotError(f"Cannot reach the Matrix homeserver {self._settings.homeserver} "
                               f"(CASEBOT_MATRIX__HOMESERVER): {error or type(error).__name__}") from None
        except BaseException:
            await self._shutdown()
            raise
        log.info("matrix: logged in as %s (device %s)", self.user_id, self.device_id)

    async def stop(self) -> None:
        """Cancel the sync loop and every answer in flight; close the client. Never logs out."""
        await self._shutdown()

    def problem(self) -> str | None:
        """None while the sync loop runs and its last /sync succeeded; else why not."""
        if self._failed is not None:
            return self._failed
        if self._client is None or self._sync_task is None or self._sync_task.done():
            return "not running"
        if self._sync_error is not None:
            return f"sync with the homeserver fails ({self._sync_error})"
        return None

    async def _probe(self) -> str:
        """The homeserver's spec version (see :func:`probe_homeserver`); network errors are retried by the caller."""
        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await probe_homeserver(session, self._settings.homeserver)

    async def _shutdown(self) -> None:
        tasks = [t for t in (self._sync_task, *self._tasks) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._sync_task = None
        await self._store_position()
        client, self._client = self._client, None
        if client is not None:
            await client.close()
            database = getattr(getattr(client, "store", None), "database", None)
            if database is not None:
                database.close()

    def _check_settings(self) -> None:
        s = self._settings
        missing = []
        if not s.homeserver:
            missing.append("CASEBOT_MATRIX__HOMESERVER")
        if not s.access_token.get_secret_value():
            if not s.password.get_secret_value():
                missing.append("CASEBOT_MATRIX__PASSWORD or CASEBOT_MATRIX__ACCESS_TOKEN")
            if not s.user_id:
                missing.append("CASEBOT_MATRIX__USER_ID")
        if missing:
            raise CasebotError("The Matrix adapter needs " + ", ".join(missing) + ".")
        if not ENCRYPTION_ENABLED:
            raise CasebotError("matrix-nio was installed without end-to-end encryption: "
                               "install matrix-nio[e2e].")
        if not s.pickle_key.get_secret_value():
            raise CasebotError("Set CASEBOT_MATRIX__PICKLE_KEY to a long random secret: it encrypts the "
                               "bot's Matrix keys on disk (keep it; changing it makes the keys unreadable).")
        if not s.allowed_users and not s.admins:
            log.warning("matrix: CASEBOT_MATRIX__ALLOWED_USERS is empty, every invite will be declined")

    def _make_client(self) -> AsyncClient:
        store = self._dir / "store"
        store.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,  # the adapter stores the position after handling events
            pickle_key=self._settings.pickle_key.get_secret_value(),
            max_limit_exceeded=0,  # rate limits and timeouts are retried by the adapter
            max_timeouts=0,
            request_timeout=self._settings.request_timeout_seconds,
        )
        return AsyncClient(self._settings.homeserver, self._settings.user_id, store_path=str(store),
                           config=config)

    # --- login -------------------------------------------------------------------

    async def _login(self) -> None:
        """Access token from settings, else the stored session, else a password login.

        A stored session is reused as long as the homeserver accepts its token,
        so the device (and its keys) stay the same across restarts; when the
        token was revoked (the device was logged out, which deletes it and its
        keys on the server), the password logs in as a new device.
        """
        client = self._require_client()
        s = self._settings
        token = s.access_token.get_secret_value()
        if token:
            user_id, device_id = await self._whoami(token)
            if user_id is None:
                raise CasebotError("The homeserver rejected CASEBOT_MATRIX__ACCESS_TOKEN (unknown or expired "
                                   "token). Create a new one for the bot account.")
            if s.user_id and s.user_id != user_id:
                raise CasebotError(f"CASEBOT_MATRIX__ACCESS_TOKEN belongs to {user_id}, "
                                   f"not to CASEBOT_MATRIX__USER_ID {s.user_id}.")
            if not device_id:
                raise CasebotError("The homeserver did not name the device of CASEBOT_MATRIX__ACCESS_TOKEN; "
                                   "encryption needs a device. Log in with a password instead.")
            self._restore(user_id, device_id, token)
            return
        stored = await asyncio.to_thread(self._state.session)
        if stored is not None and (stored.homeserver, stored.user_id) == (s.homeserver, s.user_id):
            user_id, _ = await self._whoami(stored.access_token)
            if user_id == stored.user_id:
                self._restore(stored.user_id, stored.device_id, stored.access_token)
                return
            # Logging out deletes the device and its keys on the server: start over as a new device.
            log.warning("matrix: the stored login (device %s) was revoked; logging in as a new device",
                        stored.device_id)
        response = await self._call("login", lambda: client.login(s.password.get_secret_value(),
                                                                  device_name=s.device_name))
        if not isinstance(response, LoginResponse):
            raise CasebotError(f"Matrix login as {s.user_id} failed: {getattr(response, 'message', response)}. "
                               "Check CASEBOT_MATRIX__USER_ID and CASEBOT_MATRIX__PASSWORD.")
        await asyncio.to_thread(self._state.save_session, Session(
            s.homeserver, response.user_id, response.device_id, response.access_token))

    async def _whoami(self, token: str) -> tuple[str | None, str | None]:
        client = self._require_client()
        client.access_token = token
        try:
            response = await self._call("whoami", client.whoami)
        finally:
            client.access_token = ""
        if isinstance(response, WhoamiResponse):
            return response.user_id, response.device_id
        if _is_token_error(response):
            return None, None
        raise CasebotError(f"The homeserver {self._settings.homeserver} did not answer the login check: "
                           f"{getattr(response, 'message', response)}")

    def _restore(self, user_id: str, device_id: str, token: str) -> None:
        try:
            self._require_client().restore_login(user_id, device_id, token)
        except Exception as error:  # a wrong pickle key fails deep inside the olm store
            raise CasebotError(f"The Matrix key store under {self._dir / 'store'} cannot be opened ({error}). "
                               "Was CASEBOT_MATRIX__PICKLE_KEY changed?") from None

    async def _set_up_trust(self) -> TrustStatus:
        """Cross-sign the bot's device (see :mod:`bot.matrix.crosssigning`); log the outcome once."""
        s = self._settings
        signing = CrossSigning(
            homeserver_json(self._require_client()),
            KeyFile(self._dir / "cross_signing.json", s.pickle_key.get_secret_value()),
            self.user_id, self.device_id, s.password.get_secret_value(), s.reset_cross_signing,
        )
        try:
            status = await signing.ensure()
        except (aiohttp.ClientError, TimeoutError) as error:
            status = TrustStatus(False, f"the homeserver did not answer ({type(error).__name__}); "
                                        "the next start tries again.")
        (log.info if status.signed else log.warning)("matrix: %s", status.log_line())
        return status

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise CasebotError("The Matrix adapter is not started.")
        return self._client

    # --- requests with retries ---------------------------------------------------

    async def _call(self, what: str, call: Callable[[], Awaitable[T]], attempts: int = _SEND_ATTEMPTS) -> T:
        """Run one homeserver request, retrying rate limits, 5xx and network errors.

        Returns the last response: a success, a client error such as 403 or
        a rejected token (callers decide what that means), or the rate-limit
        or server error after the last attempt; re-raises the network error
        when every attempt failed.
        """
        delay = 1.0
        for attempt in range(1, attempts + 1):
            try:
                response = await call()
            except (aiohttp.ClientError, TimeoutError) as error:
                if attempt == attempts:
                    raise
                wait, reason = delay, type(error).__name__
            else:
                if not isinstance(response, ErrorResponse):
                    return response
                status = _status(response)
                if response.status_code == "M_LIMIT_EXCEEDED" or status == 429:
                    wait, reason = _retry_after_seconds(response) or delay, "rate limited"
                elif status is not None and status >= 500:
                    wait, reason = delay, f"server error {status}"
                else:
                    return response
                if attempt == attempts:
                    return response
            log.warning("matrix: %s failed (%s), retry %d/%d in %.1f s", what, reason, attempt, attempts - 1,
                        min(wait, _MAX_BACKOFF_S))
            await self._sleep(min(wait, _MAX_BACKOFF_S))
            delay = min(delay * 2, _MAX_BACKOFF_S)
        raise AssertionError("unreachable")

    # --- the sync loop -----------------------------------------------------------

    async def _sync(self, first: bool = False) -> object:
        client = self._require_client()
        timeout_ms = 0 if first else int(self._settings.sync_timeout_seconds * 1000)
        sync_filter = _FIRST_SYNC_FILTER if first and not self._since else None
        return await client.sync(timeout=timeout_ms, since=self._since, sync_filter=sync_filter)

    async def _sync_loop(self) -> None:
        failures = 0
        while True:
            try:
                response = await self._sync()
            except (aiohttp.ClientError, TimeoutError) as error:
                response = error
            if isinstance(response, SyncResponse):
                failures = 0
                self._sync_error = None
                await self._after_sync(response)
                continue
            if _is_token_error(response):
                self._fail("the homeserver rejected the bot's access token (device logged out or account "
                           "deactivated?). With CASEBOT_MATRIX__PASSWORD the next start logs in as a new "
                           "device; with CASEBOT_MATRIX__ACCESS_TOKEN, set a new token.")
                return
            failures += 1
            self._sync_error = type(response).__name__
            wait = min(2.0 ** min(failures, 6), _MAX_BACKOFF_S)
            if isinstance(response, ErrorResponse):
                wait = max(wait, _retry_after_seconds(response) or 0.0)
            log.warning("matrix: sync failed (%s), retrying in %.0f s", response, wait)
            await self._sleep(wait)

    async def _after_sync(self, response: SyncResponse) -> None:
        # Keys first: an answer sent into an encrypted room must reach devices that just appeared.
        await self._e2e_housekeeping()
        await self._cancel_verifications(response)
        tasks = await self._dispatch(response)
        self._since = response.next_batch
        self._batches.append((response.next_batch, tasks))
        await self._store_position()

    async def _store_position(self) -> None:
        """Persist the newest sync position whose events (and all before) are handled."""
        token = None
        # A cancelled task (at stop) did not handle its event: the position stays before it.
        while self._batches and all(t.done() and not t.cancelled() for t in self._batches[0][1]):
            token = self._batches.popleft()[0]
        if token is not None:
            await asyncio.to_thread(self._state.save_sync_token, token)

    async def _e2e_housekeeping(self) -> None:
        """Upload, query and claim keys, and send queued to-device messages, as nio's sync_forever does."""
        client = self._require_client()
        try:
            if client.should_upload_keys:
                await self._call("keys upload", client.keys_upload)
            if client.should_query_keys:
                await self._call("keys query", client.keys_query)
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                await self._call("keys claim", lambda: client.keys_claim(users))
            await self._call("to-device", client.send_to_device_messages)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("matrix: key maintenance failed (%s); will retry after the next sync", error)
        except Exception:  # a crypto bug must not stop the bot from answering unencrypted rooms
            log.exception("matrix: key maintenance failed; will retry after the next sync")

    async def _cancel_verifications(self, response: SyncResponse) -> None:
        """Cancel to-device verification requests from allowed users (see :mod:`bot.matrix.verification`)."""
        for event in response.to_device_events:
            if not isinstance(event, UnknownToDeviceEvent | KeyVerificationStart):
                continue
            cancel = verification.to_device_cancel(str(event.source.get("type", "")), event.sender,
                                                   event.source.get("content", {}))
            if cancel is None:
                continue
            if not self._may_invite(event.sender):
                log.info("matrix: ignoring a verification request from %s (not an allowed user)", event.sender)
                continue
            message = ToDeviceMessage(verification.CANCEL, cancel.user_id, cancel.device_id, cancel.content)
            await self._spawn(functools.partial(self._send_to_device, message), "verification-cancel")

    async def _send_to_device(self, message: ToDeviceMessage) -> None:
        sent = await self._call("verification cancel", functools.partial(self._require_client().to_device, message))
        log.info("matrix: declined interactive verification from %s (device %s): %s", message.recipient,
                 message.recipient_device, sent if isinstance(sent, ErrorResponse) else "cancel sent")

    def _may_invite(self, user_id: str) -> bool:
        return rules.user_allowed(user_id, self._settings.allowed_users) or user_id in self._settings.admins

    def _sync_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("matrix: the sync loop stopped", exc_info=error)
            self._fail(f"the Matrix sync loop stopped: {error}")

    def _fail(self, reason: str) -> None:
        if self._failed is None:
            self._failed = reason
            log.error("matrix: %s", reason)
            self._on_fatal(reason)

    # --- dispatch: decide quickly, answer in tasks -------------------------------

    async def _spawn(self, job: Callable[[], Coroutine[Any, Any, None]], what: str) -> asyncio.Task[None]:
        """Run ``job`` in a kept, logged task; waits while too many are running."""
        await self._slots.acquire()
        task = asyncio.create_task(self._guarded(job, what), name=f"matrix-{what}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._slots.release()

        task.add_done_callback(done)
        return task

    async def _guarded(self, job: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        try:
            await job()
        except MatrixTokenError as error:
            self._fail(str(error))
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("matrix: %s gave up after retries: %s", what, type(error).__name__)
        except Exception:
            log.exception("matrix: %s failed", what)

    async def _dispatch(self, response: SyncResponse) -> set[asyncio.Task[None]]:
        tasks: set[asyncio.Task[None]] = set()
        for room_id, invite in response.rooms.invite.items():
            inviter = next((e.sender for e in invite.invite_state if isinstance(e, InviteMemberEvent)
                            and e.state_key == self.user_id and e.membership == "invite"), None)
            if room_id not in self._joining:
                self._joining.add(room_id)
                tasks.add(await self._spawn(functools.partial(self._on_invite, room_id, inviter), "invite"))
        client = self._require_client()
        for room_id, info in response.rooms.join.items():
            room = client.rooms.get(room_id)
            if room is None:
                continue
            # The bot's own join, by the server's clock: nothing before it is answered.
            joins = [e.server_timestamp for e in info.timeline.events if isinstance(e, RoomMemberEvent)
                     and e.state_key == self.user_id and e.membership == "join" and e.prev_membership != "join"]
            if joins:
                self._joined_at[room_id] = joins[-1]
                await asyncio.to_thread(self._state.save_joined, room_id, joins[-1])
            for event in info.timeline.events:
                job = self._route(room, event)
                if job is not None:
                    tasks.add(await self._spawn(job, type(event).__name__))
        return tasks

    def _route(self, room: MatrixRoom, event: Any) -> Callable[[], Coroutine[Any, Any, None]] | None:
        """What to do with one timeline event; None for everything the bot ignores."""
        sender = getattr(event, "sender", "")
        if sender == self.user_id:
            return None
        threshold = max(self._started_ms, self._joined_at.get(room.room_id, 0))
        if getattr(event, "server_timestamp", 0) < threshold:
            log.debug("matrix: skipping %s in %s: older than the start or the join (%s < %s)",
                      getattr(event, "event_id", "?"), room.room_id, getattr(event, "server_timestamp", 0),
                      threshold)
            return None
        content = event.source.get("content", {})
        direct = room.member_count <= 2
        if isinstance(event, RoomMessageText):
            if rules.is_edit(content):
                return None
            names = [n for n in (self._display_name, room.user_name(self.user_id)) if n]
            command = rules.command_name(rules.strip_reply_fallback(event.body))
            if direct or command in COMMANDS or rules.mentions(content, self.user_id, names):
                text = rules.question_text(event.body, self.user_id, names)
                return functools.partial(self._on_text, room.room_id, event, text, None)
            target = rules.reply_target(content)
            if target is not None:  # answered only if it replies to the bot
                text = rules.question_text(event.body, self.user_id, names)
                return functools.partial(self._on_text, room.room_id, event, text, target)
            if rules.in_thread(content):  # perhaps the asker following up in the bot's answer thread
                text = rules.question_text(event.body, self.user_id, names)
                return functools.partial(self._on_follow_up, room.room_id, event, text)
            log.debug("matrix: %s in %s (%d members) is not addressed to the bot", event.event_id,
                      room.room_id, room.member_count)
            return None
        if isinstance(event, RoomMessageUnknown) and verification.is_room_request(content):
            if self._may_invite(sender):
                return functools.partial(self._on_room_verification, room.room_id, event.event_id)
            return None
        if isinstance(event, RoomMessageFile | RoomEncryptedFile):
            if direct or sender in self._settings.admins:
                return functools.partial(self._on_file, room.room_id, event, direct)
            return None
        if isinstance(event, ReactionEvent):
            if rules.reaction_rating(event.key) is not None:
                return functools.partial(self._on_reaction, room.room_id, event)
            return None
        if isinstance(event, MegolmEvent):
            log.warning("matrix: could not decrypt event %s in %s (no room key from device %s yet)",
                        event.event_id, room.room_id, event.device_id)
        return None

    # --- handlers ----------------------------------------------------------------

    async def _on_invite(self, room_id: str, inviter: str | None) -> None:
        client = self._require_client()
        try:
            allowed = inviter is not None and self._may_invite(inviter)
            if not allowed:
                log.warning("matrix: declining invite to %s from %s (not in CASEBOT_MATRIX__ALLOWED_USERS)",
                            room_id, inviter)
                await self._call("decline invite", lambda: client.room_leave(room_id))
                return
            response = await self._call("join", lambda: client.join(room_id))
            if isinstance(response, JoinResponse):
                log.info("matrix: joined %s, invited by %s", room_id, inviter)
            else:
                log.warning("matrix: could not join %s: %s", room_id, response)
        finally:
            self._joining.discard(room_id)

    async def _on_text(self, room_id: str, event: RoomMessageText, text: str, reply_to: str | None) -> None:
        if await asyncio.to_thread(self._state.is_handled, event.event_id):
            return
        content = event.source.get("content", {})
        root = rules.thread_root(content, event.event_id)
        chat_id = f"{room_id}|{root}"
        if reply_to is not None:
            previous = await asyncio.to_thread(self._state.sent, reply_to)
            if previous is None:
                return  # a reply to someone else: chatter
            if not rules.in_thread(content):
                root, chat_id = previous.thread_root, previous.chat_id
        incoming = Incoming(chat_id=chat_id, user_id=event.sender, text=text,
                            is_admin=event.sender in self._settings.admins, command_prefix="!")
        reply = await self._conversation.handle(incoming)
        if reply.kind == "stats":  # admins see whether Element users get a red shield
            reply = dataclasses.replace(reply, text=reply.text + "\n" + self._trust_line(reply.language))
        if reply.kind == "answer" and root == event.event_id:
            await asyncio.to_thread(self._state.record_thread, room_id, root, event.sender)
        await self._send_reply(room_id, event.event_id, root, chat_id, reply)

    def _trust_line(self, language: str) -> str:
        if self._trust.signed:
            return self._prompts.text(language, "matrix_trust_signed").format(master_key=self._trust.master_key)
        return self._prompts.text(language, "matrix_trust_unsigned").format(detail=self._trust.detail)

    async def _on_follow_up(self, room_id: str, event: RoomMessageText, text: str) -> None:
        """A thread message without mention: answered only from the asker of the thread's question."""
        root = rules.thread_root(event.source.get("content", {}), event.event_id)
        asker = await asyncio.to_thread(self._state.thread_asker, room_id, root)
        if asker != event.sender:
            log.debug("matrix: %s in thread %s is not addressed to the bot", event.event_id, root)
            return
        await self._on_text(room_id, event, text, None)

    async def _on_room_verification(self, room_id: str, event_id: str) -> None:
        content = verification.room_cancel(event_id)
        tx = txn_id(event_id, "verification")
        response = await self._call("verification cancel",
                                    lambda: self._room_send(room_id, content, tx, verification.CANCEL))
        log.info("matrix: declined interactive verification %s in %s: %s", event_id, room_id,
                 "sent" if isinstance(response, RoomSendResponse) else response)

    async def _on_file(self, room_id: str, event: RoomMessageFile | RoomEncryptedFile, direct: bool) -> None:
        content = event.source.get("content", {})
        filename = str(content.get("filename") or event.body or "upload")
        if not direct and Path(filename).suffix.lower() not in SUPPORTED_SUFFIXES:
            return  # an admin sharing some other file in a group is not an upload for the bot
        if await asyncio.to_thread(self._state.is_handled, event.event_id):
            return
        root = rules.thread_root(content, event.event_id)
        is_admin = event.sender in self._settings.admins
        info = content.get("info")
        size = info.get("size") if isinstance(info, dict) else None
        # Refuse before downloading: non-admins, other file types, files over the limit.
        refusal = self._conversation.check_upload(filename, size if isinstance(size, int) else 0, is_admin,
                                                  event.sender)
        if refusal is not None:
            await self._send_reply(room_id, event.event_id, root, f"{room_id}|{root}", refusal)
            return
        data = await self._download(event)
        if data is None:
            text = self._prompts.text(self._default_language, "matrix_download_failed")
            await self._send(room_id, event.event_id, root, f"{room_id}|{root}", "notice", render_text(text))
            return
        reply = await self._conversation.add_article(filename, data, is_admin, event.sender)
        log.info("matrix: upload %s from %s: %s", filename, event.sender, reply.kind)
        await self._send_reply(room_id, event.event_id, root, f"{room_id}|{root}", reply)

    async def _download(self, event: RoomMessageFile | RoomEncryptedFile) -> bytes | None:
        client = self._require_client()
        response = await self._call("download", lambda: client.download(mxc=event.url))
        if isinstance(response, DownloadError) or not isinstance(getattr(response, "body", None), bytes):
            log.warning("matrix: download of %s failed: %s", event.url, response)
            return None
        body: bytes = response.body
        if isinstance(event, RoomEncryptedFile):
            try:
                body = decrypt_attachment(body, event.key["k"], event.hashes["sha256"], event.iv)
            except Exception as error:
                log.warning("matrix: decrypting %s failed: %s", event.url, error)
                return None
        return body

    async def _on_reaction(self, room_id: str, event: ReactionEvent) -> None:
        rating = rules.reaction_rating(event.key)
        answer = await asyncio.to_thread(self._state.sent, event.reacts_to)
        if rating is None or answer is None or answer.kind != "answer":
            return
        await asyncio.to_thread(
            self._feedback.record, PLATFORM, answer.chat_id, event.sender, answer.event_id, rating,
            answer.question, answer.answer, answer.citations,
        )
        log.info("matrix: feedback %+d on %s in %s", rating, answer.event_id, room_id)

    # --- sending -----------------------------------------------------------------

    async def _send_reply(self, room_id: str, event_id: str, root: str, chat_id: str, reply: Reply) -> None:
        """Send ``reply`` as one event or, when too large for one, several in order; mark it handled.

        A ``silent`` reply (a reader flooding after the rate-limit notice) sends nothing but
        still marks the event handled.
        """
        if reply.kind == "silent":
            await asyncio.to_thread(self._state.mark_handled, event_id, room_id)
            return
        citations = [c.as_dict() for c in reply.answer.citations] if reply.answer is not None else []
        parts = render_parts(reply, self._prompts)
        for index, part in enumerate(parts):
            await self._send(room_id, event_id, root, chat_id, reply.kind, part, question=reply.question,
                             answer=reply.text, citations=citations, part=index, last=index == len(parts) - 1)

    async def _send(
        self, room_id: str, event_id: str, root: str, chat_id: str, kind: str, text: MatrixText,
        question: str = "", answer: str = "", citations: list[dict[str, object]] | None = None,
        part: int = 0, last: bool = True,
    ) -> None:
        """Send ``text`` as a notice in thread ``root``, replying to ``event_id``; record it.

        ``part`` numbers the events of one reply (each its own transaction id);
        the event answered is marked handled after the ``last``.
        """
        content = text.content("m.notice")
        content["m.relates_to"] = {
            "rel_type": rules.THREAD, "event_id": root, "is_falling_back": True,
            "m.in_reply_to": {"event_id": event_id},
        }
        content["m.mentions"] = {}
        tx = txn_id(event_id, "reply" if part == 0 else f"reply-{part}")
        response = await self._call("send", lambda: self._room_send(room_id, content, tx))
        if _is_token_error(response):
            raise MatrixTokenError("the homeserver rejected the bot's access token while sending.")
        if not isinstance(response, RoomSendResponse):
            log.warning("matrix: reply to %s in %s not sent: %s", event_id, room_id, response)
            return
        await asyncio.to_thread(self._state.record_sent, response.event_id, room_id, root, chat_id, kind,
                                question, answer, citations or [])
        if last:
            await asyncio.to_thread(self._state.mark_handled, event_id, room_id)

    async def _room_send(self, room_id: str, content: dict[str, Any], tx: str,
                         event_type: str = "m.room.message") -> object:
        """Send an ``event_type`` event; in an encrypted room with its relation in the clear.

        The spec keeps ``m.relates_to`` unencrypted: the server aggregates
        threads by it and clients place the event in its thread from it.
        nio's ``room_send`` would encrypt the relation with the rest, and the
        answer would show up outside its thread, so encrypted sends go
        through nio's session sharing and ``encrypt`` and are sent here.
        """
        client = self._require_client()
        room = client.rooms.get(room_id)
        if client.olm is None or room is None or not room.encrypted:
            return await client.room_send(room_id, event_type, content, tx_id=tx,
                                          ignore_unverified_devices=True)
        if not room.members_synced:
            await client.joined_members(room_id)
            if client.should_query_keys:
                await client.keys_query()
        if client.olm.should_share_group_session(room_id):
            sharing = client.sharing_session.get(room_id)
            if sharing is not None:
                await sharing.wait()
            else:
                # The bot does not verify devices: it shares with every device in the room.
                await client.share_group_session(room_id, ignore_unverified_devices=True)
        payload = {key: value for key, value in content.items() if key != "m.relates_to"}
        _, encrypted = client.encrypt(room_id, event_type, payload)
        if "m.relates_to" in content:
            encrypted["m.relates_to"] = content["m.relates_to"]
        path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.encrypted/{quote(tx, safe='')}"
        headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
        transport = await client.send("PUT", path, json.dumps(encrypted), headers)
        return await client.create_matrix_response(RoomSendResponse, transport, (room_id,))
