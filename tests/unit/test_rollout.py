"""The order of a rolling update, and its rollback, with Docker and Compose faked."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from analyticbot_ops import rollout
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import OpsError


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
