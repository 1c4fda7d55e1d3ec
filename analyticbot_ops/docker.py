"""The Docker CLI as this project uses it: finding a client that builds with BuildKit,
checking the daemon, and reading images and containers as data."""

from __future__ import annotations

import functools
import http.client
import json
import os
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DockerUnavailable, OpsError

# Clients from 23.0 on route BuildKit builds through the buildx plugin and refuse
# them without it; older clients carry BuildKit themselves.
FIRST_CLIENT_NEEDING_BUILDX = 23


@dataclass(frozen=True)
class DockerClient:
    """One docker binary and how it builds."""

    path: str
    version: str
    has_buildx: bool

    @property
    def builds_with_buildkit(self) -> bool:
        return self.has_buildx or _major(self.version) < FIRST_CLIENT_NEEDING_BUILDX


def _major(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        return 0


def _candidate_paths() -> list[str]:
    override = os.environ.get("ANALYTICBOT_DOCKER")
    if override:
        return [override]
    found = [shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"]
    unique: list[str] = []
    for path in found:
        if path and os.access(path, os.X_OK) and os.path.realpath(path) not in map(os.path.realpath, unique):
            unique.append(path)
    return unique


def _probe(path: str) -> DockerClient | None:
    try:
        version = subprocess.run(
            [path, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
        buildx = subprocess.run([path, "buildx", "version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if not version:
        return None
    return DockerClient(path=path, version=version, has_buildx=buildx.returncode == 0)


@functools.lru_cache(maxsize=1)
def client() -> DockerClient:
    """The first docker client found that can build with BuildKit (any client if none can)."""
    probed = [c for c in map(_probe, _candidate_paths()) if c is not None]
    if not probed:
        raise DockerUnavailable("no docker client found on PATH; install docker.io (or set ANALYTICBOT_DOCKER)")
    for candidate in probed:
        if candidate.builds_with_buildkit:
            return candidate
    return probed[0]


def buildkit_client() -> DockerClient:
    """A client that builds with BuildKit, or one clear error saying what to install."""
    found = client()
    if not found.builds_with_buildkit:
        raise DockerUnavailable(
            f"docker {found.version} at {found.path} needs the buildx plugin for BuildKit builds; "
            "install docker-buildx or a docker client older than 23 (Debian's docker.io)"
        )
    return found


def docker(
    args: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    input_bytes: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; on failure raise OpsError with the first line docker printed."""
    full_env = {**os.environ, **(env or {})}
    try:
        result = subprocess.run(
            [client().path, *args],
            capture_output=capture,
            text=input_bytes is None,
            input=input_bytes,
            env=full_env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise OpsError(f"docker {args[0]} timed out after {timeout:.0f} s") from exc
    if isinstance(result.stdout, bytes):  # only when input_bytes was given
        result = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            (result.stderr or b"").decode(errors="replace"),
        )
    if result.returncode != 0 and _daemon_unreachable(result.stderr):
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise DockerUnavailable(f"Docker daemon is not reachable at {where}: {first_line(result.stderr)}")
    if check and result.returncode != 0:
        raise OpsError(f"docker {' '.join(args[:2])} failed: {first_line(result.stderr or result.stdout)}")
    return result


def _daemon_unreachable(stderr: str | None) -> bool:
    """Whether a failed docker call failed for want of a daemon, whatever the command."""
    text = (stderr or "").lower()
    return "cannot connect to the docker daemon" in text or "is the docker daemon running" in text


def first_line(text: str | None) -> str:
    """The first non-empty line of a command's output, for a one-line error."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "(no output)"


@functools.lru_cache(maxsize=1)
def require_daemon() -> str:
    """The daemon's version; a one-line DockerUnavailable when none answers."""
    try:
        result = docker(["version", "--format", "{{.Server.Version}}"], check=False, timeout=20)
    except OpsError as exc:
        raise DockerUnavailable(f"Docker daemon is not reachable: {exc}") from exc
    if result.returncode != 0 or not result.stdout.strip():
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise DockerUnavailable(f"Docker daemon is not reachable at {where}: {first_line(result.stderr)}")
    return result.stdout.strip()


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """`docker KIND inspect NAME` as a dict, or None when it does not exist."""
    result = docker([kind, "inspect", name], check=False)
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout or "[]")
    return data[0] if data else None


def image_labels(tag: str) -> dict[str, str] | None:
    """An image's labels ({} when it has none), or None when the image is absent."""
    info = inspect("image", tag)
    if info is None:
        return None
    return dict((info.get("Config") or {}).get("Labels") or {})


def image_size(tag: str) -> int:
    """An image's uncompressed size in bytes, as `docker image inspect` reports it."""
    info = inspect("image", tag)
    if info is None:
        raise OpsError(f"image {tag} does not exist; build it first")
    return int(info["Size"])


def image_history(tag: str) -> list[dict[str, Any]]:
    """Each layer of an image, newest first: its size and the step that created it."""
    out = docker(["image", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --- the Engine API over its Unix socket -------------------------------------------------
# Each `docker` CLI call costs ~100 ms of process start-up; the same question asked of
# the daemon's socket takes a few ms. Health sweeps and deploy waits poll often.


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _socket_path() -> str | None:
    """The daemon's Unix socket; None for a TCP or SSH daemon (the CLI reaches those)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://")
    if not os.path.exists(path):
        raise DockerUnavailable(f"Docker daemon is not reachable at {host}: no such socket")
    return path


def engine_get(path: str, query: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    """GET an Engine API path as JSON; None when the daemon has no local socket (use the CLI)."""
    socket_path = _socket_path()
    if socket_path is None:
        return None
    url = f"/v1.41{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        raise DockerUnavailable(f"Docker daemon is not reachable at {socket_path}: {exc}") from exc
    finally:
        connection.close()
    if response.status == 404:
        return {}
    if response.status >= 400:
        raise OpsError(f"Docker API {path} answered {response.status}: {body[:200].decode(errors='replace')}")
    return json.loads(body)


def containers_by_label(label: str) -> list[dict[str, Any]]:
    """`docker inspect` of every container (running or not) carrying a label."""
    listed = engine_get("/containers/json", {"all": "1", "filters": json.dumps({"label": [label]})})
    if listed is None:  # a remote daemon: the CLI knows how to reach it
        ids = docker(["ps", "-aq", "--filter", f"label={label}"]).stdout.split()
        return json.loads(docker(["inspect", *ids]).stdout) if ids else []
    found = []
    for summary in listed:
        info = engine_get(f"/containers/{summary['Id']}/json")
        if info:  # gone between the two calls
            found.append(info)
    return found
