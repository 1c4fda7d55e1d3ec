"""Fixtures for tests against the real Docker daemon and the locally built images.

The nox `integration` session builds every image first; a missing image is a
failure with the command to run, never a skip."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from analyticbot_ops import baseimages, build, deploy, docker, model
from tests.sandbox import RunningStack, make_stack

# Ryuk's image cannot be pulled here; every test removes what it starts.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@pytest.fixture(scope="session", autouse=True)
def daemon() -> str:
    return docker.require_daemon()


def require_image(tag: str) -> str:
    if docker.inspect("image", tag) is None:
        pytest.fail(f"image {tag} is missing: run `invoke images.base images.build` (nox -s integration does)")
    return tag


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id that keeps this run's containers apart from a dev stack or another run."""
    return uuid.uuid4().hex[:8]


BASE_TAGS = {r.name: r.tag() for r in baseimages.RECIPES}
SERVICE_TAGS = {s: build.service_tag(s) for s in model.APPS}
PROXY_TAG = build.service_tag("proxy")


def wait_for_health(container_id: str, timeout: float) -> str:
    """Poll Docker's health state until healthy; fail with the container's logs otherwise."""
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        state = (docker.inspect("container", container_id) or {}).get("State", {})
        status = (state.get("Health") or {}).get("Status", "none")
        if status == "healthy":
            return status
        if not state.get("Running", False):
            break
        time.sleep(0.5)
    logs = docker.docker(["logs", "--tail", "40", container_id], check=False)
    pytest.fail(f"container {container_id[:12]} is {status} after {timeout:.0f} s; logs:\n{logs.stdout}{logs.stderr}")


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Container ids to remove at the end of the test, whatever happens."""
    started: list[str] = []
    yield started
    for container_id in started:
        docker.docker(["rm", "-f", "-v", container_id], check=False)


@pytest.fixture(scope="session")
def prod_stack(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[RunningStack]:
    """The whole stack in prod mode, up and healthy; removed with its volumes at the end."""
    test_stack = make_stack(tmp_path_factory.mktemp("stack"), f"abtest-{run_id}")
    try:
        deploy.up(test_stack.stack, timeout=240, progress=print)
        yield test_stack
    finally:
        deploy.down(test_stack.stack, volumes=True)
