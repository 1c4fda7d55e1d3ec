"""Service images: the host-built wheelhouse, BuildKit builds with no network, and
what each build cost (time, size, cached steps)."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import __version__, docker, runner
from .errors import BadInput, OpsError
from .imagespec import IMAGES as IMAGES
from .imagespec import SERVICES as SERVICES
from .model import DEFAULT_NAMESPACE
from .paths import REPO_ROOT, SERVICES_DIR, WHEELS_DIR

IMAGE_PYTHON = (3, 11)
WHEELHOUSE_STAMP = ".requirements.sha256"


def service_tag(service: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}/{service}:latest"


def check_service(name: str) -> str:
    if name not in SERVICES:
        raise BadInput(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    return name


def requirements_file(service: str) -> Path:
    return SERVICES_DIR / service / "requirements.txt"


def build_wheelhouse(service: str, python: str = sys.executable, progress: Callable[[str], None] = print) -> Path:
    """Wheels for every locked requirement, built on the host for the image's Python.

    Skipped while the lock file is unchanged. The lock pins every transitive
    dependency, markers resolved for Debian's 3.11.2, so `--no-deps` is exact."""
    requirements = requirements_file(service)
    target = WHEELS_DIR / service
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = target / WHEELHOUSE_STAMP
    if stamp.is_file() and stamp.read_text() == digest:
        return target
    version = runner.run([python, "-c", "import sys; print(sys.version_info[:2])"], check=False)
    if version.stdout.strip() != str(IMAGE_PYTHON):
        raise OpsError(f"wheels must be built with Python {IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]}; {python} is not")
    progress(f"  wheelhouse for {service}: building wheels from {requirements.relative_to(REPO_ROOT)}")
    target.mkdir(parents=True, exist_ok=True)
    # A new lock replaces the old wheels: stale ones would only grow the build context.
    for stale in target.glob("*.whl"):
        stale.unlink()
    result = runner.run(
        [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(target), "-r", str(requirements)],
        check=False,
    )
    if result.returncode != 0:
        raise OpsError(f"building the {service} wheelhouse failed: {docker.first_line(result.stderr)}")
    stamp.write_text(digest)
    return target


@dataclass
class ServiceBuild:
    service: str
    tag: str
    seconds: float
    size: int
    steps: int
    cached: int


_STEP = re.compile(r"^#(\d+) \[[^\]]*\d+/\d+\]")
_CACHED = re.compile(r"^#(\d+) CACHED")


def count_steps(progress_output: str) -> tuple[int, int]:
    """(steps, cached steps) from BuildKit's plain progress output."""
    steps = {m.group(1) for m in map(_STEP.match, progress_output.splitlines()) if m}
    cached = {m.group(1) for m in map(_CACHED.match, progress_output.splitlines()) if m}
    return len(steps), len(steps & cached)


@dataclass(frozen=True)
class SourceRevision:
    revision: str  # short hash of the last commit touching the inputs, "-dirty" with uncommitted changes
    created: str  # that commit's time (ISO 8601), never the clock: the same inputs give the same labels


UNKNOWN_SOURCE = SourceRevision("unknown", "1970-01-01T00:00:00Z")


def source_revision(paths: Iterable[str]) -> SourceRevision:
    """The last commit that touched `paths`, and whether they differ from it now."""
    paths = list(paths)
    try:
        result = runner.run(
            ["git", "log", "-1", "--format=%h %cI", "--abbrev=12", "--", *paths], check=False, cwd=REPO_ROOT
        )
    except OpsError:  # no git installed
        return UNKNOWN_SOURCE
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 2:
        return UNKNOWN_SOURCE  # not a git checkout (an unpacked tarball): constant labels, still reproducible
    dirty = runner.run(["git", "status", "--porcelain", "--", *paths], check=False, cwd=REPO_ROOT)
    return SourceRevision(fields[0] + ("-dirty" if dirty.stdout.strip() else ""), fields[1])


def build_command(
    service: str, tag: str, base_images: Mapping[str, str], no_cache: bool, target: str | None = None
) -> list[str]:
    """`docker build` arguments for one image; `target` builds another stage of its Dockerfile (tests)."""
    spec = IMAGES[check_service(service)]
    source = source_revision(spec.inputs)
    command = [
        "build",
        "--progress=plain",
        # Proof that the build needs nothing from outside: RUN steps get no network.
        "--network=none",
        "-f",
        str(spec.dockerfile),
        *[arg for name, value in spec.build_args for arg in ("--build-arg", f"{name}={value}")],
        # Labels from the command line, not ARGs in the Dockerfile: a new value
        # would otherwise invalidate every cached step after it. None of them is
        # the clock: unchanged inputs rebuild to the same image ID, so a rerun
        # recreates no container.
        "--label",
        f"org.opencontainers.image.version={__version__}",
        "--label",
        f"org.opencontainers.image.revision={source.revision}",
        "--label",
        f"org.opencontainers.image.created={source.created}",
        "--label",
        f"org.opencontainers.image.title=analyticbot-{service}",
        "-t",
        tag,
    ]
    for arg, name in spec.base_args:
        if name in base_images:
            command += ["--build-arg", f"{arg}={base_images[name]}"]
    if no_cache:
        command.append("--no-cache")
    target = target or spec.target
    if target:
        command += ["--target", target]
    return [*command, str(REPO_ROOT)]


def build_service(
    service: str,
    *,
    base_images: Mapping[str, str],
    namespace: str = DEFAULT_NAMESPACE,
    no_cache: bool = False,
    progress: Callable[[str], None] = print,
) -> ServiceBuild:
    """One BuildKit build; on failure the last lines of the build log explain why."""
    check_service(service)
    client = docker.buildkit_client()
    for wheelhouse in IMAGES[service].wheelhouses:
        build_wheelhouse(wheelhouse, progress=progress)
    tag = service_tag(service, namespace)
    started = time.monotonic()
    result = runner.run(
        [client.path, *build_command(service, tag, base_images, no_cache)], check=False, env={"DOCKER_BUILDKIT": "1"}
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        tail = [line for line in result.stderr.splitlines() if line.strip()][-12:]
        for line in tail:
            progress(f"  | {line}")
        raise OpsError(f"building {service} failed: {tail[-1] if tail else 'no output'}")
    steps, cached = count_steps(result.stderr)
    return ServiceBuild(service, tag, seconds, docker.image_size(tag), steps, cached)


def build_services(
    services: Iterable[str],
    *,
    base_images: Mapping[str, str],
    namespace: str = DEFAULT_NAMESPACE,
    no_cache: bool = False,
    progress: Callable[[str], None] = print,
) -> list[ServiceBuild]:
    selected = [check_service(s) for s in services]
    docker.require_daemon()
    results = []
    for index, service in enumerate(selected, 1):
        progress(f"[{index}/{len(selected)}] building {service}")
        results.append(
            build_service(service, base_images=base_images, namespace=namespace, no_cache=no_cache, progress=progress)
        )
    from . import releases  # after the builds: the record names what was just built

    for service, tag in releases.record_build({r.service: r.tag for r in results}).items():
        progress(f"  {service}: {tag} (what this checkout's deploys run)")
    return results
