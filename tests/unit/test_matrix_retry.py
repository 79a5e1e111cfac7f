"""The Matrix adapter's retry policy, with scripted homeserver answers (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from nio import RoomSendError, RoomSendResponse
from pydantic import SecretStr

from bot.matrix.adapter import MatrixAdapter, txn_id
from bot.settings import MatrixSettings


def _error(status: int, errcode: str, retry_after_ms: int | None = None,
           headers: dict[str, str] | None = None) -> RoomSendError:
    error = RoomSendError("failed", errcode, retry_after_ms)
    error.transport_response = SimpleNamespace(status=status, headers=headers or {})
    return error


def _run(tmp_path: Path, answers: list[Any]) -> tuple[Any, list[float], int]:
    """Call ``_call`` against ``answers`` (responses or exceptions); return result, waits, calls."""
    waits: list[float] = []
    calls = 0

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    async def request() -> Any:
        nonlocal calls
        answer = answers[min(calls, len(answers) - 1)]
        calls += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer

    settings = MatrixSettings(homeserver="http://127.0.0.1:9", user_id="@bot:x", pickle_key=SecretStr("k"))
    adapter = MatrixAdapter(None, settings, None, None, tmp_path,  # type: ignore[arg-type]
                            on_fatal=lambda _: None, sleep=fake_sleep)
    call: Callable[[], Awaitable[Any]] = request
    result = asyncio.run(adapter._call("send", call))
    return result, waits, calls


def test_server_errors_are_retried_with_growing_pauses(tmp_path: Path) -> None:
    ok = RoomSendResponse("$e", "!r")
    result, waits, calls = _run(tmp_path, [_error(502, "M_UNKNOWN"), _error(500, "M_UNKNOWN"), ok])
    assert result is ok
    assert waits == [1.0, 2.0]
    assert calls == 3


def test_rate_limits_wait_as_long_as_the_server_asks(tmp_path: Path) -> None:
    ok = RoomSendResponse("$e", "!r")
    answers = [_error(429, "M_LIMIT_EXCEEDED", retry_after_ms=2500),
               _error(429, "M_LIMIT_EXCEEDED", headers={"Retry-After": "7"}), ok]
    result, waits, _ = _run(tmp_path, answers)
    assert result is ok
    assert waits == [2.5, 7.0]


def test_client_errors_and_rejected_tokens_are_not_retried(tmp_path: Path) -> None:
    for errcode, status in (("M_FORBIDDEN", 403), ("M_UNKNOWN_TOKEN", 401)):
        error = _error(status, errcode)
        result, waits, calls = _run(tmp_path, [error])
        assert result is error
        assert (waits, calls) == ([], 1)


def test_network_errors_give_up_after_the_last_attempt(tmp_path: Path) -> None:
    with pytest.raises(aiohttp.ClientConnectionError):
        _run(tmp_path, [aiohttp.ClientConnectionError("refused")])


def test_pauses_are_capped(tmp_path: Path) -> None:
    answers = [_error(429, "M_LIMIT_EXCEEDED", retry_after_ms=3_600_000), RoomSendResponse("$e", "!r")]
    _, waits, _ = _run(tmp_path, answers)
    assert waits == [60.0]


def test_transaction_ids_are_stable_per_event() -> None:
    assert txn_id("$a", "reply") == txn_id("$a", "reply")
    assert txn_id("$a", "reply") != txn_id("$b", "reply")
    assert txn_id("$a", "reply") != txn_id("$a", "other")
