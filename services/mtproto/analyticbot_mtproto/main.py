"""The collector's ASGI application (`analyticbot_mtproto.main:app`): health endpoints beside the collection loop.

Dependencies: `postgres` (critical), `schema` (optional: down until the API's migrations created channel_stats)
and `telegram` (optional: disabled without credentials, else the collection loop's state)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from analyticbot_common.health import Dependency, DependencyDisabled, DependencyDown, HealthMonitor
from analyticbot_common.http import install
from analyticbot_common.metrics import Metrics
from analyticbot_common.scrub import SCRUBBER
from analyticbot_common.settings import SettingsError, load_settings
from analyticbot_common.startup import StartupAborted
from fastapi import FastAPI

from .collector import Collector, CollectorTotals
from .settings import MtprotoSettings, load_secrets
from .store import StatsStore, create_pool

SERVICE = "mtproto"
log = logging.getLogger("analyticbot.mtproto")
# Telethon logs every connection step at INFO; the collector logs what matters (connected, failures) itself.
logging.getLogger("telethon").setLevel(logging.WARNING)


class Runtime:
    """What the lifespan creates; the probes and gauges read it, and report "not started" until then."""

    def __init__(self, totals: CollectorTotals) -> None:
        # Registered with the app, once: the collector that adds to them exists only from startup on.
        self.totals = totals
        self.store: StatsStore | None = None
        self.collector: Collector | None = None

    def _store(self) -> StatsStore:
        if self.store is None:
            raise DependencyDown("not started yet")
        return self.store

    async def probe_postgres(self) -> None:
        await self._store().ping()

    async def probe_schema(self) -> None:
        if not await self._store().schema_ready():
            raise DependencyDown("table channel_stats does not exist yet (the api applies the migrations)")

    async def probe_telegram(self) -> DependencyDisabled | None:
        if self.collector is None:
            raise DependencyDown("not started yet")
        return await self.collector.probe()

    # --- gauges: None until the lifespan has created what they measure ---

    def pool_size(self) -> int | None:
        return self.store.size() if self.store else None

    def pool_in_use(self) -> int | None:
        return self.store.in_use() if self.store else None

    def pool_max(self) -> int | None:
        return self.store.max_size() if self.store else None

    def collected(self) -> int | None:
        return self.collector.last_cycle_channels if self.collector else None

    def last_cycle_completed(self) -> float | None:
        return self.collector.last_cycle_completed if self.collector else None

    async def close(self) -> None:
        if self.collector is not None:
            await self.collector.stop()
        if self.store is not None:
            try:
                await asyncio.wait_for(self.store.pool.close(), timeout=5.0)
            except Exception as exc:  # a pool whose server is gone may not close cleanly; end it anyway
                log.warning("closing the database pool failed (%s); terminating it", type(exc).__name__)
                self.store.pool.terminate()


def create_app(settings: MtprotoSettings | None = None) -> FastAPI:
    settings = settings or load_settings(MtprotoSettings)
    metrics = Metrics(SERVICE)
    runtime = Runtime(
        CollectorTotals(
            cycles=metrics.counter(
                "collector_cycles_total", "Completed collection cycles (not those where every channel failed)."
            ),
            channel_errors=metrics.counter("collector_channel_errors_total", "Channels skipped because of an error."),
        )
    )
    monitor = HealthMonitor(
        [
            Dependency("postgres", runtime.probe_postgres, critical=True, timeout=1.0),
            Dependency("schema", runtime.probe_schema, critical=False, timeout=1.0),
            Dependency("telegram", runtime.probe_telegram, critical=False, timeout=1.0),
        ],
        ttl=settings.health_cache_ttl,
    )
    metrics.register_gauge("db_pool_size", "Connections open in the PostgreSQL pool.", runtime.pool_size)
    metrics.register_gauge("db_pool_in_use", "Pool connections currently acquired.", runtime.pool_in_use)
    metrics.register_gauge("db_pool_max", "The most connections the pool may open.", runtime.pool_max)
    metrics.register_gauge("collector_last_cycle_channels", "Channels collected in the last cycle.", runtime.collected)
    metrics.register_gauge(
        "collector_last_cycle_timestamp_seconds",
        "Unix time the last completed collection cycle ended (absent before the first).",
        runtime.last_cycle_completed,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            secrets = load_secrets(settings)
        except SettingsError as exc:
            log.error("startup aborted: %s", exc)
            raise StartupAborted(str(exc)) from None
        for value in secrets.values():
            SCRUBBER.add(value)
        # An empty pool: creating it needs no server, so health is served while PostgreSQL is down.
        runtime.store = StatsStore(await create_pool(settings, secrets))
        runtime.collector = Collector(settings, secrets, runtime.store, runtime.totals)
        runtime.collector.start()
        log.info("collector ready (environment %s)", settings.environment)
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="AnalyticBot MTProto collector", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.runtime = runtime
    install(app, monitor, metrics, SERVICE, settings.app_version)
    return app


app = create_app()
