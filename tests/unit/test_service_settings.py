"""Service settings: secrets only from files under the secrets folder, placeholders refused outside development,
and messages that name the variable but never carry the value."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from analyticbot_common.settings import ServiceSettings, SettingsError, is_placeholder, load_settings, read_secret

# Each brief's word, in values distinct enough that finding one in a message means the value leaked.
PLACEHOLDERS = [
    "change_me",
    "CHANGEME",
    "Password123",
    "my-Secret-Q7",
    "example.com-Q7",
    "placeholder-Q7",
    "xxx",
    "XXXXXXXX",
    "TODO",
    "dummy",
    "Dummy42",
]


def write(folder: Path, name: str, content: str) -> str:
    path = folder / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_secret_is_read_from_its_file_and_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "postgres_password", "  Kf83-real-value-9\n")
    value = read_secret(
        path, name="POSTGRES_PASSWORD_FILE", required=True, environment="production", secrets_dir=str(tmp_path)
    )
    assert value == "Kf83-real-value-9"


def test_plain_environment_variables_are_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", "Kf83-from-the-env")
    with pytest.raises(SettingsError) as caught:
        read_secret(
            str(tmp_path / "absent"),
            name="POSTGRES_PASSWORD_FILE",
            required=True,
            environment="production",
            secrets_dir=str(tmp_path),
        )
    assert "Kf83-from-the-env" not in str(caught.value)
    path = write(tmp_path, "postgres_password", "Kf83-from-the-file")
    assert (
        read_secret(
            path, name="POSTGRES_PASSWORD_FILE", required=True, environment="production", secrets_dir=str(tmp_path)
        )
        == "Kf83-from-the-file"
    )


def test_settings_have_no_field_for_a_secret_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_api.settings import ApiSettings

    monkeypatch.setenv("POSTGRES_PASSWORD", "Kf83-from-the-env")
    monkeypatch.setenv("REDIS_PASSWORD", "Kf83-from-the-env")
    settings = load_settings(ApiSettings)
    assert "Kf83-from-the-env" not in repr(settings.model_dump())
    assert settings.postgres_password_file == "/run/secrets/postgres_api_password"


@pytest.mark.parametrize("environment", ["production", "staging"])
@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholders_are_refused_outside_development(tmp_path: Path, environment: str, placeholder: str) -> None:
    path = write(tmp_path, "jwt_secret_key", placeholder + "\n")
    with pytest.raises(SettingsError) as caught:
        read_secret(path, name="JWT_SECRET_KEY_FILE", required=True, environment=environment, secrets_dir=str(tmp_path))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "JWT_SECRET_KEY_FILE" in message and "placeholder" in message
    assert placeholder not in message


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholders_are_accepted_in_development(tmp_path: Path, placeholder: str) -> None:
    path = write(tmp_path, "jwt_secret_key", placeholder)
    assert read_secret(path, name="JWT_SECRET_KEY_FILE", required=True, environment="development") == placeholder


def test_random_secrets_are_not_mistaken_for_placeholders() -> None:
    # Short words (xxx, todo) must only match whole values: a random token contains them now and then.
    rng = random.Random(20260101)
    alphabet = string.ascii_letters + string.digits + "-_"
    tokens = ["".join(rng.choice(alphabet) for _ in range(43)) for _ in range(5000)]
    tokens += ["xxx" + token for token in tokens[:10]]  # "xxx" inside a longer value is not a placeholder
    assert [token for token in tokens if is_placeholder(token)] == []


def test_missing_required_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="REDIS_PASSWORD_FILE"):
        read_secret(
            str(tmp_path / "redis_password"),
            name="REDIS_PASSWORD_FILE",
            required=True,
            environment="production",
            secrets_dir=str(tmp_path),
        )
    with pytest.raises(SettingsError, match="REDIS_PASSWORD_FILE"):
        read_secret(None, name="REDIS_PASSWORD_FILE", required=True, environment="production")


def test_missing_optional_file_is_none(tmp_path: Path) -> None:
    absent = str(tmp_path / "stripe_secret_key")
    kwargs = {"environment": "production", "secrets_dir": str(tmp_path)}
    assert read_secret(absent, name="STRIPE_SECRET_KEY_FILE", required=False, **kwargs) is None  # type: ignore[arg-type]
    empty = write(tmp_path, "openai_api_key", "\n")
    assert read_secret(empty, name="OPENAI_API_KEY_FILE", required=False, **kwargs) is None  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=r"OPENAI_API_KEY_FILE.*empty"):
        read_secret(empty, name="OPENAI_API_KEY_FILE", required=True, **kwargs)  # type: ignore[arg-type]


def test_files_outside_the_secrets_folder_are_refused_outside_development(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    outside = write(tmp_path, "elsewhere", "Kf83-real-value-9")
    with pytest.raises(SettingsError, match="JWT_SECRET_KEY_FILE must name a file under"):
        read_secret(
            outside, name="JWT_SECRET_KEY_FILE", required=True, environment="production", secrets_dir=str(secrets_dir)
        )
    assert (
        read_secret(outside, name="JWT_SECRET_KEY_FILE", required=True, environment="development")
        == "Kf83-real-value-9"
    )


def test_environment_defaults_to_production_and_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    assert load_settings(ServiceSettings).environment == "production"
    monkeypatch.setenv("ENVIRONMENT", "prod-ish")
    with pytest.raises(SettingsError, match="ENVIRONMENT"):
        load_settings(ServiceSettings)


def test_invalid_setting_message_leaves_the_value_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_api.settings import ApiSettings

    monkeypatch.setenv("POSTGRES_PORT", "not-a-port-Kf83")
    with pytest.raises(SettingsError, match="POSTGRES_PORT") as caught:
        load_settings(ApiSettings)
    assert "Kf83" not in str(caught.value)


def secrets_env(monkeypatch: pytest.MonkeyPatch, folder: Path, files: dict[str, tuple[str, str]]) -> None:
    """Point each *_FILE variable at a file in `folder` (or at nothing when the content is None)."""
    monkeypatch.setenv("SECRETS_DIR", str(folder))
    for variable, (name, content) in files.items():
        path = folder / name
        if content is not None:
            path.write_text(content, encoding="utf-8")
        monkeypatch.setenv(variable, str(path))


def test_api_secrets_load_from_files_and_hide_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_api.settings import ApiSettings, load_secrets

    secrets_env(
        monkeypatch,
        tmp_path,
        {
            "POSTGRES_PASSWORD_FILE": ("postgres_password", "Kf83-pg-value\n"),
            "REDIS_PASSWORD_FILE": ("redis_password", "Kf83-redis-value"),
            "JWT_SECRET_KEY_FILE": ("jwt_secret_key", "Kf83-jwt-value"),
            "STRIPE_SECRET_KEY_FILE": ("stripe_secret_key", None),
            "OPENAI_API_KEY_FILE": ("openai_api_key", None),
        },
    )
    secrets = load_secrets(load_settings(ApiSettings))
    assert (secrets.postgres_password, secrets.redis_password) == ("Kf83-pg-value", "Kf83-redis-value")
    assert secrets.stripe_secret_key is None
    assert sorted(secrets.values()) == ["Kf83-jwt-value", "Kf83-pg-value", "Kf83-redis-value"]
    assert "Kf83" not in repr(secrets)


def test_bot_runs_without_a_usable_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_bot.settings import BotSettings, load_secrets

    webhook = ("telegram_webhook_secret", "Kf83webhookvalue")
    read_token = ("api_read_token", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl")
    for token in (None, "", "not-a-token", "change_me", "123:short"):
        secrets_env(
            monkeypatch,
            tmp_path,
            {
                "BOT_TOKEN_FILE": ("bot_token", token),
                "TELEGRAM_WEBHOOK_SECRET_FILE": webhook,
                "API_READ_TOKEN_FILE": read_token,
            },
        )
        if token is None:
            (tmp_path / "bot_token").unlink(missing_ok=True)
        secrets = load_secrets(load_settings(BotSettings))
        assert secrets.token is None
        assert secrets.token_problem == "no valid bot token configured"
    valid = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"
    secrets_env(
        monkeypatch,
        tmp_path,
        {
            "BOT_TOKEN_FILE": ("bot_token", valid),
            "TELEGRAM_WEBHOOK_SECRET_FILE": webhook,
            "API_READ_TOKEN_FILE": read_token,
        },
    )
    secrets = load_secrets(load_settings(BotSettings))
    assert secrets.token == valid and secrets.token_problem is None
    assert secrets.api_token == read_token[1] and read_token[1] not in repr(secrets)
    assert valid not in repr(secrets)


def test_bot_webhook_secret_is_required_outside_development(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_bot.settings import BotSettings, load_secrets

    secrets_env(monkeypatch, tmp_path, {"TELEGRAM_WEBHOOK_SECRET_FILE": ("telegram_webhook_secret", None)})
    with pytest.raises(SettingsError, match="TELEGRAM_WEBHOOK_SECRET_FILE"):
        load_secrets(load_settings(BotSettings))
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_secrets(load_settings(BotSettings)).webhook_secret is None


def test_collector_is_disabled_without_telegram_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_mtproto.settings import NOT_CONFIGURED, MtprotoSettings, load_secrets

    password = ("postgres_password", "Kf83-pg-value")
    secrets_env(
        monkeypatch,
        tmp_path,
        {
            "POSTGRES_PASSWORD_FILE": password,
            "TELEGRAM_API_ID_FILE": ("telegram_api_id", None),
            "TELEGRAM_API_HASH_FILE": ("telegram_api_hash", None),
            "TELEGRAM_SESSION_FILE": ("telegram_session", None),
        },
    )
    secrets = load_secrets(load_settings(MtprotoSettings))
    assert secrets.telegram is None and secrets.disabled_reason == NOT_CONFIGURED

    secrets_env(
        monkeypatch,
        tmp_path,
        {
            "TELEGRAM_API_ID_FILE": ("telegram_api_id", "2040731"),
            "TELEGRAM_API_HASH_FILE": ("telegram_api_hash", "0123456789abcdef0123456789abcdef"),
            "TELEGRAM_SESSION_FILE": ("telegram_session", "1AbCdEf-Kf83-session"),
        },
    )
    secrets = load_secrets(load_settings(MtprotoSettings))
    assert secrets.telegram is not None and secrets.telegram.api_id == 2040731
    assert "Kf83" not in repr(secrets)


def test_collector_channel_list_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_mtproto.settings import MtprotoSettings

    monkeypatch.setenv("CHANNELS", " Durov, @telegram,,durov ")
    assert load_settings(MtprotoSettings).channel_list == ["durov", "telegram"]
