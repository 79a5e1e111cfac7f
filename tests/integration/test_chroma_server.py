"""Client/server mode: a real `chroma run` on 127.0.0.1, shared by two bot processes' services."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_services
from bot.settings import ChromaSettings, RetrievalSettings
from tests.conftest import NETZWOCHE, make_settings
from tests.test_incremental import NEW

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    chroma = shutil.which("chroma") or str(Path(__import__("sys").executable).parent / "chroma")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = (path / "server.log").open("wb")
    process = subprocess.Popen([chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((path / "server.log").read_text(errors="replace")[-2000:]) from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


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
