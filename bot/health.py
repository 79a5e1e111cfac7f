"""``GET /healthz`` and ``GET /metrics`` of ``casebot run`` (``CASEBOT_METRICS__PORT``).

``/healthz`` answers 200 with a JSON body while every adapter is connected
and the index can be read, and 503 with ``{"status": "unhealthy", "reason":
...}`` otherwise (also while the bot is still starting). ``/metrics`` is
the :class:`~bot.metrics.Metrics` registry in Prometheus' text format.

Both read the index size in a worker thread with a deadline, so a hung
Chroma server makes the health check fail instead of hanging it, and the
event loop never blocks. Nothing secret is ever in a response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.metrics import Metrics
from index.case import IndexStats

log = logging.getLogger(__name__)

_INDEX_DEADLINE_S = 5.0


class Monitored(Protocol):
    """An adapter as the health check sees it."""

    name: str

    def problem(self) -> str | None:
        """None while connected and receiving messages; else why not, in a few words."""
        ...


class HealthServer:
    """A small aiohttp server on the bot's event loop; :meth:`start`/:meth:`stop` like an adapter."""

    def __init__(self, host: str, port: int, metrics: Metrics, index_stats: Callable[[], IndexStats]) -> None:
        self._host = host
        self._port = port
        self._metrics = metrics
        self._index_stats = index_stats
        self._adapters: Sequence[Monitored] = ()
        self._phase = "starting"
        self._runner: web.AppRunner | None = None

    def starting(self, what: str) -> None:
        """Report 503 ``starting: <what>`` until :meth:`running` is called."""
        self._phase = f"starting: {what}"

    def running(self, adapters: Sequence[Monitored]) -> None:
        """From now on the health is that of ``adapters`` and the index."""
        self._adapters = adapters
        self._phase = ""

    def stopping(self) -> None:
        self._phase = "stopping"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as error:
            await self.stop()
            raise OSError(f"cannot listen on {self._host}:{self._port} (CASEBOT_METRICS__HOST/PORT): "
                          f"{error.strerror or error}") from None
        log.info("health and metrics on http://%s:%d/healthz and /metrics", self._host, self._port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _index(self) -> tuple[IndexStats | None, str | None]:
        try:
            stats = await asyncio.wait_for(asyncio.to_thread(self._index_stats), _INDEX_DEADLINE_S)
        except TimeoutError:
            return None, f"index: no answer within {_INDEX_DEADLINE_S:.0f} s"
        except Exception as error:  # whatever the store raises, the check reports it
            return None, f"index: {type(error).__name__}: {error}"
        self._metrics.observe_index(stats)
        if stats.chunks == 0:
            return stats, "index: empty"
        return stats, None

    async def _healthz(self, _request: web.Request) -> web.Response:
        if self._phase:
            return web.json_response({"status": "unhealthy", "reason": self._phase}, status=503)
        problems = {a.name: a.problem() for a in self._adapters}
        stats, index_problem = await self._index()
        reasons = [f"{name}: {problem}" for name, problem in problems.items() if problem]
        if index_problem:
            reasons.append(index_problem)
        body: dict[str, object] = {
            "status": "unhealthy" if reasons else "ok",
            "adapters": {name: problem or "connected" for name, problem in problems.items()},
        }
        if stats is not None:
            body["index"] = {"articles": stats.articles, "chunks": stats.chunks}
        if reasons:
            body["reason"] = "; ".join(reasons)
        return web.json_response(body, status=503 if reasons else 200)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        await self._index()  # fresh index gauges; a failure shows in /healthz, not here
        return web.Response(body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
