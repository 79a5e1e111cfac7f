"""Files that hold readers' data are created readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path


def create_private(path: Path) -> None:
    """Create ``path`` (and its folder) with mode 0600 if it does not exist yet.

    The feedback store and the Telegram update journal hold readers'
    messages and user ids. Creating the file first with 0600 (its folder
    0700) means SQLite never makes it world-readable under a permissive
    umask; SQLite gives its ``-wal`` and ``-shm`` files the database file's
    mode. An existing file's mode is left as the operator set it.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
