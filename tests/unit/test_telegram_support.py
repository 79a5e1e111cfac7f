"""The Telegram adapter's pure helpers: token redaction, update log, flood control, URLs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.telegram.adapter import file_url_for, parse_commands
from bot.telegram.flood import FloodControl
from bot.telegram.redact import REDACTED, TokenRedactor
from bot.telegram.updates import UpdateLog

TOKEN = "123456789:AAH-secret_Part-of-the-Token"


def test_redactor_removes_token_from_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    redactor = TokenRedactor(TOKEN)
    logging.getLogger("telegram.ext.TestChild")  # exists before install, like PTB's loggers
    redactor.install()
    try:
        caplog.set_level(logging.DEBUG)
        logging.getLogger("httpx").info("HTTP Request: POST %s", f"https://api.telegram.org/bot{TOKEN}/getMe")
        logging.getLogger("telegram.ext.TestChild").warning("token `%s` rejected", TOKEN)
        try:
            raise RuntimeError(f"failed for https://api.telegram.org/bot{TOKEN}/x")
        except RuntimeError:
            logging.getLogger("telegram").exception("oops")
        secret = TOKEN.split(":", 1)[1]
        logging.getLogger("httpcore").debug("only the secret half %s", secret)
    finally:
        redactor.uninstall()
    assert secret not in caplog.text
    assert caplog.text.count(REDACTED) == 4
    assert f"bot{REDACTED}/getMe" in caplog.text
    assert not logging.getLogger("httpx").filters


def test_redactor_also_hides_other_secrets() -> None:
    redactor = TokenRedactor(TOKEN, "webhook-s3cret")
    record = logging.LogRecord("telegram.Bot", logging.DEBUG, __file__, 1, "params %s",
                               ({"secret_token": "webhook-s3cret"},), None)
    redactor.filter(record)
    assert record.getMessage() == f"params {{'secret_token': '{REDACTED}'}}"


def test_redactor_keeps_other_records_and_bad_formats() -> None:
    redactor = TokenRedactor(TOKEN)
    record = logging.LogRecord("telegram", logging.INFO, __file__, 1, "%d items", ("x",), None)
    assert redactor.filter(record)
    assert record.getMessage() == "%d items"


def test_update_log_skips_handled_updates_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "telegram-updates.json"
    log = UpdateLog(path, bot_id=1)
    assert log.first_time(10) and log.first_time(11)
    assert not log.first_time(11)
    restarted = UpdateLog(path, bot_id=1)
    assert restarted.watermark == 11
    assert not restarted.first_time(10) and not restarted.first_time(11)
    assert restarted.first_time(12)
    assert UpdateLog(path, bot_id=2).first_time(5)  # update ids are per bot
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_update_log_survives_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "telegram-updates.json"
    path.write_text("{not json", encoding="utf-8")
    log = UpdateLog(path, bot_id=1)
    assert log.watermark == 0 and log.first_time(1)
    assert UpdateLog(path, bot_id=1).watermark == 1


def test_flood_control_waits_as_asked_per_chat() -> None:
    now = [0.0]
    slept: list[float] = []
    control = FloodControl(slack=0.0, clock=lambda: now[0])
    calls: list[int] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def callback(chat: int) -> bool:
        calls.append(chat)
        if len(calls) == 1:
            raise RetryAfter(3)
        return True

    async def scenario() -> None:
        original = asyncio.sleep
        asyncio.sleep = fake_sleep  # type: ignore[assignment]
        try:
            result = await control.process_request(callback, (5,), {}, "sendMessage", {"chat_id": 5}, None)
            assert result is True
            # Another chat is not held up; the same chat is paused until the time has passed.
            now[0] = 1.0
            await control.process_request(callback, (6,), {}, "sendMessage", {"chat_id": 6}, None)
            assert slept == [3.0]
        finally:
            asyncio.sleep = original  # type: ignore[assignment]

    asyncio.run(scenario())
    assert calls == [5, 5, 6]


def test_flood_control_gives_up_after_max_retries() -> None:
    control = FloodControl(max_retries=1, slack=0.0)

    async def always_flooded(*_: Any) -> bool:
        raise RetryAfter(0)

    async def scenario() -> None:
        with pytest.raises(RetryAfter):
            await control.process_request(always_flooded, (), {}, "sendMessage", {}, None)

    asyncio.run(scenario())


@pytest.mark.parametrize(("base", "expected"), [
    ("http://127.0.0.1:8081/bot", "http://127.0.0.1:8081/file/bot"),
    ("https://tg.example.org/bot/", "https://tg.example.org/file/bot"),
    ("https://tg.example.org/api", "https://tg.example.org/api/file/bot"),
])
def test_file_url_is_derived_like_a_self_hosted_server(base: str, expected: str) -> None:
    assert file_url_for(base) == expected


def test_command_menu_texts_parse() -> None:
    from index.prompts import PromptLibrary

    prompts = PromptLibrary()
    for language in ("de", "en"):
        names = [c.command for c in parse_commands(prompts.text(language, "bot_commands"))]
        assert names == ["start", "help", "ask", "sources", "about"]
        admin = [c.command for c in parse_commands(prompts.text(language, "bot_admin_commands"))]
        assert admin == ["reindex", "stats"]
