"""The API's ASGI application: `python3 -m uvicorn analyticbot_api.main:app`."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="AnalyticBot API", docs_url=None, redoc_url=None)


@app.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers: nothing else is checked here."""
    return {"status": "alive", "service": "api"}
