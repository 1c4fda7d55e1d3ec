"""The `monitoring` tasks (cli/monitoring.py): the table or JSON each prints and its exit code (0, 4, 5), one
`error:` line for bad input, and ops.monitoring: false. The client is replaced: no Docker, no Prometheus."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analyticbot_ops.cli import monitoring as monitoring_cli
from analyticbot_ops.errors import EXIT_BAD_INPUT, EXIT_DEGRADED, EXIT_UNHEALTHY
from analyticbot_ops.monitoring import client
from tests.unit.cli_support import context, fails
from tests.unit.cli_support import no_docker as no_docker  # autouse: each test's tasks run isolated

WATCHDOG = client.Alert("Watchdog", "firing", "none", "the alerting pipeline works")
REDIS_TARGET_DOWN = client.Alert("TargetDown", "firing", "warning", "target redis is down", {"job": "redis"})
POSTGRES_DOWN = client.Alert("PostgresDown", "firing", "critical", "PostgreSQL does not answer")


class FakeMonitoring:
    def __init__(self, alerts: list[client.Alert], targets: list[client.Target] | None = None) -> None:
        self._alerts, self._targets = alerts, targets or []
        self.silenced: list[tuple[Any, ...]] = []

    def alerts(self) -> list[client.Alert]:
        return self._alerts

    def targets(self) -> list[client.Target]:
        return self._targets

    def silence(self, *args: Any) -> str:
        self.silenced.append(args)
        return "silence-1"


def use(monkeypatch: pytest.MonkeyPatch, fake: FakeMonitoring) -> list[Any]:
    stacks: list[Any] = []
    monkeypatch.setattr(monitoring_cli.client, "for_stack", lambda stack: stacks.append(stack) or fake)
    return stacks


def test_only_the_watchdog_exits_0_with_its_table(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    stacks = use(monkeypatch, FakeMonitoring([WATCHDOG]))
    monitoring_cli.alerts(context(), env="prod")
    text = capsys.readouterr().out
    assert "prod: only Watchdog fires" in text and "the alerting pipeline works" in text
    assert stacks[0].env == "prod" and stacks[0].monitoring


def test_a_warning_exits_4_and_a_critical_alert_5(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, FakeMonitoring([WATCHDOG, REDIS_TARGET_DOWN]))
    assert fails(EXIT_DEGRADED, monitoring_cli.alerts, context()) == "error: warnings firing: TargetDown"
    use(monkeypatch, FakeMonitoring([WATCHDOG, REDIS_TARGET_DOWN, POSTGRES_DOWN]))
    assert fails(EXIT_UNHEALTHY, monitoring_cli.alerts, context()) == "error: critical alerts firing: PostgresDown"
    use(monkeypatch, FakeMonitoring([]))
    assert "Watchdog is not firing" in fails(EXIT_UNHEALTHY, monitoring_cli.alerts, context())


def test_alerts_as_json_still_exit_by_the_verdict(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    use(monkeypatch, FakeMonitoring([WATCHDOG, POSTGRES_DOWN]))
    fails(EXIT_UNHEALTHY, monitoring_cli.alerts, context(), json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == EXIT_UNHEALTHY and [a["name"] for a in data["alerts"]] == ["Watchdog", "PostgresDown"]


def test_targets_exit_5_when_one_is_down(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    up = client.Target("api", "api:8000", "up", "", "2026-12-07T00:00:00Z")
    down = client.Target("redis", "redis-exporter:9121", "down", "context deadline exceeded", "")
    use(monkeypatch, FakeMonitoring([], [up]))
    monitoring_cli.targets(context(), json=True)
    assert json.loads(capsys.readouterr().out)[0]["health"] == "up"
    use(monkeypatch, FakeMonitoring([], [up, down]))
    assert fails(EXIT_UNHEALTHY, monitoring_cli.targets, context()) == "error: targets not up: redis"
    assert "context deadline exceeded" in capsys.readouterr().out


def test_silence_names_the_alert_the_time_and_why(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    fake = FakeMonitoring([])
    use(monkeypatch, fake)
    monitoring_cli.silence(context(), alert="PostgresDown", for_="2h", reason=" restore drill ")
    ((alert, duration, reason, author),) = fake.silenced
    assert (alert, duration.total_seconds(), reason) == ("PostgresDown", 7200, "restore drill")
    assert author.endswith("via invoke monitoring.silence")
    assert "PostgresDown silenced for 2h (silence-1): restore drill" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"alert": "Nope", "reason": "x"}, "unknown alert 'Nope'"),
        ({"alert": "PostgresDown", "reason": "x", "for_": "soon"}, "--for must be a duration"),
        ({"alert": "PostgresDown", "reason": "  "}, "--reason must say why"),
    ],
)
def test_silence_refuses_bad_input_before_asking_anything(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, str], said: str
) -> None:
    stacks = use(monkeypatch, FakeMonitoring([]))
    assert said in fails(EXIT_BAD_INPUT, monitoring_cli.silence, context(), **options)
    assert stacks == []  # refused before any stack was looked up


def test_with_the_overlay_off_each_task_says_so() -> None:
    said = fails(EXIT_BAD_INPUT, monitoring_cli.alerts, context(monitoring=False))
    assert said == "error: the monitoring overlay is off (invoke.yaml: ops.monitoring: false)"
