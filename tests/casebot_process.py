"""The real ``casebot`` command as a child process, for tests of how it behaves as a service.

Every process runs ``python -m bot.cli`` from this checkout (``PYTHONPATH``),
in a scratch working directory (so no ``.env`` of the developer's is read),
with every inherited ``CASEBOT_*`` variable removed and ``HOME`` and
``XDG_STATE_HOME`` pointing into that directory, so nothing outside the
test's own folder is written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def index_demo_case(root: Path) -> dict[str, str]:
    """Copy the demo case under ``root`` and index it with ``casebot index``; the settings naming both."""
    shutil.copytree(REPO / "data" / "articles", root / "articles")
    settings = {"CASEBOT_DATA_DIR": str(root / "data"), "CASEBOT_ARTICLES_DIR": str(root / "articles")}
    result, _ = run_casebot(["index"], root, settings)
    assert result.returncode == 0, result.stderr
    assert "added 2" in result.stdout
    return settings


def casebot_env(home: Path, settings: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBOT_")}
    env.update({"PYTHONPATH": str(REPO), "HOME": str(home), "XDG_STATE_HOME": str(home / "state"),
                "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


def run_casebot(args: list[str], cwd: Path, settings: Mapping[str, str],
                timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run one command to its end; the result and the seconds it took."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=casebot_env(cwd, settings),
                            capture_output=True, text=True, timeout=timeout, check=False)
    return result, time.monotonic() - started


class Casebot:
    """A long-running ``casebot`` process whose stderr is collected line by line while it runs."""

    def __init__(self, args: list[str], cwd: Path, settings: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=casebot_env(cwd, settings),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 90) -> str:
        """The first stderr line matching ``predicate``; fails if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if predicate(line):
                    return line
            seen = len(self.lines)
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the reader take the last lines
                match = [line for line in self.lines if predicate(line)]
                if match:
                    return match[0]
                raise AssertionError(f"casebot exited ({self.process.returncode}) first:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"no such line within {timeout} s:\n{self.stderr}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        """Send ``sig`` and wait; the exit code and the seconds the process took to end."""
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        elapsed = time.monotonic() - started
        self._reader.join(timeout=5)
        return code, elapsed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    """Status and body of a GET, also for error statuses; status 0 when nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def get_json(url: str) -> tuple[int, Any]:
    status, body = get(url)
    return status, json.loads(body)


def wait_until(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.2)
