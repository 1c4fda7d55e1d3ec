"""What a deploy would do, decided before it does anything: Compose's hashes against what runs."""

from __future__ import annotations

import pytest

from analyticbot_ops import compose, deploy, rollout
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import BadInput

STACK = Stack("prod", "abplan", {})


def _container(service: str, config_hash: str, running: bool = True, oneoff: bool = False) -> dict:
    labels = {
        "com.docker.compose.service": service,
        "com.docker.compose.config-hash": config_hash,
        "com.docker.compose.oneoff": "True" if oneoff else "False",
    }
    return {"Config": {"Labels": labels}, "State": {"Running": running}, "Name": f"/abplan_{service}_1", "Created": "1"}


def test_each_service_is_unchanged_changed_or_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy, "config_hashes", lambda _s: {"api": "h2", "proxy": "p1", "bot": "b1", "migrate": "m1"})
    running = [
        _container("api", "h1"),
        _container("proxy", "p1"),
        _container("migrate", "m1", running=False),  # a job that ran: exited
        _container("bot", "b0", oneoff=True),  # a `compose run` one-off is not the service
    ]
    monkeypatch.setattr(compose, "project_containers", lambda _p: running)
    assert deploy.plan(STACK) == {"api": "change", "proxy": "unchanged", "bot": "start", "migrate": "start"}


def test_recreating_the_proxy_needs_allow_downtime() -> None:
    with pytest.raises(BadInput, match="--allow-downtime"):
        deploy.check_downtime({"proxy": "change"}, allow_downtime=False)
    deploy.check_downtime({"proxy": "change"}, allow_downtime=True)
    deploy.check_downtime({"proxy": "unchanged", "api": "change"}, allow_downtime=False)


def test_only_a_served_single_container_of_an_http_service_rolls(monkeypatch: pytest.MonkeyPatch) -> None:
    running = {"proxy": [{}], "api": [{}], "bot": [{}, {}], "postgres": [{}]}
    monkeypatch.setattr(rollout, "containers", lambda _s, service: running.get(service, []))
    assert rollout.can_roll(STACK, "api")
    assert not rollout.can_roll(STACK, "bot")  # two at once: a roll is under way, or a mess to look at
    assert not rollout.can_roll(STACK, "postgres")  # a singleton
    running["proxy"] = []
    assert not rollout.can_roll(STACK, "api")  # no proxy: nothing to keep serving through
