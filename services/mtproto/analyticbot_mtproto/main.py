"""The collector's ASGI application: health endpoints beside the collection loop."""

from __future__ import annotations

import telethon
from fastapi import FastAPI

app = FastAPI(title="AnalyticBot MTProto collector", docs_url=None, redoc_url=None)


@app.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers: nothing else is checked here."""
    return {"status": "alive", "service": "mtproto", "telethon": telethon.__version__}
