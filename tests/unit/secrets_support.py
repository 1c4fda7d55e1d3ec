"""Shared by the secrets tests (test_secrets_*.py): valid-looking values, and folders filled as an operator would."""

from __future__ import annotations

import stat
from pathlib import Path

from analyticbot_ops import secrets as sec

BOT_TOKEN = "123456789:AbCdEfGhIjKlMnOpQrStUvWxYz012345678"
STRIPE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
OPENAI = "sk-proj-abcdefghij1234567890ABCD"
API_ID = "1234567"
API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = "1BVtsOKABu3fJ2kX9qLmNoPqRsTuVwXyZ0123456789-_="
# Distinctive, valid-looking values so that "the message never contains it" is a meaningful assertion.
STRONG_PW = "Kj4#mQ9zLp2!vX7wRt5Y"
SENSITIVE = "Zq8Wm3Rt6Yp1Ls9Kd4Fg"

# What `populate` writes with no input: every generated secret and what derives from them, in registry order.
MADE_WITHOUT_INPUT = (
    "postgres_password",
    "postgres_api_password",
    "postgres_collector_password",
    "redis_password",
    "redis_admin_password",
    "redis_monitor_password",
    "redis_acl",
    "redis_monitor_auth",
    "postgres_monitor_password",
    "prometheus_password",
    "prometheus_web_config",
    "pgbackrest_cipher_pass",
    "pgbackrest_db_conf",
    "pgbackrest_repo_conf",
    "alert_webhook_token",
    "jwt_secret_key",
    "api_read_token",
    "telegram_webhook_secret",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_raw(directory: Path, name: str, value: str, file_mode: int = 0o600) -> Path:
    """Put a secret file in place by hand, as an operator would."""
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    path = directory / name
    path.write_text(value)
    path.chmod(file_mode)
    return path


def populate(sdir: Path, env: str = "dev", **environ: str) -> sec.ApplyReport:
    return sec.from_env(env, sdir, env_file=None, environ=environ)
