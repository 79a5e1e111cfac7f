"""The Matrix adapter's memory of answer threads: who asked, and for how long."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.matrix.state import MatrixState


def test_thread_asker_is_remembered_per_room_and_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = MatrixState(tmp_path / "matrix" / "state.sqlite3")
    state.record_thread("!a:x", "$q1", "@anna:x")
    state.record_thread("!a:x", "$q1", "@eve:x")  # the first asker stays the asker
    assert state.thread_asker("!a:x", "$q1") == "@anna:x"
    assert state.thread_asker("!b:x", "$q1") is None  # same event id in another room: not that thread
    assert state.thread_asker("!a:x", "$other") is None
    assert MatrixState(tmp_path / "matrix" / "state.sqlite3").thread_asker("!a:x", "$q1") == "@anna:x"
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 91 * 86400)
    state.prune(90)
    assert state.thread_asker("!a:x", "$q1") is None
