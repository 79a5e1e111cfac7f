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
