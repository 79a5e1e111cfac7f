"""Run the real ``casebot`` command and SIGKILL it at a named point of its Chroma writes.

Test-only: nothing in casebot knows about it. ``tests/test_crash.py`` runs

    python -m tests.kill_harness POINT casebot-args...

where POINT is ``METHOD:N`` (kill the process right before its N-th call of
chromadb's ``Collection.METHOD``: ``add``, ``delete`` or ``modify``) or
``add:N:half`` (let the N-th ``add`` write the first half of its batch, then
kill). The kill is a real ``SIGKILL`` of this process: no ``finally`` block,
no atexit handler and no Chroma shutdown runs, as after an OOM kill.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _arm(point: str) -> None:
    from chromadb.api.models.Collection import Collection

    method, count, *mode = point.split(":")
    target = int(count)
    original = getattr(Collection, method)
    calls = {"n": 0}

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == target:
            if mode == ["half"]:
                half = {k: v[: max(1, len(v) // 2)] if isinstance(v, list) else v for k, v in kwargs.items()}
                original(self, *args, **half)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    setattr(Collection, method, patched)


def main() -> int:
    _arm(sys.argv[1])
    from bot.cli import main as casebot

    return casebot(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
