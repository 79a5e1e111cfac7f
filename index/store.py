"""The Chroma store: chunks are written through llama-index's ``ChromaVectorStore``.

One collection holds every chunk with its vector, text and attribution; it is
the single source of truth (no side docstore that could disagree with it).
An article counts as indexed when its chunk 0 exists and its chunk ids are
exactly positions ``0 .. chunks-1`` (chunk 0 records ``chunks``): an
article's old chunks are deleted first and chunk 0 is written last, so a
write killed at any point leaves an article the next run sees as torn and
rewrites, and chunk ids alone (a cheap read) show stale tails and orphans.

The collection's metadata records the embedding model that built it, a
generation number and a "write in progress" flag. A write sets the flag and
bumps the generation before it touches a chunk, and bumps it again and clears
the flag when it is done, so other processes sharing a Chroma server reload
their keyword index after every write, and a write killed half-way is
finished (and bumped) by the next run even when no article changed since.

Beside it, a second collection (``<name>-sentences``) holds the vector of
every sentence of every chunk, written by the indexer before the chunks, so
that answering a question only reads the sentence vectors it ranks instead
of embedding them. Its entries are content-addressed (the id is a hash of the
embedding model and the sentence's exact text) and derived data: a missing
entry (an index built before it existed, a write killed half-way) is
embedded at answer time as before, and a stale one can never be served,
because a changed sentence has another id. So it needs none of the
generation bookkeeping above; ``reset`` drops it with the chunks.

Every call fails with a :class:`StoreUnavailableError` sentence, never a
hang (server requests have a timeout) or a bare chromadb error; a collection
that another process dropped or rebuilt is reopened.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from index.chunking import Chunk
from index.errors import CasebotError, IndexMismatchError, StoreUnavailableError
from index.files import private_dir

log = logging.getLogger(__name__)

EMBEDDING_KEY = "casebot_embedding"
DIMENSION_KEY = "casebot_dimension"
GENERATION_KEY = "casebot_generation"
WRITING_KEY = "casebot_writing"
CALIBRATION_KEY = "casebot_refusal_calibration"
SENTENCES_SUFFIX = "-sentences"
_PAGE = 2000
_SENTENCE_PAGE = 1000  # ids per sentence-vector read or write
_ABSENT_RECHECK_SECONDS = 5.0  # how long a missing sentence collection is believed missing
_READ_RETRY_SECONDS = 600.0  # how long sentence vectors are not read after a failed read
T = TypeVar("T")


def sentence_key(fingerprint: str, sentence: str) -> str:
    """The sentence-vector id of ``sentence`` embedded by the model ``fingerprint``."""
    return hashlib.sha256(f"{fingerprint}\n{sentence}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as read back from the store (text plus flat metadata)."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]

    @property
    def article_id(self) -> str:
        return str(self.metadata.get("article_id", ""))


@dataclass(frozen=True)
class ArticleRecord:
    """What the store knows of one indexed article (from its chunk 0)."""

    article_id: str
    title: str
    outlet: str
    url: str
    published: str
    language: str
    path: str
    content_hash: str
    chunks: int = 0  # how many chunks the article has (0: written before the count was stored)


@dataclass(frozen=True)
class ChromaLocation:
    """Where Chroma lives: a folder (embedded) or a server (host, port)."""

    path: Path | None = None
    host: str = ""
    port: int = 8000
    ssl: bool = False
    timeout: float = 10.0  # seconds per server request
    token: str = field(default="", repr=False)  # never in a repr, a log line or an error message
    token_header: str = "Authorization"  # noqa: S105 - a header name; or "X-Chroma-Token"; Authorization sends "Bearer <token>"

    def describe(self) -> str:
        return f"{self.host}:{self.port}" if self.host else str(self.path)


def open_client(location: ChromaLocation) -> Any:
    """Open an embedded ``PersistentClient`` or an ``HttpClient``, telemetry off.

    With a ``token``, the HTTP client sends it on every request through
    Chroma's own client auth provider (``TokenAuthClientProvider``), as a
    server started with token authentication (or a proxy in front of it)
    expects.
    """
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    auth: dict[str, Any] = {}
    if location.host and location.token:
        auth = {
            "chroma_client_auth_provider": "chromadb.auth.token_authn.TokenAuthClientProvider",
            "chroma_client_auth_credentials": location.token,
            "chroma_auth_token_transport_header": location.token_header,
        }
    settings = ChromaSettings(anonymized_telemetry=False, **auth)
    try:
        if location.host:
            _probe(location)
            client = chromadb.HttpClient(
                host=location.host, port=location.port, ssl=location.ssl, settings=settings
            )
            _limit_request_time(client, location.timeout)
            return client
        assert location.path is not None
        private_dir(location.path)
        client = chromadb.PersistentClient(path=str(location.path), settings=settings)
        private_dir(location.path, recursive=True)
        return client
    except StoreUnavailableError:
        raise
    except Exception as exc:  # chromadb raises several unrelated types here
        detail = str(exc).replace(location.token, "***") if location.token else str(exc)
        raise StoreUnavailableError(
            f"Cannot open the Chroma store at {location.describe()}: {detail}"
        ) from None


def _probe(location: ChromaLocation) -> None:
    """Fail fast when the server does not answer: chromadb's own first requests have no timeout."""
    import httpx

    scheme = "https" if location.ssl else "http"
    url = f"{scheme}://{location.host}:{location.port}/api/v2/heartbeat"
    try:
        httpx.get(url, timeout=location.timeout)
    except httpx.HTTPError as exc:
        raise StoreUnavailableError(
            f"The Chroma server at {location.describe()} does not answer "
            f"({type(exc).__name__}); check that it is running."
        ) from exc


def _limit_request_time(client: Any, seconds: float) -> None:
    """Give the HTTP client's requests a timeout.

    chromadb creates its httpx client with ``timeout=None`` and offers no
    setting for it, so a hung server (a network partition, a stopped
    process) would hold every question forever. The session is reached
    through chromadb's server object; if a chromadb release moves it, the
    warning says so instead of failing silently.
    """
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(seconds)
    else:
        log.warning("cannot set a timeout on Chroma server requests with this chromadb version")


def _is_not_found(exc: Exception) -> bool:
    """chromadb's "collection does not exist" (its type differs by version and mode)."""
    name = type(exc).__name__
    return name in ("NotFoundError", "InvalidCollectionException") or "does not exist" in str(exc)


class ChunkStore:
    """Chunks of one case in one Chroma collection.

    Safe to use from several threads. ``where`` names the store in error
    sentences (a folder or host:port).
    """

    def __init__(self, client: Any, collection_name: str, embedding_fingerprint: str,
                 where: str = "") -> None:
        self._client = client
        self._name = collection_name
        self._fingerprint = embedding_fingerprint
        self._where = where or f"collection {collection_name}"
        self._lock = threading.RLock()
        self._sentences: Any = None  # the sentence-vector collection, opened on first use
        self._sentences_absent_at = -math.inf
        self._sentence_reads_failed_at = -math.inf
        self._open()

    def _open(self, generation: int = 0) -> None:
        try:
            collection = self._client.get_or_create_collection(
                self._name,
                metadata={EMBEDDING_KEY: self._fingerprint, GENERATION_KEY: generation},
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        except Exception as exc:
            raise self._unavailable("open", exc) from exc
        self._use(collection)

    def _use(self, collection: Any) -> None:
        with self._lock:
            self._collection = collection
            self._vectors: Any = None  # llama-index's ChromaVectorStore on it, made by the first write

    def _vector_store(self) -> Any:
        """llama-index's ``ChromaVectorStore`` on the current collection, which writes the chunks."""
        from llama_index.vector_stores.chroma import ChromaVectorStore  # index time only (see query)

        with self._lock:
            if self._vectors is None:
                self._vectors = ChromaVectorStore(chroma_collection=self._collection)
            return self._vectors

    def _reopen(self) -> None:
        """Follow a collection another process dropped and created again (``--rebuild``)."""
        try:
            collection = self._client.get_collection(self._name, embedding_function=None)
        except Exception as exc:
            if _is_not_found(exc):
                raise StoreUnavailableError(
                    "The article index is being rebuilt right now; try again in a minute."
                ) from exc
            raise self._unavailable("open", exc) from exc
        log.info("the collection %s was rebuilt by another process; reopened it", self._name)
        self._use(collection)

    def _unavailable(self, what: str, exc: Exception) -> StoreUnavailableError:
        name = type(exc).__name__
        log.warning("chroma %s failed on %s: %s: %s", what, self._where, name, exc)
        if "Timeout" in name:
            return StoreUnavailableError(
                f"The article index ({self._where}) did not answer in time; try again in a moment."
            )
        if "Connect" in name:
            return StoreUnavailableError(
                f"The article index ({self._where}) cannot be reached; check that the Chroma server runs."
            )
        return StoreUnavailableError(f"The article index ({self._where}) failed to {what} ({name}).")

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one Chroma call; reopen once if the collection was replaced; errors become sentences."""
        try:
            return call()
        except CasebotError:
            raise
        except Exception as exc:
            if not _is_not_found(exc):
                raise self._unavailable(what, exc) from exc
        self._reopen()
        try:
            return call()
        except CasebotError:
            raise
        except Exception as exc:
            raise self._unavailable(what, exc) from exc

    @property
    def name(self) -> str:
        return self._name

    def identity(self) -> str:
        """The collection's id: unique per collection, new after a rebuild."""
        return str(self._collection.id)

    def _metadata(self) -> dict[str, Any]:
        """The collection's current metadata, following a rebuild by another process."""
        collection = self._call("read", lambda: self._client.get_collection(self._name, embedding_function=None))
        if str(collection.id) != str(self._collection.id):
            log.info("the collection %s was rebuilt by another process; switched to it", self._name)
            self._use(collection)
        return dict(collection.metadata or {})

    def ensure_compatible(self) -> None:
        """Refuse to mix vectors: raise if another model built the collection."""
        built_with = (self._collection.metadata or {}).get(EMBEDDING_KEY)
        if built_with and built_with != self._fingerprint:
            raise IndexMismatchError(
                f"The index '{self._name}' was built with the embedding model {built_with}, "
                f"but the settings select {self._fingerprint}. Rebuild it with "
                "`casebot index --rebuild` (or switch the settings back)."
            )

    def reset(self) -> None:
        """Drop and recreate the collection, now owned by the configured model.

        The new collection continues the old generation count, so a reader
        that knew generation n sees n + 1, never the same number again.
        """
        try:
            generation = int(self._metadata().get(GENERATION_KEY, 0)) + 1
        except StoreUnavailableError:
            generation = 0
        try:
            self._client.delete_collection(self._name)
        except Exception as exc:  # chromadb raises NotFoundError or ValueError by version
            if not _is_not_found(exc) and not isinstance(exc, ValueError):
                raise self._unavailable("drop the collection", exc) from exc
            log.debug("collection %s did not exist", self._name)
        self._drop_sentences()
        self._open(generation)

    # --- reading ---------------------------------------------------------------

    def count(self) -> int:
        """Number of chunks stored."""
        return int(self._call("count", lambda: self._collection.count()))  # noqa: PLW0108 - late binding: a reopen swaps the collection

    def generation(self) -> int:
        """A number that changes whenever the indexed content changes."""
        return int(self._metadata().get(GENERATION_KEY, 0))

    def writing(self) -> bool:
        """True while a write is in progress, or after one was killed and not yet finished."""
        return bool(self._metadata().get(WRITING_KEY))

    def articles(self) -> dict[str, ArticleRecord]:
        """Every indexed article with a chunk 0, by id (see :meth:`chunk_layout` for completeness)."""
        result = self._call("read", lambda: self._collection.get(where={"position": 0}, include=["metadatas"]))
        records = {}
        for metadata in result["metadatas"] or []:
            record = ArticleRecord(
                article_id=str(metadata.get("article_id", "")),
                title=str(metadata.get("title", "")),
                outlet=str(metadata.get("outlet", "")),
                url=str(metadata.get("url", "")),
                published=str(metadata.get("published", "")),
                language=str(metadata.get("language", "")),
                path=str(metadata.get("path", "")),
                content_hash=str(metadata.get("content_hash", "")),
                chunks=int(metadata.get("chunks", 0) or 0),
            )
            records[record.article_id] = record
        return records

    def chunk_layout(self) -> dict[str, set[int]]:
        """Positions stored per article key (the chunk-id prefix), from ids alone.

        Cheap enough to read on every run: no documents, no metadata.
        """
        layout: dict[str, set[int]] = {}
        offset = 0
        while True:
            page = self._call("read", lambda at=offset: self._collection.get(  # type: ignore[misc]
                include=[], limit=_PAGE, offset=at))
            ids = page["ids"]
            if not ids:
                return layout
            for chunk_id in ids:
                key, _, position = str(chunk_id).rpartition("-")
                if key and position.isdigit():  # casebot's own ids (see index.chunking.chunk_id)
                    layout.setdefault(key, set()).add(int(position))
            offset += len(ids)

    def iter_chunks(self) -> Iterator[StoredChunk]:
        """Every stored chunk, paged so that memory stays flat."""
        offset = 0
        while True:
            page = self._call("read", lambda at=offset: self._collection.get(  # type: ignore[misc]
                include=["documents", "metadatas"], limit=_PAGE, offset=at
            ))
            ids = page["ids"]
            if not ids:
                return
            for chunk_id, text, metadata in zip(ids, page["documents"] or [], page["metadatas"] or []):
                yield StoredChunk(chunk_id, text or "", _public_metadata(metadata))
            offset += len(ids)

    def _nearest(self, embeddings: Sequence[Sequence[float]], n: int) -> list[list[tuple[StoredChunk, float]]]:
        """For each query vector, its ``n`` nearest chunks with their cosine, in one Chroma call.

        Read from the collection directly: the rows are the ones llama-index's
        ``ChromaVectorStore`` wrote (text as the document, the chunk's fields
        as metadata beside llama-index's own keys), and going through it would
        import llama-index core (1.3 s) into every one-shot ``casebot ask``.
        ``tests/unit/test_refusal.py`` checks that both reads agree.
        """
        result = self._call("search", lambda: self._collection.query(
            query_embeddings=[list(map(float, e)) for e in embeddings], n_results=n,
            include=["documents", "metadatas", "distances"]))
        return [
            # cosine space: distance is 1 - cos
            [(StoredChunk(chunk_id, document or "", _public_metadata(metadata)), 1.0 - float(distance))
             for chunk_id, document, metadata, distance in zip(ids, documents, metadatas, distances)]
            for ids, documents, metadatas, distances in zip(result["ids"], result["documents"] or [],
                                                             result["metadatas"] or [], result["distances"] or [])
        ]

    def best_matches(self, embeddings: Sequence[Sequence[float]]) -> list[tuple[StoredChunk, float] | None]:
        """The nearest chunk of each of many query vectors, with its cosine, in one Chroma call.

        The refusal calibration searches hundreds of pseudo-questions; one
        batched query instead of one call each saves about a second on a
        large case. ``None`` for a query that found nothing (an empty store).
        """
        if not embeddings:
            return []
        return [hits[0] if hits else None for hits in self._nearest(embeddings, 1)]

    def query(self, embedding: Sequence[float], top_k: int) -> list[tuple[StoredChunk, float]]:
        """The ``top_k`` nearest chunks with their cosine similarity (see :meth:`_nearest`)."""
        return next(iter(self._nearest([embedding], top_k)), [])

    def embeddings(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of the given chunks (unit length, cosine space)."""
        if not chunk_ids:
            return {}
        result = self._call("read", lambda: self._collection.get(ids=list(chunk_ids), include=["embeddings"]))
        vectors = result["embeddings"]
        if vectors is None:
            return {}
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(result["ids"], vectors)}

    # --- sentence vectors --------------------------------------------------------

    @property
    def sentences_name(self) -> str:
        return self._name + SENTENCES_SUFFIX

    def _sentence_collection(self, create: bool) -> Any:
        """The sentence-vector collection; None when it does not exist (and ``create`` is false)."""
        with self._lock:
            if self._sentences is not None:
                return self._sentences
            if not create and time.monotonic() - self._sentences_absent_at < _ABSENT_RECHECK_SECONDS:
                return None
        try:
            if create:
                # l2, not cosine: Chroma re-normalises vectors stored in a cosine space, which moves
                # their last bits, and these must come back exactly as the embedder made them.
                collection = self._client.get_or_create_collection(
                    self.sentences_name, metadata={EMBEDDING_KEY: self._fingerprint},
                    configuration={"hnsw": {"space": "l2"}}, embedding_function=None)
            else:
                collection = self._client.get_collection(self.sentences_name, embedding_function=None)
        except Exception as exc:
            if create or not _is_not_found(exc):
                raise self._unavailable("open the sentence vectors", exc) from exc
            with self._lock:
                self._sentences_absent_at = time.monotonic()
            return None
        with self._lock:
            self._sentences = collection
        return collection

    def _sentence_get(self, keys: list[str], include: list[str]) -> dict[str, Any]:
        """``get`` on the sentence collection, following a drop by another process (``--rebuild``)."""
        for attempt in (1, 2):
            collection = self._sentence_collection(create=False)
            if collection is None:
                return {"ids": [], "embeddings": None}
            try:
                return dict(collection.get(ids=keys, include=include))
            except Exception as exc:
                if attempt == 2 or not _is_not_found(exc):
                    raise self._unavailable("read sentence vectors", exc) from exc
                with self._lock:
                    self._sentences = None
                    self._sentences_absent_at = -math.inf
        raise AssertionError("unreachable")

    def sentence_vectors(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of those ``sentences`` that have one (see the module docstring).

        They only save time: when they cannot be read (Chroma's Python
        server fails every ``get`` that includes embeddings), the caller
        embeds the sentences itself, and reads are not tried again for a
        while rather than failing once per question.
        """
        with self._lock:
            if time.monotonic() - self._sentence_reads_failed_at < _READ_RETRY_SECONDS:
                return {}
        by_key = {sentence_key(self._fingerprint, s): s for s in dict.fromkeys(sentences)}
        keys = list(by_key)
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _SENTENCE_PAGE):
            try:
                result = self._sentence_get(keys[start:start + _SENTENCE_PAGE], ["embeddings"])
            except StoreUnavailableError as error:
                log.warning("cannot read stored sentence vectors (%s); embedding sentences instead for %.0f s",
                            error, _READ_RETRY_SECONDS)
                with self._lock:
                    self._sentence_reads_failed_at = time.monotonic()
                return {}
            vectors = result.get("embeddings")
            if vectors is None:
                continue
            for key, vector in zip(result["ids"], vectors):
                found[by_key[key]] = np.asarray(vector, dtype=np.float32)
        return found

    def missing_sentences(self, sentences: Sequence[str]) -> list[str]:
        """Those ``sentences`` (de-duplicated, in order) that have no stored vector yet."""
        by_key = {sentence_key(self._fingerprint, s): s for s in dict.fromkeys(sentences)}
        keys = list(by_key)
        known: set[str] = set()
        for start in range(0, len(keys), _SENTENCE_PAGE):
            known.update(self._sentence_get(keys[start:start + _SENTENCE_PAGE], [])["ids"])
        return [s for key, s in by_key.items() if key not in known]

    def add_sentence_vectors(self, sentences: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
        """Store the vectors of ``sentences`` (an indexer's write; idempotent)."""
        if not sentences:
            return
        keys = [sentence_key(self._fingerprint, s) for s in sentences]
        for start in range(0, len(keys), _SENTENCE_PAGE):
            end = start + _SENTENCE_PAGE
            for attempt in (1, 2):
                collection = self._sentence_collection(create=True)
                try:
                    collection.upsert(ids=keys[start:end], embeddings=[list(v) for v in vectors[start:end]])
                    break
                except Exception as exc:
                    if attempt == 2 or not _is_not_found(exc):  # dropped by another process: reopen once
                        raise self._unavailable("write sentence vectors", exc) from exc
                    with self._lock:
                        self._sentences = None

    def prune_sentences(self, live: set[str]) -> int:
        """Delete the stored sentence vectors whose sentence no stored chunk has any more.

        ``live`` holds the sentences of every chunk in the store. Vectors are
        content-addressed and never stale, but without this the vectors of
        edited and removed articles (an uploaded draft, too) would stay
        forever. Returns how many were deleted. An indexer's write.
        """
        collection = self._sentence_collection(create=False)
        if collection is None:
            return 0
        keep = {sentence_key(self._fingerprint, sentence) for sentence in live}
        stale: list[str] = []
        offset = 0
        try:
            while True:
                ids = collection.get(include=[], limit=_PAGE, offset=offset)["ids"]
                if not ids:
                    break
                stale += [key for key in ids if key not in keep]
                offset += len(ids)
            for start in range(0, len(stale), _SENTENCE_PAGE):
                collection.delete(ids=stale[start:start + _SENTENCE_PAGE])
        except Exception as exc:
            if _is_not_found(exc):  # dropped by a --rebuild in between: nothing left to prune
                return 0
            raise self._unavailable("prune sentence vectors", exc) from exc
        return len(stale)

    def _drop_sentences(self) -> None:
        with self._lock:
            self._sentences = None
            self._sentences_absent_at = -math.inf
        try:
            self._client.delete_collection(self.sentences_name)
        except Exception as exc:  # chromadb raises NotFoundError or ValueError by version
            if not _is_not_found(exc) and not isinstance(exc, ValueError):
                raise self._unavailable("drop the sentence vectors", exc) from exc

    # --- writing ---------------------------------------------------------------

    def replace_articles(self, articles: Sequence[tuple[str, Sequence[Chunk], Sequence[Sequence[float]]]]) -> None:
        """Replace the chunks of several articles, crash-safely and in few calls.

        Old chunks go first (chunk 0 first of all, so the articles read as not
        indexed), then every new chunk but the chunks 0, then the chunks 0.
        A kill anywhere in between leaves an article without chunk 0, or
        without all of its positions, which the next run rewrites. One add
        call per batch instead of one per article keeps the store's share of
        indexing time small. Call between :meth:`begin_write` and
        :meth:`end_write`.
        """
        from llama_index.core.schema import BaseNode, TextNode  # index time only (see query)

        for article_id, _, _ in articles:
            self.remove_article(article_id)
        nodes: list[BaseNode] = [
            TextNode(id_=chunk.chunk_id, text=chunk.text, metadata=chunk.metadata,
                     embedding=list(vector),
                     excluded_embed_metadata_keys=list(chunk.metadata),
                     excluded_llm_metadata_keys=list(chunk.metadata))
            for _, chunks, vectors in articles
            for chunk, vector in zip(chunks, vectors)
        ]
        body = [n for n in nodes if n.metadata["position"] != 0]
        heads = [n for n in nodes if n.metadata["position"] == 0]
        for part in (body, heads):
            if part:
                self._call("write", lambda part=part: self._vector_store().add(part))  # type: ignore[misc]

    def remove_article(self, article_id: str) -> None:
        """Delete every chunk of one article (chunk 0 first)."""
        self._call("delete", lambda: self._collection.delete(
            where={"$and": [{"article_id": article_id}, {"position": 0}]}))
        self._call("delete", lambda: self._collection.delete(where={"article_id": article_id}))

    def remove_chunks(self, chunk_ids: Sequence[str]) -> None:
        """Delete chunks by id (the torn remains of an article whose chunk 0 is gone)."""
        ids = sorted(chunk_ids)  # chunk 0 (suffix -00000) of each article sorts first
        for start in range(0, len(ids), _PAGE):
            page = ids[start:start + _PAGE]
            self._call("delete", lambda page=page: self._collection.delete(ids=page))  # type: ignore[misc]

    def begin_write(self) -> int:
        """Mark a write in progress and bump the generation before any chunk changes."""
        return self._set_generation(writing=True)

    def end_write(self) -> int:
        """Bump the generation again and clear the mark once every chunk is written."""
        return self._set_generation(writing=False)

    def _set_generation(self, writing: bool) -> int:
        generation = self.generation() + 1
        self._set_metadata({EMBEDDING_KEY: self._fingerprint, GENERATION_KEY: generation,
                            WRITING_KEY: int(writing)})
        return generation

    def calibration(self) -> str:
        """The refusal calibration stored with the collection (JSON; empty if none)."""
        return str(self._metadata().get(CALIBRATION_KEY, ""))

    def set_calibration(self, value: str) -> None:
        """Store the refusal calibration beside the embedding fingerprint, for every process."""
        self._set_metadata({CALIBRATION_KEY: value})

    def _set_metadata(self, values: dict[str, Any]) -> None:
        """Update some collection metadata keys, keeping the others (``modify`` replaces them all)."""
        current = self._metadata()
        current.update(values)
        self._call("write", lambda: self._collection.modify(metadata=current))


_LLAMA_KEYS = frozenset({"_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id"})


def _public_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (metadata or {}).items() if k not in _LLAMA_KEYS}
