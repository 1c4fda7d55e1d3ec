"""The shared health framework: aggregation, bounded concurrent probes, the TTL cache, scrubbing, and the routes."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from analyticbot_common.health import (
    Dependency,
    DependencyDisabled,
    DependencyDisabledError,
    DependencyDown,
    DependencyResult,
    HealthMonitor,
    StatusSignal,
    aggregate,
    run_probe,
)
from analyticbot_common.http import install
from analyticbot_common.metrics import Metrics, percentile
from analyticbot_common.scrub import Scrubber, ScrubFilter
from fastapi import FastAPI

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"  # the shape of a bot token, not a real one


def result(state: str, critical: bool) -> DependencyResult:
    return DependencyResult("dep", state, critical, 1.0, None, "2026-01-01T00:00:00.000Z")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], "healthy"),
        ([("up", True)], "healthy"),
        ([("up", False)], "healthy"),
        ([("down", True)], "unhealthy"),
        ([("down", False)], "degraded"),
        ([("disabled", True)], "degraded"),
        ([("disabled", False)], "degraded"),
        ([("up", True), ("down", False)], "degraded"),
        ([("up", True), ("disabled", False)], "degraded"),
        ([("down", True), ("up", False)], "unhealthy"),
        ([("down", True), ("down", False)], "unhealthy"),
        ([("up", True), ("up", False)], "healthy"),
    ],
)
def test_aggregation_rules(states: list[tuple[str, bool]], expected: str) -> None:
    assert aggregate(result(state, critical) for state, critical in states) == expected


async def up() -> None:
    return None


async def down() -> None:
    raise ConnectionRefusedError("connection refused")


async def disabled() -> DependencyDisabled:
    return DependencyDisabled("not configured")


async def disabled_by_raise() -> None:
    raise DependencyDisabledError("switched off")


async def down_with_reason() -> None:
    raise DependencyDown("no valid bot token configured")


def test_probe_outcomes_become_states_and_reasons() -> None:
    async def run() -> list[DependencyResult]:
        probes = [up, down, disabled, disabled_by_raise, down_with_reason]
        return [await run_probe(Dependency(p.__name__, p)) for p in probes]

    ok, failed, off, off_raised, reasoned = asyncio.run(run())
    assert (ok.state, ok.error) == ("up", None)
    assert failed.state == "down" and failed.error == "ConnectionRefusedError: connection refused"
    assert (off.state, off.error) == ("disabled", "not configured")
    assert (off_raised.state, off_raised.error) == ("disabled", "switched off")
    assert (reasoned.state, reasoned.error) == ("down", "no valid bot token configured")
    assert ok.checked_at.endswith("Z") and ok.latency_ms >= 0


def test_monitor_aggregates_real_probes() -> None:
    monitor = HealthMonitor([Dependency("db", up), Dependency("cache", down, critical=False)])
    report = asyncio.run(monitor.check())
    assert report.status == "degraded"
    assert report.ready and report.failing_critical == []


def test_a_hung_probe_costs_only_its_timeout() -> None:
    async def hang() -> None:
        await asyncio.sleep(10)

    monitor = HealthMonitor([Dependency("hung", hang, timeout=0.2), Dependency("db", up)])
    started = time.perf_counter()
    report = asyncio.run(monitor.check())
    elapsed = time.perf_counter() - started
    hung = next(d for d in report.dependencies if d.name == "hung")
    assert elapsed < 0.5
    assert hung.state == "down" and "timeout" in (hung.error or "")
    assert report.status == "unhealthy"


def test_probes_run_concurrently() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.2)

    monitor = HealthMonitor([Dependency(f"slow{i}", slow, timeout=1.0) for i in range(3)])
    started = time.perf_counter()
    report = asyncio.run(monitor.check())
    assert time.perf_counter() - started < 0.4
    assert [d.state for d in report.dependencies] == ["up", "up", "up"]


class Counting:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    async def __call__(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)


def test_reports_are_cached_for_the_ttl() -> None:
    now = [100.0]
    probe = Counting()
    monitor = HealthMonitor([Dependency("db", probe)], ttl=1.0, clock=lambda: now[0])

    async def run() -> None:
        await monitor.check()
        now[0] += 0.5
        await monitor.check()
        assert probe.calls == 1  # within the TTL: served from the cache
        now[0] += 0.6
        await monitor.check()
        assert probe.calls == 2  # past the TTL: probed again

    asyncio.run(run())


def test_concurrent_callers_share_one_refresh() -> None:
    probe = Counting(delay=0.1)
    monitor = HealthMonitor([Dependency("db", probe)], ttl=1.0)

    async def run() -> None:
        reports = await asyncio.gather(*(monitor.check() for _ in range(10)))
        assert all(r is reports[0] for r in reports)

    asyncio.run(run())
    assert probe.calls == 1


def test_readiness_checks_only_critical_dependencies() -> None:
    optional = Counting(delay=0.3)
    monitor = HealthMonitor([Dependency("db", up), Dependency("slow", optional, critical=False)], ttl=0)
    started = time.perf_counter()
    report = asyncio.run(monitor.check(critical_only=True))
    assert time.perf_counter() - started < 0.2
    assert optional.calls == 0 and [d.name for d in report.dependencies] == ["db"]


def test_errors_never_carry_registered_secrets() -> None:
    secret = "Zq8-very-private-value"
    scrubber = Scrubber([secret])

    async def leaky() -> None:
        raise RuntimeError(f"login with {secret} refused")

    report = asyncio.run(HealthMonitor([Dependency("db", leaky)], scrubber=scrubber).check())
    error = report.dependencies[0].error or ""
    assert secret not in error and "***" in error


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("could not connect to postgresql://analyticbot:pa55-w0rd@postgres:5432/db", "pa55-w0rd"),
        ("redis://:hunter2hunter2@redis:6379/0 refused", "hunter2hunter2"),
        ("dsn host=db password=s3cr3tvalue user=x", "s3cr3tvalue"),
        (f"POST https://api.telegram.org/bot{TOKEN}/getMe failed", TOKEN),
        (f"token {TOKEN} rejected", TOKEN.split(":")[1]),
    ],
)
def test_secret_shapes_are_scrubbed(text: str, leak: str) -> None:
    scrubbed = Scrubber().error_text(text)
    assert leak not in scrubbed
    assert "***" in scrubbed


def test_errors_are_truncated_after_scrubbing() -> None:
    secret = "S" * 40
    scrubber = Scrubber([secret])
    # The secret straddles the 200-character limit: truncating first would leave half of it in the text.
    text = "x" * 180 + secret + "y" * 100
    scrubbed = scrubber.error_text(text)
    assert len(scrubbed) <= 200
    assert "SSSS" not in scrubbed


def test_log_filter_scrubs_records_and_arguments(caplog: pytest.LogCaptureFixture) -> None:
    scrubber = Scrubber(["Zq8-very-private-value"])
    logger = logging.getLogger("test.scrub")
    handler = caplog.handler
    handler.addFilter(ScrubFilter(scrubber))
    try:
        with caplog.at_level(logging.INFO, logger="test.scrub"):
            logger.info("calling %s with %s", f"https://api.telegram.org/bot{TOKEN}/getMe", "Zq8-very-private-value")
    finally:
        handler.removeFilter(handler.filters[-1])
    assert TOKEN not in caplog.text and "Zq8-very-private-value" not in caplog.text
    assert "***" in caplog.text


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


class Switch:
    """A probe whose outcome the test sets."""

    def __init__(self) -> None:
        self.failing = False

    async def __call__(self) -> None:
        if self.failing:
            raise ConnectionError("gone")


def make_app(critical: Switch, optional: Switch) -> tuple[FastAPI, Metrics]:
    monitor = HealthMonitor(
        [Dependency("postgres", critical), Dependency("telegram", optional, critical=False)],
        ttl=0,  # every request sees the switches' current state
    )
    metrics = Metrics("test")
    metrics.register_gauge("db_pool_size", "pool size", lambda: 3)
    metrics.register_gauge("broken", "a reader that fails", lambda: 1 / 0)
    app = FastAPI()
    install(app, monitor, metrics, "test", version="9.9.9")

    @app.get("/boom/{item}")
    async def boom(item: str) -> dict[str, str]:
        return {"item": item}

    return app, metrics


def get(app: FastAPI, *paths: str) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(run())


def test_routes_when_healthy_degraded_and_unhealthy() -> None:
    critical, optional = Switch(), Switch()
    app, _ = make_app(critical, optional)

    live, ready, health = get(app, "/health/live", "/health/ready", "/health")
    assert live.status_code == 200 and live.json() == {"status": "alive", "service": "test"}
    assert ready.status_code == 200 and ready.json()["failing"] == []
    body = health.json()
    assert health.status_code == 200 and body["status"] == "healthy"
    assert set(body) == {"service", "status", "version", "uptime_s", "dependencies"}
    assert body["version"] == "9.9.9"
    assert set(body["dependencies"]["postgres"]) == {"state", "critical", "latency_ms", "error", "checked_at"}

    optional.failing = True
    ready, health = get(app, "/health/ready", "/health")
    assert ready.status_code == 200
    assert health.status_code == 200 and health.json()["status"] == "degraded"

    critical.failing = True
    live, ready, health = get(app, "/health/live", "/health/ready", "/health")
    assert live.status_code == 200
    assert ready.status_code == 503 and ready.json()["failing"] == ["postgres"]
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    assert health.json()["dependencies"]["postgres"]["error"] == "ConnectionError: gone"
    assert health.headers["cache-control"] == "no-store"


def test_metrics_are_prometheus_text() -> None:
    app, _ = make_app(Switch(), Switch())
    _, response = get(app, "/boom/a", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'http_requests_total{method="GET",route="/boom/{item}",status_class="2xx"} 1.0' in response.text
    assert "db_pool_size 3.0" in response.text
    assert "# TYPE http_request_duration_seconds histogram" in response.text


def test_performance_reports_measured_figures() -> None:
    app, _ = make_app(Switch(), Switch())
    responses = get(app, "/boom/a", "/boom/b", "/missing", "/health/live", "/performance")
    figures = responses[-1].json()
    assert figures["requests"]["total"] == 4  # the /performance request itself is still running
    assert figures["requests"]["by_status_class"] == {"2xx": 3, "4xx": 1}
    assert figures["latency_ms"]["samples"] == 4
    assert 0 < figures["latency_ms"]["p50"] <= figures["latency_ms"]["p90"] <= figures["latency_ms"]["p99"]
    assert figures["gauges"] == {"db_pool_size": 3, "broken": None}
    assert figures["uptime_s"] >= 0


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics("a"), Metrics("b")
    first.observe("/x", "GET", 200, 0.01)
    assert first.registry is not second.registry
    assert second.performance()["requests"]["total"] == 0  # type: ignore[index]


def test_a_probe_that_stalls_its_own_cancellation_still_costs_only_its_timeout() -> None:
    """asyncpg cancelling a query on a paused server blocks; asyncio.wait_for would wait for it."""
    from analyticbot_common.health import Dependency, run_probe

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(2)  # winding down takes a while, as a real driver's might
            raise

    async def measure() -> tuple[float, str, str | None]:
        started = time.perf_counter()
        result = await run_probe(Dependency("db", stubborn, critical=True, timeout=0.2))
        return time.perf_counter() - started, result.state, result.error

    elapsed, state, error = asyncio.run(measure())
    assert state == "down" and "timeout" in (error or "")
    assert elapsed < 0.5, f"took {elapsed:.2f} s"


class _Store:
    """A dependency that is up until told otherwise, as one process's connection to it would be."""

    def __init__(self) -> None:
        self.up = True

    async def probe(self) -> None:
        if not self.up:
            raise ConnectionRefusedError("refused")


def _process(store: _Store, signal_path: Path | None) -> HealthMonitor:
    """One worker process's monitor of `store`, with a long ttl, sharing the signal at `signal_path` if any."""
    signal = StatusSignal(signal_path) if signal_path is not None else None
    return HealthMonitor([Dependency("postgres", store.probe)], ttl=60, signal=signal)


def test_processes_sharing_a_status_signal_agree_as_soon_as_one_sees_a_change(tmp_path: Path) -> None:
    """Two monitors stand for two worker processes of one service: when one sees the store go, the other
    drops the healthy report it cached a moment ago and probes again, instead of serving it for its ttl."""
    store = _Store()
    first, second = _process(store, tmp_path / "signal"), _process(store, tmp_path / "signal")
    assert asyncio.run(first.check()).status == "healthy"
    assert asyncio.run(second.check()).status == "healthy"
    store.up = False
    first.invalidate()  # its ttl ran out first
    assert asyncio.run(first.check()).status == "unhealthy"
    assert asyncio.run(second.check()).status == "unhealthy"  # at once, not 60 s later
    store.up = True
    second.invalidate()
    assert asyncio.run(second.check()).status == "healthy"
    assert asyncio.run(first.check()).status == "healthy"


def test_without_a_shared_signal_each_process_serves_its_cache_for_its_ttl() -> None:
    """The behaviour the signal replaces (one process alone needs no more)."""
    store = _Store()
    first, second = _process(store, None), _process(store, None)
    asyncio.run(first.check()), asyncio.run(second.check())
    store.up = False
    first.invalidate()
    assert asyncio.run(first.check()).status == "unhealthy"
    assert asyncio.run(second.check()).status == "healthy"


def test_an_unchanged_status_announces_nothing(tmp_path: Path) -> None:
    store = _Store()
    signal = StatusSignal(tmp_path / "signal")
    monitor = HealthMonitor([Dependency("postgres", store.probe)], ttl=0, signal=signal)
    for _ in range(3):
        asyncio.run(monitor.check())
    assert not signal.path.exists()
    store.up = False
    asyncio.run(monitor.check())
    assert signal.path.exists()


def test_a_report_measured_while_another_process_saw_a_change_is_not_trusted(tmp_path: Path) -> None:
    """A probe that started before the store went can finish after another process announced it: that
    report must not be served as current."""
    signal_path = tmp_path / "signal"
    calls = []

    async def probe() -> None:
        calls.append(1)
        if len(calls) == 1:
            StatusSignal(signal_path).announce()  # another process, while this first probe runs

    late = HealthMonitor([Dependency("postgres", probe)], ttl=60, signal=StatusSignal(signal_path))
    assert asyncio.run(late.check()).status == "healthy"
    asyncio.run(late.check())
    assert len(calls) == 2  # probed again despite the 60 s ttl


def test_a_first_report_that_is_not_healthy_is_announced(tmp_path: Path) -> None:
    """The process that first sees the outage may never have reported before (another answered every
    earlier call): the others, which hold healthy reports, must hear of it all the same."""
    store = _Store()
    other = _process(store, tmp_path / "signal")
    assert asyncio.run(other.check()).status == "healthy"
    store.up = False
    newcomer = _process(store, tmp_path / "signal")
    assert asyncio.run(newcomer.check()).status == "unhealthy"
    assert asyncio.run(other.check()).status == "unhealthy"
