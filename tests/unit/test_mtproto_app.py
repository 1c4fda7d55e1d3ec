"""The collector's metrics without PostgreSQL or Telegram: its counters, the last cycle's time, the pool gauges
and the dependency states in GET /metrics. The store, the pool and Telethon's client are small fakes; the
collection cycle, the runtime and the app are the real code."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from analyticbot_common import __version__
from analyticbot_mtproto.collector import Collector, CollectorError
from analyticbot_mtproto.main import Runtime, create_app
from analyticbot_mtproto.settings import MtprotoSecrets, MtprotoSettings, TelegramCredentials
from analyticbot_mtproto.store import StatsStore
from fastapi import FastAPI

COMPLETED_AT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class RPCError(Exception):
    pass


class FloodWaitError(RPCError):
    def __init__(self, seconds: int) -> None:
        super().__init__(f"wait {seconds} s")
        self.seconds = seconds


@pytest.fixture(autouse=True)
def telethon(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What the cycle imports from Telethon (not installed in the toolkit's environment)."""
    module = types.ModuleType("telethon")
    module.errors = types.SimpleNamespace(RPCError=RPCError, FloodWaitError=FloodWaitError)  # type: ignore[attr-defined]
    request = types.SimpleNamespace(GetFullChannelRequest=lambda channel: channel)
    module.functions = types.SimpleNamespace(channels=request)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "telethon", module)
    yield


class FakeClient:
    """Telegram: every channel has 1000 subscribers, except the unknown ones."""

    def __init__(self, unknown: set[str]) -> None:
        self.unknown = unknown

    async def get_entity(self, username: str) -> Any:
        if username in self.unknown:
            raise ValueError(f'No user has "{username}" as username')
        return types.SimpleNamespace(title=username.title())

    async def __call__(self, entity: Any) -> Any:
        return types.SimpleNamespace(full_chat=types.SimpleNamespace(participants_count=1000))


class FakeStore:
    def __init__(self, usernames: list[str]) -> None:
        self.rows = list(enumerate(usernames, start=1))
        self.recorded: list[tuple[int, int]] = []

    async def channels(self, wanted: list[str]) -> list[tuple[int, str]]:
        return self.rows

    async def record(self, channel_id: int, subscribers: int, title: str | None) -> None:
        self.recorded.append((channel_id, subscribers))


class FakePool:
    def get_size(self) -> int:
        return 2

    def get_idle_size(self) -> int:
        return 1

    def get_max_size(self) -> int:
        return 3

    async def fetchval(self, query: str) -> object:
        return True


def scrape(app: FastAPI) -> str:
    async def run() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/metrics")).text

    return asyncio.run(run())


def started(app: FastAPI, store: FakeStore) -> Collector:
    """What the lifespan would create, with fakes: the pool, and a collector adding to the app's counters."""
    runtime: Runtime = app.state.runtime
    runtime.store = StatsStore(FakePool())
    secrets = MtprotoSecrets("pw", telegram=TelegramCredentials(1, "hash", "session"))
    settings = MtprotoSettings()
    fake: Any = store  # stands in for StatsStore: the two methods a cycle calls
    runtime.collector = Collector(settings, secrets, fake, runtime.totals, wall_clock=lambda: COMPLETED_AT)
    return runtime.collector


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.delenv("APP_VERSION", raising=False)
    monkeypatch.delenv("APP_RELEASE", raising=False)
    return create_app(MtprotoSettings(health_cache_ttl=0))


def test_before_startup_the_counters_are_zero_and_there_is_no_last_cycle(app: FastAPI) -> None:
    text = scrape(app)
    assert "# TYPE collector_cycles_total counter" in text and "collector_cycles_total 0.0" in text
    assert "# TYPE collector_channel_errors_total counter" in text and "collector_channel_errors_total 0.0" in text
    assert "collector_last_cycle_timestamp_seconds" not in text
    assert "db_pool_max" not in text
    assert 'dependency_up{critical="true",dependency="postgres"} 0.0' in text
    assert f'build_info{{release="unknown",service="mtproto",version="{__version__}"}} 1.0' in text
    exposed = {line.split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert not exposed & {"collector_cycles", "collector_channel_errors"}  # the gauges the counters replace


def test_a_cycle_counts_itself_its_skipped_channels_and_when_it_completed(app: FastAPI) -> None:
    store = FakeStore(["durov", "ghost", "telegram"])
    collector = started(app, store)
    asyncio.run(collector._cycle(FakeClient(unknown={"ghost"})))
    assert store.recorded == [(1, 1000), (3, 1000)]

    text = scrape(app)
    assert "collector_cycles_total 1.0" in text
    assert "collector_channel_errors_total 1.0" in text
    assert "collector_last_cycle_channels 2.0" in text
    assert "# TYPE collector_last_cycle_timestamp_seconds gauge" in text
    assert "collector_last_cycle_timestamp_seconds 1.7672256e+09" in text
    assert "db_pool_size 2.0" in text and "db_pool_in_use 1.0" in text and "db_pool_max 3.0" in text

    asyncio.run(collector._cycle(FakeClient(unknown=set())))
    text = scrape(app)
    assert "collector_cycles_total 2.0" in text and "collector_channel_errors_total 1.0" in text


def test_a_cycle_where_every_channel_fails_is_not_completed(app: FastAPI) -> None:
    """The last cycle's time stands still, so an alert sees a collector that runs but collects nothing."""
    collector = started(app, FakeStore(["ghost", "phantom"]))
    with pytest.raises(CollectorError, match="no channel could be collected"):
        asyncio.run(collector._cycle(FakeClient(unknown={"ghost", "phantom"})))
    text = scrape(app)
    assert "collector_cycles_total 0.0" in text
    assert "collector_channel_errors_total 2.0" in text
    assert "collector_last_cycle_channels 0.0" in text
    assert "collector_last_cycle_timestamp_seconds" not in text


def test_a_cycle_with_nothing_to_collect_completes(app: FastAPI) -> None:
    collector = started(app, FakeStore([]))
    asyncio.run(collector._cycle(FakeClient(unknown=set())))
    assert "collector_cycles_total 1.0" in scrape(app)
    assert collector.last_cycle_completed == COMPLETED_AT


def test_the_disabled_collector_has_no_dependency_sample(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    runtime.store = StatsStore(FakePool())
    settings = MtprotoSettings()
    runtime.collector = Collector(
        settings, MtprotoSecrets("pw", disabled_reason="no credentials"), runtime.store, runtime.totals
    )
    up = sorted(line for line in scrape(app).splitlines() if line.startswith("dependency_up{"))
    assert up == [
        'dependency_up{critical="false",dependency="schema"} 1.0',
        'dependency_up{critical="true",dependency="postgres"} 1.0',
    ]
