"""Make the services' code importable in unit tests, as the image's PYTHONPATH does (/opt/app/src)."""

from __future__ import annotations

import os
import shutil
import sys
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
def no_real_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never reach a Docker daemon, or any address through one: a `docker` command that gets past
    a test's own fakes to the real runner fails the test instead of running. (docker-compose `config`,
    which reads files and asks no daemon, stays allowed: the audit's tests merge the real compose files.)"""
    from analyticbot_ops import runner

    real = runner.SubprocessRunner.run
    installed = {os.path.realpath(p) for p in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker") if p}

    def guarded(self: runner.SubprocessRunner, call: runner.Call, **kwargs: object) -> runner.Completed[object]:
        program = os.path.realpath(shutil.which(call.argv[0]) or call.argv[0])
        asks_no_daemon = tuple(call.argv[1:3]) in _NO_DAEMON_CALLS or tuple(call.argv[1:2]) in _NO_DAEMON_CALLS
        if program in installed and not asks_no_daemon:  # a test's own stand-in script may run
            raise AssertionError(f"a unit test ran the real docker CLI: {' '.join(call.argv[:4])}")
        return real(self, call, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner.SubprocessRunner, "run", guarded)
