"""The neutral conversation under abuse and bad luck, through the real handler and real index.

Follow-ups decided from the question itself (table-driven, both languages),
bounded and command-covering rate limits, the operator's terminal exempt,
commands in the conversation's language, one error sentence for every
failure, a deadline per answer, NUL and other control characters, uploads
that never overwrite, private files, the CLI's question length limit.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from bot.app import Services, build_services
from bot.console import chat_loop
from bot.conversation import (
    MAX_NAME_BYTES,
    MAX_TRACKED_USERS,
    Conversation,
    Incoming,
    RateLimiter,
    normalise_question,
)
from bot.feedback import FeedbackStore
from bot.followup import is_follow_up
from bot.settings import ChatSettings
from tests.conftest import HEISE, NETZWOCHE, make_settings

QUESTION = "Welche Behörde hat Mitto ins Visier genommen?"


# ------------------------------------------------------------------ follow-ups


@pytest.mark.parametrize(("question", "follow_up"), [
    # German
    ("Und wann war das?", True),
    ("und wann", True),
    ("Arbeitet er noch dort?", True),
    ("Was sagte er dazu?", True),
    ("Wann war das?", True),
    ("Warum?", True),
    ("Seit wann?", True),
    ("Aber was sagt Mitto dazu?", True),
    ("Welche Behörde hat Mitto ins Visier genommen?", False),
    ("Was wird Mitto vorgeworfen?", False),
    ("Wer ist der Gründer von Mitto?", False),
    ("Was kostet das Verfahren?", False),
    ("Gibt es Beweise gegen Mitto?", False),
    ("Können Sie mir sagen, wer Mitto gegründet hat?", False),
    ("Was sagt der US-Senator?", False),
    # English
    ("What about the senator?", True),
    ("And when was that?", True),
    ("When did it happen?", True),
    ("What did they find?", True),
    ("Does he still work there?", True),
    ("Who else?", True),
    ("Why?", True),
    ("What is Mitto accused of?", False),
    ("Who investigated Mitto?", False),
    ("Is it true that Mitto sold data?", False),
    ("Which newspaper revealed the links to Russia?", False),
])
def test_follow_up_is_decided_from_the_question(question: str, follow_up: bool) -> None:
    assert is_follow_up(question) is follow_up


def test_a_new_full_question_is_answered_on_its_own(demo_services: Services) -> None:
    """"What is Mitto accused of?" after a question about the senator must not quote the senator."""
    conversation = demo_services.conversation

    async def talk() -> tuple[str, str]:
        await conversation.handle(Incoming("senator-chat", "u-sen", "Which senator did Twitter inform?"))
        after = await conversation.handle(Incoming("senator-chat", "u-sen", "What is Mitto accused of?"))
        fresh = await conversation.handle(Incoming("fresh-chat", "u-fresh", "What is Mitto accused of?"))
        return after.text, fresh.text

    after, fresh = asyncio.run(talk())
    assert after == fresh


# ------------------------------------------------------------------ limits


def test_rate_limit_state_stays_bounded_for_100000_users() -> None:
    now = [0.0]
    limiter = RateLimiter(10, 60.0, lambda: now[0])
    tracemalloc.start()
    try:
        for user in range(100_000):
            now[0] += 0.0001  # all within one window: nothing expires by time
            assert limiter.check(f"user-{user}") == "ok"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(limiter) == MAX_TRACKED_USERS
    assert peak < 32 * 2**20, peak  # was 86 MiB for 100,000 users
    now[0] += 61  # a quiet minute: every window expires
    assert limiter.check("late") == "ok" and len(limiter) == 1


def test_flooding_gets_one_notice_then_silence(demo_services: Services) -> None:
    conversation = Conversation(demo_services.case, demo_services.prompts, ChatSettings(rate_limit_count=3),
                                case_name="Mitto AG")

    async def flood() -> list[str]:
        return [(await conversation.handle(Incoming("c", "flooder", "/sources"))).kind for _ in range(50)]

    kinds = asyncio.run(flood())
    assert kinds == ["sources"] * 3 + ["notice"] + ["silent"] * 46


def test_the_operators_terminal_is_not_rate_limited(demo_services: Services) -> None:
    conversation = Conversation(demo_services.case, demo_services.prompts, ChatSettings(rate_limit_count=2),
                                case_name="Mitto AG")
    out = io.StringIO()
    asyncio.run(chat_loop(conversation, demo_services.prompts, stdin=io.StringIO("/about\n" * 12), stdout=out))
    assert out.getvalue().count("casebot") == 12
    assert "viele Fragen" not in out.getvalue()


def test_commands_answer_in_the_conversations_language(demo_services: Services) -> None:
    conversation = demo_services.conversation
    about_en = demo_services.prompts.text("en", "about")
    about_de = demo_services.prompts.text("de", "about")

    async def talk() -> tuple[str, str, str]:
        await conversation.handle(Incoming("lang-en", "u-en", "Which newspaper revealed the links to Russia?"))
        english = await conversation.handle(Incoming("lang-en", "u-en", "/about", command_prefix="!"))
        await conversation.handle(Incoming("lang-de", "u-de", QUESTION))
        german = await conversation.handle(Incoming("lang-de", "u-de", "/about", language="en"))
        new = await conversation.handle(Incoming("lang-new", "u-new", "/about", language="en"))
        return english.text, german.text, new.text

    english, german, new = asyncio.run(talk())
    assert english == about_en and german == about_de
    assert new == about_en  # no conversation yet: the person's app language


def test_a_nul_in_a_question_does_not_cut_it(demo_services: Services) -> None:
    assert normalise_question("Welche\x00Behörde\x1b[31m hat\u0085 Mitto  ins Visier\ud800?") == \
        "Welche Behörde [31m hat Mitto ins Visier\ufffd?"

    async def ask(text: str, chat: str) -> str:
        return (await demo_services.conversation.handle(Incoming(chat, chat, text))).text

    clean = asyncio.run(ask(QUESTION, "nul-a"))
    with_nul = asyncio.run(ask("Welche Behörde\x00 hat Mitto ins Visier genommen?", "nul-b"))
    assert with_nul == clean and "EDÖB" in clean


# ------------------------------------------------------------------ failures


def test_an_unexpected_failure_is_one_sentence_and_a_logged_traceback(
    demo_services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object) -> object:
        raise KeyError("chunk-17")

    monkeypatch.setattr(demo_services.case, "ask", broken)
    reply = asyncio.run(demo_services.conversation.handle(Incoming("err", "u-err", QUESTION)))
    assert reply.kind == "error"
    assert reply.text == demo_services.prompts.text("de", "internal_error")
    assert "KeyError" not in reply.text
    assert "KeyError: 'chunk-17'" in caplog.text and "Traceback" in caplog.text


def test_an_answer_past_its_deadline_frees_its_slot(demo_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ChatSettings(max_concurrent_answers=1, answer_timeout_seconds=0.5)
    conversation = Conversation(demo_services.case, demo_services.prompts, settings, case_name="Mitto AG")
    real_ask = demo_services.case.ask

    def ask(question: str, *args: object) -> object:
        if "hängt" in question:
            time.sleep(3)  # a hung store or model
        return real_ask(question, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(demo_services.case, "ask", ask)

    async def talk() -> tuple[str, str, float]:
        started = time.monotonic()
        hung = await conversation.handle(Incoming("d1", "u1", "Welche Frage hängt hier?"))
        answered = await conversation.handle(Incoming("d2", "u2", QUESTION))
        return hung.text, answered.text, time.monotonic() - started

    hung, answered, seconds = asyncio.run(talk())
    assert hung == demo_services.prompts.text("de", "answer_timeout")
    assert "EDÖB" in answered  # the one slot was free again
    assert seconds < 2.5


# ------------------------------------------------------------------ uploads


def test_uploads_never_overwrite_and_names_fit_the_file_system(tmp_path: Path, articles: Path) -> None:
    services = build_services(make_settings(tmp_path / "data", articles))
    services.case.index()
    conversation = services.conversation
    existing = sorted(articles.iterdir())
    before = {p.name: p.read_bytes() for p in existing}
    heise_name = next(p.name for p in existing if p.name.startswith("heise"))

    def upload(name: str, content: str) -> str:
        reply = asyncio.run(conversation.add_article(name, content.encode(), True, "admin", "en"))
        return reply.text

    # The same name as an existing article: refused, the article untouched.
    text = upload(heise_name, "---\ntitle: Fake\n---\nFake text replacing the real article.\n")
    assert "already in the articles folder" in text and "never overwrite" in text
    # Another file carrying an existing article's URL: refused, nothing written.
    text = upload("copy.md", f'---\ntitle: "Copy"\nurl: "{HEISE}"\n---\nA second article with that URL.\n')
    assert HEISE in text and heise_name in text
    assert {p.name: p.read_bytes() for p in articles.iterdir()} == before
    assert {r.url for r in services.case.sources()} == {HEISE, NETZWOCHE}

    long_ascii = "a" * 300 + ".md"
    text = upload(long_ascii, "---\ntitle: Lang\n---\nEin Artikel mit einem sehr langen Dateinamen.\n")
    assert "added 1" in text, text
    umlauts = "ä" * 140 + ".md"  # 283 bytes
    text = upload(umlauts, "---\ntitle: Umlaute\n---\nEin Artikel mit einem Namen aus Umlauten.\n")
    assert "added 1" in text, text
    new = sorted(p.name for p in articles.iterdir() if p.name not in before)
    assert len(new) == 2
    assert all(len(n.encode()) <= MAX_NAME_BYTES and n.endswith(".md") for n in new)
    assert not [p for p in articles.iterdir() if p.name.startswith(".") and p.name not in before]  # no temp files left

    # A lone surrogate in an echoed name does not break the reply.
    refused = asyncio.run(conversation.add_article("bad\ud800name.pdf", b"x", True, "admin", "en"))
    refused.text.encode("utf-8")
    assert "\ufffd" in refused.text


# ------------------------------------------------------------------ files and CLI


def test_feedback_store_is_created_private(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "data" / "feedback.sqlite3")
    store.record("telegram", "1", "2", "1:3", 1, "Frage?", "Antwort", [])
    for path in (tmp_path / "data").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_cli_refuses_an_overlong_question_quickly(tmp_path: Path, articles: Path) -> None:
    env = {**os.environ, "CASEBOT_DATA_DIR": str(tmp_path / "data"), "CASEBOT_ARTICLES_DIR": str(articles),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bot.cli", "ask", "Warum " * 20_000], check=False,
                            env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "too long" in result.stderr and "CASEBOT_CHAT__MAX_QUESTION_CHARS" in result.stderr
    assert time.monotonic() - started < 120
