"""The one composition root: Settings -> index services -> conversation -> adapters.

Nothing else in casebot constructs a service from settings; everything is
passed in through constructors from here. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.conversation import Conversation
from bot.feedback import FeedbackStore
from bot.settings import Settings
from index.answer import AnswerPolicy, ExtractiveAnswerer
from index.case import CaseIndex
from index.embeddings import EmbeddingSpec, build_embedding
from index.errors import CasebotError
from index.grounded import GroundedAnswerer
from index.llm import ChatModel, LLMSpec
from index.pipeline import Indexer
from index.prompts import PromptLibrary
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


def build_case(settings: Settings, prompts: PromptLibrary) -> CaseIndex:
    """Embedding model, Chroma store, indexer and answerer for the configured case."""
    # Chroma and tokenizers must not phone home or fight over threads.
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The embedder's OpenMP threads would spin while waiting; on a busy machine
    # (a bot beside an indexer, two cores) that turns 20 ms queries into 150 ms.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    spec = embedding_spec(settings)
    embedding = build_embedding(spec)
    location = ChromaLocation(
        path=settings.data_dir / "chroma", host=settings.chroma.host,
        port=settings.chroma.port, ssl=settings.chroma.ssl,
    )
    store = ChunkStore(open_client(location), settings.chroma.collection, spec.fingerprint)
    r = settings.retrieval
    indexer = Indexer(store, embedding, settings.data_dir / "index.lock",
                      chunk_chars=r.chunk_chars, chunk_overlap=r.chunk_overlap,
                      batch_size=settings.embedding.batch_size)
    retriever = HybridRetriever(store, embedding, dense_top_k=r.dense_top_k,
                                keyword_top_k=r.keyword_top_k, rrf_k=r.rrf_k,
                                refresh_seconds=r.refresh_seconds, cache_dir=settings.data_dir / "cache")
    a = settings.answer
    policy = AnswerPolicy(min_margin=a.min_margin, max_sentences=a.max_sentences,
                          max_quote_chars=a.max_quote_chars)
    answerer = ExtractiveAnswerer(retriever, embedding, prompts, policy, settings.default_language,
                                  cache_dir=settings.data_dir / "cache")
    model_spec = llm_spec(settings)
    if not model_spec.enabled:
        return CaseIndex(store, indexer, answerer, settings.articles_dir)
    # The model is built on first use (or in warm_up): an unreachable server or a
    # missing GGUF file must not stop the bot; answers fall back to extractive.
    grounded = GroundedAnswerer(answerer, retriever, ChatModel(model_spec), prompts, SupportChecker(embedding),
                                default_language=settings.default_language)
    logging.getLogger(__name__).info("answers are written by the language model %s", model_spec.describe())
    return CaseIndex(store, indexer, grounded, settings.articles_dir)


def build_services(settings: Settings) -> Services:
    """Build every service of the process from ``settings``."""
    prompts = PromptLibrary()
    case = build_case(settings, prompts)
    feedback = FeedbackStore(settings.data_dir / "feedback.sqlite3")
    conversation = Conversation(case, prompts, settings.chat, settings.default_language,
                                case_name=settings.case_name, feedback=feedback)
    return Services(settings, case, prompts, conversation, feedback)


class Adapter(Protocol):
    """A chat platform connection with a symmetric lifecycle.

    ``start`` returns once the adapter receives messages (and cleans up after
    itself if it fails); ``stop`` is safe to call after a failed start.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ADAPTERS = ("telegram", "matrix")


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


class Shutdown:
    """How the process stops: a signal, or an adapter that cannot go on.

    Adapters report fatal errors (a revoked token, say) through :meth:`fail`
    instead of exiting; :func:`run_adapters` then stops every adapter in
    order and raises the reason, so the command exits non-zero with it.
    """

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""

    def fail(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.event.set()


async def run_adapters(services: Services, names: list[str], shutdown: Shutdown | None = None) -> None:
    """Start the named adapters, run until SIGINT/SIGTERM or a fatal error, then stop them all.

    ``shutdown`` lets an embedding program (or a test) stop the run itself.
    """
    shutdown = shutdown or Shutdown()
    adapters = [build_adapter(name, services, shutdown.fail) for name in names]
    await asyncio.to_thread(services.case.ensure_indexed)
    await asyncio.to_thread(services.case.warm_up)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown.event.set)
    started: list[Adapter] = []
    try:
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
            logging.getLogger(__name__).warning("%s adapter running", adapter.name)
        await shutdown.event.wait()
    finally:
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception:
                logging.getLogger(__name__).exception("stopping the %s adapter failed", adapter.name)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if shutdown.reason:
        raise CasebotError(shutdown.reason)


def configure_logging(level: str) -> None:
    """Plain log lines on stderr; HTTP libraries that log URLs are kept quiet."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; Telegram's URLs contain the bot token.
    for noisy in ("httpx", "httpcore", "chromadb", "urllib3", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
