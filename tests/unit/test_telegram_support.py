"""The Telegram adapter's pure helpers: token redaction, update log, flood control, URLs."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.telegram.adapter import file_url_for, parse_commands
from bot.telegram.flood import FloodControl
from bot.telegram.redact import REDACTED, TokenRedactor
from bot.telegram.updates import MAX_ATTEMPTS, JournalQueue, UpdateJournal

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


def test_journal_skips_updates_seen_recently_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "telegram-updates.sqlite3"
    journal = UpdateJournal(path, bot_id=1)
    assert journal.accept(10, {"update_id": 10}) and journal.accept(11, {"update_id": 11})
    assert not journal.accept(11, {"update_id": 11})  # delivered again
    journal.done(10)
    journal.done(11)
    journal.close()
    restarted = UpdateJournal(path, bot_id=1)
    assert not restarted.accept(10, {}) and not restarted.accept(11, {})
    assert restarted.accept(12, {"update_id": 12})
    assert UpdateJournal(path, bot_id=2).accept(10, {})  # update ids are per bot


def test_journal_accepts_ids_that_restart_lower_after_a_quiet_week(tmp_path: Path) -> None:
    """The Bot API restarts ids at a random value after a week without updates: no high-water mark."""
    now = [1_000_000.0]
    journal = UpdateJournal(tmp_path / "u.sqlite3", bot_id=1, clock=lambda: now[0])
    for update_id in range(500_000, 500_010):
        assert journal.accept(update_id, {"update_id": update_id})
        journal.done(update_id)
    now[0] += 8 * 24 * 3600  # a quiet week
    assert journal.accept(1_234, {"update_id": 1_234})  # lower than everything before
    assert journal.accept(500_003, {"update_id": 500_003})  # even an old id again, once forgotten
    assert not journal.accept(500_003, {"update_id": 500_003})


def test_journal_keeps_unfinished_updates_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite3"
    journal = UpdateJournal(path, bot_id=1)
    for update_id in (1, 2, 3):
        journal.accept(update_id, {"update_id": update_id, "message": {"text": f"q{update_id}"}})
    journal.done(2)
    journal.close()  # as if killed: 1 and 3 were never answered
    restarted = UpdateJournal(path, bot_id=1)
    assert [p["update_id"] for p in restarted.take_pending()] == [1, 3]
    assert restarted.pending_count() == 2
    restarted.done(1)
    restarted.done(3)
    assert restarted.take_pending() == [] and restarted.pending_count() == 0


def test_journal_gives_up_an_update_that_keeps_crashing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "u.sqlite3"
    UpdateJournal(path, bot_id=1).accept(7, {"update_id": 7})
    for _ in range(MAX_ATTEMPTS):
        assert [p["update_id"] for p in UpdateJournal(path, bot_id=1).take_pending()] == [7]
    assert UpdateJournal(path, bot_id=1).take_pending() == []
    assert "giving up update 7" in caplog.text


def test_journal_stays_bounded(tmp_path: Path) -> None:
    now = [0.0]
    journal = UpdateJournal(tmp_path / "u.sqlite3", bot_id=1, clock=lambda: now[0], max_seen=100)
    for update_id in range(3_000):
        now[0] += 1
        journal.accept(update_id, {})
        journal.done(update_id)
    assert journal.seen_count() <= 100 + 1000  # pruned every 1,000 writes
    assert not journal.accept(2_999, {})  # the newest are still known


def test_journal_is_private_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "telegram-updates.sqlite3"
    UpdateJournal(path, bot_id=1).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"this is not a database" * 100)
    journal = UpdateJournal(path, bot_id=1)
    assert journal.accept(1, {})
    assert [p.name for p in path.parent.iterdir() if ".corrupt-" in p.name]


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


def test_journal_queue_takes_no_more_updates_than_it_can_handle(tmp_path: Path) -> None:
    """A full queue stops the polling loop (its put waits), so Telegram keeps the rest."""
    from telegram import Update

    async def scenario() -> None:
        queue = JournalQueue(max_in_flight=2)
        queue.attach(UpdateJournal(tmp_path / "u.sqlite3", bot_id=1))
        await queue.put(Update(1))
        await queue.put(Update(2))
        await queue.put(Update(2))  # a redelivery: skipped, takes no room
        third = asyncio.create_task(queue.put(Update(3)))
        await asyncio.sleep(0.05)
        assert not third.done() and queue.qsize() == 2
        await queue.finished(1)
        await asyncio.wait_for(third, 1)
        assert queue.qsize() == 3 and queue.in_flight == 2
        await queue.put(object())  # PTB's stop signal passes through
        assert queue.qsize() == 4

    asyncio.run(scenario())
