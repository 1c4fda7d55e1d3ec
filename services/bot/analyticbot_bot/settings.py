"""The bot's settings (environment variables) and secrets (files under /run/secrets).

The bot token is optional: without a usable one the bot still serves its health endpoints and reports its
`telegram` dependency down. The webhook secret is required outside development. The alert secrets (POST /alerts)
are optional: without the token the route refuses every call, without the chat alerts are only logged."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace

from analyticbot_common.settings import ServiceSettings, SettingsError

log = logging.getLogger("analyticbot.bot")
TOKEN_PATTERN = re.compile(r"\d+:[A-Za-z0-9_-]{35}", re.ASCII)
# Telegram chat ids are integers of up to 52 bits (16 digits); groups and channels are negative (-100...).
CHAT_ID_PATTERN = re.compile(r"-?[1-9][0-9]{0,15}", re.ASCII)


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
    # Alertmanager's bearer token for POST /alerts (compose/monitoring/alertmanager.yml reads the same secret).
    alert_webhook_token_file: str | None = "/run/secrets/alert_webhook_token"
    # The operator chat that alerts are sent to: a chat id, negative for a group.
    alert_chat_id_file: str | None = "/run/secrets/alert_chat_id"


@dataclass(frozen=True)
class BotSecrets:
    token: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    alert_token: str | None = field(default=None, repr=False)
    # Not a credential, but who gets the alerts is nobody's business in a log line either.
    alert_chat_id: int | None = field(default=None, repr=False)
    # Why there is no usable token; shown as the telegram dependency's reason (never the token itself).
    token_problem: str | None = None


def valid_token(token: str | None) -> bool:
    return bool(token) and TOKEN_PATTERN.fullmatch(token or "") is not None


def chat_id(value: str | None) -> int | None:
    """The chat id in `value`, or None when it holds none (absent, empty or not an integer)."""
    if not value or CHAT_ID_PATTERN.fullmatch(value) is None:
        return None
    return int(value)


def optional_secret(settings: BotSettings, path: str | None, name: str) -> str | None:
    """An optional secret; one that is refused (a placeholder, a file outside the secrets folder) counts as
    absent, so that the bot runs without the feature rather than not at all."""
    try:
        return settings.secret(path, name=name, required=False)
    except SettingsError as exc:
        log.warning("secret ignored: %s", exc)
        return None


def load_alert_secrets(settings: BotSettings) -> tuple[str | None, int | None]:
    """Alertmanager's token and the operator chat's id; each None when not configured."""
    token = optional_secret(settings, settings.alert_webhook_token_file, "ALERT_WEBHOOK_TOKEN_FILE")
    text = optional_secret(settings, settings.alert_chat_id_file, "ALERT_CHAT_ID_FILE")
    chat = chat_id(text)
    if text and chat is None:
        log.warning("ALERT_CHAT_ID_FILE does not hold an integer chat id: alerts are only logged")
    return token, chat


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
    alert_token, alert_chat_id = load_alert_secrets(settings)
    secrets = BotSecrets(
        webhook_secret=webhook_secret, api_token=api_token, alert_token=alert_token, alert_chat_id=alert_chat_id
    )
    if valid_token(token):
        return replace(secrets, token=token)
    if token:
        log.warning("BOT_TOKEN_FILE does not hold a token of the form <digits>:<35 characters>; Telegram is off")
    return replace(secrets, token_problem="no valid bot token configured")
