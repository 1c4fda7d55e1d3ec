"""The bot's ASGI application (`analyticbot_bot.main:app`): Telegram's webhook, Alertmanager's webhook and the
health endpoints.

nginx proxies `/bot/` here with the prefix stripped, so POST /webhook is https://HOST/bot/webhook outside.
POST /alerts (alerts.py) is for Alertmanager on the internal network only: the proxy never routes it.
Secrets are read in the lifespan, before serving: a missing webhook secret outside development stops the
process with one line; a missing or malformed bot token only turns the `telegram` dependency down.
aiogram itself loads in the background (see engine.py): health answers at once."""

from __future__ import annotations

import asyncio
import hmac
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

from analyticbot_common.health import Dependency, DependencyDown, HealthMonitor
from analyticbot_common.http import install
from analyticbot_common.metrics import Metrics
from analyticbot_common.scrub import SCRUBBER
from analyticbot_common.settings import SettingsError, load_settings
from analyticbot_common.startup import StartupAborted
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from .alerts import AlertMetrics, AlertRelay, DeliveryFailed, bearer_token
from .api_client import ApiClient
from .settings import BotSecrets, BotSettings, load_secrets, valid_token

if TYPE_CHECKING:
    from .engine import Engine

SERVICE = "bot"
log = logging.getLogger("analyticbot.bot")


def secret_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; no configured secret means no request is accepted."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class EngineHolder:
    """The aiogram engine once it has loaded; until then the telegram dependency is down as "starting"."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.error: str | None = None

    async def load(self, settings: BotSettings, secrets: BotSecrets, api: ApiClient) -> None:
        try:
            # The slow part (importing aiogram's types) runs off the event loop.
            module = await asyncio.to_thread(importlib.import_module, "analyticbot_bot.engine")
            self.engine = module.build_engine(settings, secrets, api)
        except Exception as exc:  # reported by the probe; the process keeps serving health
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("loading the Telegram client failed: %s", self.error)

    async def probe(self) -> None:
        if self.engine is None:
            raise DependencyDown(self.error or "starting: loading the Telegram client")
        await self.engine.telegram.probe()

    async def send_text(self, chat_id: int, text: str) -> None:
        # Until aiogram has loaded there is no client to send with: 503, and Alertmanager retries shortly.
        if self.engine is None:
            raise DeliveryFailed(self.error or "the Telegram client is still loading")
        await self.engine.telegram.send_text(chat_id, text)


def create_app(settings: BotSettings | None = None, secrets: BotSecrets | None = None) -> FastAPI:
    settings = settings or load_settings(BotSettings)
    api = ApiClient(settings.api_base_url, timeout=settings.api_timeout)
    holder = EngineHolder()
    monitor = HealthMonitor(
        [
            Dependency("telegram", holder.probe, critical=False, timeout=settings.telegram_api_timeout),
            Dependency("api", api.live, critical=False, timeout=1.0),
        ],
        ttl=settings.health_cache_ttl,
    )
    metrics = Metrics(SERVICE)
    webhook_secret: list[str | None] = [None]
    relay = AlertRelay(AlertMetrics(metrics.registry), holder.send_text)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            loaded = secrets or load_secrets(settings)
        except SettingsError as exc:
            log.error("startup aborted: %s", exc)
            raise StartupAborted(str(exc)) from None
        webhook_secret[0] = loaded.webhook_secret
        api.token = loaded.api_token
        SCRUBBER.add(loaded.alert_token)
        relay.configure(token=loaded.alert_token, chat_id=loaded.alert_chat_id, telegram=valid_token(loaded.token))
        if loaded.alert_token is None:
            log.warning("ALERT_WEBHOOK_TOKEN_FILE names no token: POST /alerts refuses every call")
        elif loaded.alert_chat_id is None or not valid_token(loaded.token):
            log.info("no operator chat or no bot token: alerts are written to the log, not sent")
        loader = asyncio.create_task(holder.load(settings, loaded, api))
        log.info("bot serving (environment %s); loading the Telegram client", settings.environment)
        try:
            yield
        finally:
            loader.cancel()
            if holder.engine is not None:
                await holder.engine.telegram.close()
            await api.close()

    app = FastAPI(title="AnalyticBot bot", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = holder
    app.state.alerts = relay
    install(app, monitor, metrics, SERVICE, settings.app_version)

    @app.post("/webhook")
    async def webhook(
        request: Request,
        secret_token: Annotated[str | None, Header(alias="X-Telegram-Bot-Api-Secret-Token")] = None,
    ) -> JSONResponse:
        if not secret_matches(secret_token, webhook_secret[0]):
            return JSONResponse({"detail": "unauthorized"}, status_code=401)
        if holder.engine is None:
            return JSONResponse({"detail": "bot not ready"}, status_code=503)
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"detail": "not a Telegram update"}, status_code=400)
        status = await holder.engine.handle_update(payload)
        detail = {200: {"ok": True}, 400: {"detail": "not a Telegram update"}, 503: {"detail": "bot not configured"}}
        return JSONResponse(detail[status], status_code=status)

    @app.post("/alerts")
    async def alerts(request: Request, authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
        if not secret_matches(bearer_token(authorization), relay.token):
            return relay.reject(401, "unauthorized")
        return await relay.receive(request)

    return app


app = create_app()
