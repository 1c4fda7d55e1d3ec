"""Docker as this project uses it: the CLI (found once; the one that builds with BuildKit) for builds,
Compose and exec, run through the runner; the Engine API (engine.py, the Docker SDK) for everything read
as data: the daemon, images, containers."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import engine, runner
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
    # `docker --version` and `buildx version` never ask the daemon: a client is found (and compose config
    # runs) while the daemon is down, which is then said as such, not as "no client".
    try:
        said = runner.run([path, "--version"], check=False, timeout=20)
        buildx = runner.run([path, "buildx", "version"], check=False, timeout=20)
    except OpsError:  # not installed, not executable, or hung: not a client we can use
        return None
    found = re.match(r"Docker version ([0-9][^\s,]*)", said.stdout.strip())
    if said.returncode != 0 or found is None:
        return None
    return DockerClient(path=path, version=found.group(1), has_buildx=buildx.returncode == 0)


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
    """Run `docker ARGS` through the runner; on failure raise OpsError with the first line docker printed."""
    result = runner.run(
        [client().path, *args], check=check, input=input_bytes, env=env, timeout=timeout, capture=capture
    )
    if isinstance(result.stdout, bytes):  # only when input_bytes was given
        result = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            (result.stderr or b"").decode(errors="replace"),
        )
    return result


first_line = runner.first_line

# How the CLI says that a network it was asked about is gone (by ID; by name, through the daemon).
_GONE = re.compile(r"^Error: No such network: |^Error response from daemon: network .* not found")


def networks() -> list[dict[str, Any]]:
    """`docker network inspect` of every network. Another user of the daemon may remove one between the listing
    and the inspect: the CLI then still prints the others, says which is gone and exits 1; that is no error."""
    ids = docker(["network", "ls", "-q"]).stdout.split()
    if not ids:
        return []
    result = docker(["network", "inspect", *ids], check=False)
    problems = [line for line in result.stderr.splitlines() if line.strip() and not _GONE.match(line)]
    if result.returncode != 0 and (problems or not result.stdout.strip()):
        raise OpsError(f"docker network inspect failed: {first_line(result.stderr)}")
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


@functools.lru_cache(maxsize=1)
def require_daemon() -> str:
    """The daemon's version; a one-line DockerUnavailable when none answers (checked once per process)."""
    return engine.server_version()


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """`docker KIND inspect NAME` as a dict (through the Engine API), or None when it does not exist."""
    return engine.inspect(kind, name)


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
    """Each layer of an image, newest first: its size in bytes and the step that created it."""
    return engine.history(tag)


def containers_by_label(label: str) -> list[dict[str, Any]]:
    """`docker inspect` of every container (running or not) carrying a label."""
    return engine.containers(label)
