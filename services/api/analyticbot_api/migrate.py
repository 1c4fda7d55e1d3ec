"""The migrate job: `python3 -m analyticbot_api.migrate`, run once per deploy (compose service `migrate`).

As the database owner it applies the schema migrations and creates or updates the runtime roles (their
passwords from their own secrets, sent as SCRAM verifiers so that no clear text reaches the server's logs),
then exits 0; the API and the collector start only after that. It is the one process that holds the owner's
password besides PostgreSQL itself. Exit codes: 0 done, 1 failed (one line says why), 2 bad settings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import sys

import asyncpg
from analyticbot_common.logs import configure_logging
from analyticbot_common.scrub import SCRUBBER
from analyticbot_common.settings import PostgresSettings, SettingsError, load_settings
from analyticbot_common.startup import StartupAborted, retry_until

from .migrations import RUNTIME_GRANTS, apply_roles, migrate

log = logging.getLogger("analyticbot.migrate")
SCRAM_ITERATIONS = 4096


class MigrateSettings(PostgresSettings):
    # The owner: the superuser initdb created (POSTGRES_USER of the postgres service).
    postgres_user: str = "analyticbot"
    postgres_password_file: str | None = "/run/secrets/postgres_password"
    postgres_api_password_file: str | None = "/run/secrets/postgres_api_password"
    postgres_collector_password_file: str | None = "/run/secrets/postgres_collector_password"
    postgres_monitor_password_file: str | None = "/run/secrets/postgres_monitor_password"
    startup_timeout: float = 60.0


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier (RFC 5803 form) of `password`, as psql's \\password makes it."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def run(settings: MigrateSettings) -> tuple[list[int], list[str]]:
    """Apply the migrations and the runtime roles; the versions applied now and the roles granted."""

    def required(path: str | None, name: str) -> str:
        value = settings.secret(path, name=name, required=True)
        assert value is not None  # required=True raises instead
        SCRUBBER.add(value)
        return value

    owner_password = required(settings.postgres_password_file, "POSTGRES_PASSWORD_FILE")
    passwords = {
        "analyticbot_api": required(settings.postgres_api_password_file, "POSTGRES_API_PASSWORD_FILE"),
        "analyticbot_collector": required(
            settings.postgres_collector_password_file, "POSTGRES_COLLECTOR_PASSWORD_FILE"
        ),
        "analyticbot_monitor": required(settings.postgres_monitor_password_file, "POSTGRES_MONITOR_PASSWORD_FILE"),
    }
    assert set(passwords) == set(RUNTIME_GRANTS)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(
            host=settings.postgres_host,
            port=settings.postgres_port,
            database=settings.postgres_db,
            user=settings.postgres_user,
            password=owner_password,
            timeout=5,
            server_settings={"application_name": "analyticbot-migrate"},
        )

    connection = await retry_until(
        connect,
        what=f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port}",
        timeout=settings.startup_timeout,
        log=log,
        # Compose starts this job with PostgreSQL, not after its first healthcheck: poll often, so that the
        # schema follows the server's first TCP accept by a fraction of a second, not by a back-off step.
        first_delay=0.2,
        max_delay=0.5,
    )
    try:
        applied = await migrate(connection, timeout=settings.startup_timeout)
        verifiers = {role: scram_verifier(password) for role, password in passwords.items()}
        await apply_roles(connection, verifiers, settings.postgres_db)
    finally:
        await connection.close()
    return applied, sorted(passwords)


def main() -> int:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        settings = load_settings(MigrateSettings)
        applied, roles = asyncio.run(run(settings))
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    except StartupAborted as exc:
        log.error("migrate failed: %s", exc)
        return 1
    except Exception as exc:  # one scrubbed line for the operator, never a traceback with values in it
        log.error("migrate failed: %s", SCRUBBER.error_text(f"{type(exc).__name__}: {exc}"))
        return 1
    log.info("schema at the latest version (%d applied now); roles ready: %s", len(applied), ", ".join(roles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
