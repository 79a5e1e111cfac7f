"""The one composition root: Settings -> index services -> conversation -> adapters.

Nothing else in casebot constructs a service from settings; everything is
passed in through constructors from here. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bot.conversation import Conversation, Counters
from bot.feedback import FeedbackStore
from bot.metrics import ADAPTER, Metrics
from bot.settings import Settings, case_name, collection_name
from index.answer import AnswerPolicy, ExtractiveAnswerer
from index.case import CaseIndex
from index.embeddings import EmbeddingSpec, build_embedding
from index.errors import CasebotError
from index.files import private_dir
from index.grounded import GroundedAnswerer
from index.llm import ChatModel, LLMSpec
from index.pipeline import Indexer, ServingLock
from index.prompts import PromptLibrary
from index.refusal import RefusalPolicy
from index.retrieve import HybridRetriever
from index.store import ChromaLocation, ChunkStore, open_client
from index.support import SupportChecker


@dataclass(frozen=True)
class Services:
    """Everything built from settings, shared by every adapter of one process."""

    settings: Settings
    case: CaseIndex
    prompts: PromptLibrary
    conversation: Conversation
    feedback: FeedbackStore
    metrics: Metrics
    serving_lock: ServingLock | None = None  # embedded Chroma: held by `casebot run`


def embedding_spec(settings: Settings) -> EmbeddingSpec:
    e = settings.embedding
    return EmbeddingSpec(
        provider=e.provider, model=e.model, base_url=e.base_url,
        api_key=e.api_key.get_secret_value(), query_prefix=e.query_prefix,
        passage_prefix=e.passage_prefix, batch_size=e.batch_size, timeout=e.timeout,
    )


def llm_spec(settings: Settings) -> LLMSpec:
    m = settings.llm
    return LLMSpec(
        provider=m.provider, model=m.model, base_url=m.base_url, api_key=m.api_key.get_secret_value(),
        model_path=m.model_path, timeout=m.timeout, max_retries=m.max_retries, max_tokens=m.max_tokens,
        temperature=m.temperature, context_window=m.context_window, threads=m.threads,
    )


def build_case(settings: Settings, prompts: PromptLibrary, metrics: Metrics | None = None,
               serving_lock: ServingLock | None = None) -> CaseIndex:
    """Embedding model, Chroma store, indexer and answerer for the configured case.

    The collection is the case's own (:func:`~bot.settings.collection_name`),
    so pointing ``CASEBOT_ARTICLES_DIR`` at another case never mixes two.
    """
    # Chroma and tokenizers must not phone home or fight over threads.
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The embedder's OpenMP threads would spin while waiting; on a busy machine
    # (a bot beside an indexer, two cores) that turns 20 ms queries into 150 ms.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    spec = embedding_spec(settings)
    embedding = build_embedding(spec)
    c = settings.chroma
    location = ChromaLocation(
        path=settings.data_dir / "chroma", host=c.host, port=c.port, ssl=c.ssl,
        token=c.token.get_secret_value(), token_header=c.token_header, timeout=c.timeout,
    )
    store = ChunkStore(open_client(location), collection_name(settings), spec.fingerprint,
                       where=location.describe())
    r = settings.retrieval
    indexer = Indexer(store, embedding, settings.data_dir / "index.lock",
                      chunk_chars=r.chunk_chars, chunk_overlap=r.chunk_overlap,
                      batch_size=settings.embedding.batch_size, articles_root=settings.articles_dir,
                      serving_lock=serving_lock, sentence_vectors=r.sentence_vectors)
    retriever = HybridRetriever(store, embedding, dense_top_k=r.dense_top_k,
                                keyword_top_k=r.keyword_top_k, rrf_k=r.rrf_k,
                                refresh_seconds=r.refresh_seconds, cache_dir=settings.data_dir / "cache")
    a = settings.answer
    policy = AnswerPolicy(max_sentences=a.max_sentences, max_quote_chars=a.max_quote_chars)
    refusal = RefusalPolicy(false_refusal_rate=a.false_refusal_rate)
    answerer = ExtractiveAnswerer(retriever, embedding, prompts, policy, settings.default_language,
                                  cache_dir=settings.data_dir / "cache", store=store, refusal_policy=refusal)
    on_index = metrics.on_index if metrics is not None else None
    model_spec = llm_spec(settings)
    if not model_spec.enabled:
        return CaseIndex(store, indexer, answerer, settings.articles_dir, on_index=on_index)
    # The model is built on first use (or in warm_up): an unreachable server or a
    # missing GGUF file must not stop the bot; answers fall back to extractive.
    grounded = GroundedAnswerer(answerer, retriever, ChatModel(model_spec), prompts, SupportChecker(embedding),
                                default_language=settings.default_language)
    logging.getLogger(__name__).info("answers are written by the language model %s", model_spec.describe())
    return CaseIndex(store, indexer, grounded, settings.articles_dir, on_index=on_index)


def build_services(settings: Settings) -> Services:
    """Build every service of the process from ``settings``."""
    private_dir(settings.data_dir)
    prompts = PromptLibrary()
    # Embedded Chroma is one process's: `casebot run` holds this while it serves.
    serving_lock = None if settings.chroma.host else ServingLock(settings.data_dir / "serving.lock")
    feedback = FeedbackStore(settings.data_dir / "feedback.sqlite3")  # also the /stats totals
    metrics = Metrics(feedback)
    case = build_case(settings, prompts, metrics, serving_lock)
    stored = feedback.counters()
    counters = Counters(answered=stored.get("answered", 0), refused=stored.get("refused", 0))
    conversation = Conversation(case, prompts, settings.chat, settings.default_language,
                                case_name=case_name(settings), feedback=feedback,
                                counters=counters, on_answer=metrics.on_answer)
    return Services(settings, case, prompts, conversation, feedback, metrics, serving_lock)


class Adapter(Protocol):
    """A chat platform connection with a symmetric lifecycle.

    ``start`` returns once the adapter receives messages (and cleans up after
    itself if it fails); ``stop`` is safe to call after a failed start.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def problem(self) -> str | None:
        """None while connected and receiving; else why not (for ``/healthz``)."""
        ...


def build_adapter(name: str, services: Services, on_fatal: Callable[[str], None] | None = None) -> Adapter:
    """Construct one adapter from settings (imports its platform library lazily).

    ``on_fatal`` is how an adapter reports an error it cannot recover from
    (default: a SIGTERM to this process, which :func:`run_adapters` handles).
    """
    if name == "telegram":
        from bot.telegram.adapter import TelegramAdapter

        settings = services.settings
        return TelegramAdapter(services.conversation, settings.telegram, services.feedback, services.prompts,
                               settings.data_dir, settings.default_language,
                               concurrent_updates=max(32, 8 * settings.chat.max_concurrent_answers),
                               on_fatal=on_fatal, thinking_message=services.case.writes_with_llm)
    if name == "matrix":
        from bot.matrix.adapter import MatrixAdapter, request_shutdown

        settings = services.settings
        return MatrixAdapter(services.conversation, settings.matrix, services.feedback, services.prompts,
                             settings.data_dir, default_language=settings.default_language,
                             on_fatal=on_fatal or request_shutdown)
    raise CasebotError(f"The {name} adapter is not available in this version.")


T = TypeVar("T")

STOP_GRACE_S = 3.0
"""How long a stopping adapter may finish the answers in hand before they are dropped."""


class Shutdown:
    """How the process stops: a signal, or an adapter that cannot go on.

    Adapters report fatal errors (a revoked token, say) through :meth:`fail`
    instead of exiting; :func:`run_adapters` then stops every adapter in
    order and raises the reason, so the command exits non-zero with it.
    ``requested`` is the same stop as a :class:`threading.Event`, for work
    in worker threads (an index being built) that must give up early.
    """

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.requested = threading.Event()
        self.reason = ""
        # Blocking work (an index build, a model load) that was left running in a worker thread
        # when the stop came: the process should not wait for it at exit.
        self.abandoned_work = False

    def stop(self) -> None:
        """Stop without an error (SIGINT, SIGTERM)."""
        self.requested.set()
        self.event.set()

    def fail(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.stop()

    async def unless_stopped(self, work: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> T:
        """Await ``work``, or cancel it as soon as a stop is requested and raise :class:`Stopped`.

        This is what makes SIGTERM end the process within seconds at any
        point of the start-up, retries and back-off waits included.
        """
        task = asyncio.get_running_loop().create_task(work, context=context)
        waiter = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task.done():
            return task.result()
        self.abandoned_work = True
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception) as error:  # what a cancelled start raises is moot now
            if not isinstance(error, asyncio.CancelledError):
                logging.getLogger(__name__).debug("cancelled work ended with %r", error)
        raise Stopped


class Stopped(Exception):
    """A stop was requested while :meth:`Shutdown.unless_stopped` waited."""


class _IndexingStopped(Exception):
    """Raised from the progress callback to end an indexing run early (the run is crash-safe)."""


class DaemonThreadExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's executor: each blocking call in its own daemon thread.

    ``asyncio.run`` and the interpreter wait for every thread of a
    ``ThreadPoolExecutor`` at exit, so one slow blocking call (a language
    model generating for a minute) would hold a stopping bot past its
    deadline. Daemon threads do not hold the exit. Concurrency is bounded by
    the callers (the conversation's answer slots), not here. (A subclass
    only because asyncio accepts nothing else as the default executor; the
    pool itself is never used.)
    """

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: the daemon threads end with the process."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:
                future.set_exception(error)

        threading.Thread(target=work, name="casebot-worker", daemon=True).start()
        return future


async def run_adapters(services: Services, names: list[str], shutdown: Shutdown | None = None) -> None:
    """Build the index if needed, start the named adapters, run until SIGINT/SIGTERM or a fatal error.

    SIGINT and SIGTERM are handled from the first moment: while the index is
    built (the run gives up at its next batch), while the models load, and
    while an adapter is still connecting (its retries are cancelled). Then
    every started adapter is stopped in reverse order, each given
    :data:`STOP_GRACE_S` to finish the answers in hand. With
    ``CASEBOT_METRICS__PORT``, ``/healthz`` and ``/metrics`` are served for
    the whole run (503 while starting). ``shutdown`` lets an embedding
    program (or a test) stop the run itself.
    """
    with services.serving_lock.serving() if services.serving_lock else contextlib.nullcontext():
        await _serve(services, names, shutdown)


async def _serve(services: Services, names: list[str], shutdown: Shutdown | None) -> None:
    from bot.health import HealthServer

    log = logging.getLogger(__name__)
    shutdown = shutdown or Shutdown()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(DaemonThreadExecutor())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown.stop)
    adapters = [build_adapter(name, services, shutdown.fail) for name in names]
    m = services.settings.metrics
    health = HealthServer(m.host, m.port, services.metrics, services.case.stats) if m.port else None
    started: list[Adapter] = []

    announced = threading.Event()

    def progress(done: int, total: int) -> None:
        if shutdown.requested.is_set():
            raise _IndexingStopped
        if not announced.is_set():
            announced.set()
            log.warning("the index is empty: building it from %s (%d articles)", services.case.articles_dir,
                        total - done)

    logging.getLogger().addHandler(services.metrics.log_handler)
    try:
        if health is not None:
            try:
                await health.start()
            except OSError as error:
                raise CasebotError(str(error)) from None
            health.starting("building the index")
        try:
            await shutdown.unless_stopped(asyncio.to_thread(services.case.ensure_indexed, progress))
        except _IndexingStopped:
            raise Stopped from None
        if health is not None:
            health.starting("loading the models")
        await shutdown.unless_stopped(asyncio.to_thread(services.case.warm_up))
        for adapter in adapters:
            if health is not None:
                health.starting(f"connecting {adapter.name}")
            context = contextvars.copy_context()
            context.run(ADAPTER.set, adapter.name)  # the adapter's tasks inherit it (metrics labels)
            await shutdown.unless_stopped(adapter.start(), context)
            started.append(adapter)
            log.warning("%s adapter running", adapter.name)
        if health is not None:
            health.running(adapters)
        await shutdown.event.wait()
    except Stopped:
        log.warning("stop requested; stopping")
    finally:
        if health is not None:
            health.stopping()
        for adapter in reversed(started):
            try:
                await asyncio.wait_for(adapter.stop(), STOP_GRACE_S)
            except TimeoutError:
                log.warning("the %s adapter did not stop within %.0f s; answers in hand are dropped",
                            adapter.name, STOP_GRACE_S)
            except Exception:
                log.exception("stopping the %s adapter failed", adapter.name)
        if health is not None:
            await health.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        logging.getLogger().removeHandler(services.metrics.log_handler)
    if shutdown.reason:
        raise CasebotError(shutdown.reason)
