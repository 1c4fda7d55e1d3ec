"""The collector's settings (environment variables) and secrets (files under /run/secrets).

The Telegram credentials are optional: without all three (API id, API hash, StringSession) the collector is
disabled, and says so in its health report, instead of failing."""

from __future__ import annotations

from dataclasses import dataclass, field

from analyticbot_common.settings import PostgresSettings

NOT_CONFIGURED = "no API id/hash/session configured"


class MtprotoSettings(PostgresSettings):
    # Its own non-superuser role (created and granted by the migrate job), never the database owner.
    postgres_user: str = "analyticbot_collector"
    postgres_password_file: str | None = "/run/secrets/postgres_collector_password"
    telegram_api_id_file: str | None = "/run/secrets/telegram_api_id"
    telegram_api_hash_file: str | None = "/run/secrets/telegram_api_hash"
    telegram_session_file: str | None = "/run/secrets/telegram_session"

    collect_interval_seconds: float = 300.0
    # Comma-separated usernames; empty means every channel in the `channels` table.
    channels: str = ""
    db_connect_timeout: float = 5.0
    db_command_timeout: float = 5.0
    telegram_timeout: int = 10

    @property
    def channel_list(self) -> list[str]:
        names = (name.strip().removeprefix("@").lower() for name in self.channels.split(","))
        return sorted({name for name in names if name})


@dataclass(frozen=True)
class TelegramCredentials:
    api_id: int
    api_hash: str = field(repr=False)
    session: str = field(repr=False)


@dataclass(frozen=True)
class MtprotoSecrets:
    postgres_password: str = field(repr=False)
    telegram: TelegramCredentials | None = None
    # Why the collector is disabled, when `telegram` is None.
    disabled_reason: str | None = None

    def values(self) -> list[str]:
        values = [self.postgres_password]
        if self.telegram is not None:
            values += [self.telegram.api_hash, self.telegram.session]
        return values


def load_secrets(settings: MtprotoSettings) -> MtprotoSecrets:
    password = settings.secret(settings.postgres_password_file, name="POSTGRES_PASSWORD_FILE", required=True)
    assert password is not None  # required=True raises instead
    found = {
        name: settings.secret(path, name=name, required=False)
        for name, path in (
            ("TELEGRAM_API_ID_FILE", settings.telegram_api_id_file),
            ("TELEGRAM_API_HASH_FILE", settings.telegram_api_hash_file),
            ("TELEGRAM_SESSION_FILE", settings.telegram_session_file),
        )
    }
    missing = [name for name, value in found.items() if not value]
    if len(missing) == len(found):
        return MtprotoSecrets(password, disabled_reason=NOT_CONFIGURED)
    if missing:
        return MtprotoSecrets(password, disabled_reason=f"{NOT_CONFIGURED} (missing: {', '.join(missing)})")
    api_id = found["TELEGRAM_API_ID_FILE"] or ""
    if not api_id.isascii() or not api_id.isdigit():
        return MtprotoSecrets(password, disabled_reason="TELEGRAM_API_ID_FILE does not hold a number")
    credentials = TelegramCredentials(
        api_id=int(api_id),
        api_hash=found["TELEGRAM_API_HASH_FILE"] or "",
        session=found["TELEGRAM_SESSION_FILE"] or "",
    )
    return MtprotoSecrets(password, telegram=credentials)
