"""Client/server mode: a real `chroma run` on 127.0.0.1, shared by two bot processes' services."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_services
from bot.settings import ChromaSettings, RetrievalSettings
from tests.conftest import NETZWOCHE, make_settings
from tests.integration.loopback import free_port, server_process
from tests.test_incremental import NEW

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    command = [chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with server_process(command, f"http://127.0.0.1:{port}/api/v2/heartbeat", log_path=path / "server.log"):
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
