"""Incremental, idempotent, crash-safe ingestion of article files.

Articles whose content hash is already in the store are skipped; changed ones
are replaced; new ones added. Chunk ids are deterministic and an article only
counts as indexed once its chunk 0 is written and its chunk ids are exactly
the positions chunk 0 announces (see :mod:`index.store`), so a run killed at
any point is finished by the next one: torn articles are rewritten, stale
tails deleted, and the torn remains of a deleted file removed by ``--prune``.

Two locks: ``index.lock`` keeps a second indexer off the same data dir, and
the serving lock (held by ``casebot run`` on an embedded Chroma, which only
one process may open) keeps other processes' indexers off it with a sentence
saying what to do instead.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from index.articles import Article, find_article_files, load_article
from index.chunking import Chunk, article_key, chunk_article, key_chunk_id, sentence_texts
from index.embeddings import Embedder
from index.errors import ArticleError, CasebotError, IndexLockedError
from index.files import open_private
from index.store import ArticleRecord, ChunkStore

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


def _try_lock(path: Path) -> tuple[int, str]:
    """``(fd, "")`` with an exclusive lock on ``path``, or ``(-1, holder pid)`` if another process has it."""
    fd = open_private(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return -1, holder
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd, ""


def _unlock(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def index_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``path`` (one indexer per data dir)."""
    fd, holder = _try_lock(path)
    if fd < 0:
        raise IndexLockedError(
            f"Another indexer (pid {holder}) is writing to {path.parent}; "
            "wait until it has finished and try again."
        )
    try:
        yield
    finally:
        _unlock(fd)


class ServingLock:
    """The data dir's embedded Chroma belongs to one process: ``casebot run`` while it serves.

    Embedded Chroma cannot be shared: a second process that writes to it
    leaves the bot failing with ``InternalError`` and blind to the new
    articles. ``casebot run`` holds this lock while it serves; an indexer
    in another process takes it for the duration of its run, so that
    neither can start while the other works. An indexer inside the serving
    process (``/reindex``) sees the lock is its own and goes ahead. With a
    Chroma server none of this applies and no lock is built.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._fd >= 0

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Hold the lock while this process serves chats (``casebot run``)."""
        fd, holder = _try_lock(self._path)
        if fd < 0:
            raise IndexLockedError(
                f"Another casebot process (pid {holder}) is using the index in {self._path.parent}; "
                "wait until it has finished, or use a Chroma server (CASEBOT_CHROMA__HOST) "
                "so that several processes can share the index."
            )
        self._fd = fd
        try:
            yield
        finally:
            self._fd = -1
            _unlock(fd)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock for one index run, unless this process serves (then it is ours already)."""
        with self._mutex:
            if self.held:
                yield
                return
            fd, holder = _try_lock(self._path)
            if fd < 0:
                raise IndexLockedError(
                    f"casebot run (pid {holder}) is serving the index in {self._path.parent}, and its "
                    "embedded Chroma can only be written by that process. Send /reindex (Telegram) or "
                    "!reindex (Matrix) to the bot as an admin instead, or use a Chroma server "
                    "(CASEBOT_CHROMA__HOST) so that `casebot index` can run beside the bot."
                )
            try:
                yield
            finally:
                _unlock(fd)


class Indexer:
    """Turns folders of article files into chunks in a :class:`ChunkStore`.

    ``articles_root`` is the case's articles folder: ids of URL-less
    articles are paths relative to it, whichever folder or file a run was
    given. ``serving_lock`` is set for an embedded Chroma (see
    :class:`ServingLock`).
    """

    def __init__(
        self,
        store: ChunkStore,
        embedding: Embedder,
        lock_path: Path,
        chunk_chars: int = 480,
        chunk_overlap: int = 1,
        batch_size: int = 64,
        articles_root: Path | None = None,
        serving_lock: ServingLock | None = None,
        sentence_vectors: bool = True,
    ) -> None:
        self._store = store
        self._embedding = embedding
        self._lock_path = lock_path
        self._chunk_chars = chunk_chars
        self._chunk_overlap = chunk_overlap
        self._batch_size = batch_size
        self._articles_root = articles_root
        self._serving_lock = serving_lock
        self._sentence_vectors = sentence_vectors

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
        files are gone (under ``paths``, or anywhere when their file no
        longer exists) and the torn remains of articles whose chunk 0 never
        got written. Broken files are counted in ``failed`` with a reason
        and never stop the run.
        """
        started = time.perf_counter()
        report = IndexReport()
        serving = self._serving_lock.writing() if self._serving_lock else nullcontext()
        with index_lock(self._lock_path), serving:
            if rebuild:
                self._store.reset()
            else:
                self._store.ensure_compatible()
            unfinished = self._store.writing()  # a run was killed between its generation bumps
            articles = self._scan(paths, report)
            existing = self._store.articles()
            layout = self._store.chunk_layout()
            todo: list[tuple[Article, bool]] = []
            for article in articles:
                known = existing.get(article.article_id)
                if (known is not None and known.content_hash == article.content_hash
                        and _complete(known, layout.get(article_key(article.article_id), set()))):
                    report.unchanged += 1
                else:
                    todo.append((article, known is not None))
            scanned = {article_key(a.article_id) for a in articles}
            if prune and not articles and layout:
                # An empty or unmounted folder must not wipe the index.
                raise CasebotError(
                    f"No articles found in {', '.join(str(p) for p in paths)}; refusing to remove all "
                    f"{len(existing)} indexed articles. Check the folder, or use --rebuild to empty the index."
                )
            gone, torn = self._gone(existing, layout, scanned, paths)
            if prune:
                report.removed = len(gone)
            else:
                report.missing = len(gone)
                torn = []
            if todo or (prune and (gone or torn)) or unfinished:
                self._store.begin_write()
                if prune:
                    for record in gone:
                        self._store.remove_article(record.article_id)
                    self._store.remove_chunks(torn)
                self._write(todo, report, progress, total=len(articles), done=report.unchanged)
                self._store.end_write()
                if report.updated or (prune and (gone or torn)):
                    self._prune_sentences()
        report.seconds = time.perf_counter() - started
        log.info("index: %s (%d chunks, %.1fs)", report.summary(), report.chunks, report.seconds)
        return report

    def _gone(
        self,
        existing: dict[str, ArticleRecord],
        layout: dict[str, set[int]],
        scanned: set[str],
        paths: Sequence[Path],
    ) -> tuple[list[ArticleRecord], list[str]]:
        """Indexed articles not found in this run, and the chunk ids of torn unknown articles.

        An article counts as gone when its file is under one of ``paths``
        (so ``casebot index SUBFOLDER --prune`` leaves the rest of the case
        alone) or no longer exists at all. Chunks whose article has no
        chunk 0 and was not scanned are the remains of a killed write.
        """
        bases = [p.resolve() for p in paths]
        gone = []
        for record in existing.values():
            if article_key(record.article_id) in scanned:
                continue
            path = Path(record.path).resolve() if record.path else None
            if path is None or not path.exists() or any(path.is_relative_to(b) for b in bases):
                gone.append(record)
        headed = {article_key(r.article_id) for r in existing.values()}
        torn = [
            key_chunk_id(key, position)
            for key, positions in layout.items()
            if key not in scanned and key not in headed
            for position in positions
        ]
        return sorted(gone, key=lambda r: r.article_id), torn

    def _scan(self, paths: Sequence[Path], report: IndexReport) -> list[Article]:
        articles: dict[str, Article] = {}
        for file, base in find_article_files(paths):
            try:
                article = load_article(file, self._articles_root or base)
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
        if self._sentence_vectors:
            self._store_sentences([c for _, _, chunks in pending for c in chunks])
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


    def _prune_sentences(self) -> None:
        """Delete the sentence vectors that only edited or removed articles had.

        Done after the write is complete (a kill before it only leaves
        unused vectors for the next such run), and only when an article was
        updated or removed: an added article takes nothing away.
        """
        started = time.perf_counter()
        deleted = self._store.prune_sentences({s for c in self._store.iter_chunks() for s in sentence_texts(c.text)})
        log.info("sentence vectors: %d of removed text deleted in %.1fs", deleted, time.perf_counter() - started)

    def _store_sentences(self, chunks: Sequence[Chunk]) -> None:
        """Embed the sentences of ``chunks`` that have no stored vector yet, and store them.

        The answerer ranks sentences by their own vector; reading it costs a
        store lookup, embedding it at answer time 15-20 ms a sentence. The
        text embedded is exactly what the answerer would embed (a sentence
        of the stored chunk text, stripped), and a text's vector does not
        depend on the batch it is embedded in, so answers stay the same.
        Written before the chunks: a chunk in the store has its sentence
        vectors, unless a write was killed in between (then the answerer
        embeds the missing ones itself).
        """
        sentences = [s for c in chunks for s in sentence_texts(c.text)]
        todo = self._store.missing_sentences(sentences)
        if todo:
            self._store.add_sentence_vectors(todo, self._embedding.get_text_embedding_batch(todo))


def _complete(record: ArticleRecord, positions: set[int]) -> bool:
    """True when exactly the article's chunks are stored: no torn write, no stale tail."""
    if record.chunks:
        return positions == set(range(record.chunks))
    # Written before chunk counts were stored: at least no gap may show.
    return bool(positions) and positions == set(range(max(positions) + 1))


def embedding_text(chunk: Chunk) -> str:
    """The text embedded for a chunk: its title for context, then its text."""
    return f"{chunk.article.title}\n{chunk.text}"
