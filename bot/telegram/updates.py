"""Remember which updates were handled, across restarts.

Telegram delivers an update again until the bot confirms it (the next
``getUpdates`` offset, or a 200 on the webhook). If the bot stops between
answering and confirming, a restart would answer the same message twice.
:class:`UpdateLog` persists the highest handled ``update_id`` per bot in a
small JSON file under the data dir; updates at or below it are skipped (and
thereby confirmed by PTB like any other handled update).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


class UpdateLog:
    """The last handled ``update_id`` of one bot, kept in ``path``.

    Marking happens before an update is answered, so a crash mid-answer
    loses that answer rather than sending it twice (at most once).
    """

    def __init__(self, path: Path, bot_id: int, remember: int = 10_000) -> None:
        self._path = path
        self._key = str(bot_id)
        self._data = self._load()
        self._watermark = self._data.get(self._key, 0)
        self._highest = self._watermark
        self._seen: set[int] = set()
        self._remember = remember

    @property
    def watermark(self) -> int:
        """Updates at or below this id were handled by an earlier run."""
        return self._watermark

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable update log %s: %s", self._path, error)
            return {}
        if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
            log.warning("ignoring malformed update log %s", self._path)
            return {}
        return {str(k): int(v) for k, v in data.items()}

    def first_time(self, update_id: int) -> bool:
        """True once per update id (and never for ids handled before a restart); records it.

        The file write is a few bytes, done in place rather than in a thread
        so that checking and recording stay one step on the event loop.
        """
        if update_id <= self._watermark or update_id in self._seen:
            return False
        self._seen.add(update_id)
        if len(self._seen) > self._remember:  # ids arrive in order; forget the oldest
            self._seen = set(sorted(self._seen)[-self._remember // 2:])
        if update_id > self._highest:
            self._highest = update_id
            self._data[self._key] = update_id
            self._save()
        return True

    def _save(self) -> None:
        """Write atomically (temporary file + rename): never a half-written log."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".telegram-updates-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._data, handle)
            Path(tmp).replace(self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
