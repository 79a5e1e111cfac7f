"""The wrapper that gives llama-index's remote embedders (OpenAI-compatible, Ollama) a model's prefixes.

Kept apart from :mod:`index.embeddings` because it is a llama-index
``BaseEmbedding``: importing it loads llama-index core, which only these
providers need.
"""

from __future__ import annotations

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import PrivateAttr


class PrefixedEmbedding(BaseEmbedding):
    """Adds the model's query/passage prefixes to a remote embedder's input."""

    _inner: BaseEmbedding = PrivateAttr()
    _query_prefix: str = PrivateAttr(default="")
    _passage_prefix: str = PrivateAttr(default="")

    def __init__(self, inner: BaseEmbedding, query_prefix: str, passage_prefix: str) -> None:
        super().__init__(model_name=inner.model_name, embed_batch_size=inner.embed_batch_size)
        self._inner = inner
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix

    def identity_parts(self) -> list[str]:
        """What besides the model name changes the vectors (see :func:`index.embeddings.embedding_identity`)."""
        return [type(self._inner).__name__, self._query_prefix, self._passage_prefix]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._inner.get_query_embedding(self._query_prefix + query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._inner.aget_query_embedding(self._query_prefix + query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._inner.get_text_embedding(self._passage_prefix + text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._inner.get_text_embedding_batch([self._passage_prefix + t for t in texts])

    def query_embedding_batch(self, queries: list[str]) -> np.ndarray:
        """Many queries in one request: these remote APIs embed a query like a text, after its prefix."""
        vectors = self._inner.get_text_embedding_batch([self._query_prefix + q for q in queries])
        return np.asarray(vectors, dtype=np.float32).reshape(len(queries), -1)
