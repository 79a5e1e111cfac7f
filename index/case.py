"""The knowledge side's one entry point: index a case, ask it, list its sources.

:class:`CaseIndex` is what the chat side talks to. Its methods block (they
embed and query Chroma), so async callers run them in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from index.answer import Answer
from index.grounded import GroundedAnswerer
from index.pipeline import Indexer, IndexReport, ProgressCallback
from index.store import ArticleRecord, ChunkStore


@dataclass(frozen=True)
class IndexStats:
    """Size of the index, for ``/stats`` and ``/help``."""

    articles: int
    chunks: int


class Answerer(Protocol):
    """What :class:`CaseIndex` needs from an answerer (extractive or LLM-written)."""

    def answer(self, question: str, language: str | None = None, retrieval_query: str | None = None,
               previous_question: str | None = None) -> Answer: ...

    def invalidate(self) -> None: ...

    def prepare(self) -> None: ...

    def warm_up(self) -> None: ...


IndexObserver = Callable[["IndexReport | None", "IndexStats | None"], None]
"""Told the end of every indexing run: its report (None: it failed) and the index size after it."""


class CaseIndex:
    """Indexing and answering for one case (one articles folder, one collection)."""

    def __init__(
        self,
        store: ChunkStore,
        indexer: Indexer,
        answerer: Answerer,
        articles_dir: Path,
        on_index: IndexObserver | None = None,
    ) -> None:
        self._store = store
        self._indexer = indexer
        self._answerer = answerer
        self.articles_dir = articles_dir
        self._index_lock = threading.Lock()
        self._on_index = on_index

    def index(
        self,
        paths: Sequence[Path] | None = None,
        rebuild: bool = False,
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index ``paths`` (default: the articles folder); see :meth:`Indexer.run`."""
        try:
            with self._index_lock:
                report = self._indexer.run(list(paths or [self.articles_dir]), rebuild, prune, progress)
                self._answerer.invalidate()
                # Calibrate refusal and build the caches now, not on the first question.
                self._answerer.prepare()
        except Exception:
            self._notify(None)
            raise
        self._notify(report)
        return report

    def _notify(self, report: IndexReport | None) -> None:
        if self._on_index is None:
            return
        try:
            stats: IndexStats | None = self.stats()
        except Exception:  # the store failing is what the report (or the raised error) already says
            stats = None
        self._on_index(report, stats)

    @property
    def answerer(self) -> Answerer:
        """The answerer in use (extractive, or LLM-written with extractive fallback)."""
        return self._answerer

    @property
    def writes_with_llm(self) -> bool:
        """Answers are written by a language model and take seconds, not milliseconds.

        Adapters use this to show one placeholder message ("llm_thinking")
        that the answer replaces.
        """
        return isinstance(self._answerer, GroundedAnswerer)

    def ensure_indexed(self, progress: ProgressCallback | None = None) -> IndexReport | None:
        """Build the index from the articles folder if it is empty."""
        if self._store.count():
            return None
        return self.index(progress=progress)

    def ask(
        self,
        question: str,
        language: str | None = None,
        retrieval_query: str | None = None,
        previous_question: str | None = None,
    ) -> Answer:
        """Answer one question from the indexed articles.

        ``retrieval_query`` is what to search for (a follow-up expanded with
        the previous question); ``previous_question``, given for a
        follow-up, lets an LLM answerer rewrite the question into a
        stand-alone one first. The extractive answerer ignores it.
        """
        self._store.ensure_compatible()  # vectors of another model cannot be compared
        return self._answerer.answer(question, language, retrieval_query, previous_question)

    def sources(self) -> list[ArticleRecord]:
        """Indexed articles, newest first."""
        records = list(self._store.articles().values())
        return sorted(records, key=lambda r: (r.published, r.title), reverse=True)

    def stats(self) -> IndexStats:
        return IndexStats(articles=len(self._store.articles()), chunks=self._store.count())

    def warm_up(self) -> None:
        """Load models and the keyword index before the first question."""
        self._answerer.warm_up()
