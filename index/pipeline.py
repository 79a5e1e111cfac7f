"""Incremental, idempotent, crash-safe ingestion of article files.

Articles whose content hash is already in the store are skipped; changed ones
are replaced; new ones added. Chunk ids are deterministic and an article only
counts as indexed once its chunk 0 is written (see :mod:`index.store`), so a
run that dies half-way is simply finished by the next one. A file lock keeps a
second indexer off the same data directory.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llama_index.core.base.embeddings.base import BaseEmbedding

from index.articles import Article, find_article_files, load_article
from index.chunking import Chunk, chunk_article
from index.errors import ArticleError, CasebotError, IndexLockedError
from index.store import ChunkStore

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass
class IndexReport:
    """Outcome of one indexing run."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    failures: list[ArticleError] = field(default_factory=list)
    missing: int = 0  # indexed articles no longer on disk, kept without --prune
    chunks: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        """The one summary line the command and the chat commands print."""
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"removed {self.removed}, failed {self.failed}"
        )


@contextmanager
def index_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``path`` (one indexer per data dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise IndexLockedError(
                f"Another indexer (pid {holder}) is writing to {path.parent}; "
                "wait until it has finished and try again."
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Indexer:
    """Turns folders of article files into chunks in a :class:`ChunkStore`."""

    def __init__(
        self,
        store: ChunkStore,
        embedding: BaseEmbedding,
        lock_path: Path,
        chunk_chars: int = 480,
        chunk_overlap: int = 1,
        batch_size: int = 64,
    ) -> None:
        self._store = store
        self._embedding = embedding
        self._lock_path = lock_path
        self._chunk_chars = chunk_chars
        self._chunk_overlap = chunk_overlap
        self._batch_size = batch_size

    def run(
        self,
        paths: Sequence[Path],
        rebuild: bool = False,
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index every article under ``paths``.

        ``rebuild`` drops the collection first (also the way out of an
        embedding-model mismatch); ``prune`` removes indexed articles whose
        files are gone. Broken files are counted in ``failed`` with a reason
        and never stop the run.
        """
        started = time.perf_counter()
        report = IndexReport()
        with index_lock(self._lock_path):
            if rebuild:
                self._store.reset()
            else:
                self._store.ensure_compatible()
            articles = self._scan(paths, report)
            existing = self._store.articles()
            todo: list[tuple[Article, bool]] = []
            for article in articles:
                known = existing.get(article.article_id)
                if known is not None and known.content_hash == article.content_hash:
                    report.unchanged += 1
                else:
                    todo.append((article, known is not None))
            gone = set(existing) - {a.article_id for a in articles}
            if prune and gone and not articles:
                # An empty or unmounted folder must not wipe the index.
                raise CasebotError(
                    f"No articles found in {', '.join(str(p) for p in paths)}; refusing to remove all "
                    f"{len(gone)} indexed articles. Check the folder, or use --rebuild to empty the index."
                )
            if prune:
                for article_id in sorted(gone):
                    self._store.remove_article(article_id)
                    report.removed += 1
            else:
                report.missing = len(gone)
            self._write(todo, report, progress, total=len(articles), done=report.unchanged)
            if report.changed:
                self._store.bump_generation()
        report.seconds = time.perf_counter() - started
        log.info("index: %s (%d chunks, %.1fs)", report.summary(), report.chunks, report.seconds)
        return report

    def _scan(self, paths: Sequence[Path], report: IndexReport) -> list[Article]:
        articles: dict[str, Article] = {}
        for file, root in find_article_files(paths):
            try:
                article = load_article(file, root)
                if article.article_id in articles:
                    other = Path(articles[article.article_id].path).name
                    raise ArticleError(file, f"same url as {other}; skipped")
            except ArticleError as error:
                report.failed += 1
                report.failures.append(error)
                log.warning("skipped article %s", error)
                continue
            articles[article.article_id] = article
        return list(articles.values())

    def _write(
        self,
        todo: list[tuple[Article, bool]],
        report: IndexReport,
        progress: ProgressCallback | None,
        total: int,
        done: int,
    ) -> None:
        """Embed in batches across articles, then write article by article."""
        if progress:
            progress(done, total)
        pending: list[tuple[Article, bool, list[Chunk]]] = []
        pending_chunks = 0
        for i, (article, known) in enumerate(todo):
            chunks = chunk_article(article, self._chunk_chars, self._chunk_overlap)
            if chunks:
                pending.append((article, known, chunks))
            else:
                error = ArticleError(article.path, "no article text besides page furniture")
                report.failed += 1
                report.failures.append(error)
                log.warning("skipped article %s", error)
            pending_chunks += len(chunks)
            if pending and (pending_chunks >= self._batch_size or i == len(todo) - 1):
                self._flush(pending, report)
                done += len(pending)
                pending, pending_chunks = [], 0
                if progress:
                    progress(done, total)

    def _flush(self, pending: list[tuple[Article, bool, list[Chunk]]], report: IndexReport) -> None:
        texts = [embedding_text(c) for _, _, chunks in pending for c in chunks]
        vectors = self._embedding.get_text_embedding_batch(texts) if texts else []
        batch = []
        offset = 0
        for article, _, chunks in pending:
            batch.append((article.article_id, chunks, vectors[offset:offset + len(chunks)]))
            offset += len(chunks)
        self._store.replace_articles(batch)
        for _, known, chunks in pending:
            report.chunks += len(chunks)
            if known:
                report.updated += 1
            else:
                report.added += 1


def embedding_text(chunk: Chunk) -> str:
    """The text embedded for a chunk: its title for context, then its text."""
    return f"{chunk.article.title}\n{chunk.text}"
