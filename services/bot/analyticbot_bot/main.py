"""The bot's ASGI application: Telegram's webhook and the health endpoints."""

from __future__ import annotations

from aiogram import Dispatcher
from fastapi import FastAPI

dispatcher = Dispatcher()
app = FastAPI(title="AnalyticBot bot", docs_url=None, redoc_url=None)


@app.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers: nothing else is checked here."""
    return {"status": "alive", "service": "bot"}
