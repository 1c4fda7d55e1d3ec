"""The health sweep (analyticbot_ops.health) with the daemon and the services' HTTP answers faked: the
verdict of each service and of the stack, the exit code it maps to, and the URLs asked."""

from __future__ import annotations

import datetime as dt
import io
import json
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest

from analyticbot_ops import docker, engine, health, runner
from analyticbot_ops.errors import EXIT_DEGRADED, EXIT_OK, EXIT_UNHEALTHY
from analyticbot_ops.model import Labels

PROJECT = "abhealth"
Answer = tuple[int | None, Any, float, str]


def _container(
    service: str,
    *,
    status: str = "running",
    health_status: str | None = "healthy",
    networks: dict[str, str] | None = None,
    name: str | None = None,
    started_at: str = "2024-05-01T10:00:00.123456789Z",
    restarts: int = 0,
) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "Running": status == "running", "ExitCode": 0, "StartedAt": started_at}
    if health_status is not None:
        state["Health"] = {"Status": health_status}
    nets = {"abhealth_frontend": "172.30.0.5"} if networks is None else networks
    return {
        "Name": f"/{name or f'{PROJECT}-{service}-1'}",
        "Created": "2024-05-01T09:59:59Z",
        "RestartCount": restarts,
        "Config": {"Labels": {Labels.PROJECT: PROJECT, Labels.SERVICE: service, Labels.ONEOFF: "False"}},
        "State": state,
        "NetworkSettings": {"Networks": {net: {"IPAddress": ip} for net, ip in nets.items()}},
    }


class Stack:
    """The containers the daemon lists, the internal networks, and what each URL answers."""

    def __init__(self) -> None:
        self.containers: list[dict[str, Any]] = []
        self.internal = {"abhealth_database"}
        self.answers: dict[str, Answer] = {}
        self.asked: list[tuple[str, float]] = []

    def by_label(self, label: str) -> list[dict[str, Any]]:
        assert label == f"{Labels.PROJECT}={PROJECT}"
        return list(self.containers)

    def fetch(self, url: str, timeout: float) -> Answer:
        self.asked.append((url, timeout))
        return self.answers.get(url, (200, {"status": "healthy"}, 3.14159, ""))


def _no_engine(*_a: Any, **_k: Any) -> Any:
    raise AssertionError("a unit test reached the Engine API")


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    world = Stack()
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient("/usr/bin/docker", "20.10.24", False))
    monkeypatch.setattr(docker, "containers_by_label", world.by_label)
    for name in ("inspect", "containers", "logs", "server_version"):
        monkeypatch.setattr(engine, name, _no_engine)
    monkeypatch.setattr(health, "_is_internal", lambda network: network in world.internal)
    monkeypatch.setattr(health, "fetch", world.fetch)
    with runner.use(runner.FakeRunner()):
        yield world


# --- verdicts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("docker_state", "docker_health", "endpoint", "verdict"),
    [
        ("missing", "none", "-", "missing"),
        ("exited", "none", "-", "unhealthy"),
        ("restarting", "healthy", "healthy", "unhealthy"),
        ("running", "none", "-", "healthy"),  # postgres without a healthcheck: running is all Docker says
        ("running", "healthy", "-", "healthy"),
        ("running", "starting", "-", "degraded"),
        ("running", "unhealthy", "-", "unhealthy"),
        ("running", "healthy", "healthy", "healthy"),
        ("running", "healthy", "degraded", "degraded"),
        ("running", "healthy", "disabled", "disabled"),
        ("running", "starting", "unhealthy", "unhealthy"),
        ("running", "healthy", "unreachable", "unreachable"),
        ("running", "healthy", "something new", "something new"),  # unknown counts as the worst
    ],
)
def test_a_service_is_as_bad_as_the_worst_of_docker_and_its_endpoint(
    docker_state: str, docker_health: str, endpoint: str, verdict: str
) -> None:
    service = health.ServiceHealth("api", docker_state=docker_state, docker_health=docker_health)
    service.endpoint_status = endpoint
    assert service.verdict == verdict


@pytest.mark.parametrize(
    ("verdicts", "status", "code"),
    [
        (["healthy", "healthy"], "healthy", EXIT_OK),
        (["healthy", "degraded"], "degraded", EXIT_DEGRADED),
        (["disabled", "healthy"], "disabled", EXIT_DEGRADED),
        (["degraded", "unhealthy", "healthy"], "unhealthy", EXIT_UNHEALTHY),
        (["healthy", "missing"], "missing", EXIT_UNHEALTHY),
        ([], "missing", EXIT_UNHEALTHY),  # nothing runs: not healthy
    ],
)
def test_the_stack_is_as_bad_as_its_worst_service_and_exits_with_that_code(
    verdicts: list[str], status: str, code: int
) -> None:
    services = [
        health.ServiceHealth(f"s{i}", docker_state="missing" if v == "missing" else "running", endpoint_status=v)
        for i, v in enumerate(verdicts)
    ]
    sweep = health.Sweep(PROJECT, services, 0.5)
    assert (sweep.verdict, sweep.exit_code) == (status, code)
    assert (health.EXIT_HEALTHY, health.EXIT_DEGRADED, health.EXIT_UNHEALTHY) == (0, 4, 5)


def test_a_sweep_as_json_carries_each_verdict() -> None:
    api = health.ServiceHealth("api", "abhealth-api-1", "running", "healthy", "degraded", 200, 4.2, {"redis": {}})
    sweep = health.Sweep(PROJECT, [api, health.ServiceHealth("redis", docker_state="running")], 0.123456)
    data = sweep.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert {k: data[k] for k in ("project", "status", "exit_code", "seconds")} == {
        "project": PROJECT,
        "status": "degraded",
        "exit_code": 4,
        "seconds": 0.123,
    }
    assert data["services"][0] == {
        "service": "api",
        "container": "abhealth-api-1",
        "docker_state": "running",
        "docker_health": "healthy",
        "endpoint_status": "degraded",
        "http_status": 200,
        "latency_ms": 4.2,
        "dependencies": {"redis": {}},
        "error": "",
        "probed": "-",
        "verdict": "degraded",
    }


@pytest.mark.parametrize(("probed", "verdict"), [("passed", "healthy"), ("failed", "degraded"), ("-", "degraded")])
def test_before_dockers_first_check_the_check_run_now_decides(probed: str, verdict: str) -> None:
    """Docker's first check comes one 10 s interval after start: until then the sweep's own run of it decides."""
    starting = health.ServiceHealth("redis", "r-1", "running", "starting", probed=probed)
    assert starting.verdict == verdict


# --- the sweep -----------------------------------------------------------------------------------------


def test_a_sweep_probes_each_python_service_at_its_own_address_and_only_asks_docker_of_the_others(
    stack: Stack,
) -> None:
    stack.containers = [
        _container("postgres", networks={"abhealth_database": "172.30.2.2"}),
        _container("api"),
        _container("bot", networks={"abhealth_frontend": "172.30.0.7", "abhealth_backend": "172.30.1.7"}),
        _container("proxy", health_status=None),
        _container("migrate", status="exited", health_status=None),  # a job that ran: not judged
    ]
    stack.answers["http://172.30.0.5:8000/health"] = (
        200,
        {"status": "degraded", "dependencies": {"redis": {"state": "down"}}},
        12.345,
        "",
    )
    sweep = health.sweep(PROJECT, timeout=1.5)
    assert sorted(stack.asked) == [
        ("http://172.30.0.5:8000/health", 1.5),
        ("http://172.30.1.7:8000/health", 1.5),  # the first reachable network by name
    ]
    assert [(s.service, s.verdict) for s in sweep.services] == [
        ("api", "degraded"),
        ("bot", "healthy"),
        ("postgres", "healthy"),
        ("proxy", "healthy"),
    ]
    api = sweep.services[0]
    assert (api.container, api.http_status, api.latency_ms, api.endpoint_status) == (
        "abhealth-api-1",
        200,
        12.3,
        "degraded",
    )
    assert api.dependencies == {"redis": {"state": "down"}}
    assert sweep.services[2].endpoint_status == "-" and sweep.services[2].http_status is None
    assert (sweep.verdict, sweep.exit_code) == ("degraded", EXIT_DEGRADED)
    assert sweep.seconds >= 0


def test_named_services_that_do_not_run_are_missing_and_make_the_stack_unhealthy(stack: Stack) -> None:
    stack.containers = [_container("api"), _container("bot")]
    sweep = health.sweep(PROJECT, services=("mtproto", "api"))
    assert [(s.service, s.verdict) for s in sweep.services] == [("api", "healthy"), ("mtproto", "missing")]
    assert [url for url, _ in stack.asked] == ["http://172.30.0.5:8000/health"]  # the bot was not asked for
    assert sweep.exit_code == EXIT_UNHEALTHY


def test_an_empty_project_is_missing(stack: Stack) -> None:
    sweep = health.sweep(PROJECT)
    assert sweep.services == [] and sweep.verdict == "missing" and sweep.exit_code == EXIT_UNHEALTHY


def test_a_stopped_python_service_is_not_asked_and_is_unhealthy(stack: Stack) -> None:
    stack.containers = [_container("mtproto", status="exited", health_status="unhealthy")]
    sweep = health.sweep(PROJECT)
    assert stack.asked == []
    assert (sweep.services[0].docker_state, sweep.verdict) == ("exited", "unhealthy")


def test_a_python_service_only_on_internal_networks_is_unreachable(stack: Stack) -> None:
    stack.containers = [_container("mtproto", networks={"abhealth_database": "172.30.2.9"})]
    result = health.sweep(PROJECT).services[0]
    assert (result.endpoint_status, result.error, result.verdict) == (
        "unreachable",
        "no address on a reachable network",
        "unreachable",
    )
    assert stack.asked == []


@pytest.mark.parametrize(
    ("answer", "endpoint_status", "dependencies"),
    [
        ((None, None, 2000.0, "timed out"), "unreachable", {}),
        ((503, {"status": "unhealthy", "dependencies": {"postgres": {"state": "down"}}}, 5.0, ""), "unhealthy", None),
        ((200, {"service": "api"}, 5.0, ""), "healthy", {}),  # no status field: the HTTP code says
        ((503, {"service": "api", "dependencies": None}, 5.0, ""), "unhealthy", {}),
        ((200, "OK", 5.0, ""), "healthy", {}),
        ((502, "<html>Bad Gateway</html>", 5.0, ""), "unhealthy", {}),
    ],
)
def test_what_the_endpoint_answers_becomes_its_status(
    stack: Stack, answer: Answer, endpoint_status: str, dependencies: dict | None
) -> None:
    stack.containers = [_container("api")]
    stack.answers["http://172.30.0.5:8000/health"] = answer
    result = health.sweep(PROJECT).services[0]
    assert result.endpoint_status == endpoint_status
    assert result.http_status == answer[0] and result.error == answer[3]
    assert result.dependencies == (answer[1]["dependencies"] if dependencies is None else dependencies)


def test_a_sweep_can_ask_another_path(stack: Stack) -> None:
    stack.containers = [_container("api")]
    health.sweep(PROJECT, path="/health/full")
    assert stack.asked == [("http://172.30.0.5:8000/health/full", 2.0)]


def test_a_container_without_labels_is_named_by_its_container_name(stack: Stack) -> None:
    info = _container("api")
    info["Config"]["Labels"] = None
    result = health._probe(info, "/health", 1.0)
    assert result.service == "abhealth-api-1" and result.endpoint_status == "-"


# --- addresses --------------------------------------------------------------------------------------------


def test_the_address_is_on_the_first_non_internal_network_by_name(stack: Stack) -> None:
    info = _container("bot", networks={"z_net": "10.0.0.9", "abhealth_database": "172.30.2.3", "a_net": ""})
    assert health._address(info) == "10.0.0.9"  # a_net has no address yet
    assert health._address(_container("bot", networks={})) is None
    assert health._address({"NetworkSettings": {"Networks": None}}) is None


@pytest.fixture
def real_is_internal(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """health._is_internal as it is, with the network inspect faked and counted."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(health, "_INTERNAL_CACHE", {})
    asked: dict[str, int] = {}

    def inspect(kind: str, name: str) -> dict[str, Any] | None:
        assert kind == "network"
        asked[name] = asked.get(name, 0) + 1
        return {"Name": name, "Internal": name.endswith("_database")}

    monkeypatch.setattr(docker, "inspect", inspect)
    monkeypatch.setattr(engine, "inspect", lambda kind, name: inspect(kind, name))
    return asked


def test_internal_networks_are_asked_of_docker_once_and_skipped(real_is_internal: dict[str, int]) -> None:
    info = _container("api", networks={"abhealth_database": "172.30.2.5", "abhealth_frontend": "172.30.0.5"})
    assert health._address(info) == "172.30.0.5"
    assert health._address(info) == "172.30.0.5"
    assert real_is_internal == {"abhealth_database": 1, "abhealth_frontend": 1}  # cached


# --- one GET -------------------------------------------------------------------------------------------


class _Response(io.BytesIO):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body)
        self.status = status


def _urlopen(monkeypatch: pytest.MonkeyPatch, outcome: Any) -> list[tuple[str, float]]:
    asked: list[tuple[str, float]] = []

    def urlopen(url: str, timeout: float) -> _Response:
        asked.append((url, timeout))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(health.urllib.request, "urlopen", urlopen)
    return asked


def test_fetch_parses_json(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _urlopen(monkeypatch, _Response(200, b'{"status": "healthy"}'))
    status, body, latency, error = health.fetch("http://172.30.0.5:8000/health", 1.5)
    assert (status, body, error) == (200, {"status": "healthy"}, "")
    assert latency >= 0
    assert asked == [("http://172.30.0.5:8000/health", 1.5)]


def test_fetch_keeps_text_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    _urlopen(monkeypatch, _Response(200, b"# HELP requests_total\n\xff"))
    status, body, _latency, error = health.fetch("http://x/metrics", 1.0)
    assert (status, body, error) == (200, "# HELP requests_total\n\ufffd", "")


def test_fetch_reads_the_body_of_an_http_error(monkeypatch: pytest.MonkeyPatch) -> None:
    failure = urllib.error.HTTPError(
        "http://x/health", 503, "Service Unavailable", {}, io.BytesIO(b'{"status": "unhealthy"}')
    )
    _urlopen(monkeypatch, failure)
    assert health.fetch("http://x/health", 1.0)[:2] == (503, {"status": "unhealthy"})


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "[Errno 111] Connection refused"),
        (TimeoutError("timed out"), "timed out"),
        (ValueError("unknown url type: 'x'"), "unknown url type: 'x'"),
        (urllib.error.URLError("x" * 300), "x" * 200),
    ],
)
def test_fetch_of_an_unreachable_service_says_why_in_one_bounded_line(
    monkeypatch: pytest.MonkeyPatch, failure: Exception, error: str
) -> None:
    _urlopen(monkeypatch, failure)
    status, body, latency, said = health.fetch("http://x/health", 1.0)
    assert (status, body, said) == (None, None, error)
    assert latency >= 0


# --- endpoints, swarm, uptimes -----------------------------------------------------------------------


def test_every_endpoint_of_every_reachable_python_service_is_called(stack: Stack) -> None:
    stack.containers = [
        _container("api"),
        _container("mtproto", networks={"abhealth_database": "172.30.2.9"}),  # no reachable address
        _container("postgres"),
        _container("proxy", networks={"abhealth_frontend": "172.30.0.254"}),
    ]
    stack.answers["http://172.30.0.5:8000/metrics"] = (None, None, 1000.04, "timed out")
    calls = health.call_endpoints(PROJECT, timeout=0.5)
    assert [(c.service, c.path, c.http_status, c.error) for c in calls] == [
        ("api", "/health/live", 200, ""),
        ("api", "/health/ready", 200, ""),
        ("api", "/health", 200, ""),
        ("api", "/performance", 200, ""),
        ("api", "/metrics", None, "timed out"),
    ]
    assert [c.latency_ms for c in calls] == [3.1, 3.1, 3.1, 3.1, 1000.0]
    assert {timeout for _url, timeout in stack.asked} == {0.5}


def test_no_python_service_means_no_call(stack: Stack) -> None:
    stack.containers = [_container("redis")]
    assert health.call_endpoints(PROJECT) == [] and stack.asked == []


def test_uptimes_of_running_services_and_a_dash_for_the_others(stack: Stack) -> None:
    started = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1, minutes=5, seconds=7)
    stamp = started.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # Docker's nanoseconds
    stack.containers = [
        _container("redis", health_status=None, started_at=stamp, restarts=2),
        _container("api", status="exited", health_status="unhealthy", started_at=stamp),
        _container("bot", started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ")),
        _container("proxy", status="running", started_at=""),
    ]
    rows = health.uptimes(PROJECT)
    assert [r["service"] for r in rows] == ["api", "bot", "proxy", "redis"]
    assert rows[0] == {
        "service": "api",
        "container": "abhealth-api-1",
        "state": "exited",
        "health": "unhealthy",
        "restarts": 0,
        "uptime": "-",
    }
    assert rows[1]["uptime"] in ("1:05:06", "1:05:07", "1:05:08")  # whole seconds only
    assert rows[2]["uptime"] == "-"  # running, but Docker gave no start time
    assert (rows[3]["health"], rows[3]["restarts"]) == ("none", 2)
    assert rows[3]["uptime"] in ("1:05:07", "1:05:08")


def test_a_service_docker_has_not_checked_yet_has_its_check_run_by_the_sweep(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker's first check comes one interval (10 s) after start: the sweep runs the same command, and only for
    the services Docker has no verdict on."""
    ran: list[tuple[str, tuple[str, ...]]] = []

    def probe_ready(state: Any) -> bool:
        ran.append((state.container, state.healthcheck))
        return state.service == "redis"

    monkeypatch.setattr(health.compose, "probe_ready", probe_ready)
    redis = _container("redis", health_status="starting", networks={})
    redis["Config"]["Healthcheck"] = {"Test": ["CMD", "redis-cli", "ping"]}
    postgres = _container("postgres", health_status="starting", networks={})
    stack.containers = [redis, postgres, _container("proxy")]
    sweep = health.sweep(PROJECT)
    assert sorted(ran) == [("abhealth-postgres-1", ()), ("abhealth-redis-1", ("CMD", "redis-cli", "ping"))]
    assert [(s.service, s.probed, s.verdict) for s in sweep.services] == [
        ("postgres", "failed", "degraded"),
        ("proxy", "-", "healthy"),
        ("redis", "passed", "healthy"),
    ]


def test_a_starting_app_is_judged_by_its_endpoint_without_an_exec(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its healthcheck asks its own readiness; running it too would wait on the same dependencies twice."""
    monkeypatch.setattr(health.compose, "probe_ready", lambda state: pytest.fail("exec'd into an app"))
    stack.containers = [_container("api", health_status="starting"), _container("bot", health_status="starting")]
    stack.answers["http://172.30.0.5:8000/health"] = (503, {"status": "unhealthy"}, 3.0, "")
    sweep = health.sweep(PROJECT, services=("api",))
    assert [(s.service, s.probed, s.verdict) for s in sweep.services] == [("api", "failed", "unhealthy")]
