"""Keep the bot token out of logs.

Telegram's API URLs contain the token (``…/bot<TOKEN>/sendMessage``), and
httpx logs request URLs; PTB puts the token into some error messages
(``InvalidToken``). :class:`TokenRedactor` rewrites every record that passes
the loggers it is attached to, message, arguments and traceback alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

REDACTED = "<redacted-token>"

LOGGER_PREFIXES = ("telegram", "httpx", "httpcore", "bot.telegram")
"""Loggers whose records may carry the token."""


class TokenRedactor(logging.Filter):
    """A filter that replaces the token (its secret half, other secrets) in log records.

    Attach it to loggers with :meth:`install`; records are redacted in place
    before any handler sees them, so it works whatever handlers exist.
    """

    def __init__(self, token: str, *others: str) -> None:
        super().__init__()
        secrets = [token]
        _, _, secret = token.partition(":")
        if len(secret) >= 8:  # the part after "<bot id>:" is what makes the token secret
            secrets.append(secret)
        secrets += others  # e.g. the webhook secret, which PTB logs with setWebhook at DEBUG
        self._secrets = [s for s in secrets if s]
        self._loggers: list[logging.Logger] = []

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the token replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw template
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def install(self, prefixes: Iterable[str] = LOGGER_PREFIXES) -> None:
        """Attach to the named loggers and every existing logger below them.

        Call after python-telegram-bot is imported: its modules create their
        loggers at import time, and a filter on a parent logger does not see
        records of its children.
        """
        prefixes = tuple(prefixes)
        names = set(prefixes) | {
            name for name in list(logging.Logger.manager.loggerDict)
            if name.startswith(tuple(p + "." for p in prefixes))
        }
        for name in sorted(names):
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)
                self._loggers.append(logger)

    def uninstall(self) -> None:
        """Detach from every logger :meth:`install` attached to."""
        for logger in self._loggers:
            logger.removeFilter(self)
        self._loggers.clear()
