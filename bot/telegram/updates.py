"""A journal of Telegram updates, so that none is answered twice or lost to a crash.

Telegram delivers an update again until the bot confirms it (the next
``getUpdates`` offset, or a 200 on the webhook). python-telegram-bot confirms
an update as soon as it is in its queue, long before the answer is sent: a
process killed in between would lose every question fetched but not yet
answered. :class:`UpdateJournal` therefore writes each update to SQLite (under
the data dir, mode 0600) *before* it is confirmed, and marks it done only once
its handling (the reply) has finished. At start the adapter replays what is
still pending; an update seen again (Telegram's redelivery, a webhook retry)
is skipped.

De-duplication is by the update ids actually seen in the last
:data:`SEEN_TTL_SECONDS`, not by a high-water mark: the Bot API restarts ids
at a random, possibly lower value after a week without updates, and a
high-water mark would then skip every later message. Telegram keeps an
unconfirmed update for at most 24 hours, so a redelivery can only repeat an
id seen within that day; older entries are forgotten.

The guarantee is at least once: a process killed after a reply was sent but
before it was marked done answers that one question again after a restart.
An update whose handling was interrupted :data:`MAX_ATTEMPTS` times (one that
crashes the process, say) is dropped with a log line instead of looping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from telegram import Bot, Update
from telegram.ext import Application

from bot.private import create_private

log = logging.getLogger(__name__)

SEEN_TTL_SECONDS = 2 * 24 * 3600.0
"""How long a handled id is remembered: twice Telegram's 24 hours of redelivery."""

MAX_SEEN = 100_000
"""At most this many handled ids are kept per bot (the newest)."""

MAX_ATTEMPTS = 3
"""Starts that may replay one pending update before it is given up."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    bot_id INTEGER NOT NULL,
    update_id INTEGER NOT NULL,
    received REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    payload TEXT,
    PRIMARY KEY (bot_id, update_id)
);
CREATE INDEX IF NOT EXISTS updates_received ON updates (bot_id, received);
"""


class UpdateJournal:
    """Seen and pending updates of one bot, in a SQLite file at ``path``.

    All methods run on the adapter's event loop: each is one short
    transaction (no fsync per commit: WAL with ``synchronous=NORMAL`` survives
    a killed process, which is what it guards against).
    """

    def __init__(self, path: Path, bot_id: int, clock: Callable[[], float] = time.time,
                 ttl: float = SEEN_TTL_SECONDS, max_seen: int = MAX_SEEN) -> None:
        self._path = path
        self._bot_id = bot_id
        self._clock = clock
        self._ttl = ttl
        self._max_seen = max_seen
        self._writes = 0
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as error:  # not a database (a torn copy, another file)
            aside = path.with_name(f"{path.name}.corrupt-{int(self._clock())}")
            log.warning("the update journal %s is unreadable (%s); moved it to %s and started afresh",
                        path, error, aside.name)
            path.replace(aside)
            self._db = self._open()
        self._prune()

    def _open(self) -> sqlite3.Connection:
        create_private(self._path)
        db = sqlite3.connect(self._path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    def accept(self, update_id: int, payload: dict[str, Any]) -> bool:
        """Record a newly received update as pending; False if it was seen recently (skip it).

        An id last seen longer ago than the TTL counts as new: after a quiet
        week Telegram may hand out the same ids again for new messages.
        """
        now = self._clock()
        with self._db:
            row = self._db.execute("SELECT received FROM updates WHERE bot_id = ? AND update_id = ?",
                                   (self._bot_id, update_id)).fetchone()
            if row is not None and now - row[0] <= self._ttl:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO updates (bot_id, update_id, received, attempts, payload)"
                " VALUES (?, ?, ?, 0, ?)",
                (self._bot_id, update_id, now, json.dumps(payload, ensure_ascii=False)),
            )
        self._writes += 1
        if self._writes % 1000 == 0:
            self._prune()
        return True

    def done(self, update_id: int) -> None:
        """The update was handled (its reply sent, or nothing to answer): forget its payload."""
        with self._db:
            self._db.execute("UPDATE updates SET payload = NULL WHERE bot_id = ? AND update_id = ?",
                             (self._bot_id, update_id))

    def take_pending(self) -> list[dict[str, Any]]:
        """Updates received but not handled by an earlier run, oldest first, to be handled now.

        Each call counts an attempt; an update that already had
        :data:`MAX_ATTEMPTS` is marked done and logged instead of returned.
        """
        with self._db:
            rows = self._db.execute(
                "SELECT update_id, attempts, payload FROM updates WHERE bot_id = ? AND payload IS NOT NULL"
                " ORDER BY received, update_id", (self._bot_id,)).fetchall()
            pending = []
            for update_id, attempts, payload in rows:
                if attempts >= MAX_ATTEMPTS:
                    log.error("giving up update %s: its handling was interrupted %s times", update_id, attempts)
                    self._db.execute("UPDATE updates SET payload = NULL WHERE bot_id = ? AND update_id = ?",
                                     (self._bot_id, update_id))
                    continue
                self._db.execute("UPDATE updates SET attempts = attempts + 1 WHERE bot_id = ? AND update_id = ?",
                                 (self._bot_id, update_id))
                try:
                    pending.append(json.loads(payload))
                except ValueError:
                    log.warning("dropping unreadable pending update %s", update_id)
        return pending

    def pending_count(self) -> int:
        """How many updates are received but not yet done."""
        row = self._db.execute("SELECT COUNT(*) FROM updates WHERE bot_id = ? AND payload IS NOT NULL",
                               (self._bot_id,)).fetchone()
        return int(row[0])

    def seen_count(self) -> int:
        """How many update ids are remembered (bounded by the TTL and :data:`MAX_SEEN`)."""
        row = self._db.execute("SELECT COUNT(*) FROM updates WHERE bot_id = ?", (self._bot_id,)).fetchone()
        return int(row[0])

    def _prune(self) -> None:
        """Forget handled ids older than the TTL, and all but the newest ``max_seen``."""
        cutoff = self._clock() - self._ttl
        with self._db:
            self._db.execute("DELETE FROM updates WHERE bot_id = ? AND payload IS NULL AND received < ?",
                             (self._bot_id, cutoff))
            self._db.execute(
                "DELETE FROM updates WHERE bot_id = ? AND payload IS NULL AND update_id NOT IN"
                " (SELECT update_id FROM updates WHERE bot_id = ? ORDER BY received DESC LIMIT ?)",
                (self._bot_id, self._bot_id, self._max_seen))


class JournalQueue(asyncio.Queue[object]):
    """PTB's update queue, journalling every update before PTB confirms it to Telegram.

    Both the polling loop and the webhook server ``put`` each update into
    this queue before they confirm it (the next ``getUpdates`` offset, the
    HTTP 200), so an update recorded here survives a crash after
    confirmation. ``put`` also waits while ``max_in_flight`` updates are
    being handled: the polling loop then stops fetching, and Telegram keeps
    the rest until the bot can answer them. Anything else PTB puts in the
    queue (its stop signal) passes through untouched.
    """

    def __init__(self, max_in_flight: int) -> None:
        super().__init__()
        self._journal: UpdateJournal | None = None
        self._max_in_flight = max_in_flight
        self._in_flight: set[int] = set()
        self._unsent: set[int] = set()
        self._room = asyncio.Condition()

    def attach(self, journal: UpdateJournal) -> None:
        """Start journalling (the bot's id, and so the journal, is known only after getMe)."""
        self._journal = journal

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def put(self, item: object) -> None:
        if not isinstance(item, Update) or self._journal is None:
            await super().put(item)
            return
        if not self._journal.accept(item.update_id, item.to_dict()):
            log.info("skipping update %s: seen before", item.update_id)
            return
        async with self._room:
            await self._room.wait_for(lambda: len(self._in_flight) < self._max_in_flight)
            self._in_flight.add(item.update_id)
        await super().put(item)

    def replay(self, bot: Bot) -> int:
        """Queue the updates an earlier run received but did not finish; returns how many."""
        if self._journal is None:
            return 0
        count = 0
        for payload in self._journal.take_pending():
            try:
                update = Update.de_json(payload, bot)
            except Exception:  # a payload from an older PTB that no longer parses
                log.exception("dropping pending update %s: it no longer parses", payload.get("update_id"))
                self._journal.done(int(payload.get("update_id", 0)))
                continue
            self._in_flight.add(update.update_id)
            self.put_nowait(update)
            count += 1
        return count

    def unsent(self, update_id: int) -> None:
        """Its reply could not be sent (Telegram unreachable): keep it pending when it is finished."""
        self._unsent.add(update_id)

    async def release(self, update_id: int) -> None:
        """Handling was interrupted (the bot is stopping): make room, leave the update pending."""
        async with self._room:
            self._in_flight.discard(update_id)
            self._room.notify_all()

    async def finished(self, update_id: int) -> None:
        """The update's handling is over: mark it done (unless its reply was not sent), make room.

        An unsent reply stays pending in the journal, so the next start tries
        again (at most :data:`MAX_ATTEMPTS` times).
        """
        if update_id in self._unsent:
            self._unsent.discard(update_id)
            log.warning("update %s stays pending: its reply could not be sent", update_id)
        elif self._journal is not None:
            self._journal.done(update_id)
        async with self._room:
            self._in_flight.discard(update_id)
            self._room.notify_all()


class JournalledApplication(Application[Any, Any, Any, Any, Any, Any]):
    """PTB's Application, telling the journal when an update's handling is over.

    ``process_update`` returns once every handler (and the error handler) is
    done with the update, i.e. its reply was sent or failed: only then is it
    marked done. Hooking here rather than in a last handler also covers
    updates PTB gives up on before any handler runs.
    """

    async def process_update(self, update: object) -> None:
        queue = self.update_queue
        if not isinstance(update, Update) or not isinstance(queue, JournalQueue):
            await super().process_update(update)
            return
        try:
            await super().process_update(update)
        except asyncio.CancelledError:
            await queue.release(update.update_id)
            raise
        except BaseException:
            await queue.finished(update.update_id)
            raise
        await queue.finished(update.update_id)
