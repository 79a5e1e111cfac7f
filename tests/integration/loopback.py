"""Starting a real server process on 127.0.0.1 for a test, and stopping it."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(command: Sequence[str], ready_url: str, timeout: float = 60.0,
                   log_path: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; wait until ``ready_url`` answers first.

    Output goes to ``log_path`` (else nowhere); its tail is in the error when
    the server exits or does not answer within ``timeout`` seconds.
    """
    log = log_path.open("wb") if log_path else None
    process = subprocess.Popen(list(command), stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:] if log_path else ""
                    raise RuntimeError(f"{command[0]} did not start ({ready_url})\n{tail}") from None
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            log.close()
