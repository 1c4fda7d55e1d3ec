"""The API's ASGI application (`analyticbot_api.main:app`): channel endpoints, health and metrics.

`create_app` builds it from settings (environment only; secrets are read in the lifespan, before serving).
Interactive docs exist only in development: Swagger UI needs inline JavaScript and a CDN, which the
production CSP forbids."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from analyticbot_common.health import Dependency, HealthMonitor
from analyticbot_common.http import install
from analyticbot_common.metrics import Metrics
from analyticbot_common.settings import SettingsError, load_settings
from analyticbot_common.startup import StartupAborted
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .repository import DatabaseUnavailable
from .routes import SummaryFastPath, router
from .runtime import Resources
from .service import CacheStats
from .settings import ApiSettings

SERVICE = "api"
log = logging.getLogger("analyticbot.api")


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or load_settings(ApiSettings)
    metrics = Metrics(SERVICE)
    cache_stats = CacheStats(
        hits_total=metrics.counter("cache_hits_total", "Channel summaries served from Redis."),
        misses_total=metrics.counter("cache_misses_total", "Channel summaries computed from PostgreSQL."),
    )
    resources = Resources(settings, cache_stats=cache_stats)
    monitor = HealthMonitor(
        [
            Dependency("postgres", resources.probe_postgres, critical=True, timeout=1.0),
            Dependency("redis", resources.probe_redis, critical=True, timeout=1.0),
            Dependency("redis_writes", resources.probe_redis_writes, critical=False, timeout=1.0),
        ],
        ttl=settings.health_cache_ttl,
    )
    metrics.register_gauge("db_pool_size", "Connections open in the PostgreSQL pool.", resources.pool_size)
    metrics.register_gauge("db_pool_in_use", "Pool connections currently acquired.", resources.pool_in_use)
    metrics.register_gauge("db_pool_max", "The most connections this process's pool may open.", resources.pool_max)
    metrics.register_gauge(
        "cache_copies_tracked",
        "1 while Redis tracks the summary keys for this process, which then keeps copies (0: reads Redis each time).",
        lambda: float(resources.local_copies.tracking),
    )
    metrics.register_gauge(
        "cache_hit_ratio",
        "Hits over lookups of the summary cache, in the answering process.",
        resources.cache_hit_ratio,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            app.state.channels = await resources.start()
            app.state.tokens = resources.tokens
        except (SettingsError, StartupAborted) as exc:
            # The one line an operator needs; the process then exits and its restart policy takes over.
            log.error("startup aborted: %s", exc)
            await resources.close()
            raise StartupAborted(str(exc)) from None
        log.info("api ready (environment %s)", settings.environment)
        try:
            yield
        finally:
            app.state.channels = app.state.tokens = None
            await resources.close()

    development = settings.development
    app = FastAPI(
        title="AnalyticBot API",
        version=settings.app_version,
        lifespan=lifespan,
        docs_url="/docs" if development else None,
        redoc_url="/redoc" if development else None,
        openapi_url="/openapi.json" if development else None,
    )
    app.state.channels = app.state.tokens = None
    app.state.resources = resources
    app.state.monitor = monitor
    install(app, monitor, metrics, SERVICE, settings.app_version)
    app.include_router(router)
    # First, so that it sees a summary request before the FastAPI route it stands in for.
    app.router.routes.insert(0, SummaryFastPath())

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return JSONResponse({"detail": "database unavailable"}, status_code=503, headers={"Retry-After": "5"})

    return app


app = create_app()
