"""The order of a rolling update, and its rollback, with Docker and Compose faked."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from analyticbot_ops import compose, docker, rollout, runner
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import OpsError
from analyticbot_ops.model import Labels


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
        return [{"Name": f"/{name}"} for name in self.running.get(service, [])]

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
    monkeypatch.setattr(rollout, "point_proxy", lambda _s, service, host: state.steps.append(("proxy", host)))
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
        ("proxy", "abroll_api_1"),  # pinned to the old one before the new one shares its name
        ("compose", "up -d --no-deps --no-build --no-recreate --scale api=2 api"),
        ("proxy", "abroll_api_2"),
        ("drain", ""),
        ("stop", "abroll_api_1"),
        ("rm", "abroll_api_1"),
        ("proxy", "api"),
    ]


def test_a_new_container_that_never_gets_ready_is_removed_and_the_old_one_keeps_serving(
    world: World,
) -> None:
    world.health["abroll_api_2"] = "unhealthy"
    with pytest.raises(OpsError, match=r"(?s)rolled back, abroll_api_1 keeps serving.*last words of the new container"):
        rollout.roll(FakeStack(world), "api", timeout=5)
    assert ("proxy", "abroll_api_2") not in world.steps  # the proxy never saw it
    assert world.steps[-2:] == [("rm", "abroll_api_2"), ("proxy", "api")]
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
        if words[4].startswith('read -r old < "$1";'):
            assert words[5:7] == ["sh", "/tmp/nginx-runtime/upstream-api.conf"]
            return f"exec {words[1]} write {words[7]}"
        return f"exec {words[1]} restore {words[6]}"
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


def _switch(host: str) -> list[str]:
    return [
        f'exec abroll-proxy-1 write map "" $api_host {{ default "{host}"; }}',
        "exec abroll-proxy-1 nginx -t",
        "exec abroll-proxy-1 nginx -s reload",
    ]


def test_a_roll_issues_each_docker_command_in_order(daemon: tuple[Daemon, runner.FakeRunner]) -> None:
    state, fake = daemon
    said: list[str] = []
    outcome = rollout.roll(Stack("prod", "abroll", {}), "api", timeout=30, progress=said.append)
    assert outcome.detail == "abroll-api-1 -> abroll-api-2"
    assert [_step(c) for c in fake.calls] == [
        *_switch("abroll-api-1"),
        "up -d --no-deps --no-build --no-recreate --scale api=2 api",
        "exec abroll-proxy-1 wget -q -O - http://abroll-api-2:8000/health/ready",
        *_switch("abroll-api-2"),
        "exec abroll-proxy-1 count draining workers",
        "stop --time 15 abroll-api-1",
        "rm -f abroll-api-1",
        *_switch("api"),
    ]
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
    assert steps[3:] == [
        "up -d --no-deps --no-build --no-recreate --scale api=2 api",
        "exec abroll-proxy-1 wget -q -O - http://abroll-api-2:8000/health/ready",  # asked while it was starting
        "logs --tail 30 abroll-api-2",
        "rm -f abroll-api-2",
        *_switch("api"),
    ]
    assert "stop --time 15 abroll-api-1" not in steps


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
    assert 'exec abroll-proxy-1 write map "" $api_host { default "abroll-api-2"; }' not in steps
    assert steps.count("exec abroll-proxy-1 wget -q -O - http://abroll-api-2:8000/health/ready") >= 1


def test_compose_starting_no_second_container_puts_the_proxy_back_on_the_service_name(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    state.start_second = False
    with pytest.raises(OpsError, match=r"^compose started no second api container$"):
        rollout.roll(Stack("prod", "abroll", {}), "api")
    assert [_step(c) for c in fake.calls][-3:] == _switch("api")
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
    assert [_step(c) for c in fake.calls][-4:] == ["rm -f abroll-api-2", *_switch("api")]


def test_a_switch_nginx_refuses_restores_the_previous_include_and_does_not_reload(
    daemon: tuple[Daemon, runner.FakeRunner],
) -> None:
    state, fake = daemon
    state.nginx_test_error = 'nginx: [emerg] host not found in upstream "abroll-api-9"'
    with pytest.raises(OpsError) as caught:
        rollout.point_proxy(Stack("prod", "abroll", {}), "api", "abroll-api-9")
    assert str(caught.value) == (
        'nginx -t refused the switch of api to abroll-api-9: nginx: [emerg] host not found in upstream "abroll-api-9"'
    )
    assert [_step(c) for c in fake.calls] == [
        'exec abroll-proxy-1 write map "" $api_host { default "abroll-api-9"; }',
        "exec abroll-proxy-1 nginx -t",
        "exec abroll-proxy-1 restore /tmp/nginx-runtime/upstream-api.conf",
    ]


def test_without_a_running_proxy_there_is_nothing_to_switch(daemon: tuple[Daemon, runner.FakeRunner]) -> None:
    state, fake = daemon
    state.containers[0]["State"]["Running"] = False
    with pytest.raises(
        OpsError, match=r"^the proxy of abroll is not running, so nothing can switch its upstream; start the stack"
    ):
        rollout.point_proxy(Stack("prod", "abroll", {}), "api", "api")
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
