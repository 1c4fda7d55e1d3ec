"""Shared by the recovery tests (test_pitr.py, test_drill.py): a Docker host as the recovery code sees it, with
no daemon. A FakeRunner answers the commands (`docker exec`, `docker run`, `docker compose ...`) and records
them; the project's containers are dicts shaped like `docker inspect`'s, changed by `compose stop` and `up`;
psql answers by the SQL it is given on stdin; the clock moves only when the code sleeps (or a test says so)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from analyticbot_ops import backups, compose, docker, runner
from analyticbot_ops.model import Labels
from tests.unit.swarm_support import FakeClock

CLIENT = docker.DockerClient("/opt/bin/docker", "28.2.2", has_buildx=True)
# psql as the recovery code runs it in a container, as FakeRunner.commands() shows it.
PSQL = f"psql -U {backups.DB_USER} -d {backups.DB_NAME} -tA"


def container(project: str, service: str, status: str = "running") -> dict[str, Any]:
    """One container of a Compose project as `docker inspect` gives it (what service_states reads)."""
    return {
        "Name": f"/{project}-{service}-1",
        "Created": "2026-12-07T00:00:00Z",
        "Config": {"Labels": {Labels.PROJECT: project, Labels.SERVICE: service}},
        "State": {"Status": status, "Running": status == "running"},
        "RestartCount": 0,
    }


def by_sql(answers: Mapping[str, str | list[str]]) -> Callable[[runner.Call], runner.Completed[Any]]:
    """psql in a container, answering by a piece of the SQL on its stdin. A list is said in turn, its last
    answer from then on; SQL the test did not expect fails the test."""

    def answer(call: runner.Call) -> runner.Completed[Any]:
        sql = call.input.decode() if isinstance(call.input, bytes) else str(call.input)
        for piece, said in answers.items():
            if piece in sql:
                if isinstance(said, list):
                    said = said.pop(0) if len(said) > 1 else said[0]
                return runner.Completed(list(call.argv), 0, f"{said}\n", "")
        raise AssertionError(f"psql was asked SQL the test did not expect: {sql}")

    return answer


@dataclass
class Host:
    """The fake Docker host: the project's services and their states, every command, and the clock."""

    project: str
    fake: runner.FakeRunner
    clock: FakeClock
    states: dict[str, str] = field(default_factory=dict)  # service -> running, exited, ...
    others: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # label -> containers of other projects
    held: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) that `docker inspect` finds

    def commands(self) -> list[str]:
        return self.fake.commands()

    def compose(self, *args: str) -> str:
        """A compose command of the project as FakeRunner.commands() shows it."""
        return " ".join(("docker", "compose", "-p", self.project, *args))

    def containers(self, label: str) -> list[dict[str, Any]]:
        if label == f"{Labels.PROJECT}={self.project}":
            return [container(self.project, service, status) for service, status in self.states.items()]
        return self.others.get(label, [])

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        return {"Name": name} if (kind, name) in self.held else None

    def _stop(self, call: runner.Call) -> runner.Completed[Any]:
        for service in call.argv[call.argv.index("stop") + 1 :]:
            self.states[service] = "exited"
        return runner.Completed(list(call.argv), 0, "", "")

    def _up(self, call: runner.Call) -> runner.Completed[Any]:
        self.states[call.argv[-1]] = "running"
        return runner.Completed(list(call.argv), 0, "", "")


@contextlib.contextmanager
def fake_host(monkeypatch: pytest.MonkeyPatch, project: str) -> Iterator[Host]:
    """The fake host of `project`: the docker client and daemon version answered without probing,
    `docker compose -p PROJECT` as the compose command, containers from Host.states (and Host.others),
    `docker inspect` from Host.held, time from a FakeClock in pitr and drill, and every command through the
    Host's FakeRunner."""
    from analyticbot_ops.recovery import drill, pitr

    host = Host(project, runner.FakeRunner(), FakeClock())
    monkeypatch.setattr(docker, "client", lambda: CLIENT)
    monkeypatch.setattr(docker, "require_daemon", lambda: CLIENT.version)
    monkeypatch.setattr(pitr, "client", lambda: CLIENT)  # pitr's own name for docker.client
    monkeypatch.setattr(docker, "containers_by_label", host.containers)
    monkeypatch.setattr(docker, "inspect", host.inspect)
    monkeypatch.setattr(compose, "compose_command", lambda: ["docker", "compose"])
    clock = SimpleNamespace(monotonic=host.clock.monotonic, sleep=host.clock.sleep)
    monkeypatch.setattr(pitr, "time", clock)
    monkeypatch.setattr(drill, "time", clock)
    host.fake.answers[("docker", "compose", "-p", project, "stop")] = host._stop
    host.fake.answers[("docker", "compose", "-p", project, "up")] = host._up
    with runner.use(host.fake):
        yield host
