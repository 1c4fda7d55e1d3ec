"""What the task modules' unit tests share: each task runs with no Docker, no command and no setting of the
checkout's, and a failure is checked as the one `error:` line and exit code a user sees."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context, Exit

from analyticbot_ops import releases, runner, stack_settings
from analyticbot_ops.config import DEFAULTS

# The registry namespace the task tests configure (ops.namespace), so an image under it is told from a default one.
NAMESPACE = "registry.example/team"


class NoCommands(runner.FakeRunner):
    """Any command a unit test would run is a bug in the test: fail it loudly."""

    def run(self, call: runner.Call, *, capture: bool, text: bool) -> Any:
        raise AssertionError(f"a unit test tried to run {' '.join(call.argv)}")


@contextlib.contextmanager
def isolated_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No daemon, no setting from the process environment, secrets and TLS in tmp_path, each environment's
    .env file read in tmp_path (never the checkout's), and no command run."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    for key in stack_settings.SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("TLS_DIR", str(tmp_path / "tls"))
    monkeypatch.setattr(stack_settings, "env_file", lambda env: tmp_path / f".env.{stack_settings.check_env(env)}")
    with runner.use(NoCommands()):
        yield


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test of a module that imports this runs its tasks isolated (isolated_tasks)."""
    with isolated_tasks(monkeypatch, tmp_path):
        yield


@pytest.fixture
def pins(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """releases.pinned_settings asks docker for images: answer with one pinned API image, and record the asks."""
    asked: list[set[str]] = []

    def pinned(unnamed: Any, state_dir: Any = None) -> dict[str, str]:
        asked.append(set(unnamed))
        return {"API_IMAGE": f"{NAMESPACE}/api:build-1"} if "API_IMAGE" in unnamed else {}

    monkeypatch.setattr(releases, "pinned_settings", pinned)
    return asked


def fails(code: int, task: Any, *args: Any, **kwargs: Any) -> str:
    """Run a task expecting its one `error:` line and exit code; return the line."""
    with pytest.raises(Exit) as caught:
        task(*args, **kwargs)
    message = str(caught.value.message)
    assert caught.value.code == code, message
    assert message.startswith("error: ") and "\n" not in message
    return message


def record(calls: list[tuple[tuple[Any, ...], dict[str, Any]]], result: Any = None) -> Any:
    """A stand-in that records each call's arguments and returns `result` (or raises it)."""

    def fake(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        if isinstance(result, BaseException):
            raise result
        return result

    return fake


def context(**ops: Any) -> Context:
    """An Invoke context with the toolkit's defaults, some `ops` settings changed."""
    settings = copy.deepcopy(DEFAULTS)
    settings["ops"].update(ops)
    return Context(Config(overrides=settings))


def namespaced_context(**ops: Any) -> Context:
    """context() with the images under NAMESPACE, unless `ops` names another namespace."""
    return context(**{"namespace": NAMESPACE, **ops})
