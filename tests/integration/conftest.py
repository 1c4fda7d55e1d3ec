"""Fixtures for tests against the real Docker daemon and the locally built images.

The nox `integration` session builds every image first; a missing image is a
failure with the command to run, never a skip."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from analyticbot_ops import baseimages, build, deploy, docker, model
from tests.sandbox import RunningStack, make_stack

# Ryuk's image cannot be pulled here; every test removes what it starts.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


# `nox -s integration` runs the suite on pytest-xdist workers, a group of tests at a time per worker. The modules
# that use the session's prod_stack form one group, so that they share one stack in file order as a serial run
# does; every other module is a group of its own. The longest groups go first (seconds a serial run spent on
# 2026-12-07: swarm 424, recovery 255, the prod_stack modules 168, monitoring 102): the Swarm module starts at
# once and the short groups fill the other workers meanwhile. xdist's own `--dist loadgroup` cannot do this
# under pytest 9.2, which no longer reads the node id xdist rewrites to add the group.
PROD_STACK_GROUP = "prod_stack"
PROD_STACK_MODULES = frozenset(
    {"test_access", "test_faults", "test_operations", "test_rollout", "test_secrets_live", "test_stack",
     "test_status_page", "test_tls"}
)  # fmt: skip
LONGEST_FIRST = ("test_swarm", "test_recovery", PROD_STACK_GROUP, "test_monitoring")


def group_of(module: str) -> str:
    """The scheduling group of a test module, by its file's stem."""
    return PROD_STACK_GROUP if module in PROD_STACK_MODULES else module


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest groups first; fail fast when a module uses prod_stack and is not in its group."""
    unlisted = {i.path.stem for i in items if "prod_stack" in getattr(i, "fixturenames", ())} - PROD_STACK_MODULES
    if unlisted:
        raise pytest.UsageError(f"{', '.join(sorted(unlisted))} use prod_stack: add them to PROD_STACK_MODULES")

    def rank(item: pytest.Item) -> int:
        group = group_of(item.path.stem)
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: file order within a group, and among the rest


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling:
    """Each worker takes a whole group at a time, in collection order (never reordered by size)."""
    config.option.loadscopereorder = False
    return _ByGroup(config, log)


class _ByGroup(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return group_of(Path(nodeid.split("::", 1)[0]).stem)


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
