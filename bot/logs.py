"""Where log records go: rich on a terminal, plain lines when piped, one JSON object per line on request.

On a terminal the records go through the same rich ``Console`` as the
progress bar of ``casebot index``, so a log line is printed above the bar
instead of tearing it apart. ``CASEBOT_LOG__FORMAT=json`` writes one JSON
object per line (``time``, ``level``, ``logger``, ``message``, and
``exception`` with the traceback when there is one), for log collectors.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console

# httpx logs every request URL at INFO; Telegram's URLs contain the bot token.
QUIET_LOGGERS = ("httpx", "httpcore", "chromadb", "urllib3", "bm25s", "aiohttp.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ExpectedErrors(logging.Filter):
    """Turns a library's traceback for an expected error (the network is down) into one warning line.

    Attached to the library's own loggers (not to handlers), so it works
    whatever handlers exist; :meth:`install` and :meth:`uninstall` pair up
    like an adapter's start and stop.
    """

    def __init__(self, loggers: Iterable[str], expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self._loggers = tuple(loggers)
        self._expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, self._expected):
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True

    def install(self) -> None:
        for name in self._loggers:
            logging.getLogger(name).addFilter(self)

    def uninstall(self) -> None:
        for name in self._loggers:
            logging.getLogger(name).removeFilter(self)


def configure_logging(level: str, fmt: str = "text", stream: IO[str] | None = None) -> Console | None:
    """Install the one handler of the process on the root logger; return the rich console if one is used.

    ``stream`` defaults to stderr. Replaces handlers installed before (so a
    second call, e.g. in tests, does not log twice).
    """
    stream = stream or sys.stderr
    console: Console | None = None
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif stream.isatty():
        from rich.logging import RichHandler

        console = Console(file=stream)
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False,
                              log_time_format="%H:%M:%S")
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)  # also for libraries that lower their own logger's level when imported
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return console
