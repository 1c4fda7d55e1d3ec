"""The stack as Compose runs it: each environment's compose files, its settings (stack_settings.py) made into a
Stack, the Compose v1/v2 command, the running containers, and waits on real health, never on sleeps."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import docker, engine, model, runner, stack_settings
from .errors import BadInput, OpsError
from .model import Labels
from .paths import CACHE_DIR, COMPOSE_DIR, REPO_ROOT

BASE_FILES = ("docker-compose.yml", "docker-compose.secrets.yml", "docker-compose.proxy.yml")
# Prometheus, Alertmanager and the exporters: on unless invoke.yaml says `ops: {monitoring: false}`.
MONITORING_FILE = "docker-compose.monitoring.yml"
# pgBackRest: WAL archiving, two repositories, scheduled backups; on unless `ops: {backup: false}`.
BACKUP_FILE = "docker-compose.backup.yml"
OVERLAYS = {
    "dev": ("docker-compose.dev.yml",),
    "staging": ("docker-compose.prod.yml",),
    "prod": ("docker-compose.prod.yml",),
}


def check_services(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in model.RUNNING]
    if unknown:
        raise BadInput(f"unknown service {unknown[0]!r}; known: {', '.join(model.RUNNING)}")
    return list(names)


@dataclass
class Stack:
    """One deployment of the stack: an environment under a project name, with its settings."""

    env: str
    project: str
    settings: dict[str, str]
    files: list[Path] = field(default_factory=list)
    monitoring: bool = False
    backup: bool = False
    # The image settings nobody named (.env, the environment, an override): the namespace's defaults, which
    # releases.pin replaces with this checkout's build where a deploy runs it.
    unnamed_images: frozenset[str] = frozenset()

    @property
    def services(self) -> tuple[model.Service, ...]:
        """The services this stack runs (the monitoring and backup overlays' only when they are on)."""
        return model.services(self.monitoring, self.backup)

    @property
    def running(self) -> tuple[str, ...]:
        """The services that run and get healthy, in start order (no jobs)."""
        return tuple(s.name for s in self.services if s.kind != "job")

    @property
    def networks(self) -> dict[str, str]:
        """Each network of this stack, with the setting that names its subnet."""
        off = {name for name, on in (("monitoring", self.monitoring), ("backup", self.backup)) if not on}
        return {name: key for name, key in stack_settings.NETWORKS.items() if name not in off}

    @property
    def published(self) -> dict[str, tuple[str, int]]:
        """Each port setting this stack publishes, with its host address and port: the proxy's on PROXY_BIND,
        the monitoring UIs' on loopback only."""
        ports = {key: (self.settings["PROXY_BIND"], int(self.settings[key])) for key in ("HTTP_PORT", "HTTPS_PORT")}
        if self.monitoring:
            for key in ("PROMETHEUS_PORT", "ALERTMANAGER_PORT"):
                ports[key] = ("127.0.0.1", int(self.settings[key]))
        return ports

    def compose(self, *args: str, capture: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
        return runner.run(
            self.command(*args),
            check=check,
            what=f"compose {args[0]}",
            env=self.settings,
            cwd=REPO_ROOT,
            capture=capture,
        )

    def command(self, *args: str) -> list[str]:
        """The compose command line for this stack: its project, its files, then `args`."""
        return [*compose_command(), "-p", self.project, *[a for f in self.files for a in ("-f", str(f))], *args]


def load_stack(
    env: str,
    project: str | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    namespace: str = model.DEFAULT_NAMESPACE,
    monitoring: bool = True,
    backup: bool = True,
) -> Stack:
    """The stack of an environment, its settings resolved by settings_with_sources (releases.pin then puts this
    checkout's build where no setting names an image, for a stack that runs). `monitoring`, `backup`: with the
    monitoring overlay (ops.monitoring), the backup overlay (ops.backup)."""
    with_sources = stack_settings.settings_with_sources(env, overrides, namespace)
    settings = {k: v for k, (v, _source) in with_sources.items()}
    unnamed = frozenset(k for k, (_v, source) in with_sources.items() if source == stack_settings.NAMESPACE_SOURCE)
    project = project or settings.pop("COMPOSE_PROJECT_NAME", None) or model.PROJECTS[env]
    settings.pop("COMPOSE_PROJECT_NAME", None)
    if not monitoring:
        # The proxy's stub_status then answers nobody.
        settings.pop("NGINX_EXPORTER_IP", None)
    names = (
        *BASE_FILES,
        *OVERLAYS[env],
        *((MONITORING_FILE,) if monitoring else ()),
        *((BACKUP_FILE,) if backup else ()),
    )
    files = [COMPOSE_DIR / name for name in names]
    for file in files:
        if not file.is_file():
            raise BadInput(f"compose file {file} is missing")
    return Stack(env, project, settings, files, monitoring, backup, unnamed)


def compose_command() -> list[str]:
    """`docker compose` (v2) where the plugin exists, else `docker-compose` (v1)."""
    if docker.docker(["compose", "version"], check=False).returncode == 0:
        return [docker.client().path, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise OpsError("neither `docker compose` nor `docker-compose` is installed")


def config_hashes(stack: Stack) -> dict[str, str]:
    """Compose's own hash of each service's configuration (image ID included): a running container whose
    `com.docker.compose.config-hash` label differs is one Compose would recreate.

    Asking Compose costs 0.6 s (v1's start-up), a fifth of a no-change rerun; its answer depends only on what
    `_hash_inputs` reads, so it is kept per project (.cache/config-hashes) and asked again when any of that changes."""
    inputs = _hash_inputs(stack)
    kept = CONFIG_HASHES / f"{stack.project}.json"
    try:
        record = json.loads(kept.read_text())
        if isinstance(record, dict) and record.get("inputs") == inputs and isinstance(record.get("hashes"), dict):
            return {str(k): str(v) for k, v in record["hashes"].items()}
    except (OSError, ValueError):
        pass
    result = stack.compose("config", "--hash", "*", check=False)
    if result.returncode != 0:
        raise BadInput(f"the {stack.env} compose files do not merge: {docker.first_line(result.stderr)}")
    hashes = dict(line.split(None, 1) for line in result.stdout.splitlines() if len(line.split()) == 2)
    try:
        CONFIG_HASHES.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps({"inputs": inputs, "hashes": hashes}) + "\n")
    except OSError:
        pass  # a read-only checkout: Compose is asked every time
    return hashes


CONFIG_HASHES = CACHE_DIR / "config-hashes"


def _hash_inputs(stack: Stack) -> str:
    """Everything Compose's config hashes are made of: its command (the binary, the files' paths), each compose
    file's text, the stack's settings, the environment Compose reads itself, and every image's ID."""
    images = sorted(value for name, value in stack.settings.items() if name.endswith("_IMAGE"))
    texts = [f.read_text() if f.is_file() else "" for f in stack.files]
    # Compose interpolates from its own environment too (the settings are laid over this process's).
    referenced = {name for text in texts for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)}
    environment = {k: v for k, v in os.environ.items() if k.startswith(("COMPOSE_", "DOCKER_")) or k in referenced}
    data = [
        stack.command("config", "--hash", "*"),
        texts,
        sorted({**environment, **stack.settings}.items()),
        [(ref, (docker.inspect("image", ref) or {}).get("Id")) for ref in images],
    ]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def merged_config(stack: Stack) -> dict[str, Any]:
    """The merged compose file as JSON-able data (Compose validates it on the way)."""
    import yaml

    result = stack.compose("config", check=False)
    if result.returncode != 0:
        raise BadInput(f"the {stack.env} compose files do not merge: {docker.first_line(result.stderr)}")
    merged: dict[str, Any] = yaml.safe_load(result.stdout)
    return merged


def port_in_use(bind: str, port: int) -> bool:
    """Whether binding bind:port fails now (nothing is sent anywhere)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError:
            return True
    return False


# --- containers of a project ------------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    service: str
    container: str
    status: str  # running, exited, restarting, ...
    health: str  # healthy, unhealthy, starting, none
    exit_code: int
    restarts: int
    started_at: str
    # The container's healthcheck command as Docker runs it (["CMD", ...] or ["CMD-SHELL", "..."]), or ().
    healthcheck: tuple[str, ...] = ()

    def failed(self, restarts_before: int = 0) -> bool:
        """Unhealthy, stopped, or restarted by its policy since we started watching."""
        return self.health == "unhealthy" or self.status in ("exited", "dead") or self.restarts > restarts_before


def project_containers(project: str) -> list[dict[str, Any]]:
    """`docker inspect` of every container of a Compose project (the Engine API's JSON)."""
    return docker.containers_by_label(f"{Labels.PROJECT}={project}")


def running_containers(project: str, service: str | None = None) -> list[dict[str, Any]]:
    """The project's running containers (of one service, if named), oldest first: what the stack runs, so not
    `compose run` one-offs, nor a stopped container Compose keeps while it recreates one."""
    found = [
        info
        for info in project_containers(project)
        if (info.get("State") or {}).get("Running")
        and (info["Config"]["Labels"] or {}).get(Labels.ONEOFF) != "True"
        and (service is None or (info["Config"]["Labels"] or {}).get(Labels.SERVICE) == service)
    ]
    return sorted(found, key=lambda info: str(info.get("Created", "")))


def running_proxy(stack: Stack, doing: str) -> str:
    """The name of the proxy container that serves now (the newest, during a rollout's overlap); BadInput saying
    what cannot be done (`doing`: "reload it", "switch its upstream") when none runs."""
    running = running_containers(stack.project, "proxy")
    if not running:
        raise BadInput(
            f"the proxy of {stack.project} is not running, so nothing can {doing}; "
            f"start the stack first (`invoke stack.up --env {stack.env}`)"
        )
    return str(running[-1]["Name"]).lstrip("/")


def service_states(project: str) -> dict[str, ServiceState]:
    states: dict[str, ServiceState] = {}
    # Newest first: while Compose recreates a service, its old container (stopped,
    # renamed) still carries the service label and must not be mistaken for it.
    for info in sorted(project_containers(project), key=lambda i: str(i.get("Created", "")), reverse=True):
        labels = info["Config"]["Labels"] or {}
        if labels.get(Labels.ONEOFF) == "True":
            continue
        if labels.get(Labels.SERVICE) in states:
            continue
        state = info["State"]
        service = labels.get(Labels.SERVICE, info["Name"])
        states[service] = ServiceState(
            service=service,
            container=str(info["Name"]).lstrip("/"),
            status=state["Status"],
            health=(state.get("Health") or {}).get("Status", "none"),
            exit_code=int(state.get("ExitCode", 0)),
            restarts=int(info.get("RestartCount", 0)),
            started_at=state.get("StartedAt", ""),
            healthcheck=tuple((info["Config"].get("Healthcheck") or {}).get("Test") or ()),
        )
    return states


def _docker_says_ready(state: ServiceState) -> bool:
    """Running and healthy in Docker's eyes, or running with no healthcheck to pass."""
    no_check = state.health == "none" and not state.healthcheck
    return state.status == "running" and (state.health == "healthy" or no_check)


# How often a wait runs a service's healthcheck itself: each run is an exec, which a starting service pays for.
PROBE_EVERY = 0.5


def probe_ready(state: ServiceState) -> bool:
    """Run the container's own healthcheck now, as Docker will at its next interval.

    Docker's steady-state checks run every 10 s (a check is an exec: at 1 s they cost a third of a 2-core host at
    rest), and the first runs one interval after start. A deploy cannot wait that long, so the toolkit asks the
    same question itself, only while it waits; Docker's verdict still counts once it has one."""
    if state.status != "running":
        return False
    if _docker_says_ready(state):
        return True
    kind, *command = state.healthcheck or ("NONE",)
    if kind == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(command)]
    elif kind == "CMD":
        argv = command
    else:
        return state.health == "none"
    try:
        return engine.exec_exit_code(state.container, argv) == 0
    except OpsError:  # paused, or gone between the listing and the exec: not ready now
        return False


@dataclass(frozen=True)
class InContainer:
    """Commands run in one of the stack's containers with `docker exec`; anything secret goes on stdin."""

    container: str
    timeout: float = 600.0

    def run(self, command: Sequence[str], stdin: bytes | None = None) -> bytes:
        # The CLI, not the SDK: a secret goes in on the exec's stdin, which the CLI streams and closes cleanly.
        result = runner.run(
            [docker.client().path, "exec", "-i", self.container, *command],
            check=False,
            input=stdin if stdin is not None else b"",
            timeout=self.timeout,
        )
        if result.returncode != 0:
            raise OpsError(f"{command[0]} in {self.container} failed: {runner.first_line(result.stderr)}")
        return bytes(result.stdout)


def in_service(stack: Stack, service: str) -> InContainer:
    """The service's running container, or OpsError saying how to start it."""
    docker.require_daemon()
    state = service_states(stack.project).get(service)
    if state is None or state.status != "running":
        raise OpsError(
            f"{service} of {stack.project} is not running; start the stack first (`invoke stack.up --env {stack.env}`)"
        )
    return InContainer(state.container)


def service_logs(project: str, service: str, tail: int = 40) -> str:
    state = service_states(project).get(service)
    if state is None:
        return "(no container)"
    return engine.logs(state.container, tail).strip()


def _compose_failed(
    stack: Stack, services: Sequence[str], states: Mapping[str, ServiceState], process: subprocess.Popen[str]
) -> None:
    """Compose gave up (a dependency never became healthy, a container would not start):
    name the service that failed, with its logs, and Compose's own last word."""
    detail = (process.stderr.read() if process.stderr else "").strip().splitlines()
    said = detail[-1] if detail else "no output"
    for name in model.JOBS:
        state = states.get(name)
        if state is not None and state.status in ("exited", "dead", "restarting") and state.exit_code != 0:
            raise OpsError(
                f"the {name} job failed (exit code {state.exit_code}), so nothing that needs it was started; "
                f"compose said: {said}; its last log lines:\n{service_logs(stack.project, name)}"
            )
    for name in services:
        state = states.get(name)
        if state is not None and state.failed():
            raise OpsError(
                f"{name} did not become healthy ({state.status}, health {state.health}, exit code {state.exit_code}); "
                f"compose said: {said}; its last log lines:\n{service_logs(stack.project, name)}"
            )
    raise OpsError(f"compose up failed: {said}; not started: {[n for n in services if n not in states]}")


def wait_healthy(
    stack: Stack,
    services: Sequence[str],
    timeout: float,
    progress: Callable[[str], None] = lambda _m: None,
    compose_process: subprocess.Popen[str] | None = None,
    fail_fast: bool = True,
) -> float:
    """Poll until every service is healthy; fail fast, with its logs, on one that fails.

    Returns the seconds waited. In a deploy, a container that exits, restarts or
    turns unhealthy is a failure at once: waiting longer would only hide it. After
    a fault (fail_fast=False) "unhealthy" is where recovery starts from, so only
    the timeout counts."""
    started = time.monotonic()
    last: dict[str, str] = {}
    baseline = {name: state.restarts for name, state in service_states(stack.project).items()}
    ready: dict[str, str] = {}  # service -> the container that answered its healthcheck
    probed_at: dict[str, float] = {}
    while True:
        states = service_states(stack.project)
        # While Compose still creates and starts containers, what runs may be the
        # containers it is about to replace: show progress, judge nothing yet.
        composing = compose_process is not None and compose_process.poll() is None
        if compose_process is not None and compose_process.poll() not in (None, 0):
            _compose_failed(stack, services, states, compose_process)
        now = time.monotonic()
        for name, container in list(ready.items()):
            if name not in states or states[name].container != container or states[name].status != "running":
                del ready[name]  # replaced or stopped since it answered: ask again
        for name in services:
            state = states.get(name)
            if state is not None and name not in ready and not composing and _docker_says_ready(state):
                ready[name] = state.container
        due = [
            states[n]
            for n in services
            if n in states and n not in ready and not composing and probed_at.get(n, 0.0) + PROBE_EVERY <= now
        ]
        with ThreadPoolExecutor(max_workers=max(1, len(due))) as pool:
            for probed, answered in zip(due, pool.map(probe_ready, due), strict=True):
                probed_at[probed.service] = now
                if answered:
                    ready[probed.service] = probed.container
        for name in services:
            state = states.get(name)
            shown = "absent" if state is None else f"{state.status}/{state.health}"
            if state is not None and ready.get(name) == state.container and state.health == "starting":
                shown = f"{state.status}/ready (probed)"
            if last.get(name) != shown:
                progress(f"  {time.monotonic() - started:5.1f}s  {name}: {shown}")
                last[name] = shown
            # "unhealthy" lasts until Docker's next check (10 s) after a service recovered: its own check, run
            # now and passed, outweighs it; an exit or a restart never does.
            recovered = state is not None and state.status == "running" and ready.get(name) == state.container
            restarted = state is not None and state.restarts > baseline.get(name, 0)
            if (
                fail_fast
                and not composing
                and state is not None
                and state.failed(baseline.get(name, 0))
                and (restarted or not recovered)
            ):
                raise OpsError(
                    f"{name} did not become healthy ({state.status}, health {state.health}, exit code "
                    f"{state.exit_code}, restarts {state.restarts}); its last log lines:\n"
                    f"{service_logs(stack.project, name)}"
                )
        waiting = [n for n in services if n not in ready]
        if not composing and not waiting:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise OpsError(
                f"timed out after {timeout:.0f} s waiting for {', '.join(waiting)}; last log lines of {waiting[0]}:\n"
                f"{service_logs(stack.project, waiting[0])}"
            )
        time.sleep(0.25)
