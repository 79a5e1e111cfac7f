"""A journalist on Element's client stack, for tests: matrix-js-sdk with its Rust crypto, in Node.

:class:`ElementJournalists` starts ``journalist.mjs`` once and sends it one
JSON command per line (see the script's header); several journalists can
live in that one process. The Node packages come from ``package-lock.json``:
:func:`ensure_node_modules` runs ``npm ci`` when ``node_modules`` is missing
or older than the lockfile, so a fresh machine needs only Node 20+ and the
npm registry.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self

HERE = Path(__file__).resolve().parent
_NPM_TIMEOUT_S = 600


class JournalistError(RuntimeError):
    """The Node journalist answered a command with an error (the message carries its stack)."""


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def ensure_node_modules() -> None:
    """``npm ci`` from the committed lockfile, once; concurrent test runs wait for each other."""
    marker = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    with (Path(tempfile.gettempdir()) / "casebot-element-npm.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
            return
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True,
                       stdin=subprocess.DEVNULL, timeout=_NPM_TIMEOUT_S)


class ElementJournalists:
    """One Node process holding js-sdk clients; ``async with`` starts and stops it."""

    def __init__(self, log_path: Path) -> None:
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        ensure_node_modules()
        self._log = self._log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            "node", str(HERE / "journalist.mjs"), cwd=HERE, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=self._log, env={**os.environ, "NODE_NO_WARNINGS": "1"},
            limit=2**24)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                if process.returncode is None:
                    await asyncio.wait_for(self._send(process, "stop", {}), 10)
                await asyncio.wait_for(process.wait(), 10)
            except (TimeoutError, JournalistError, ConnectionError):
                process.kill()
                await process.wait()
        self._log.close()

    async def call(self, cmd: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        """Run one command; returns its result or raises :class:`JournalistError`."""
        if self._process is None:
            raise JournalistError("the Node journalist is not running")
        return await asyncio.wait_for(self._send(self._process, cmd, args), timeout)

    async def _send(self, process: asyncio.subprocess.Process, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        async with self._lock:  # one command at a time: responses come back in order
            request_id = next(self._ids)
            process.stdin.write((json.dumps({"id": request_id, "cmd": cmd, "args": args}) + "\n").encode())
            await process.stdin.drain()
            line = await process.stdout.readline()
        if not line:
            raise JournalistError(f"the Node journalist exited (see {self._log_path})")
        response = json.loads(line)
        if response.get("id") != request_id or not response.get("ok"):
            raise JournalistError(f"{cmd}: {response.get('error', response)}")
        result: dict[str, Any] = response["result"]
        return result
