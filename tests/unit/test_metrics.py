"""The metrics registry and the stored /stats totals, without a running bot."""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bot.feedback import FeedbackStore
from bot.metrics import ADAPTER, Metrics
from index.case import IndexStats
from index.pipeline import IndexReport


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    page = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page) for s in family.samples}


def test_index_runs_and_failures_are_recorded() -> None:
    metrics = Metrics()
    metrics.on_index(IndexReport(added=2, failed=1), IndexStats(articles=2, chunks=18))
    page = samples(metrics)
    assert page[("casebot_last_index_success", ())] == 1
    assert page[("casebot_last_index_articles", (("result", "added"),))] == 2
    assert page[("casebot_last_index_articles", (("result", "failed"),))] == 1
    assert page[("casebot_index_chunks", ())] == 18
    assert page[("casebot_last_index_timestamp_seconds", ())] > 0

    token = ADAPTER.set("telegram")
    try:
        metrics.on_index(None, None)
    finally:
        ADAPTER.reset(token)
    page = samples(metrics)
    assert page[("casebot_last_index_success", ())] == 0
    assert page[("casebot_errors_total", (("adapter", "telegram"), ("kind", "index")))] == 1


def test_logged_errors_are_counted_by_logger() -> None:
    metrics = Metrics()
    logger = logging.getLogger("casebot.test.metrics")
    logger.addHandler(metrics.log_handler)
    try:
        logger.error("handling update 1 failed")
        logger.warning("a retry is no error")
    finally:
        logger.removeHandler(metrics.log_handler)
    assert samples(metrics)[("casebot_logged_errors_total", (("logger", "casebot.test.metrics"),))] == 1


def test_stats_totals_survive_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    assert FeedbackStore(path).counters() == {}
    assert not path.exists()  # reading creates nothing
    FeedbackStore(path).add_to_counter("answered")
    FeedbackStore(path).add_to_counter("answered")
    FeedbackStore(path).add_to_counter("refused")
    assert FeedbackStore(path).counters() == {"answered": 2, "refused": 1}
