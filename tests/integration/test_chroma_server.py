"""Client/server mode: a real `chroma run` on 127.0.0.1, shared by bot processes and an indexer."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_services
from bot.settings import ChromaSettings, RetrievalSettings
from index.errors import StoreUnavailableError
from tests.conftest import NETZWOCHE, REPO, make_settings
from tests.integration.loopback import free_port, server_process
from tests.test_crash import article, write_case
from tests.test_incremental import NEW

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def run_chroma(path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    command = [chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with server_process(command, f"http://127.0.0.1:{port}/api/v2/heartbeat",
                        log_path=path / "server.log") as process:
        yield port, process


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with run_chroma(tmp_path_factory.mktemp("chroma-server")) as (port, _process):
        yield port


def test_two_processes_share_one_chroma_server(tmp_path: Path, articles: Path, chroma_server: int) -> None:
    chroma = ChromaSettings(host="127.0.0.1", port=chroma_server, collection="server-case")
    retrieval = RetrievalSettings(refresh_seconds=0)
    indexer = build_services(make_settings(tmp_path / "a", articles, chroma=chroma, retrieval=retrieval))
    reader = build_services(make_settings(tmp_path / "b", articles, chroma=chroma, retrieval=retrieval))

    assert indexer.case.index().added == 2
    assert not (tmp_path / "a" / "chroma").exists()  # nothing embedded: the server holds the data
    answer = reader.case.ask("Welche Behörde hat Mitto ins Visier genommen?")
    assert not answer.refused and NETZWOCHE in {c.url for c in answer.citations}

    # An article added through one process is found by the other one's keyword and vector search.
    (articles / "neu.md").write_text(NEW, encoding="utf-8")
    assert indexer.case.index().added == 1
    answer = reader.case.ask("Wie heißt das Schiff der Reederei?")
    assert "Seestern Aurora" in answer.text
    assert reader.case.stats().articles == 3


class Bot:
    """A long-lived bot process (tests/integration/ask_worker.py) on the Chroma server."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.integration.ask_worker"], env=env,
                                        cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        assert self._read() == {"ready": True}

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the bot process died"
        return dict(json.loads(line))

    def ask(self, question: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(question + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_two_bot_processes_follow_an_indexer_and_survive_a_rebuild(tmp_path: Path, chroma_server: int) -> None:
    articles = tmp_path / "articles"
    write_case(articles, with_b=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CASEBOT_ARTICLES_DIR": str(articles),
           "CASEBOT_CHROMA__HOST": "127.0.0.1", "CASEBOT_CHROMA__PORT": str(chroma_server),
           "CASEBOT_CHROMA__COLLECTION": "three-processes", "CASEBOT_RETRIEVAL__REFRESH_SECONDS": "0"}

    def index(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bot.cli", "index", *args],
                              env={**env, "CASEBOT_DATA_DIR": str(tmp_path / "indexer")}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "added 2" in index()
    bots = [Bot({**env, "CASEBOT_DATA_DIR": str(tmp_path / f"bot{i}")}, tmp_path) for i in (1, 2)]
    try:
        mitto = "Wer prüft die Geschäfte von Mitto?"
        vektor = "Wann trat der Verwaltungsrat von Vektorcom zurück?"
        for bot in bots:
            reply = bot.ask(mitto)
            assert "https://example.org/a" in reply["urls"], reply

        (articles / "b.md").write_text(article("b", "Vektorcom", 10), encoding="utf-8")
        assert "added 1" in index()
        for bot in bots:  # the new article, by keyword and by vector, in both running bots
            reply = bot.ask(vektor)
            assert "Vektorcom" in reply["text"] and "https://example.org/b" in reply["urls"], reply

        assert "added 3" in index("--rebuild")
        for bot in bots:  # a new collection under the same name: reopened, keyword index rebuilt
            for question, url in ((mitto, "https://example.org/a"), (vektor, "https://example.org/b")):
                reply = bot.ask(question)
                assert "error" not in reply and url in reply["urls"], reply
    finally:
        for bot in bots:
            bot.close()


def test_a_hung_chroma_server_fails_questions_within_the_timeout(tmp_path: Path, articles: Path) -> None:
    with run_chroma(tmp_path) as (port, server):
        chroma = ChromaSettings(host="127.0.0.1", port=port, collection="hung", timeout=2)
        settings = make_settings(tmp_path / "data", articles, chroma=chroma,
                                 retrieval=RetrievalSettings(refresh_seconds=0))
        services = build_services(settings)
        services.case.index()
        assert not services.case.ask("Welche Behörde hat Mitto ins Visier genommen?").refused
        server.send_signal(signal.SIGSTOP)
        try:
            for _ in range(2):  # every question, not just the first, is bounded
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError, match="did not answer in time; try again"):
                    services.case.ask("Welche Behörde hat Mitto ins Visier genommen?")
                assert time.monotonic() - started < 10
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="does not answer"):
                build_services(settings)  # a process starting while the server hangs
            assert time.monotonic() - started < 10
        finally:
            server.send_signal(signal.SIGCONT)
        assert not services.case.ask("Welche Behörde hat Mitto ins Visier genommen?").refused
