"""The metrics every service exposes from the common code, as the alert rules read them: build_info,
dependency_up from the health monitor's report, and counters on the service's own registry."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from analyticbot_common import __version__
from analyticbot_common.health import Dependency, DependencyDisabled, HealthMonitor, HealthReport
from analyticbot_common.http import install
from analyticbot_common.metrics import Metrics, dependency_states, release_label
from fastapi import FastAPI


class Probe:
    """A probe whose outcome the test sets, counting its calls."""

    def __init__(self, outcome: str = "up") -> None:
        self.outcome = outcome
        self.calls = 0

    async def __call__(self) -> DependencyDisabled | None:
        self.calls += 1
        if self.outcome == "down":
            raise ConnectionRefusedError("refused")
        if self.outcome == "disabled":
            return DependencyDisabled("not configured")
        return None


def app_with(monitor: HealthMonitor, metrics: Metrics | None = None, version: str = "9.9.9") -> FastAPI:
    app = FastAPI()
    install(app, monitor, metrics or Metrics("test"), "test", version=version)
    return app


def scrape(app: FastAPI, *paths: str) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(run())


def lines(response: httpx.Response, name: str) -> list[str]:
    """The sample lines of metric `name` (with or without labels)."""
    return [line for line in response.text.splitlines() if line.startswith((f"{name} ", f"{name}{{"))]


def test_build_info_is_1_with_the_service_its_declared_version_and_the_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_RELEASE", "2026.12.06-3f2a1c")
    (response,) = scrape(app_with(HealthMonitor(), Metrics("api"), version="1.4.2"), "/metrics")
    assert "# TYPE build_info gauge" in response.text
    assert lines(response, "build_info") == [
        'build_info{release="2026.12.06-3f2a1c",service="api",version="1.4.2"} 1.0'
    ]


@pytest.mark.parametrize("value", [None, ""])
def test_without_app_release_the_release_is_unknown_and_the_version_the_common_one(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("APP_RELEASE", raising=False)
    else:
        monkeypatch.setenv("APP_RELEASE", value)
    assert release_label() == "unknown"
    metrics = Metrics("bot")
    app = FastAPI()
    install(app, HealthMonitor(), metrics, "bot")  # as a service that declares no version of its own
    (response,) = scrape(app, "/metrics")
    assert lines(response, "build_info") == [
        f'build_info{{release="unknown",service="bot",version="{__version__}"}} 1.0'
    ]


def test_dependency_up_is_1_or_0_with_the_dependency_and_whether_it_is_critical() -> None:
    postgres, telegram = Probe("down"), Probe("up")
    monitor = HealthMonitor([Dependency("postgres", postgres), Dependency("telegram", telegram, critical=False)], ttl=0)
    (response,) = scrape(app_with(monitor), "/metrics")
    assert response.status_code == 200
    assert "# TYPE dependency_up gauge" in response.text
    assert sorted(lines(response, "dependency_up")) == [
        'dependency_up{critical="false",dependency="telegram"} 1.0',
        'dependency_up{critical="true",dependency="postgres"} 0.0',
    ]

    postgres.outcome = "up"
    (response,) = scrape(app_with(monitor), "/metrics")
    assert 'dependency_up{critical="true",dependency="postgres"} 1.0' in response.text


def test_a_disabled_dependency_has_no_sample_so_no_alert_takes_it_for_down() -> None:
    monitor = HealthMonitor(
        [Dependency("postgres", Probe("up")), Dependency("telegram", Probe("disabled"), critical=False)], ttl=0
    )
    (response,) = scrape(app_with(monitor), "/metrics")
    assert lines(response, "dependency_up") == ['dependency_up{critical="true",dependency="postgres"} 1.0']

    only_disabled = HealthMonitor([Dependency("telegram", Probe("disabled"), critical=False)], ttl=0)
    (response,) = scrape(app_with(only_disabled), "/metrics")
    assert "dependency_up" not in response.text  # no empty family either


def test_a_scrape_reuses_the_monitors_cached_report_instead_of_probing_again() -> None:
    probe = Probe("up")
    monitor = HealthMonitor([Dependency("postgres", probe)], ttl=60)
    responses = scrape(app_with(monitor), "/health", "/metrics", "/metrics", "/health/ready")
    assert all(r.status_code == 200 for r in responses)
    assert probe.calls == 1


def test_the_optional_dependencies_are_in_the_scrape_even_after_a_readiness_check() -> None:
    """Readiness caches a critical-only report; the scrape asks for the full one, not that."""
    monitor = HealthMonitor([Dependency("postgres", Probe()), Dependency("api", Probe(), critical=False)], ttl=60)
    _, response = scrape(app_with(monitor), "/health/ready", "/metrics")
    assert 'dependency_up{critical="false",dependency="api"} 1.0' in response.text


class BrokenMonitor(HealthMonitor):
    async def check(self, *, critical_only: bool = False) -> HealthReport:
        raise RuntimeError("the monitor itself failed")


def test_without_a_report_metrics_still_answers_with_everything_else() -> None:
    metrics = Metrics("test")
    metrics.register_gauge("db_pool_size", "pool size", lambda: 3)
    (response,) = scrape(app_with(BrokenMonitor([Dependency("postgres", Probe())]), metrics), "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "dependency_up" not in response.text
    assert "db_pool_size 3.0" in response.text and "build_info{" in response.text


def test_exposition_without_a_report_has_no_dependency_states() -> None:
    assert b"dependency_up" not in Metrics("test").exposition()
    assert dependency_states(HealthReport("healthy", ())) is None


def test_a_counter_is_on_the_services_own_registry_and_exposed_as_a_counter() -> None:
    first, second = Metrics("a"), Metrics("b")
    counted = first.counter("things_done_total", "Things done.")
    second.counter("things_done_total", "Things done.")  # the same name elsewhere: no clash
    for _ in range(3):
        counted.inc()
    text = first.exposition().decode()
    assert "# TYPE things_done_total counter" in text
    assert "things_done_total 3.0" in text
    assert "things_done_created" not in text
    assert "things_done_total 0.0" in second.exposition().decode()
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("things_done_total") is None  # never the global registry
