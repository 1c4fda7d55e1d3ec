"""The Docker Engine API through the Docker SDK for Python: inspect, list, logs and image history as
data, with the API version negotiated with the daemon (never a fixed /v1.41) and any daemon the
environment names (DOCKER_HOST, TLS settings) reached as the CLI would.

A health sweep or a deploy's wait asks dozens of times a second; a CLI call costs ~100 ms of start-up,
an API call a few ms. What the SDK cannot do well stays on the CLI, through the runner: Compose,
BuildKit builds, `docker exec` with a secret on stdin, `docker import` from a pipe."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import docker as sdk  # aliased: analyticbot_ops.docker (the CLI wrapper) shares its name
import requests
from docker import errors as sdk_errors  # aliased: analyticbot_ops.errors shares its name
from docker import utils

from .errors import DockerUnavailable, OpsError
from .runner import first_line

T = TypeVar("T")
# How long one API call may take; a sweep of a stuck daemon then fails instead of hanging.
API_TIMEOUT = 30


def _where() -> str:
    return os.environ.get("DOCKER_HOST", "the default socket")


def _why(exc: BaseException) -> str:
    """The cause a person can act on, from the bottom of requests' exception chain."""
    text = str(exc)
    if "FileNotFoundError" in text or "No such file" in text:
        return "no such socket"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "connection refused"
    if "Permission denied" in text or "PermissionError" in text:
        return "permission denied (run as root, or join the docker group)"
    return first_line(text)


@functools.lru_cache(maxsize=4)
def _client(host: str | None) -> sdk.APIClient:
    try:
        return sdk.APIClient(version="auto", timeout=API_TIMEOUT, **utils.kwargs_from_env())
    except (sdk_errors.DockerException, requests.RequestException) as exc:
        raise DockerUnavailable(f"Docker daemon is not reachable at {_where()}: {_why(exc)}") from None


def api() -> sdk.APIClient:
    """The low-level client for the daemon DOCKER_HOST names (one per address, reused)."""
    return _client(os.environ.get("DOCKER_HOST"))


def call(request: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """One API request: None when the object does not exist, one-line errors otherwise."""
    try:
        return request(*args, **kwargs)
    except sdk_errors.NotFound:
        return None
    except requests.ConnectionError as exc:
        raise DockerUnavailable(f"Docker daemon is not reachable at {_where()}: {_why(exc)}") from None
    except sdk_errors.APIError as exc:
        raise OpsError(f"Docker API: {first_line(exc.explanation or str(exc))}") from None
    except (sdk_errors.DockerException, requests.RequestException) as exc:
        raise OpsError(f"Docker API: {first_line(str(exc))}") from None


_INSPECT = {
    "image": lambda client: client.inspect_image,
    "container": lambda client: client.inspect_container,
    "volume": lambda client: client.inspect_volume,
    "network": lambda client: client.inspect_network,
}


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """What `docker KIND inspect NAME` prints, as a dict; None when it does not exist."""
    return call(_INSPECT[kind](api()), name)


def containers(label: str) -> list[dict[str, Any]]:
    """The full inspect of every container (running or not) that carries a label (`key=value`)."""
    listed = call(api().containers, all=True, filters={"label": label}) or []
    found = [call(api().inspect_container, summary["Id"]) for summary in listed]
    return [info for info in found if info]  # one may be gone between the two calls


def history(tag: str) -> list[dict[str, Any]]:
    """Each layer of an image, newest first: its size in bytes and the step that created it."""
    return call(api().history, tag) or []


def logs(container: str, tail: int = 40) -> str:
    """The last lines a container wrote to stdout and stderr."""
    client = api()  # a lambda picks logs' overload that returns bytes (not a stream)
    output = call(lambda: client.logs(container, stdout=True, stderr=True, tail=tail))
    return (output or b"").decode(errors="replace")


def server_version() -> str:
    """The daemon's version; DockerUnavailable when none answers."""
    version = call(api().version)
    if not version:
        raise DockerUnavailable(f"Docker daemon is not reachable at {_where()}")
    return str(version.get("Version", ""))


def exec_exit_code(container: str, argv: list[str]) -> int | None:
    """Run `argv` in a running container and return its exit code (None when the container is gone): what
    `docker exec` does, without the CLI's start-up, for a probe run many times during a deploy."""
    client = api()
    created = call(client.exec_create, container, argv, stdout=True, stderr=True)
    if not created:
        return None
    call(client.exec_start, created["Id"])
    inspected = call(client.exec_inspect, created["Id"]) or {}
    code = inspected.get("ExitCode")
    return int(code) if code is not None else None
