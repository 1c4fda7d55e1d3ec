"""The stack as Compose runs it: environments, their files and `.env` settings,
the Compose v1/v2 command, and deploys that wait on real health, never on sleeps."""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import docker, engine, envfile, model, runner
from .errors import BadInput, OpsError
from .model import Labels
from .paths import COMPOSE_DIR, REPO_ROOT, SECRETS_DIR

ENVIRONMENTS = model.ENVIRONMENTS
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
PROJECTS = model.PROJECTS
# Defaults per environment; the environment's .env file and the process
# environment override them. Staging runs beside the others on its own ports
# and subnets; dev and prod use the documented subnets.
DEFAULTS: dict[str, dict[str, str]] = {
    "dev": {
        "PROXY_BIND": "127.0.0.1",
        "HTTP_PORT": "8080",
        "HTTPS_PORT": "8443",
        "EXTRA_SERVER_NAMES": "localhost 127.0.0.1",
    },
    "staging": {
        "PROXY_BIND": "127.0.0.1",
        "HTTP_PORT": "9080",
        "HTTPS_PORT": "9443",
        "FRONTEND_SUBNET": "172.23.0.0/24",
        "BACKEND_SUBNET": "172.24.0.0/24",
        "DATABASE_SUBNET": "172.25.0.0/24",
        "MONITORING_SUBNET": "172.27.0.0/24",
        "BACKUP_SUBNET": "172.27.1.0/24",
        "PROMETHEUS_PORT": "9190",
        "ALERTMANAGER_PORT": "9193",
    },
    "prod": {"PROXY_BIND": "0.0.0.0", "HTTP_PORT": "80", "HTTPS_PORT": "443"},
}
COMMON_DEFAULTS = {
    "FRONTEND_SUBNET": "172.20.0.0/24",
    "BACKEND_SUBNET": "172.21.0.0/24",
    "DATABASE_SUBNET": "172.22.0.0/24",
    "MONITORING_SUBNET": "172.26.0.0/24",
    "BACKUP_SUBNET": "172.26.1.0/24",
    "PROMETHEUS_PORT": "9090",
    "ALERTMANAGER_PORT": "9093",
    "PROMETHEUS_RETENTION": "15d",
    "PROMETHEUS_RETENTION_SIZE": "2GB",
    "SECRETS_DIR": str(SECRETS_DIR),
    "TLS_DIR": str(SECRETS_DIR / "tls"),
    "ARCHIVE_TIMEOUT": "5s",
    "BACKUP_FULL_EVERY": "7d",
    "BACKUP_DIFF_EVERY": "1d",
    "BACKUP_SCHEDULE_TICK": "60s",
    "BACKUP_RETENTION_FULL": "2",
    "BACKUP_RETENTION_DIFF": "7",
}
# Every variable the compose files read, with what it is for (env-template writes these).
SETTINGS: dict[str, str] = {
    "PROXY_BIND": "address the proxy publishes on (127.0.0.1 keeps it local)",
    "HTTP_PORT": "host port for HTTP (ACME challenges and the redirect)",
    "HTTPS_PORT": "host port for HTTPS",
    "FRONTEND_SUBNET": "subnet of the frontend network (proxy, api, bot)",
    "BACKEND_SUBNET": "subnet of the backend network (bot and collector egress)",
    "DATABASE_SUBNET": "subnet of the internal database network",
    "MONITORING_SUBNET": "subnet of the internal monitoring network (Prometheus, Alertmanager, exporters)",
    "BACKUP_SUBNET": "subnet of the internal backup network (the database side and the repository host)",
    "ARCHIVE_TIMEOUT": "PostgreSQL's archive_timeout: a WAL segment is archived at least this often (default 5s); "
    "the bound on the writes a lost disk takes with it",
    "BACKUP_FULL_EVERY": "the backup schedule: a full backup when the last one is this old (default 7d; 0: none)",
    "BACKUP_DIFF_EVERY": "the backup schedule: a differential backup when the last backup is this old (default 1d)",
    "BACKUP_SCHEDULE_TICK": "how often the backup schedule looks at the clock (default 60s)",
    "BACKUP_RETENTION_FULL": "full backups each repository keeps (default 2); the WAL goes back to the oldest",
    "BACKUP_RETENTION_DIFF": "differential backups each repository keeps (default 7)",
    "PROMETHEUS_PORT": "loopback port of Prometheus's UI and API (basic auth: user ops, prometheus_password)",
    "ALERTMANAGER_PORT": "loopback port of Alertmanager's UI and API (same login as Prometheus)",
    "PROMETHEUS_RETENTION": "how long Prometheus keeps samples (e.g. 15d)",
    "PROMETHEUS_RETENTION_SIZE": "the most disk Prometheus's samples may take (e.g. 2GB); the oldest go first",
    "SECRETS_DIR": "directory of the Docker file secrets",
    "TLS_DIR": "directory of fullchain.pem and privkey.pem for the proxy",
    "DOMAIN": "public DNS name: the proxy's primary name, redirect target and tls.prod's domain",
    "EXTRA_SERVER_NAMES": "more names the proxy serves, space-separated (dev: localhost 127.0.0.1); others get nothing",
    "ACME_EMAIL": "contact address for the ACME account (prod only)",
    **{
        variable: f"image of {image} (default: NAMESPACE/{image}, NAMESPACE from invoke.yaml's ops.namespace)"
        for image, variable in model.IMAGE_VARIABLES.items()
    },
    "TELEGRAM_API_BASE": "Telegram Bot API server for the bot (default: Telegram's own)",
    "API_WORKERS": "API server processes (default 0: sized from the API container's CPU limit)",
    "COMPOSE_PROJECT_NAME": "project name (default: analyticbot-dev, analyticbot-staging, analyticbot)",
}
# What nginx's server_name takes from us (the proxy's entrypoint applies the same rule).
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*", re.ASCII)


def check_env(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise BadInput(f"unknown environment {env!r}; use one of: {', '.join(ENVIRONMENTS)}")
    return env


def check_services(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in model.RUNNING]
    if unknown:
        raise BadInput(f"unknown service {unknown[0]!r}; known: {', '.join(model.RUNNING)}")
    return list(names)


def env_file(env: str) -> Path:
    """Each environment reads only its own file: a prod deploy never sees .env.dev."""
    return REPO_ROOT / f".env.{check_env(env)}"


def secrets_dir(env: str) -> Path:
    """The secrets directory of an environment's settings (SECRETS_DIR)."""
    return Path(settings_with_sources(env)["SECRETS_DIR"][0])


def tls_dir(env: str) -> Path:
    """The proxy's certificate directory of an environment's settings (TLS_DIR)."""
    return Path(settings_with_sources(env)["TLS_DIR"][0])


def validate_settings(values: Mapping[str, str], source: str) -> None:
    """Refuse values Compose would accept and then fail on, or publish wrongly."""
    for key in ("HTTP_PORT", "HTTPS_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT"):
        # ASCII digits only: str.isdigit() also takes other scripts' digits, which Docker then refuses.
        if key in values and not (re.fullmatch(r"[0-9]{1,5}", values[key]) and 0 < int(values[key]) < 65536):
            raise BadInput(f"{source}: {key} must be a port number, got {values[key]!r}")
    for key in ("FRONTEND_SUBNET", "BACKEND_SUBNET", "DATABASE_SUBNET", "MONITORING_SUBNET", "BACKUP_SUBNET"):
        if key in values:
            try:
                ipaddress.ip_network(values[key])
            except ValueError:
                raise BadInput(f"{source}: {key} must be a subnet like 172.20.0.0/24, got {values[key]!r}") from None
    for name in values.get("EXTRA_SERVER_NAMES", "").split():
        if not _SERVER_NAME.fullmatch(name):
            raise BadInput(f"{source}: EXTRA_SERVER_NAMES holds {name!r}, which is not a host name or IPv4 address")
    if "API_WORKERS" in values and not re.fullmatch(r"[0-9]{1,2}", values["API_WORKERS"]):
        raise BadInput(f"{source}: API_WORKERS must be a number of processes (0: sized), got {values['API_WORKERS']!r}")
    retention = values.get("PROMETHEUS_RETENTION")
    if retention is not None and not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", retention):
        raise BadInput(f"{source}: PROMETHEUS_RETENTION must be a duration like 15d, got {retention!r}")
    size = values.get("PROMETHEUS_RETENTION_SIZE")
    if size is not None and not re.fullmatch(r"[0-9]+(B|KB|MB|GB|TB|PB|EB)", size):
        raise BadInput(f"{source}: PROMETHEUS_RETENTION_SIZE must be a size like 2GB, got {size!r}")
    # PostgreSQL's own unit for it is s (it reads 5m as an error): seconds only.
    if "ARCHIVE_TIMEOUT" in values and not re.fullmatch(r"[1-9][0-9]{0,4}s?", values["ARCHIVE_TIMEOUT"]):
        raise BadInput(f"{source}: ARCHIVE_TIMEOUT must be seconds like 5s, got {values['ARCHIVE_TIMEOUT']!r}")
    for key in ("BACKUP_FULL_EVERY", "BACKUP_DIFF_EVERY", "BACKUP_SCHEDULE_TICK"):
        # What the schedule's shell arithmetic reads (compose/pgbackrest/service.sh).
        if key in values and not re.fullmatch(r"[0-9]{1,6}[smhd]?", values[key]):
            raise BadInput(f"{source}: {key} must be a duration like 90s, 15m, 6h or 7d, got {values[key]!r}")
    # 0 turns a kind of backup off; a tick of 0 would make the schedule a busy loop (`sleep 0`).
    tick = values.get("BACKUP_SCHEDULE_TICK")
    if tick is not None and int(tick.rstrip("smhd")) == 0:
        raise BadInput(f"{source}: BACKUP_SCHEDULE_TICK must be at least 1s, got {tick!r}")
    for key in ("BACKUP_RETENTION_FULL", "BACKUP_RETENTION_DIFF"):
        if key in values and not (re.fullmatch(r"[0-9]{1,4}", values[key]) and int(values[key]) >= 1):
            raise BadInput(f"{source}: {key} must be a number of backups of at least 1, got {values[key]!r}")
    if "PROXY_BIND" in values:
        try:
            ipaddress.ip_address(values["PROXY_BIND"])
        except ValueError:
            raise BadInput(f"{source}: PROXY_BIND must be an IP address, got {values['PROXY_BIND']!r}") from None


# The networks of a stack and the setting of each one's subnet; `monitoring` only with the overlay.
NETWORKS = {
    "frontend": "FRONTEND_SUBNET",
    "backend": "BACKEND_SUBNET",
    "database": "DATABASE_SUBNET",
    "monitoring": "MONITORING_SUBNET",
    "backup": "BACKUP_SUBNET",
}


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
        return {name: key for name, key in NETWORKS.items() if name not in off}

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


def _process_env() -> dict[str, str]:
    import os

    return dict(os.environ)


# Where an image setting came from when nothing named it: releases pin exactly these.
NAMESPACE_SOURCE = "ops.namespace"


def settings_with_sources(
    env: str, overrides: Mapping[str, str] | None = None, namespace: str = model.DEFAULT_NAMESPACE
) -> dict[str, tuple[str, str]]:
    """Each setting with where it came from: defaults (image names from the namespace), then the
    environment's .env file, then the process environment, then explicit overrides."""
    check_env(env)
    settings = {k: (v, "default") for k, v in {**COMMON_DEFAULTS, **DEFAULTS[env]}.items()}
    settings.update({k: (v, NAMESPACE_SOURCE) for k, v in model.default_images(namespace).items()})
    path = env_file(env)
    if path.exists():
        from_file = envfile.read(path)
        validate_settings(from_file, str(path.name))
        settings.update({k: (v, path.name) for k, v in from_file.items() if k in SETTINGS})
    process = _process_env()
    settings.update({k: (process[k], "environment") for k in SETTINGS if k in process})
    settings.update({k: (v, "override") for k, v in (overrides or {}).items()})
    validate_settings({k: v for k, (v, _) in settings.items()}, "settings")
    frontend = settings["FRONTEND_SUBNET"][0]
    settings["PROXY_FRONTEND_IP"] = (proxy_address(frontend), "derived from FRONTEND_SUBNET")
    settings["NGINX_EXPORTER_IP"] = (nginx_exporter_address(frontend), "derived from FRONTEND_SUBNET")
    # Compose resolves relative paths from compose/, the toolkit from the current
    # directory: anchor both at the repository so they name the same folder.
    for key in ("SECRETS_DIR", "TLS_DIR"):
        value, source = settings[key]
        settings[key] = (str((REPO_ROOT / value).resolve()), source)
    return settings


def proxy_address(subnet: str) -> str:
    """The proxy's fixed address on the frontend network: the subnet's last host. Docker hands out
    addresses from the bottom, so the top one stays free; the api and the bot trust X-Forwarded-*
    from this address only."""
    network = ipaddress.ip_network(subnet)
    if network.version != 4 or network.prefixlen > 28:
        raise BadInput(f"FRONTEND_SUBNET must be an IPv4 subnet of /28 or larger, got {subnet!r}")
    return str(network.broadcast_address - 1)


def nginx_exporter_address(subnet: str) -> str:
    """The nginx exporter's fixed address on the frontend network, below the proxy's: the proxy's stub_status
    answers this address only."""
    return str(ipaddress.ip_address(proxy_address(subnet)) - 1)


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
    with_sources = settings_with_sources(env, overrides, namespace)
    settings = {k: v for k, (v, _source) in with_sources.items()}
    unnamed = frozenset(k for k, (_v, source) in with_sources.items() if source == NAMESPACE_SOURCE)
    project = project or settings.pop("COMPOSE_PROJECT_NAME", None) or PROJECTS[env]
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
    `com.docker.compose.config-hash` label differs is one Compose would recreate."""
    result = stack.compose("config", "--hash", "*", check=False)
    if result.returncode != 0:
        raise BadInput(f"the {stack.env} compose files do not merge: {docker.first_line(result.stderr)}")
    return dict(line.split(None, 1) for line in result.stdout.splitlines() if len(line.split()) == 2)


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
        )
    return states


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
    while True:
        states = service_states(stack.project)
        # While Compose still creates and starts containers, what runs may be the
        # containers it is about to replace: show progress, judge nothing yet.
        composing = compose_process is not None and compose_process.poll() is None
        if compose_process is not None and compose_process.poll() not in (None, 0):
            _compose_failed(stack, services, states, compose_process)
        for name in services:
            state = states.get(name)
            shown = "absent" if state is None else f"{state.status}/{state.health}"
            if last.get(name) != shown:
                progress(f"  {time.monotonic() - started:5.1f}s  {name}: {shown}")
                last[name] = shown
            if fail_fast and not composing and state is not None and state.failed(baseline.get(name, 0)):
                raise OpsError(
                    f"{name} did not become healthy ({state.status}, health {state.health}, exit code "
                    f"{state.exit_code}, restarts {state.restarts}); its last log lines:\n"
                    f"{service_logs(stack.project, name)}"
                )
        if not composing and all(name in states and states[name].health == "healthy" for name in services):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            waiting = [n for n in services if states.get(n) is None or states[n].health != "healthy"]
            raise OpsError(
                f"timed out after {timeout:.0f} s waiting for {', '.join(waiting)}; last log lines of {waiting[0]}:\n"
                f"{service_logs(stack.project, waiting[0])}"
            )
        time.sleep(0.25)
