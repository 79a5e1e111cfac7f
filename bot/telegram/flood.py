"""Telegram flood control: wait as long as Telegram asks, per chat.

Every Bot API request of the application (except ``getUpdates``, which PTB's
updater retries itself) passes :class:`FloodControl`. When Telegram answers
429 with ``retry_after``, that chat is paused for the time asked, the request
is repeated, and other requests to the same chat wait too; other chats go
on. A 429 on a request without a chat pauses every request.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)

_ALL = ""  # the key of requests without a chat


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds (PTB returns int or timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


class FloodControl(BaseRateLimiter[None]):
    """React-only rate limiter: honour ``retry_after`` and repeat the request."""

    def __init__(self, max_retries: int = 5, slack: float = 0.1,
                 clock: Callable[[], float] | None = None) -> None:
        self._max_retries = max_retries
        self._slack = slack
        self._clock = clock
        self._paused_until: dict[str, float] = {}

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Forget pauses."""
        self._paused_until.clear()

    async def _wait(self, key: str) -> None:
        while True:
            until = max(self._paused_until.get(key, 0.0), self._paused_until.get(_ALL, 0.0))
            delay = until - self._now()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Call ``callback`` once the chat is not paused; on 429 pause it and repeat."""
        chat = data.get("chat_id")
        key = _ALL if chat is None else str(chat)
        attempt = 0
        while True:
            await self._wait(key)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                attempt += 1
                if attempt > self._max_retries:
                    raise
                seconds = retry_after_seconds(error) + self._slack
                until = self._now() + seconds
                self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)
                log.warning("flood control: Telegram asked to wait %.1f s before %s to chat %s",
                            seconds, endpoint, key or "(any)")
