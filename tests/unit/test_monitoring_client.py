"""The monitoring client against a real HTTP server on loopback that answers like Prometheus and Alertmanager:
the login it sends, the verdict of `monitoring.alerts`, targets, silences, and one clear line for each failure."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import compose
from analyticbot_ops.errors import EXIT_DEGRADED, EXIT_OK, EXIT_UNHEALTHY, BadInput, Unhealthy
from analyticbot_ops.monitoring import client
from tests.sandbox import free_port

PASSWORD = "Sup3r-secret-monitoring-password"


def alert(name: str, severity: str, state: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} summary"},
        "state": state,
        "activeAt": "2026-12-07T00:01:02.5Z",
    }


class Fake:
    """What the fake server answers, and what it was sent."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = [alert("Watchdog", "none")]
        self.targets: list[dict[str, Any]] = []
        self.posted: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.raw: bytes | None = None  # an answer that is not the API's


@pytest.fixture
def fake() -> Iterator[tuple[Fake, int]]:
    state = Fake()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            state.auth.append(header)
            return header == "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()

        def do_GET(self) -> None:
            if not self._authorized():
                return self._answer(401, {"error": "Unauthorized"})
            if state.raw is not None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(state.raw)
                return None
            if self.path.startswith("/api/v1/alerts"):
                return self._answer(200, {"status": "success", "data": {"alerts": state.alerts}})
            if self.path.startswith("/api/v1/targets"):
                return self._answer(200, {"status": "success", "data": {"activeTargets": state.targets}})
            return self._answer(404, {})

        def do_POST(self) -> None:
            if not self._authorized():
                return self._answer(401, {})
            length = int(self.headers.get("Content-Length", 0))
            state.posted.append(json.loads(self.rfile.read(length)))
            return self._answer(200, {"silenceID": "5e1f"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, server.server_address[1]
    server.shutdown()


def monitoring(port: int, password: str = PASSWORD) -> client.Monitoring:
    url = f"http://127.0.0.1:{port}"
    return client.Monitoring(
        client.Endpoint("Prometheus", url, "ops", password), client.Endpoint("Alertmanager", url, "ops", password)
    )


def test_alerts_are_read_with_the_login_and_sorted_critical_first(fake: tuple[Fake, int]) -> None:
    state, port = fake
    state.alerts += [alert("TargetDown", "warning", job="redis"), alert("PostgresDown", "critical", job="postgres")]
    found = monitoring(port).alerts()
    assert [a.name for a in found] == ["PostgresDown", "TargetDown", "Watchdog"]
    assert found[0].labels == {"job": "postgres"} and found[0].summary == "PostgresDown summary"
    assert state.auth[-1].startswith("Basic ") and PASSWORD not in state.auth[-1]


@pytest.mark.parametrize(
    ("firing", "code", "said"),
    [
        ([("Watchdog", "none")], EXIT_OK, "only Watchdog fires"),
        ([("Watchdog", "none"), ("TargetDown", "warning")], EXIT_DEGRADED, "warnings firing: TargetDown"),
        (
            [("Watchdog", "none"), ("TargetDown", "warning"), ("PostgresDown", "critical")],
            EXIT_UNHEALTHY,
            "PostgresDown",
        ),
        ([], EXIT_UNHEALTHY, "Watchdog is not firing"),
        ([("TargetDown", "warning")], EXIT_UNHEALTHY, "Watchdog is not firing"),
    ],
)
def test_the_verdict(firing: list[tuple[str, str]], code: int, said: str) -> None:
    alerts = [client.Alert(name, "firing", severity, "") for name, severity in firing]
    assert client.verdict(alerts)[0] == code and said in client.verdict(alerts)[1]


def test_a_pending_alert_has_not_fired() -> None:
    alerts = [client.Alert("Watchdog", "firing", "none", ""), client.Alert("PostgresDown", "pending", "critical", "")]
    assert client.verdict(alerts) == (EXIT_OK, "only Watchdog fires")


def test_targets(fake: tuple[Fake, int]) -> None:
    state, port = fake
    state.targets = [
        {"labels": {"job": "redis", "instance": "redis-exporter:9121"}, "health": "down", "lastError": "timeout"},
        {"labels": {"job": "api", "instance": "api:8000"}, "health": "up", "lastError": "", "lastScrape": "t"},
    ]
    found = monitoring(port).targets()
    assert [(t.job, t.health, t.last_error) for t in found] == [("api", "up", ""), ("redis", "down", "timeout")]


def test_a_silence_names_the_alert_the_time_and_why(fake: tuple[Fake, int]) -> None:
    state, port = fake
    assert monitoring(port).silence("PostgresDown", timedelta(hours=1), "restore drill", "me") == "5e1f"
    (body,) = state.posted
    assert body["matchers"] == [{"name": "alertname", "value": "PostgresDown", "isRegex": False, "isEqual": True}]
    assert (body["createdBy"], body["comment"]) == ("me", "restore drill")
    assert body["startsAt"] < body["endsAt"]


def test_a_wrong_password_is_one_line_naming_the_secret(fake: tuple[Fake, int]) -> None:
    _, port = fake
    with pytest.raises(BadInput, match=r"^Prometheus refused the password of prometheus_password \(HTTP 401\)"):
        monitoring(port, "wrong").alerts()


def test_nothing_listening_is_unhealthy() -> None:
    with pytest.raises(Unhealthy, match=r"^Prometheus does not answer on http://127\.0\.0\.1:\d+ .*is the stack up\?$"):
        monitoring(free_port()).alerts()


@pytest.mark.parametrize(
    ("text", "expected"), [("30m", timedelta(minutes=30)), ("1h30m", timedelta(minutes=90)), ("2d", timedelta(days=2))]
)
def test_durations(text: str, expected: timedelta) -> None:
    assert client.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1x", "h", "-1h", "0m", "91d", "1h 30m", "1.5h"])
def test_bad_durations_are_one_line(text: str) -> None:
    with pytest.raises(BadInput, match=r"^--for must be"):
        client.parse_duration(text)


def test_with_the_overlay_off_the_tasks_say_so(tmp_path: Path) -> None:
    stack = compose.load_stack("dev", monitoring=False, overrides={"SECRETS_DIR": str(tmp_path)})
    with pytest.raises(BadInput, match=r"^the monitoring overlay is off \(invoke.yaml: ops.monitoring: false\)$"):
        client.for_stack(stack)


def test_a_missing_password_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.docker, "require_daemon", lambda: "20.10")
    stack = compose.load_stack("dev", overrides={"SECRETS_DIR": str(tmp_path)})
    with pytest.raises(BadInput, match="prometheus_password is missing"):
        client.for_stack(stack)


def test_the_login_comes_from_the_stacks_secrets_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.docker, "require_daemon", lambda: "20.10")
    (tmp_path / "prometheus_password").write_text(PASSWORD + "\n")
    overrides = {"SECRETS_DIR": str(tmp_path), "PROMETHEUS_PORT": "19090", "ALERTMANAGER_PORT": "19093"}
    found = client.for_stack(compose.load_stack("dev", overrides=overrides))
    assert (found.prometheus.url, found.alertmanager.url) == ("http://127.0.0.1:19090", "http://127.0.0.1:19093")
    assert found.prometheus.password == PASSWORD and PASSWORD not in repr(found)


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"<html>not prometheus</html>", r"gave an answer that is not its API's \(JSONDecodeError\)"),
        (b'{"status": "error"}', r"answered /api/v1/alerts without data\.alerts"),
    ],
)
def test_an_answer_that_is_not_prometheus_is_one_line(fake: tuple[Fake, int], raw: bytes, said: str) -> None:
    state, port = fake
    state.raw = raw
    with pytest.raises(Unhealthy, match=said):
        monitoring(port).alerts()
