"""The bot's commands: /start and /stats <channel>.

Handlers get the API client from the dispatcher's workflow data (`dispatcher["api"]`), so tests can pass a fake.
Replies are plain text: titles come from Telegram and could hold markup."""

from __future__ import annotations

import logging
import re

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message

from .api_client import ApiClient, ApiUnavailable

log = logging.getLogger("analyticbot.bot.handlers")
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_]{3,64}", re.ASCII)

GREETING = (
    "Hi! I am AnalyticBot: I track the views of Telegram channels' posts.\n"
    "Send /stats <channel> (for example /stats durov) to see a channel's figures."
)
USAGE = "Usage: /stats <channel>, for example /stats durov"
BAD_NAME = "That is not a channel username: 3 to 64 letters, digits or underscores."
API_DOWN = "The analytics service is unavailable right now; please try again in a minute."


async def stats_text(api: ApiClient, argument: str | None) -> str:
    """The reply to /stats: kept apart from aiogram's types so that it can be tested with a fake client."""
    channel = (argument or "").strip().removeprefix("@")
    if not channel:
        return USAGE
    if not CHANNEL_PATTERN.fullmatch(channel):
        return BAD_NAME
    try:
        summary = await api.summary(channel.lower())
    except ApiUnavailable as exc:
        log.warning("/stats %s: API unavailable (%s)", channel, exc)
        return API_DOWN
    if summary is None:
        return f"I don't track @{channel} yet."
    title = f" ({summary.title})" if summary.title else ""
    return (
        f"@{summary.username}{title}\n"
        f"Posts: {summary.posts:,}\n"
        f"Total views: {summary.total_views:,}\n"
        f"Most viewed post: {summary.max_views:,} views"
    )


def build_router() -> Router:
    router = Router(name="analyticbot")

    @router.message(CommandStart())  # type: ignore[untyped-decorator]  # aiogram is not installed for mypy
    async def start(message: Message) -> None:
        await message.answer(GREETING)

    @router.message(Command("stats"))  # type: ignore[untyped-decorator]  # aiogram is not installed for mypy
    async def stats(message: Message, command: CommandObject, api: ApiClient) -> None:
        await message.answer(await stats_text(api, command.args))

    return router
