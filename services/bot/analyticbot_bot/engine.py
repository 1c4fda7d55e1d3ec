"""Everything that needs aiogram, built in one place.

aiogram's Telegram types are several hundred pydantic models; built all at once they take
seconds and ~100 MiB. lazy_types builds each on first use instead (the few every update
needs are built here, at load). main.py imports this module in a worker thread after the
server is up: health answers from the first second, and the `telegram` dependency reports
"starting" until this has loaded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import lazy_types

lazy_types.install()  # before aiogram's first import (telegram.py and handlers.py import it too)

from aiogram import Dispatcher  # noqa: E402
from aiogram.methods import TelegramMethod  # noqa: E402
from aiogram.types import Update  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from .api_client import ApiClient  # noqa: E402
from .handlers import build_router  # noqa: E402
from .settings import BotSecrets, BotSettings  # noqa: E402
from .telegram import TelegramGateway  # noqa: E402

log = logging.getLogger("analyticbot.bot")
lazy_types.warm_up()  # this module is imported in a worker thread (main.py): the first update doesn't wait


@dataclass
class Engine:
    telegram: TelegramGateway
    dispatcher: Dispatcher

    async def handle_update(self, payload: Any) -> int:
        """Feed one webhook update; the HTTP status to answer with."""
        bot = self.telegram.bot
        if bot is None:
            return 503
        try:
            update = Update.model_validate(payload, context={"bot": bot})
        except (ValueError, ValidationError):
            return 400
        try:
            result = await self.dispatcher.feed_webhook_update(bot, update)
            if isinstance(result, TelegramMethod):
                await self.dispatcher.silent_call_request(bot, result)
        except Exception as exc:
            # Answered 200 all the same: a non-2xx makes Telegram resend the update again and again.
            log.warning("update %s failed: %s", update.update_id, type(exc).__name__)
        return 200


def build_engine(settings: BotSettings, secrets: BotSecrets, api: ApiClient) -> Engine:
    telegram = TelegramGateway(timeout=settings.telegram_api_timeout, api_base=settings.telegram_api_base)
    telegram.configure(secrets)
    dispatcher = Dispatcher()
    dispatcher.include_router(build_router())
    dispatcher["api"] = api  # handed to handlers that declare an `api` parameter
    if telegram.bot is None:
        log.warning("bot running without Telegram: %s", telegram.problem)
    telegram.start_webhook_registration(settings.webhook_url, dispatcher)
    return Engine(telegram, dispatcher)
