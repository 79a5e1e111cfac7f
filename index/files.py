"""Private folders and files for the data dir.

The data dir holds the index of unpublished drafts an admin may have
uploaded, readers' questions and chat state: nobody but the bot's own user
should read it. Folders are made 0700 and files 0600, whatever the umask,
and folders that exist already are tightened too (an index built by an
older version was 0755).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, recursive: bool = False) -> Path:
    """Create ``path`` (and missing parents) as 0700; with ``recursive``, tighten what is inside too.

    ``recursive`` is for folders another library fills (Chroma's files are
    created with the process umask). Returns ``path``.
    """
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(path, DIR_MODE)
    if recursive:
        for root, dirs, files in os.walk(path):
            for name in dirs:
                _tighten(Path(root) / name, DIR_MODE)
            for name in files:
                _tighten(Path(root) / name, FILE_MODE)
    return path


def open_private(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """``os.open`` a file in a private folder, created 0600 (and tightened if it existed)."""
    private_dir(path.parent)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError as error:  # a file owned by someone else: leave it, say so
        log.warning("cannot make %s private: %s", path, error.strerror)
    return fd


def _tighten(path: Path, mode: int) -> None:
    try:
        if path.is_symlink():
            return
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except OSError as error:
        log.warning("cannot make %s private: %s", path, error.strerror)
