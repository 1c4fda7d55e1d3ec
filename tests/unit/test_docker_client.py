"""Choosing a docker client that can build with BuildKit."""

from __future__ import annotations

import pytest

from analyticbot_ops import docker
from analyticbot_ops.errors import DockerUnavailable


@pytest.fixture(autouse=True)
def clear_cache() -> None:
    docker.client.cache_clear()


def _use(monkeypatch: pytest.MonkeyPatch, clients: dict[str, docker.DockerClient | None]) -> None:
    monkeypatch.setattr(docker, "_candidate_paths", lambda: list(clients))
    monkeypatch.setattr(docker, "_probe", clients.get)


def test_new_client_without_buildx_is_passed_over_for_an_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(
        monkeypatch,
        {
            "/usr/local/bin/docker": docker.DockerClient("/usr/local/bin/docker", "28.2.2", has_buildx=False),
            "/usr/bin/docker": docker.DockerClient("/usr/bin/docker", "20.10.24+dfsg1", has_buildx=False),
        },
    )
    assert docker.buildkit_client().path == "/usr/bin/docker"


def test_new_client_with_buildx_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, {"/x/docker": docker.DockerClient("/x/docker", "28.0.0", has_buildx=True)})
    assert docker.buildkit_client().path == "/x/docker"


def test_only_a_new_client_without_buildx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, {"/x/docker": docker.DockerClient("/x/docker", "28.0.0", has_buildx=False)})
    with pytest.raises(DockerUnavailable, match="buildx"):
        docker.buildkit_client()


def test_no_client_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, {})
    with pytest.raises(DockerUnavailable, match="no docker client"):
        docker.client()
