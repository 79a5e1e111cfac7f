"""Errors that carry the sentence a person should read.

The knowledge side raises these; adapters catch :class:`CasebotError` once,
show ``str(error)`` to the person and log the details for the operator.
"""

from __future__ import annotations

from pathlib import Path


class CasebotError(Exception):
    """Base class: ``str(error)`` is fit to show to a user or operator."""


class ArticleError(CasebotError):
    """An article file could not be used; ``reason`` says why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason}")


class IndexMismatchError(CasebotError):
    """The collection was built with another embedding model."""


class IndexLockedError(CasebotError):
    """Another indexer is writing to the same data directory."""


class StoreUnavailableError(CasebotError):
    """The Chroma store cannot be reached or opened."""
