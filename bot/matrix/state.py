"""What the Matrix adapter must remember across restarts, in one SQLite file.

* the session (user id, device id, access token), so a restart is the same
  device and keeps its encryption keys,
* the sync position, written only after the events before it were handled,
* when the bot joined each room (older events there are never answered),
* which events it answered, and what it sent (for replies to the bot and for
  👍/👎 feedback on an answer),
* who asked the question each answer thread is rooted at (that person's
  follow-ups in the thread need no mention).

The file and its folder are private to the user (0600/0700): the session
holds an access token. Each call opens its own short connection, so worker
threads can use the store; all calls are small and fast.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS joined (room_id TEXT PRIMARY KEY, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS handled (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sent (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    thread_root TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS threads (
    room_id TEXT NOT NULL,
    root TEXT NOT NULL,
    asker TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (room_id, root)
);
"""


@dataclass(frozen=True)
class Session:
    """A login to reuse: same homeserver and user means same device."""

    homeserver: str
    user_id: str
    device_id: str
    access_token: str

    def __repr__(self) -> str:  # never show the token in logs or tracebacks
        return f"Session(homeserver={self.homeserver!r}, user_id={self.user_id!r}, device_id={self.device_id!r})"


@dataclass(frozen=True)
class SentEvent:
    """One message the bot sent, with what it answered."""

    event_id: str
    room_id: str
    thread_root: str
    chat_id: str
    kind: str
    question: str
    answer: str
    citations: list[dict[str, object]]


class MatrixState:
    """The adapter's persistent memory under ``<data dir>/matrix/``."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not self._path.exists()
        with closing(sqlite3.connect(self._path, timeout=10)) as conn:
            if new:
                self._path.chmod(0o600)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            with conn:
                yield conn

    def _get(self, key: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _put(self, key: str, value: str) -> None:
        with self._connect() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?)"
                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # --- session and sync position ----------------------------------------------

    def session(self) -> Session | None:
        raw = self._get("session")
        if raw is None:
            return None
        data = json.loads(raw)
        return Session(data["homeserver"], data["user_id"], data["device_id"], data["access_token"])

    def save_session(self, session: Session) -> None:
        self._put("session", json.dumps({
            "homeserver": session.homeserver, "user_id": session.user_id,
            "device_id": session.device_id, "access_token": session.access_token,
        }))

    def sync_token(self) -> str | None:
        return self._get("sync_token")

    def save_sync_token(self, token: str) -> None:
        self._put("sync_token", token)

    # --- rooms and events --------------------------------------------------------

    def joined_at(self) -> dict[str, int]:
        """Room id -> when the bot joined it (ms since epoch, server time when known)."""
        with self._connect() as conn:
            return {str(r[0]): int(r[1]) for r in conn.execute("SELECT room_id, ts FROM joined")}

    def save_joined(self, room_id: str, ts: int) -> None:
        with self._connect() as conn:
            conn.execute("INSERT INTO joined (room_id, ts) VALUES (?, ?)"
                         " ON CONFLICT (room_id) DO UPDATE SET ts = excluded.ts", (room_id, ts))

    def is_handled(self, event_id: str) -> bool:
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM handled WHERE event_id = ?", (event_id,)).fetchone() is not None

    def mark_handled(self, event_id: str, room_id: str) -> None:
        with self._connect() as conn:
            conn.execute("INSERT OR IGNORE INTO handled (event_id, room_id, ts) VALUES (?, ?, ?)",
                         (event_id, room_id, time.time()))

    def record_sent(
        self, event_id: str, room_id: str, thread_root: str, chat_id: str, kind: str,
        question: str = "", answer: str = "", citations: Sequence[dict[str, object]] = (),
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO sent (event_id, room_id, thread_root, chat_id, kind, question, answer,"
                " citations, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event_id, room_id, thread_root, chat_id, kind, question, answer,
                 json.dumps(list(citations), ensure_ascii=False), time.time()),
            )

    def sent(self, event_id: str) -> SentEvent | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT event_id, room_id, thread_root, chat_id, kind, question, answer, citations"
                " FROM sent WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            return None
        return SentEvent(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]),
                         str(row[6]), json.loads(row[7]))

    def record_thread(self, room_id: str, root: str, asker: str) -> None:
        """Remember that the bot answered ``asker``'s question ``root`` in a thread rooted at it."""
        with self._connect() as conn:
            conn.execute("INSERT OR IGNORE INTO threads (room_id, root, asker, ts) VALUES (?, ?, ?, ?)",
                         (room_id, root, asker, time.time()))

    def thread_asker(self, room_id: str, root: str) -> str | None:
        """Who asked the answered question thread ``root`` is rooted at; None for other threads."""
        with self._connect() as conn:
            row = conn.execute("SELECT asker FROM threads WHERE room_id = ? AND root = ?",
                               (room_id, root)).fetchone()
        return None if row is None else str(row[0])

    def prune(self, max_age_days: float) -> None:
        """Forget answered events and sent messages older than ``max_age_days``.

        Old events are never answered anyway (they predate the start), and
        feedback on answers that old is not worth keeping the record for.
        """
        cutoff = time.time() - max_age_days * 86400
        with self._connect() as conn:
            conn.execute("DELETE FROM handled WHERE ts < ?", (cutoff,))
            conn.execute("DELETE FROM sent WHERE ts < ?", (cutoff,))
            conn.execute("DELETE FROM threads WHERE ts < ?", (cutoff,))
