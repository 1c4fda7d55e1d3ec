"""Service settings: plain configuration from environment variables, secrets only from files.

`ServiceSettings` is the base every service extends (pydantic-settings, env vars only). Secret *values* never
come from the environment: each secret has a `*_FILE` variable naming a file under /run/secrets (a Docker
secret), and `read_secret` reads it. Messages name the variable, never the value."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import __version__
from .placeholders import is_placeholder

Environment = Literal["development", "staging", "production"]
SECRETS_DIR = "/run/secrets"
log = logging.getLogger(__name__)


class SettingsError(Exception):
    """A setting or secret is missing or unusable; the message names the variable, never a secret value."""


def read_secret(
    path: str | None,
    *,
    name: str,
    required: bool,
    environment: Environment,
    secrets_dir: str = SECRETS_DIR,
) -> str | None:
    """Return the secret in file `path` (named by env var `name`, e.g. POSTGRES_PASSWORD_FILE), stripped.

    Missing or empty: None when optional, SettingsError when required. Outside development the file must lie
    under `secrets_dir` and must not hold a placeholder."""
    plain = name.removesuffix("_FILE")
    if plain != name and os.environ.get(plain):
        # Only the variable's name is logged: its value is exactly what must stay out of logs.
        log.warning("%s is set in the environment and ignored: secrets are read only from %s", plain, name)
    if not path:
        if required:
            raise SettingsError(f"{name} is not set: it must name the file that holds this secret")
        return None
    file = Path(path)
    if environment != "development" and not file.resolve().is_relative_to(Path(secrets_dir).resolve()):
        raise SettingsError(f"{name} must name a file under {secrets_dir}, not {path}")
    try:
        value = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if required:
            raise SettingsError(f"{name}: secret file {path} does not exist") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{name}: secret file {path} cannot be read ({type(exc).__name__})") from None
    if not value:
        if required:
            raise SettingsError(f"{name}: secret file {path} is empty")
        return None
    if environment != "development" and is_placeholder(value):
        raise SettingsError(f"{name}: secret file {path} holds a placeholder value; put the real secret in it")
    return value


class ServiceSettings(BaseSettings):
    """Configuration shared by every service. Field `x` is read from env var `X`."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    environment: Environment = "production"
    app_version: str = __version__
    log_level: str = "INFO"
    # How long a health report is reused: probes can't overload a dependency however often /health is called.
    health_cache_ttl: float = 1.0
    secrets_dir: str = SECRETS_DIR

    @property
    def development(self) -> bool:
        return self.environment == "development"

    def secret(self, path: str | None, *, name: str, required: bool) -> str | None:
        return read_secret(
            path, name=name, required=required, environment=self.environment, secrets_dir=self.secrets_dir
        )


class PostgresSettings(ServiceSettings):
    """Where a service's PostgreSQL is. Each service sets its own `postgres_user` and password file: the
    api and the collector their non-superuser roles, the migrate job the owner."""

    postgres_host: str = "postgres"
    postgres_port: int = 5432
    postgres_db: str = "analyticbot"
    postgres_user: str
    postgres_password_file: str | None


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Build settings from the environment, turning pydantic's report into one SettingsError line.

    Only variable names and pydantic's reason are kept: the input values are left out."""
    try:
        return cls()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from None
