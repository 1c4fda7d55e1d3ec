"""The bot's settings (environment variables) and secrets (files under /run/secrets).

The bot token is optional: without a usable one the bot still serves its health endpoints and reports its
`telegram` dependency down. The webhook secret is required outside development."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from analyticbot_common.settings import ServiceSettings, SettingsError

log = logging.getLogger("analyticbot.bot")
TOKEN_PATTERN = re.compile(r"\d+:[A-Za-z0-9_-]{35}", re.ASCII)


class BotSettings(ServiceSettings):
    bot_token_file: str | None = "/run/secrets/bot_token"
    telegram_webhook_secret_file: str | None = "/run/secrets/telegram_webhook_secret"
    # The bot's own read-scope bearer token for the API (a secret the toolkit mints from jwt_secret_key).
    api_read_token_file: str | None = "/run/secrets/api_read_token"
    api_base_url: str = "http://api:8000"
    # Bot API server; empty means Telegram's own. A local Bot API server (or, in tests, a closed port) can stand in.
    telegram_api_base: str = ""
    # Timeout of Bot API calls (getMe in the health probe, replies) and of calls to our API.
    telegram_api_timeout: float = 3.0
    api_timeout: float = 3.0
    # Public HTTPS URL of POST /webhook (https://HOST/bot/webhook). When set, the bot registers it with
    # Telegram at startup (setWebhook with the secret); when unset, the webhook is managed elsewhere.
    webhook_url: str | None = None


@dataclass(frozen=True)
class BotSecrets:
    token: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    # Why there is no usable token; shown as the telegram dependency's reason (never the token itself).
    token_problem: str | None = None


def valid_token(token: str | None) -> bool:
    return bool(token) and TOKEN_PATTERN.fullmatch(token or "") is not None


def load_secrets(settings: BotSettings) -> BotSecrets:
    """Read the secret files. A missing or unusable token is not an error; a missing webhook secret
    outside development is (SettingsError names the variable)."""
    webhook_secret = settings.secret(
        settings.telegram_webhook_secret_file,
        name="TELEGRAM_WEBHOOK_SECRET_FILE",
        required=not settings.development,
    )
    try:
        token = settings.secret(settings.bot_token_file, name="BOT_TOKEN_FILE", required=False)
    except SettingsError as exc:
        # A placeholder token is one more unusable token: the bot runs degraded rather than not at all.
        log.warning("bot token ignored: %s", exc)
        token = None
    api_token = settings.secret(settings.api_read_token_file, name="API_READ_TOKEN_FILE", required=False)
    if api_token is None:
        log.warning("API_READ_TOKEN_FILE names no token: /stats will be refused by the API")
    if valid_token(token):
        return BotSecrets(token=token, webhook_secret=webhook_secret, api_token=api_token)
    if token:
        log.warning("BOT_TOKEN_FILE does not hold a token of the form <digits>:<35 characters>; Telegram is off")
    return BotSecrets(webhook_secret=webhook_secret, api_token=api_token, token_problem="no valid bot token configured")
