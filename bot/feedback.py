"""Reader feedback (👍/👎) and answer statistics, in SQLite under the data dir.

Shared by every chat adapter; ``casebot feedback`` lists it. Each call opens
its own short-lived connection, so the store is safe to use from worker
threads and from several processes on one data dir (SQLite locks the file).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.private import create_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    platform TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    answer_ref TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    UNIQUE (platform, answer_ref, user_id)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class FeedbackEntry:
    created: float
    platform: str
    chat_id: str
    user_id: str
    answer_ref: str
    rating: int
    question: str
    answer: str
    citations: list[dict[str, object]]


class FeedbackStore:
    """Append-or-update store of ratings; one rating per user and answer."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        create_private(self._path)  # readers' questions and user ids: owner only (0600)
        with closing(sqlite3.connect(self._path, timeout=10)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            with conn:
                yield conn

    def record(
        self,
        platform: str,
        chat_id: str,
        user_id: str,
        answer_ref: str,
        rating: int,
        question: str,
        answer: str,
        citations: Sequence[dict[str, object]],
    ) -> None:
        """Store a rating (+1 or -1); a second rating by the same user replaces the first."""
        if rating not in (-1, 1):
            raise ValueError("rating must be +1 or -1")
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO feedback (created, platform, chat_id, user_id, answer_ref, rating, question,"
                " answer, citations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, answer_ref, user_id) DO UPDATE SET rating = excluded.rating,"
                " created = excluded.created",
                (time.time(), platform, chat_id, user_id, answer_ref, rating, question, answer,
                 json.dumps(list(citations), ensure_ascii=False)),
            )

    def entries(self, limit: int = 100) -> list[FeedbackEntry]:
        """The newest ratings first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT created, platform, chat_id, user_id, answer_ref, rating, question, answer, citations"
                " FROM feedback ORDER BY created DESC, id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            FeedbackEntry(created=row[0], platform=row[1], chat_id=row[2], user_id=row[3], answer_ref=row[4],
                          rating=row[5], question=row[6], answer=row[7], citations=json.loads(row[8]))
            for row in rows
        ]

    def add_to_counter(self, name: str, amount: int = 1) -> None:
        """Add to a named total (``answered``, ``refused``) that outlives the process, for ``/stats``."""
        with self._connect() as conn:
            conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (name, amount))

    def counters(self) -> dict[str, int]:
        """Every stored total; empty (and no file created) before the first one."""
        if not self._path.exists():
            return {}
        with self._connect() as conn:
            return {str(name): int(value) for name, value in conn.execute("SELECT name, value FROM counters")}

    def counts(self) -> tuple[int, int]:
        """(thumbs up, thumbs down) over all time."""
        with self._connect() as conn:
            up, down = conn.execute(
                "SELECT COALESCE(SUM(rating = 1), 0), COALESCE(SUM(rating = -1), 0) FROM feedback"
            ).fetchone()
        return int(up), int(down)
