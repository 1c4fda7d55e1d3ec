"""The `health` tasks (cli/health.py): the sweep each runs, the table or JSON it prints, and exit 0 healthy,
4 degraded, 5 unhealthy with one `error:` line. The sweeps and endpoint calls are replaced: no Docker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from invoke import Exit

from analyticbot_ops import health
from analyticbot_ops.cli import health as health_cli
from tests.unit.cli_support import context, fails
from tests.unit.cli_support import no_docker as no_docker  # autouse: each test's tasks run isolated

API = health.ServiceHealth(
    "api",
    "analyticbot-dev-api-1",
    "running",
    "healthy",
    "degraded",
    200,
    12.4,
    {
        "redis": {"state": "down", "critical": False, "error": "connection refused", "latency_ms": 3.6},
        "postgres": {"state": "up", "critical": True, "latency_ms": None},
    },
    "",
)
BOT = health.ServiceHealth("bot", "analyticbot-dev-bot-1", "running", "healthy", "healthy", 200, 8.0)
PROXY = health.ServiceHealth("proxy", "analyticbot-dev-proxy-1", "running", "healthy")
MTPROTO = health.ServiceHealth("mtproto", error="no container")


class Sweeps:
    """health.sweep answering with `answer`; the (project, services) asked, recorded."""

    def __init__(self) -> None:
        self.answer: list[health.ServiceHealth] = [BOT, PROXY]
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, project: str, services: tuple[str, ...] = ()) -> health.Sweep:
        self.asked.append((project, services))
        return health.Sweep(project, list(self.answer), 0.0421)


@pytest.fixture
def sweeps(monkeypatch: pytest.MonkeyPatch) -> Sweeps:
    fake = Sweeps()
    monkeypatch.setattr(health_cli.health, "sweep", fake)
    return fake


def test_check_of_a_healthy_stack_prints_its_table_and_exits_0(sweeps: Sweeps, capsys: Any) -> None:
    health_cli.check(context(), env="staging")
    assert sweeps.asked == [("analyticbot-staging", ())]
    lines = capsys.readouterr().out.splitlines()
    assert "analyticbot-staging: healthy" in lines[0]
    assert any("bot" in line and "running/healthy" in line and " 8 " in line for line in lines)
    assert any("proxy" in line and "running/healthy" in line and " - " in line for line in lines)
    assert lines[-1] == "swept in 42 ms"
    assert not any("  └ " in line for line in lines)  # dependencies only with --verbose


def test_check_verbose_shows_each_dependency_and_the_error(sweeps: Sweeps, capsys: Any) -> None:
    sweeps.answer = [API, MTPROTO]
    with pytest.raises(Exit) as caught:
        health_cli.check(context(), verbose=True)
    text = capsys.readouterr().out
    assert caught.value.code == 5 and caught.value.message == "error: analyticbot-dev is missing"
    assert "└ postgres" in text and "up (critical)" in text
    assert "└ redis" in text and "down (optional) connection refused" in text
    assert text.index("└ postgres") < text.index("└ redis")  # sorted by name
    assert "└ error" in text and "no container" in text


def test_check_of_a_service_is_verbose_and_sweeps_only_it(sweeps: Sweeps, capsys: Any) -> None:
    sweeps.answer = [BOT]
    health_cli.check(context(), service=["bot", "api"])
    assert sweeps.asked == [("analyticbot-dev", ("bot", "api"))]
    sweeps.answer = [API]
    assert fails(4, health_cli.check, context(), service=["api"]) == "error: analyticbot-dev is degraded"
    assert "└ redis" in capsys.readouterr().out


def test_check_refuses_an_unknown_service_or_environment(sweeps: Sweeps) -> None:
    assert "unknown service 'worker'" in fails(2, health_cli.check, context(), service=["worker"])
    assert "unknown environment 'production'" in fails(2, health_cli.check, context(), env="production")
    assert sweeps.asked == []


def test_check_as_json_still_exits_by_the_verdict(sweeps: Sweeps, capsys: Any) -> None:
    sweeps.answer = [API, BOT]
    assert fails(4, health_cli.check, context(), json=True) == "error: analyticbot-dev is degraded"
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "degraded" and data["exit_code"] == 4
    assert [(s["service"], s["verdict"]) for s in data["services"]] == [("api", "degraded"), ("bot", "healthy")]
    sweeps.answer = []
    assert fails(5, health_cli.check, context(), json=True) == "error: analyticbot-dev is missing"
    assert json.loads(capsys.readouterr().out)["services"] == []


def call(service: str, path: str, status: int | None, error: str = "") -> health.EndpointCall:
    return health.EndpointCall(service, path, status, 5.4, error)


def every_endpoint(service: str, **status: int | None) -> list[health.EndpointCall]:
    return [call(service, path, status.get(path, 200)) for path in health.ENDPOINTS]


def test_endpoints_accepts_a_503_on_readiness(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    asked: list[str] = []
    calls = every_endpoint("api", **{"/health/ready": 503, "/health": 503})
    monkeypatch.setattr(health_cli.health, "call_endpoints", lambda project: asked.append(project) or calls)
    health_cli.endpoints(context(), env="prod")
    assert asked == ["analyticbot"]
    lines = capsys.readouterr().out.splitlines()
    assert any("/health/ready" in line and "503" in line for line in lines)
    assert sum("200" in line for line in lines) == 3


def test_endpoints_exits_5_naming_what_did_not_answer_200(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    calls = [
        *every_endpoint("api", **{"/metrics": 500}),
        call("bot", "/health/live", None, "connection refused"),
        call("bot", "/performance", 200),
    ]
    monkeypatch.setattr(health_cli.health, "call_endpoints", lambda project: calls)
    message = fails(5, health_cli.endpoints, context())
    assert message == "error: not answering 200: api/metrics, bot/health/live"
    text = capsys.readouterr().out
    assert "connection refused" in text and any(" - " in line for line in text.splitlines() if "bot" in line)


def test_endpoints_with_no_service_found_and_as_json(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(health_cli.health, "call_endpoints", lambda project: [])
    assert fails(5, health_cli.endpoints, context()) == "error: not answering 200: no service found"
    capsys.readouterr()
    calls = every_endpoint("bot")
    monkeypatch.setattr(health_cli.health, "call_endpoints", lambda project: calls)
    health_cli.endpoints(context(), json=True)
    data = json.loads(capsys.readouterr().out)
    assert [(d["service"], d["path"], d["http_status"]) for d in data] == [
        ("bot", path, 200) for path in health.ENDPOINTS
    ]
