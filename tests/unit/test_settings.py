from pathlib import Path

import pytest

from bot.settings import (
    CASE_FILE,
    Settings,
    SettingsError,
    articles_dir_problem,
    case_name,
    collection_name,
    default_data_dir,
    load_settings,
    requirements_problems,
    setting_names,
    unknown_setting_warnings,
)
from index.errors import CasebotError


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOT_CHROMA__PORT", "eighty")
    with pytest.raises(CasebotError, match="CASEBOT_CHROMA__PORT"):
        load_settings(_env_file=None)


def test_nested_and_list_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOT_CHROMA__HOST", "127.0.0.1")
    monkeypatch.setenv("CASEBOT_TELEGRAM__ADMIN_IDS", "12, 34")
    monkeypatch.setenv("CASEBOT_MATRIX__ADMINS", '["@a:example.org"]')
    settings = load_settings(_env_file=None)
    assert settings.chroma.host == "127.0.0.1"
    assert settings.telegram.admin_ids == [12, 34]
    assert settings.matrix.admins == ["@a:example.org"]


def test_secrets_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOT_TELEGRAM__TOKEN", "123456:very-secret")
    settings = load_settings(_env_file=None)
    assert "very-secret" not in repr(settings)
    assert settings.telegram.token.get_secret_value() == "123456:very-secret"


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text(encoding="utf-8")
    names = setting_names()
    assert "CASEBOT_CHROMA__TOKEN" in names and "CASEBOT_LOG__FORMAT" in names
    missing = [n for n in names if f"{n}=" not in example]
    assert not missing, f".env.example lacks {missing}"


# --- forms of values, what commands need, which case ----------------------------------



def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(("group", "field", "value", "message"), [
    ("telegram", "api_base_url", "http://127.0.0.1:8081", "must end in /bot"),
    ("telegram", "api_base_url", "api.telegram.org/bot", "must start with https://"),
    ("telegram", "api_file_url", "ftp://x/file/bot", "must start with https://"),
    ("telegram", "webhook_url", "http://bot.example.org/hook", "must start with https://"),
    ("telegram", "webhook_url", "https://bot.example.org:8080/hook", "ports 443, 80, 88 or 8443"),
    ("telegram", "webhook_secret", "has space", "may only contain"),
    ("matrix", "homeserver", "matrix.example.org", "must start with https://"),
    ("matrix", "homeserver", "https://", "has no host name"),
    ("matrix", "user_id", "casebot:example.org", "full Matrix user id"),
    ("matrix", "user_id", "@casebot", "full Matrix user id"),
    ("chroma", "host", "http://chroma", "without scheme"),
])
def test_malformed_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, group: str, field: str,
                                            value: str, message: str) -> None:
    name = f"CASEBOT_{group.upper()}__{field.upper()}"
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^invalid setting {name}: .*{message}") as raised:
        load_settings(_env_file=None)
    assert "Value error" not in str(raised.value)


def test_well_formed_values_pass() -> None:
    s = settings(telegram={"api_base_url": "http://127.0.0.1:8081/bot", "webhook_url": "https://b.example.org/h",
                           "webhook_secret": "abc_-1"},
                 matrix={"homeserver": "http://127.0.0.1:8008", "user_id": "@casebot:localhost:8448"})
    assert s.matrix.user_id == "@casebot:localhost:8448"


def test_empty_variables_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOT_METRICS__PORT", "")
    monkeypatch.setenv("CASEBOT_TELEGRAM__WEBHOOK_LISTEN", "")
    s = load_settings(_env_file=None)
    assert s.metrics.port == 0 and s.telegram.webhook_listen == "127.0.0.1"


def test_requirements_per_adapter(tmp_path: Path) -> None:
    s = settings(articles_dir=tmp_path)
    problems = requirements_problems(s, ["telegram", "matrix"], articles=True)
    text = " ".join(problems)
    for name in ("CASEBOT_TELEGRAM__TOKEN", "CASEBOT_MATRIX__HOMESERVER", "CASEBOT_MATRIX__PASSWORD",
                 "CASEBOT_MATRIX__USER_ID", "CASEBOT_MATRIX__PICKLE_KEY", "CASEBOT_ARTICLES_DIR"):
        assert name in text
    with_token = settings(matrix={"homeserver": "https://m.example.org", "access_token": "t", "pickle_key": "k"})
    assert requirements_problems(with_token, ["matrix"]) == []  # the token names the user


def test_articles_folder_problems(tmp_path: Path) -> None:
    assert "does not exist" in (articles_dir_problem(tmp_path / "nope") or "")
    (tmp_path / "file.md").write_text("x", encoding="utf-8")
    assert "is not a folder" in (articles_dir_problem(tmp_path / "file.md") or "")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.json").write_text("{}", encoding="utf-8")
    (empty / ".hidden.md").write_text("x", encoding="utf-8")
    assert "contains no article files" in (articles_dir_problem(empty) or "")
    assert articles_dir_problem(tmp_path) is None


def test_unknown_variables_get_the_closest_name(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CASEBOT_LLM__PROVDER=openai\nCASEBOT_CHROMA__HOST=x\n", encoding="utf-8")
    warnings = unknown_setting_warnings({"CASEBOT_TELEGRAM_TOKEN": "x", "CASEBOT_DATA_DIR": "d", "PATH": "/"},
                                        env_file)
    assert warnings == [
        "unknown setting CASEBOT_TELEGRAM_TOKEN (environment variable) is ignored; "
        "did you mean CASEBOT_TELEGRAM__TOKEN?",
        f"unknown setting CASEBOT_LLM__PROVDER (key in {env_file}) is ignored; did you mean CASEBOT_LLM__PROVIDER?",
    ]
    assert unknown_setting_warnings({"CASEBOT_ZZZZZZZZZZ": "1"}, None) == [
        "unknown setting CASEBOT_ZZZZZZZZZZ (environment variable) is ignored"]


def test_default_data_dir_is_absolute_whatever_the_working_directory(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_data_dir() == tmp_path / "state" / "casebot"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # ignored, as the XDG spec asks
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == tmp_path / "home" / ".local" / "state" / "casebot"
    assert settings().data_dir.is_absolute()


def test_case_name_and_collection_follow_the_case(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "articles", tmp_path / "b" / "articles"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    assert collection_name(settings(articles_dir=one)) != collection_name(settings(articles_dir=two))
    assert collection_name(settings(articles_dir=one)) == collection_name(settings(articles_dir=one / "." ))
    assert case_name(settings(articles_dir=one)) == "articles"

    (two / CASE_FILE).write_text("name: Die Bahn-Affäre\nid: Bahn Affäre 2031\n", encoding="utf-8")
    assert case_name(settings(articles_dir=two)) == "Die Bahn-Affäre"
    assert collection_name(settings(articles_dir=two)) == "casebot-bahn-aff-re-2031"

    explicit = settings(articles_dir=two, case_name="Bahn", chroma={"collection": "mine"})
    assert (case_name(explicit), collection_name(explicit)) == ("Bahn", "mine")
    for name in (collection_name(settings(articles_dir=one)), collection_name(settings(articles_dir=two))):
        settings(chroma={"collection": name})  # a valid Chroma collection name

    (one / CASE_FILE).write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=CASE_FILE):
        case_name(settings(articles_dir=one))
