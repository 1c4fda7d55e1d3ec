"""Service images: the host-built wheelhouse, BuildKit builds with no network, and
what each build cost (time, size, cached steps)."""

from __future__ import annotations

import hashlib
import json
import os
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
from .paths import CACHE_DIR, REPO_ROOT, SERVICES_DIR, WHEELS_DIR

IMAGE_PYTHON = (3, 11)
WHEELHOUSE_STAMP = ".requirements.sha256"
# What each image was last built from (build_inputs) and the image ID that build gave: a rerun with the same
# inputs keeps the image without asking BuildKit (five cached builds cost 0.8 s of a 3 s no-change rerun).
BUILD_RECORDS = CACHE_DIR / "builds"
# The build context as .dockerignore lets it in: these folders, without bytecode and tests.
CONTEXT_DIRS = ("services", "nginx", ".cache/wheels")


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
    # --use-pep517: an sdist (pyaes) is built in pip's isolated environment, which brings setuptools and wheel.
    # The legacy `setup.py bdist_wheel` path needs `wheel` in the calling environment, and bootstrap's uv-made
    # .venv (Debian's pip 23.0) has none: it failed there on a fresh machine.
    pip_wheel = [python, "-m", "pip", "wheel", "--quiet", "--use-pep517", "--no-deps"]
    result = runner.run([*pip_wheel, "--wheel-dir", str(target), "-r", str(requirements)], check=False)
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
    kept: bool = False  # its inputs had not changed since the build that made it: BuildKit was not asked


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
    # The wheelhouses first: they are part of the build context, and a digest taken before they were made
    # recorded inputs that the next run never matches (a fresh clone's first rerun asked BuildKit again).
    for wheelhouse in dict.fromkeys(name for service in selected for name in IMAGES[service].wheelhouses):
        build_wheelhouse(wheelhouse, progress=progress)
    context = None if no_cache else context_digest()
    for index, service in enumerate(selected, 1):
        tag = service_tag(service, namespace)
        inputs = "" if context is None else build_inputs(service, tag, base_images, context)
        kept = kept_build(service, tag, inputs) if inputs else None
        if kept is not None:
            progress(f"[{index}/{len(selected)}] {service}: its inputs are unchanged since it was built, kept")
            results.append(kept)
            continue
        progress(f"[{index}/{len(selected)}] building {service}")
        result = build_service(
            service, base_images=base_images, namespace=namespace, no_cache=no_cache, progress=progress
        )
        if inputs:
            _record(service, tag, inputs)
        results.append(result)
    from . import releases  # after the builds: the record names what was just built

    for service, tag in releases.record_build({r.service: r.tag for r in results}).items():
        progress(f"  {service}: {tag} (what this checkout's deploys run)")
    return results


def context_digest(roots: Iterable[str] = CONTEXT_DIRS) -> str:
    """Every file of the build context by path, size and modification time: any edit, checkout or new wheel
    changes it (a fresh clone's new times only cost one cached build)."""
    digest = hashlib.sha256()
    for root in roots:
        for folder, dirs, files in os.walk(REPO_ROOT / root):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "tests"))
            for name in sorted(files):
                if name.endswith(".pyc"):
                    continue
                path = Path(folder) / name
                stat = path.stat()
                digest.update(f"{path.relative_to(REPO_ROOT)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def build_inputs(service: str, tag: str, base_images: Mapping[str, str], context: str) -> str:
    """What a build of `service` reads: the build context (context_digest), its whole command (build args,
    labels with the source revision, the target) and the base images it names, by image ID."""
    command = build_command(service, tag, base_images, no_cache=False)
    named = sorted(base_images[name] for _arg, name in IMAGES[service].base_args if name in base_images)
    bases = [(docker.inspect("image", ref) or {}).get("Id", "absent") for ref in named]
    return hashlib.sha256(json.dumps([context, command, bases]).encode()).hexdigest()


def _record_path(tag: str) -> Path:
    return BUILD_RECORDS / (re.sub(r"[^A-Za-z0-9_.-]", "_", tag) + ".json")


def _record(service: str, tag: str, inputs: str) -> None:
    image = (docker.inspect("image", tag) or {}).get("Id")
    if image:
        BUILD_RECORDS.mkdir(parents=True, exist_ok=True)
        _record_path(tag).write_text(json.dumps({"service": service, "inputs": inputs, "image": image}) + "\n")


def kept_build(service: str, tag: str, inputs: str) -> ServiceBuild | None:
    """The image `tag` as it is, when its record says it was built from `inputs` and the tag still names that
    build's image; None when it must be built (no record, other inputs, or the tag moved or is gone)."""
    try:
        record = json.loads(_record_path(tag).read_text())
    except (OSError, ValueError):
        return None
    info = docker.inspect("image", tag) or {}
    if not isinstance(record, dict) or record.get("inputs") != inputs or record.get("image") != info.get("Id"):
        return None
    return ServiceBuild(service, tag, 0.0, int(info.get("Size", 0)), 0, 0, kept=True)
