"""The API's settings (environment variables) and secrets (files under /run/secrets)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields

from analyticbot_common.settings import PostgresSettings
from pydantic import Field


class ApiSettings(PostgresSettings):
    # Its own non-superuser role (created and granted by the migrate job), never the database owner.
    postgres_user: str = "analyticbot_api"
    postgres_password_file: str | None = "/run/secrets/postgres_api_password"
    redis_host: str = "redis"
    redis_port: int = 6379
    redis_db: int = 0
    # Unset: AUTH with the password alone (Redis's `default` user); set: an ACL user of that name.
    redis_username: str | None = None
    redis_password_file: str | None = "/run/secrets/redis_password"
    jwt_secret_key_file: str | None = "/run/secrets/jwt_secret_key"
    # Optional: the API runs without Stripe or OpenAI when these files are absent.
    stripe_secret_key_file: str | None = "/run/secrets/stripe_secret_key"
    openai_api_key_file: str | None = "/run/secrets/openai_api_key"

    cache_ttl_seconds: int = 30
    # How long startup keeps trying to reach PostgreSQL before the process exits for its restart policy.
    startup_timeout: float = 30.0
    db_connect_timeout: float = 5.0
    db_command_timeout: float = 5.0
    db_pool_min: int = 1
    db_pool_max: int = 10
    redis_socket_timeout: float = 1.0
    # Redis connections the API may hold; a request beyond them waits for one (at most the socket
    # timeout) instead of failing. Each command takes well under a millisecond: 16 serve 64 concurrent
    # requests with room to spare (benchmarks/stack.py).
    redis_pool_max: int = Field(16, ge=1, le=1024)


@dataclass(frozen=True)
class ApiSecrets:
    # repr=False: a dataclass repr in a log line or traceback must not carry the values.
    postgres_password: str = field(repr=False)
    redis_password: str = field(repr=False)
    jwt_secret_key: str = field(repr=False)
    stripe_secret_key: str | None = field(default=None, repr=False)
    openai_api_key: str | None = field(default=None, repr=False)

    def values(self) -> Iterator[str]:
        """Every secret value that was read, for the scrubber."""
        for item in fields(self):
            value = getattr(self, item.name)
            if value:
                yield value


def load_secrets(settings: ApiSettings) -> ApiSecrets:
    """Read the secret files; SettingsError names the first unusable one."""

    def required(path: str | None, name: str) -> str:
        value = settings.secret(path, name=name, required=True)
        assert value is not None  # required=True raises instead of returning None
        return value

    def optional(path: str | None, name: str) -> str | None:
        return settings.secret(path, name=name, required=False)

    return ApiSecrets(
        postgres_password=required(settings.postgres_password_file, "POSTGRES_PASSWORD_FILE"),
        redis_password=required(settings.redis_password_file, "REDIS_PASSWORD_FILE"),
        jwt_secret_key=required(settings.jwt_secret_key_file, "JWT_SECRET_KEY_FILE"),
        stripe_secret_key=optional(settings.stripe_secret_key_file, "STRIPE_SECRET_KEY_FILE"),
        openai_api_key=optional(settings.openai_api_key_file, "OPENAI_API_KEY_FILE"),
    )
