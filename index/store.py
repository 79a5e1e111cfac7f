"""The Chroma store, through llama-index's ``ChromaVectorStore``.

One collection holds every chunk with its vector, text and attribution; it is
the single source of truth (no side docstore that could disagree with it).
An article counts as indexed when its chunk 0 exists: chunk 0 is written
last and deleted first, so an interrupted write is redone on the next run.
The collection's metadata records the embedding model that built it and a
generation number that every change bumps, so that other processes sharing a
Chroma server know when to reload their keyword index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.vector_stores.chroma import ChromaVectorStore

from index.chunking import Chunk
from index.errors import IndexMismatchError, StoreUnavailableError

log = logging.getLogger(__name__)

EMBEDDING_KEY = "casebot_embedding"
DIMENSION_KEY = "casebot_dimension"
GENERATION_KEY = "casebot_generation"
CALIBRATION_KEY = "casebot_refusal_calibration"
_PAGE = 2000


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


@dataclass(frozen=True)
class ChromaLocation:
    """Where Chroma lives: a folder (embedded) or a server (host, port)."""

    path: Path | None = None
    host: str = ""
    port: int = 8000
    ssl: bool = False
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
            return chromadb.HttpClient(
                host=location.host, port=location.port, ssl=location.ssl, settings=settings
            )
        assert location.path is not None
        location.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(location.path), settings=settings)
    except Exception as exc:  # chromadb raises several unrelated types here
        detail = str(exc).replace(location.token, "***") if location.token else str(exc)
        raise StoreUnavailableError(
            f"Cannot open the Chroma store at {location.describe()}: {detail}"
        ) from None


class ChunkStore:
    """Chunks of one case in one Chroma collection."""

    def __init__(self, client: Any, collection_name: str, embedding_fingerprint: str) -> None:
        self._client = client
        self._name = collection_name
        self._fingerprint = embedding_fingerprint
        self._open()

    def _open(self) -> None:
        try:
            self._collection = self._client.get_or_create_collection(
                self._name,
                metadata={EMBEDDING_KEY: self._fingerprint, GENERATION_KEY: 0},
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        except Exception as exc:
            raise StoreUnavailableError(f"Cannot open the Chroma collection '{self._name}': {exc}") from exc
        self._vectors = ChromaVectorStore(chroma_collection=self._collection)

    @property
    def name(self) -> str:
        return self._name

    def identity(self) -> str:
        """The collection's id: unique per collection, new after a rebuild."""
        return str(self._collection.id)

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
        """Drop and recreate the collection, now owned by the configured model."""
        try:
            self._client.delete_collection(self._name)
        except Exception:  # chromadb raises NotFoundError or ValueError by version
            log.debug("collection %s did not exist", self._name)
        self._open()

    # --- reading ---------------------------------------------------------------

    def count(self) -> int:
        """Number of chunks stored."""
        return int(self._collection.count())

    def generation(self) -> int:
        """A number that changes whenever the indexed content changes."""
        metadata = self._client.get_collection(self._name).metadata or {}
        return int(metadata.get(GENERATION_KEY, 0))

    def articles(self) -> dict[str, ArticleRecord]:
        """Every completely indexed article, by id."""
        result = self._collection.get(where={"position": 0}, include=["metadatas"])
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
            )
            records[record.article_id] = record
        return records

    def iter_chunks(self) -> Iterator[StoredChunk]:
        """Every stored chunk, paged so that memory stays flat."""
        offset = 0
        while True:
            page = self._collection.get(
                include=["documents", "metadatas"], limit=_PAGE, offset=offset
            )
            ids = page["ids"]
            if not ids:
                return
            for chunk_id, text, metadata in zip(ids, page["documents"] or [], page["metadatas"] or []):
                yield StoredChunk(chunk_id, text or "", _public_metadata(metadata))
            offset += len(ids)

    def query(self, embedding: Sequence[float], top_k: int) -> list[tuple[StoredChunk, float]]:
        """The ``top_k`` nearest chunks with their cosine similarity."""
        result = self._vectors.query(
            VectorStoreQuery(query_embedding=list(embedding), similarity_top_k=top_k),
            include=["documents", "metadatas", "distances"],
        )
        hits = []
        for node, similarity in zip(result.nodes or [], result.similarities or []):
            # ChromaVectorStore reports exp(-distance); cosine distance is 1 - cos.
            cosine = 1.0 + math.log(max(similarity, 1e-12))
            hits.append((StoredChunk(node.node_id, node.get_content(), dict(node.metadata)), cosine))
        return hits

    def embeddings(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of the given chunks (unit length, cosine space)."""
        if not chunk_ids:
            return {}
        result = self._collection.get(ids=list(chunk_ids), include=["embeddings"])
        vectors = result["embeddings"]
        if vectors is None:
            return {}
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(result["ids"], vectors)}

    # --- writing ---------------------------------------------------------------

    def replace_articles(self, articles: Sequence[tuple[str, Sequence[Chunk], Sequence[Sequence[float]]]]) -> None:
        """Replace the chunks of several articles, crash-safely and in few calls.

        Old chunks go first (chunk 0 among them, so the articles read as not
        indexed), then every new chunk but the chunks 0, then the chunks 0.
        A crash anywhere in between leaves an article without chunk 0, and the
        next run re-indexes it. One add call per batch instead of one per
        article keeps the store's share of indexing time small.
        """
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
                self._vectors.add(part)

    def remove_article(self, article_id: str) -> None:
        """Delete every chunk of one article (chunk 0 first)."""
        self._collection.delete(where={"$and": [{"article_id": article_id}, {"position": 0}]})
        self._collection.delete(where={"article_id": article_id})

    def bump_generation(self) -> int:
        """Record that the content changed; returns the new generation."""
        generation = self.generation() + 1
        self._set_metadata({EMBEDDING_KEY: self._fingerprint, GENERATION_KEY: generation})
        return generation

    def calibration(self) -> str:
        """The refusal calibration stored with the collection (JSON; empty if none)."""
        metadata = self._client.get_collection(self._name).metadata or {}
        return str(metadata.get(CALIBRATION_KEY, ""))

    def set_calibration(self, value: str) -> None:
        """Store the refusal calibration beside the embedding fingerprint, for every process."""
        self._set_metadata({CALIBRATION_KEY: value})

    def _set_metadata(self, values: dict[str, Any]) -> None:
        """Update some collection metadata keys, keeping the others."""
        current = dict(self._client.get_collection(self._name).metadata or {})
        current.update(values)
        self._collection.modify(metadata=current)


_LLAMA_KEYS = frozenset({"_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id"})


def _public_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (metadata or {}).items() if k not in _LLAMA_KEYS}
