"""Make the services' code importable in unit tests, as the image's PYTHONPATH does (/opt/app/src)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"

for name in ("common", "api", "bot", "mtproto"):
    path = str(SERVICES / name)
    if path not in sys.path:
        sys.path.insert(0, path)


# The docker CLI calls that ask no daemon: probing which client is installed.
_NO_DAEMON_CALLS = (("--version",), ("buildx", "version"), ("compose", "version"))


@pytest.fixture(autouse=True)
def no_real_docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Unit tests never reach a Docker daemon, or any address through one, by either road: a `docker` command
    that gets past a test's own fakes to the real runner, or a Docker SDK client (engine.py's APIClient, which
    asks the daemon its API version as it is made), fails the test instead. (docker-compose `config`, which
    reads files and asks no daemon, stays allowed: the audit's tests merge the real compose files.)

    Each attempt is also recorded (the fixture's value) and fails the test at teardown, so code that turns the
    AssertionError into its own error (a rollback's OpsError) cannot hide it; a test that provokes one on
    purpose clears the list."""
    from docker.api.client import APIClient

    from analyticbot_ops import runner

    reached: list[str] = []

    real = runner.SubprocessRunner.run
    installed = {os.path.realpath(p) for p in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker") if p}

    def guarded(self: runner.SubprocessRunner, call: runner.Call, **kwargs: object) -> runner.Completed[object]:
        program = os.path.realpath(shutil.which(call.argv[0]) or call.argv[0])
        asks_no_daemon = tuple(call.argv[1:3]) in _NO_DAEMON_CALLS or tuple(call.argv[1:2]) in _NO_DAEMON_CALLS
        if program in installed and not asks_no_daemon:  # a test's own stand-in script may run
            reached.append(f"a unit test ran the real docker CLI: {' '.join(call.argv[:4])}")
            raise AssertionError(reached[-1])
        return real(self, call, **kwargs)  # type: ignore[arg-type]

    def no_engine_api(self: APIClient, base_url: str | None = None, *args: object, **kwargs: object) -> None:
        where = base_url or os.environ.get("DOCKER_HOST") or "the default socket"
        reached.append(
            f"a unit test reached the Docker Engine API (an SDK client for {where}): fake engine.api() or the "
            "engine reads the code under test makes"
        )
        raise AssertionError(reached[-1])

    monkeypatch.setattr(runner.SubprocessRunner, "run", guarded)
    monkeypatch.setattr(APIClient, "__init__", no_engine_api)
    yield reached
    assert not reached, "; ".join(dict.fromkeys(reached))


@pytest.fixture(autouse=True)
def no_real_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the toolkit keeps between runs (Compose's config hashes, the inputs of each image build) goes to the
    test's own folder, never the checkout's .cache: one test's record must not answer for another."""
    from analyticbot_ops import build, compose

    monkeypatch.setattr(compose, "CONFIG_HASHES", tmp_path / "config-hashes")
    monkeypatch.setattr(build, "BUILD_RECORDS", tmp_path / "builds")
