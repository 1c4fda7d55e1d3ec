"""The order of a rolling update, and its rollback, with Docker and Compose faked."""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from analyticbot_ops import compose, docker, model, rollout, runner
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import OpsError
from analyticbot_ops.model import Labels

# Each container's address on the stack's frontend network.
ADDRESSES = {"abroll_api_1": "10.0.0.1", "abroll_api_2": "10.0.0.2", "abroll_api_9": "10.0.0.3"}


class FakeStack(Stack):
    def __init__(self, world: World) -> None:
        super().__init__("prod", "abroll", {})
        self.world = world

    def compose(self, *args: str, capture: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.world.steps.append(("compose", " ".join(args)))
        if "--scale" in args:
            self.world.running["api"].append("abroll_api_2")
        return subprocess.CompletedProcess(args, 0, "", "")


class World:
    """What runs, what each container's health is, and every step taken, in order."""

    def __init__(self, new_health: str = "healthy") -> None:
        self.running: dict[str, list[str]] = {"api": ["abroll_api_1"], "proxy": ["abroll_proxy_1"]}
        self.health = {"abroll_api_1": "healthy", "abroll_api_2": new_health}
        self.steps: list[tuple[str, str]] = []

    def containers(self, _stack: Stack, service: str) -> list[dict[str, Any]]:
        return [
            {"Name": f"/{name}", "NetworkSettings": {"Networks": {"abroll_frontend": {"IPAddress": ADDRESSES[name]}}}}
            for name in self.running.get(service, [])
        ]

    def docker(self, args: list[str], check: bool = True, **_kw: Any) -> subprocess.CompletedProcess[str]:
        if args[0] in ("stop", "rm"):
            self.steps.append((args[0], args[-1]))
            if args[0] == "rm":
                self.running["api"] = [n for n in self.running["api"] if n != args[-1]]
        return subprocess.CompletedProcess(args, 0, "last words of the new container\n", "")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    state = World()
    monkeypatch.setattr(rollout, "containers", state.containers)
    monkeypatch.setattr(rollout.docker, "docker", state.docker)
    monkeypatch.setattr(
        rollout, "point_proxy", lambda _s, service, addresses: state.steps.append(("proxy", ",".join(addresses)))
    )
    monkeypatch.setattr(rollout, "wait_drained", lambda _s, timeout=0: state.steps.append(("drain", "")) or 0.1)
    monkeypatch.setattr(rollout, "_health", lambda name: (state.health[name], True))
    monkeypatch.setattr(
        rollout, "_inspect", lambda name: {"State": {"Running": True, "Health": {"Status": state.health[name]}}}
    )
    monkeypatch.setattr(rollout, "_ready_from_proxy", lambda _s, name: state.health[name] == "healthy")
    monkeypatch.setattr(rollout.time, "sleep", lambda _s: None)
    return state


def test_the_proxy_moves_to_the_new_container_only_once_it_is_ready_and_the_old_one_drains_first(
    world: World,
) -> None:
    outcome = rollout.roll(FakeStack(world), "api", timeout=5)
    assert outcome.action == "rolled" and outcome.detail == "abroll_api_1 -> abroll_api_2"
    assert world.steps == [
        ("proxy", "10.0.0.1"),  # on the old one's address before the new one shares its name (a no-op if so)
        ("compose", "up -d --no-deps --no-build --no-recreate --scale api=2 api"),
        ("proxy", "10.0.0.2"),  # the one switch
        ("drain", ""),
        ("stop", "abroll_api_1"),
        ("rm", "abroll_api_1"),
    ]


def test_a_new_container_that_never_gets_ready_is_removed_and_the_old_one_keeps_serving(
    world: World,
) -> None:
    world.health["abroll_api_2"] = "unhealthy"
    with pytest.raises(OpsError, match=r"(?s)rolled back, abroll_api_1 keeps serving.*last words of the new container"):
        rollout.roll(FakeStack(world), "api", timeout=5)
    assert ("proxy", "10.0.0.2") not in world.steps  # the proxy never saw it
    assert world.steps[-1] == ("rm", "abroll_api_2")
    assert world.running["api"] == ["abroll_api_1"]


def test_singletons_and_a_service_with_two_containers_are_never_rolled(world: World) -> None:
    with pytest.raises(OpsError, match="singleton"):
        rollout.roll(FakeStack(world), "postgres")
    world.running["api"].append("abroll_api_9")
    with pytest.raises(OpsError, match="runs 2 containers"):
        rollout.roll(FakeStack(world), "api")
    assert world.steps == []


# --- the same roll through the runner: the docker and compose command lines, in order ----------------------


class Daemon:
    """Containers as the Engine API shows them, and the answers of `docker exec` in the proxy."""

    def __init__(self) -> None:
        self.containers: list[dict[str, Any]] = []
        self.health: dict[str, list[str]] = {}  # what each inspect answers, in turn (the last one sticks)
        self.ready = '{"status": "ready", "service": "api"}'
        self.logs = ("Traceback: ImportError\n", "uvicorn exited\n")  # what `docker logs` prints (stdout, stderr)
        self.draining = ["0"]
        self.nginx_test_error = ""
        self.start_second = True
        # The proxy's runtime includes, as `sh -c` reads and writes them.
        self.runtime: dict[str, str] = {"/tmp/nginx-runtime/upstream-api.conf": rollout.upstream_include("api", [])}

    def _next_address(self) -> str:
        return f"10.0.0.{len(self.containers) + 1}"

    def add(self, service: str, name: str, *, running: bool = True, oneoff: bool = False, created: str = "") -> None:
        self.containers.append(
            {
                "Name": f"/{name}",
                "Created": created or f"2024-05-01T00:00:{len(self.containers):02d}Z",
                "Config": {
                    "Labels": {
                        Labels.PROJECT: "abroll",
                        Labels.SERVICE: service,
                        Labels.ONEOFF: "True" if oneoff else "False",
                    }
                },
                "State": {"Running": running},
                "NetworkSettings": {
                    "Networks": {"abroll_frontend": {"IPAddress": f"10.0.0.{len(self.containers) + 1}"}}
                },
            }
        )

    def by_label(self, label: str) -> list[dict[str, Any]]:
        assert label == f"{Labels.PROJECT}=abroll"
        return list(self.containers)

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        assert kind == "container"
        if name not in self.health:
            return None
        states = self.health[name]
        status = states.pop(0) if len(states) > 1 else states[0]
        running = status != "exited"
        if not running:  # a release that exits at import: restarted by its policy, then given up
            return {"State": {"Running": False, "Status": "exited", "ExitCode": 1}, "RestartCount": 5}
        return {"State": {"Running": running, "Health": {"Status": status}}}

    def answer(self, call: runner.Call) -> subprocess.CompletedProcess[str]:
        argv = call.argv
        if argv[0] == "docker-compose" and "--scale" in argv:
            if self.start_second:
                self.add("api", "abroll-api-2")
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[1] == "exec" and argv[3:5] == ("nginx", "-t"):
            if self.nginx_test_error:
                return subprocess.CompletedProcess(argv, 1, "", f"{self.nginx_test_error}\nmore\n")
            return subprocess.CompletedProcess(argv, 0, "", "syntax is ok")
        if argv[1] == "exec" and argv[3] == "wget":
            # A container that is about to exit never answers; one that runs answers as `ready` says.
            target = argv[-1].split("//")[1].split(":")[0]
            if self.health.get(target, ["healthy"])[0] == "exited":
                return subprocess.CompletedProcess(argv, 1, "", "wget: can't connect to remote host")
            return subprocess.CompletedProcess(argv, 0, self.ready, "")
        if argv[1] == "exec" and argv[3:5] == ("sh", "-c") and argv[5].startswith("while IFS="):
            return subprocess.CompletedProcess(argv, 0, self.runtime.get(argv[7], ""), "")
        if argv[1] == "exec" and argv[3:5] == ("sh", "-c") and argv[5].startswith('printf "%s" "$2"'):
            self.runtime[argv[7]] = argv[8]
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[1] == "exec" and argv[3:5] == ("sh", "-c") and "shutting down" in argv[5]:
            count = self.draining.pop(0) if len(self.draining) > 1 else self.draining[0]
            return subprocess.CompletedProcess(argv, 0, count, "")
        if argv[1] == "logs":
            return subprocess.CompletedProcess(argv, 0, *self.logs)
        if argv[1] == "rm":
            self.containers = [c for c in self.containers if c["Name"] != f"/{argv[-1]}"]
        return subprocess.CompletedProcess(argv, 0, "", "")


def _step(call: runner.Call) -> str:
    """A command line, the proxy's scripts said in words."""
    argv = call.argv
    if argv[0] == "docker-compose":
        return " ".join(argv[3:])  # after -p abroll
    words = list(argv[1:])
    if words[0] == "exec" and words[2:4] == ["sh", "-c"]:
        if "shutting down" in words[4]:
            return f"exec {words[1]} count draining workers"
        assert words[5:7] == ["sh", "/tmp/nginx-runtime/upstream-api.conf"]
        if words[4].startswith("while IFS="):
            return f"exec {words[1]} read the api include"
        servers = re.findall(r"server (10\.[\d.]+):8000", words[7])
        return f"exec {words[1]} write api: {', '.join(servers) or 'by name'}"
    return " ".join(words)


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, runner.FakeRunner]]:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    state = Daemon()
    state.add("proxy", "abroll-proxy-1")
    state.add("api", "abroll-api-1")
    state.health = {"abroll-api-1": ["healthy"], "abroll-api-2": ["starting", "healthy"]}
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient("/usr/bin/docker", "20.10.24", False))
    monkeypatch.setattr(docker, "containers_by_label", state.by_label)
    monkeypatch.setattr(docker, "inspect", state.inspect)
    monkeypatch.setattr(compose, "compose_command", lambda: ["docker-compose"])
    monkeypatch.setattr(rollout.time, "sleep", lambda _s: None)
    fake = runner.FakeRunner()
    fake.answers[()] = state.answer
    with runner.use(fake):
        yield state, fake


def _switch(to: str) -> list[str]:
    """A switch of the api's upstream group to `to` (addresses, or "by name"): read, write, test, reload."""
    return [
        "exec abroll-proxy-1 read the api include",
        f"exec abroll-proxy-1 write api: {to}",
        "exec abroll-proxy-1 nginx -t",
        "exec abroll-proxy-1 nginx -s reload",
    ]


def test_a_roll_issues_each_docker_command_in_order(daemon: tuple[Daemon, runner.FakeRunner]) -> None:
    state, fake = daemon
    said: list[str] = []
    outcome = rollout.roll(Stack("prod", "abroll", {}), "api", timeout=30, progress=said.append)
    assert outcome.detail == "abroll-api-1 -> abroll-api-2"
    assert [_step(c) for c in fake.calls] == [
        *_switch("10.0.0.2"),  # on the old container's address (a no-op after a deploy: see the next test)
        "up -d --no-deps --no-build --no-recreate --scale api=2 api",
        "exec abroll-proxy-1 wget -q -O - http://abroll-api-2:8000/health/ready",
        *_switch("10.0.0.3"),
        "exec abroll-proxy-1 count draining workers",
        "stop --time 15 abroll-api-1",
        "rm -f -v abroll-api-1",
    ]
    include = state.runtime["/tmp/nginx-runtime/upstream-api.conf"]
    assert "server 10.0.0.3:8000 max_fails=1 fail_timeout=10s;" in include
    assert f"keepalive {model.UPSTREAM_KEEPALIVE};" in include
    assert "server 127.0.0.1:8091 backup;" in include and "keepalive_timeout 4s;" in include
    wget = next(c for c in fake.calls if "wget" in c.argv)
    assert wget.timeout == 5  # busybox wget cannot bound itself: docker exec is bounded instead
    assert said[0] == "api: starting a new container beside abroll-api-1"
    # Ready from the proxy's network while Docker still says "starting": its first check would come 10 s late.
    assert said[1].split()[-1] == "starting"
    assert said[2].startswith("api: the proxy sends to abroll-api-2; old requests drained in ")
    assert said[2].endswith(" s; stopping abroll-api-1")
    assert [c["Name"] for c in state.containers] == ["/abroll-proxy-1", "/abroll-api-2"]


def test_a_new_container_that_exits_is_removed_with_its_logs_in_the_error(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    state.health["abroll-api-2"] = ["starting", "exited"]
    with pytest.raises(OpsError) as caught:
        rollout.roll(Stack("prod", "abroll", {}), "api", timeout=30)
    assert str(caught.value) == (
        "api: the new release was rolled back, abroll-api-1 keeps serving: abroll-api-2 did not become ready "
        "(exited, exit code 1, restarts 5); its last log lines:\nTraceback: ImportError\nuvicorn exited"
    )
    steps = [_step(c) for c in fake.calls]
    assert steps[4:] == [
        "up -d --no-deps --no-build --no-recreate --scale api=2 api",
        "exec abroll-proxy-1 wget -q -O - http://abroll-api-2:8000/health/ready",  # asked while it was starting
        "logs --tail 30 abroll-api-2",
        "rm -f -v abroll-api-2",
    ]
    assert "stop --time 15 abroll-api-1" not in steps
    assert "server 10.0.0.2:8000" in state.runtime["/tmp/nginx-runtime/upstream-api.conf"]  # the old one still


def test_a_new_container_that_exits_without_a_word_says_so(daemon: tuple[Daemon, runner.FakeRunner]) -> None:
    state, _fake = daemon
    state.health["abroll-api-2"] = ["starting", "exited"]
    state.logs = ("", "")
    with pytest.raises(OpsError) as caught:
        rollout.roll(Stack("prod", "abroll", {}), "api", timeout=30)
    assert str(caught.value).endswith(
        "abroll-api-2 did not become ready (exited, exit code 1, restarts 5); its last log lines:\n(no output)"
    )


def test_a_container_that_is_healthy_but_not_ready_through_the_proxy_is_never_switched_to(
    daemon: tuple[Daemon, runner.FakeRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, fake = daemon
    state.ready = '{"status": "not_ready", "failing": ["postgres"]}'
    clock = itertools.count()
    monkeypatch.setattr(rollout.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(OpsError, match=r"abroll-api-2 did not become ready \(healthy, restarts 0\)"):
        rollout.roll(Stack("prod", "abroll", {}), "api", timeout=4)
    steps = [_step(c) for c in fake.calls]
    assert "exec abroll-proxy-1 write api: 10.0.0.3" not in steps
    assert steps.count("exec abroll-proxy-1 wget -q -O - http://abroll-api-2:8000/health/ready") >= 1


def test_compose_starting_no_second_container_leaves_the_proxy_on_the_old_one(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    state.start_second = False
    with pytest.raises(OpsError, match=r"^compose started no second api container$"):
        rollout.roll(Stack("prod", "abroll", {}), "api")
    assert [_step(c) for c in fake.calls][-1] == "up -d --no-deps --no-build --no-recreate --scale api=2 api"
    assert "server 10.0.0.2:8000" in state.runtime["/tmp/nginx-runtime/upstream-api.conf"]
    assert not any(c.argv[1] == "rm" for c in fake.calls)


def test_an_interrupted_wait_removes_the_new_container(
    daemon: tuple[Daemon, runner.FakeRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    _state, fake = daemon

    def interrupted(*_a: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rollout, "wait_serving", interrupted)
    with pytest.raises(OpsError, match=r"rolled back, abroll-api-1 keeps serving: interrupted$"):
        rollout.roll(Stack("prod", "abroll", {}), "api")
    assert [_step(c) for c in fake.calls][-1] == "rm -f -v abroll-api-2"


def test_a_switch_nginx_refuses_restores_the_previous_include_and_does_not_reload(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    state.nginx_test_error = "nginx: [emerg] invalid port in upstream"
    before = state.runtime["/tmp/nginx-runtime/upstream-api.conf"]
    with pytest.raises(OpsError) as caught:
        rollout.point_proxy(Stack("prod", "abroll", {}), "api", ["10.0.0.99"])
    assert (
        str(caught.value) == "nginx -t refused the switch of api to 10.0.0.99: nginx: [emerg] invalid port in upstream"
    )
    assert [_step(c) for c in fake.calls] == [
        "exec abroll-proxy-1 read the api include",
        "exec abroll-proxy-1 write api: 10.0.0.99",
        "exec abroll-proxy-1 nginx -t",
        "exec abroll-proxy-1 write api: by name",  # the include as it was
    ]
    assert state.runtime["/tmp/nginx-runtime/upstream-api.conf"] == before


def test_a_switch_to_what_the_include_already_says_writes_and_reloads_nothing(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    state.runtime["/tmp/nginx-runtime/upstream-api.conf"] = rollout.upstream_include("api", ["10.0.0.2"])
    assert rollout.point_proxy(Stack("prod", "abroll", {}), "api", ["10.0.0.2"]) is False
    assert [_step(c) for c in fake.calls] == ["exec abroll-proxy-1 read the api include"]


def test_after_a_deploy_the_proxy_keeps_connections_to_each_running_http_service(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    state.add("bot", "abroll-bot-1")
    state.runtime["/tmp/nginx-runtime/upstream-bot.conf"] = rollout.upstream_include("bot", [])
    said: list[str] = []
    assert rollout.keep_alive(Stack("prod", "abroll", {}), said.append) == ["api", "bot"]
    assert said == [
        "api: the proxy keeps connections to abroll-api-1 alive",
        "bot: the proxy keeps connections to abroll-bot-1 alive",
    ]
    assert "server 10.0.0.3:8000" in state.runtime["/tmp/nginx-runtime/upstream-bot.conf"]
    fake.calls.clear()
    assert rollout.keep_alive(Stack("prod", "abroll", {})) == []  # a rerun: nothing to write, nothing reloaded
    assert not any("reload" in c.argv for c in fake.calls)


def test_without_a_running_proxy_there_is_nothing_to_switch(daemon: tuple[Daemon, runner.FakeRunner]) -> None:
    state, fake = daemon
    state.containers[0]["State"]["Running"] = False
    with pytest.raises(
        OpsError, match=r"^the proxy of abroll is not running, so nothing can switch its upstream; start the stack"
    ):
        rollout.point_proxy(Stack("prod", "abroll", {}), "api", [])
    assert fake.calls == []
    assert not rollout.can_roll(Stack("prod", "abroll", {}), "api")


def test_containers_are_the_running_non_oneoff_ones_of_the_service_oldest_first(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, _fake = daemon
    state.add("api", "abroll-api-run-1", oneoff=True)
    state.add("api", "abroll-api-old", running=False)
    state.add("api", "abroll-api-0", created="2024-04-30T00:00:00Z")
    state.add("bot", "abroll-bot-1")
    stack = Stack("prod", "abroll", {})
    assert [rollout.name_of(i) for i in rollout.containers(stack, "api")] == ["abroll-api-0", "abroll-api-1"]
    assert rollout.can_roll(stack, "bot")
    assert not rollout.can_roll(stack, "api")  # two running: a roll under way, or a mess to look at


def test_draining_waits_until_no_old_worker_is_left_and_is_bounded(
    daemon: tuple[Daemon, runner.FakeRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, fake = daemon
    stack = Stack("prod", "abroll", {})
    state.draining = ["2", "1", "0"]
    rollout.wait_drained(stack, timeout=60)
    assert [_step(c) for c in fake.calls] == ["exec abroll-proxy-1 count draining workers"] * 3
    fake.calls.clear()
    state.draining = ["3", "3"]  # a worker that never finishes (a long download): the wait is bounded
    clock = itertools.count()
    monkeypatch.setattr(rollout.time, "monotonic", lambda: float(next(clock)))
    assert rollout.wait_drained(stack, timeout=3) >= 3
    assert 1 <= len(fake.calls) <= 3


def test_what_the_proxy_says_about_workers_and_readiness_when_things_go_wrong(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    fake.answers[("docker", "exec", "p", "sh")] = lambda call: subprocess.CompletedProcess(call.argv, 1, "", "")
    assert rollout._draining_workers("p") == 0  # no count printed: nothing to wait for
    stack = Stack("prod", "abroll", {})
    state.ready = "<html>502 Bad Gateway</html>"
    assert not rollout._ready_from_proxy(stack, "abroll-api-2")

    def hung(call: runner.Call) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(call.argv, 5)

    fake.answers[("docker", "exec", "abroll-proxy-1", "wget")] = hung
    assert not rollout._ready_from_proxy(stack, "abroll-api-2")  # a hung exec is "not ready", not a crash


def test_the_health_of_a_container_that_is_gone_is_none_and_not_running(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    assert rollout._health("abroll-api-1") == ("healthy", True)
    assert rollout._health("abroll-api-9") == ("none", False)
