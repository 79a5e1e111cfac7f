"""A SIGKILLed `casebot run telegram` loses no question and answers none twice.

The real command runs as a subprocess (``python -m bot.cli run telegram``,
this worktree's code) against a Bot API peer served over HTTP on 127.0.0.1.
Readers' questions are queued, the process is killed with SIGKILL right after
its first answer, by which time Telegram (the peer) has already been told
that every fetched update is confirmed; after a restart every question is
answered, each exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.settings import DEMO_ARTICLES, REPO_DIR
from tests.integration.botapi_peer import BotApiPeer, Call

pytestmark = pytest.mark.integration

QUESTIONS = (
    "Welche Behörde hat Mitto ins Visier genommen?",
    "Was wird Mitto vorgeworfen?",
    "Wer hat Mitto gegründet?",
    "Welche Zeitung hat die Verbindungen nach Russland aufgedeckt?",
    "What is Mitto accused of?",
    "Wo hat Mitto seinen Sitz?",
    "Welche Daten hat Mitto weitergegeben?",
    "Who investigated Mitto?",
)
FIRST_USER = 2001
STARTUP_SECONDS = 240.0  # import, the embedder, indexing the demo case, on a busy two-core machine


def _eventually(check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            raise AssertionError(f"casebot exited with {process.returncode} while waiting for {what}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _handled(journal: Path) -> int:
    """Updates the bot has marked done, read from its journal (as the bot itself would after a crash)."""
    if not journal.exists():
        return 0
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM updates WHERE payload IS NULL").fetchone()[0])
        except sqlite3.OperationalError:  # the table is being created
            return 0


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    articles = tmp_path / "articles"
    shutil.copytree(DEMO_ARTICLES, articles)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBOT_")}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "CASEBOT_DATA_DIR": str(tmp_path / "data"),
        "CASEBOT_ARTICLES_DIR": str(articles),
        "CASEBOT_CHAT__MAX_CONCURRENT_ANSWERS": "1",  # answers queue up behind one slot
        "CASEBOT_LOG_LEVEL": "INFO",
    })
    yield tmp_path, env


def _start(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "telegram"], env=env, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT)


def test_sigkill_after_the_first_answer_loses_no_question(workspace: tuple[Path, dict[str, str]]) -> None:
    root, env = workspace
    log = root / "casebot.log"
    journal = root / "data" / "telegram-updates.sqlite3"
    with BotApiPeer(token="7300000001:" "AAHcasebotCrashTestTokenForThePeer00") as peer:  # fake, split
        env = env | {"CASEBOT_TELEGRAM__TOKEN": peer.token, "CASEBOT_TELEGRAM__API_BASE_URL": peer.base_url}
        users = [FIRST_USER + i for i in range(len(QUESTIONS))]
        for user, question in zip(users, QUESTIONS, strict=True):
            peer.private_text(user, question)

        def answered() -> list[int]:
            return [u for u in users if peer.sent_messages(u)]

        process = _start(env, root, log)
        try:
            _eventually(lambda: bool(answered()), STARTUP_SECONDS, "the first answer", process)
            _eventually(lambda: _handled(journal) >= 1, 30, "the first answer to be marked done", process)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        answered_before = answered()
        print(f"answered before SIGKILL: {len(answered_before)} of {len(QUESTIONS)}")
        assert len(answered_before) < len(QUESTIONS), "nothing was left to lose: the test proves nothing"
        # Telegram already considers every question delivered: only the bot's journal has them.
        assert peer.pending_updates() == [], log.read_text(errors="replace")[-3000:]

        restarted = _start(env, root, log)
        try:
            _eventually(lambda: len(answered()) == len(QUESTIONS), STARTUP_SECONDS, "every answer", restarted)
            mark = len(peer.calls)
            peer.private_text(FIRST_USER + 100, "/about")  # the restarted bot is also live, not just replaying
            peer.wait_for(lambda call: _sent_to(call, FIRST_USER + 100), timeout=60, since=mark)
            time.sleep(1.0)  # anything sent twice would be out by now
        finally:
            restarted.send_signal(signal.SIGTERM)
            try:
                restarted.wait(timeout=60)
            except subprocess.TimeoutExpired:
                restarted.kill()
                restarted.wait(timeout=30)
        counts = {user: len(peer.sent_messages(user)) for user in users}
        assert counts == dict.fromkeys(users, 1), counts
        assert "received before the last stop" in log.read_text(errors="replace")
        assert restarted.returncode == 0, log.read_text(errors="replace")[-3000:]


def _sent_to(call: Call, chat_id: int) -> bool:
    return call.method == "sendMessage" and call.params.get("chat_id") == chat_id
