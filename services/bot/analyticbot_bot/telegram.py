"""The bot's side of Telegram: the aiogram Bot (created only for a well-formed token), its health probe, the
webhook registration and the alert messages (POST /alerts, alerts.py).

The token never leaves this module except inside aiogram: `configure` registers it with the scrubber before the
Bot exists, so any log line or probe error that carries it (Bot API URLs contain it) is masked."""

from __future__ import annotations

import asyncio
import logging
import time

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from analyticbot_common.health import DependencyDown
from analyticbot_common.scrub import SCRUBBER, Scrubber

from .alerts import DeliveryFailed
from .settings import BotSecrets, valid_token

log = logging.getLogger("analyticbot.bot.telegram")
# A successful getMe is trusted this long: /health may be polled every few seconds, Telegram need not be.
PROBE_SUCCESS_TTL = 30.0
WEBHOOK_RETRY_MAX = 300.0


class TelegramGateway:
    def __init__(self, *, timeout: float, api_base: str = "", scrubber: Scrubber = SCRUBBER) -> None:
        self._api_base = api_base
        # Until startup has read the secret files, there is no token (and no webhook secret) at all.
        self._secrets = BotSecrets(token_problem="secrets not loaded yet")
        self._timeout = timeout
        self._scrubber = scrubber
        self._bot: Bot | None = None
        self._last_ok = float("-inf")
        self._webhook_task: asyncio.Task[None] | None = None

    def configure(self, secrets: BotSecrets) -> None:
        for value in (secrets.token, secrets.webhook_secret):
            self._scrubber.add(value)
        self._secrets = secrets

    @property
    def webhook_secret(self) -> str | None:
        return self._secrets.webhook_secret

    @property
    def problem(self) -> str | None:
        return self._secrets.token_problem

    @property
    def bot(self) -> Bot | None:
        """The Bot, created on first use and only for a well-formed token; None without one."""
        token = self._secrets.token
        if self._bot is None and token and valid_token(token):
            api = TelegramAPIServer.from_base(self._api_base) if self._api_base else PRODUCTION
            self._bot = Bot(token, session=AiohttpSession(api=api, timeout=self._timeout))
        return self._bot

    async def probe(self) -> None:
        """The `telegram` health probe: getMe with a short timeout."""
        bot = self.bot
        if bot is None:
            raise DependencyDown(self.problem or "no valid bot token configured")
        if time.monotonic() - self._last_ok < PROBE_SUCCESS_TTL:
            return
        await bot.get_me(request_timeout=max(1, int(self._timeout)))
        self._last_ok = time.monotonic()

    async def send_text(self, chat_id: int, text: str) -> None:
        """Send `text` as is (no parse mode: alert texts come from labels and could hold markup) within the
        timeout; DeliveryFailed with a scrubbed reason when Telegram does not take it."""
        bot = self.bot
        if bot is None:
            raise DeliveryFailed(self.problem or "no valid bot token configured")
        try:
            await bot.send_message(chat_id, text, parse_mode=None, request_timeout=max(1, int(self._timeout)))
        except Exception as exc:
            raise DeliveryFailed(self._scrubber.error_text(f"{type(exc).__name__}: {exc}")) from None

    def start_webhook_registration(self, url: str | None, dispatcher: Dispatcher) -> None:
        """Register `url` with Telegram in the background: startup never waits for Telegram."""
        if url is None or self.bot is None:
            return
        if not self._secrets.webhook_secret:
            log.warning("WEBHOOK_URL is set but no webhook secret is configured: not registering the webhook")
            return
        self._webhook_task = asyncio.create_task(self._register_webhook(url, dispatcher))

    async def _register_webhook(self, url: str, dispatcher: Dispatcher) -> None:
        bot = self.bot
        assert bot is not None
        delay = 5.0
        while True:
            try:
                await bot.set_webhook(
                    url,
                    secret_token=self._secrets.webhook_secret,
                    allowed_updates=dispatcher.resolve_used_update_types(),
                    request_timeout=max(1, int(self._timeout)),
                )
                log.info("webhook registered with Telegram")
                return
            except Exception as exc:  # retried: Telegram may be unreachable for a while
                reason = self._scrubber.error_text(f"{type(exc).__name__}: {exc}")
                log.warning("setWebhook failed, retrying in %.0f s: %s", delay, reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, WEBHOOK_RETRY_MAX)

    async def close(self) -> None:
        if self._webhook_task is not None:
            self._webhook_task.cancel()
        if self._bot is not None:
            await self._bot.session.close()
