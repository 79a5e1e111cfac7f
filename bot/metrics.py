"""What ``/stats`` and ``GET /metrics`` report: answers, refusals, errors, latency, the index.

:class:`Metrics` holds prometheus-client instruments in its own registry
(no process-global registry, so two services in one test process do not
collide). The answered/refused totals of ``/stats`` are also added to the
:class:`~bot.feedback.FeedbackStore` (SQLite under the data dir), so they
survive a restart.

Which adapter a question came through is read from :data:`ADAPTER`, a
context variable that :func:`bot.app.run_adapters` sets in the context each
adapter is started in: every task an adapter spawns inherits it, so the
neutral conversation code needs no platform argument.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.feedback import FeedbackStore
from index.answer import Answer
from index.case import IndexStats
from index.pipeline import IndexReport

ADAPTER: ContextVar[str] = ContextVar("casebot_adapter", default="cli")
"""The adapter the current task serves (``telegram``, ``matrix``; ``cli`` outside ``run``)."""

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

class Metrics:
    """The Prometheus instruments of one process, and the hooks that feed them."""

    def __init__(self, stats: FeedbackStore | None = None, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._stats = stats
        r = self.registry
        self.questions = Counter("casebot_questions", "Questions handled, by adapter and outcome "
                                 "(answered, refused, error).", ["adapter", "outcome"], registry=r)
        self.errors = Counter("casebot_errors", "Failures while answering or indexing, by adapter and kind.",
                              ["adapter", "kind"], registry=r)
        self.latency = Histogram("casebot_answer_seconds", "Time to answer one question (retrieval included).",
                                 ["adapter"], buckets=_LATENCY_BUCKETS, registry=r)
        self.articles = Gauge("casebot_index_articles", "Articles in the index.", registry=r)
        self.chunks = Gauge("casebot_index_chunks", "Chunks in the index.", registry=r)
        self.last_index = Gauge("casebot_last_index_timestamp_seconds",
                                "When the last indexing run ended (Unix time).", registry=r)
        self.last_index_ok = Gauge("casebot_last_index_success",
                                   "1 if the last indexing run succeeded, 0 if it failed.", registry=r)
        self.last_index_articles = Gauge("casebot_last_index_articles",
                                         "Articles of the last indexing run, by result.", ["result"], registry=r)
        self.logged_errors = Counter("casebot_logged_errors", "Records logged at ERROR or above, by logger "
                                     "(a failed update handler, a stopped sync loop, ...).", ["logger"], registry=r)
        self.log_handler: logging.Handler = _ErrorCounter(self.logged_errors)
        """Attach to the root logger while the bot runs (:func:`bot.app.run_adapters` does)."""

    async def on_answer(self, answer: Answer | None, seconds: float) -> None:
        """Count one question (``answer`` None: answering failed) and persist the /stats totals."""
        adapter = ADAPTER.get()
        if answer is None:
            self.questions.labels(adapter, "error").inc()
            self.errors.labels(adapter, "answer").inc()
            return
        outcome = "refused" if answer.refused else "answered"
        self.questions.labels(adapter, outcome).inc()
        self.latency.labels(adapter).observe(seconds)
        if self._stats is not None:
            await asyncio.to_thread(self._stats.add_to_counter, outcome)

    def on_index(self, report: IndexReport | None, stats: IndexStats | None) -> None:
        """Record an indexing run's end (``report`` None: it failed) and the index size after it."""
        self.last_index.set(time.time())
        self.last_index_ok.set(0 if report is None else 1)
        if report is None:
            self.errors.labels(ADAPTER.get(), "index").inc()
        else:
            for result in ("added", "updated", "unchanged", "removed", "failed"):
                self.last_index_articles.labels(result).set(getattr(report, result))
        if stats is not None:
            self.observe_index(stats)

    def observe_index(self, stats: IndexStats) -> None:
        self.articles.set(stats.articles)
        self.chunks.set(stats.chunks)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class _ErrorCounter(logging.Handler):
    """Counts ERROR records; writes nothing (the configured handler does that)."""

    def __init__(self, counter: Counter) -> None:
        super().__init__(logging.ERROR)
        self._counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self._counter.labels(record.name).inc()
