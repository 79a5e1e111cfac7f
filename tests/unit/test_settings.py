import pytest

from bot.settings import load_settings
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
    from pathlib import Path

    from pydantic import BaseModel

    from bot.settings import Settings

    def names(model: type[BaseModel], prefix: str) -> list[str]:
        result = []
        for name, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                result += names(kind, f"{prefix}{name.upper()}__")
            else:
                result.append(f"{prefix}{name.upper()}")
        return result

    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text(encoding="utf-8")
    missing = [n for n in names(Settings, "CASEBOT_") if f"{n}=" not in example]
    assert not missing, f".env.example lacks {missing}"
