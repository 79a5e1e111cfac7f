"""SIGKILL of the real ``casebot index`` process at named points, then a clean run.

After the kill and one ordinary ``casebot index``, the store must hold exactly
the chunks of an index built from scratch (same ids, same content), and the
keyword index must cover every stored chunk. The kill points are chromadb
calls (see tests/kill_harness.py); each scenario's write sequence is
begin_write (modify 1), deletes, add of the body chunks, add of the chunks 0,
end_write (modify 2).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import build_services
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.slow

SENTENCES = [
    "Die Firma {n} aus Zug hat im Jahr {y} rund {k} Millionen SMS verschickt.",
    "Laut der Behörde prüft die Staatsanwaltschaft seit {y} die Geschäfte von {n}.",
    "Ein Sprecher von {n} wies die Vorwürfe am {k}. März {y} zurück.",
    "Der Verwaltungsrat von {n} trat nach {k} Sitzungen geschlossen zurück.",
]


def article(slug: str, name: str, sentences: int) -> str:
    body = []
    for i in range(sentences):
        body.append(SENTENCES[i % len(SENTENCES)].format(n=name, y=2000 + i, k=i + 3))
        if i % 3 == 2:
            body.append("")
    text = " ".join(body).replace("  ", "\n\n")
    return (f'---\ntitle: "{name} im Visier"\noutlet: Testblatt\nurl: https://example.org/{slug}\n'
            f'published: "2022-02-10"\n---\n{text}\n')


def casebot(data: Path, articles: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``casebot ARGS`` (through the kill harness when ``kill_at`` is given) as its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CASEBOT_DATA_DIR": str(data),
           "CASEBOT_ARTICLES_DIR": str(articles), "CASEBOT_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "tests.kill_harness", kill_at, *args] if kill_at else \
        [sys.executable, "-m", "bot.cli", *args]
    # cwd: the test's folder, so that no .env of the checkout is read.
    return subprocess.run(command, env=env, cwd=data.parent, capture_output=True, text=True, timeout=300,
                          check=False)


def snapshot(data: Path, articles: Path) -> tuple[dict[str, str], int, int]:
    """(chunk id -> content hash + text, store count, keyword index size), read in this process."""
    services = build_services(make_settings(data, articles))
    store = services.case._store
    chunks = {c.chunk_id: f"{c.metadata.get('content_hash')}:{c.text}" for c in store.iter_chunks()}
    keywords = services.case.answerer._retriever.keyword_index()  # type: ignore[attr-defined]
    return chunks, store.count(), len(keywords)


def write_case(folder: Path, long_a: bool = True, with_b: bool = True) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "a.md").write_text(article("a", "Mitto", 40 if long_a else 14), encoding="utf-8")
    (folder / "c.md").write_text(article("c", "Alpentel", 8), encoding="utf-8")
    if with_b:
        (folder / "b.md").write_text(article("b", "Vektorcom", 10), encoding="utf-8")
    else:
        (folder / "b.md").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, str], int, int]]:
    """Snapshots of clean indexes of the final states the scenarios end in."""
    result = {}
    for name, long_a, with_b in (("shrunk", False, True), ("without-b", True, False)):
        root = tmp_path_factory.mktemp(f"fresh-{name}")
        write_case(root / "articles", long_a, with_b)
        done = casebot(root / "data", root / "articles", "index")
        assert done.returncode == 0, done.stderr
        result[name] = snapshot(root / "data", root / "articles")
    return result


# Where the kill lands while article a is rewritten shorter.
SHRINK_POINTS = ["modify:1", "delete:1", "delete:2", "add:1:half", "add:2", "add:2:half", "modify:2"]


@pytest.mark.parametrize("point", SHRINK_POINTS)
def test_killed_while_an_article_shrinks(tmp_path: Path, point: str, fresh: dict) -> None:  # type: ignore[type-arg]
    articles, data = tmp_path / "articles", tmp_path / "data"
    write_case(articles)
    assert casebot(data, articles, "index").returncode == 0
    write_case(articles, long_a=False)
    killed = casebot(data, articles, "index", kill_at=point)
    assert killed.returncode == -9, (point, killed.returncode, killed.stderr[-2000:])

    done = casebot(data, articles, "index")
    assert done.returncode == 0, done.stderr
    chunks, count, keywords = snapshot(data, articles)
    expected, expected_count, _ = fresh["shrunk"]
    assert chunks == expected  # no stale tail, nothing missing, every chunk of the new text
    assert keywords == count == expected_count


@pytest.mark.parametrize("point", ["add:1:half", "add:2", "delete:2"])
def test_a_half_written_article_whose_file_is_deleted_is_pruned(tmp_path: Path, point: str,
                                                                 fresh: dict) -> None:  # type: ignore[type-arg]
    articles, data = tmp_path / "articles", tmp_path / "data"
    write_case(articles, with_b=False)
    assert casebot(data, articles, "index").returncode == 0
    write_case(articles)  # b is new
    killed = casebot(data, articles, "index", kill_at=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (articles / "b.md").unlink()

    done = casebot(data, articles, "index", "--prune")
    assert done.returncode == 0, done.stderr
    chunks, count, keywords = snapshot(data, articles)
    expected, expected_count, _ = fresh["without-b"]
    assert chunks == expected
    assert keywords == count == expected_count


def test_killed_before_the_last_generation_bump_readers_still_see_everything(tmp_path: Path) -> None:
    articles, data = tmp_path / "articles", tmp_path / "data"
    write_case(articles, with_b=False)
    assert casebot(data, articles, "index").returncode == 0
    first = casebot(data, articles, "ask", "Wer prüft die Geschäfte von Mitto?")
    assert first.returncode == 0, first.stderr  # a reader cached the keyword index of this generation
    write_case(articles)
    killed = casebot(data, articles, "index", kill_at="modify:2")  # every chunk written, no final bump
    assert killed.returncode == -9

    done = casebot(data, articles, "index")
    assert done.returncode == 0, done.stderr
    assert "added 0, updated 0, unchanged 3" in done.stdout  # nothing to write, but the run is finished
    chunks, count, keywords = snapshot(data, articles)
    assert keywords == count == len(chunks)
    answer = casebot(data, articles, "ask", "Wann trat der Verwaltungsrat von Vektorcom zurück?")
    assert "Vektorcom" in answer.stdout, answer.stdout + answer.stderr
