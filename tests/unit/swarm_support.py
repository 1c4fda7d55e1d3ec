"""Shared by the swarm tests (test_swarm_*.py, test_cli_swarm.py): the merged compose config as
`docker-compose config` (1.29, the machine's Compose) prints it, built from the real compose files without
Compose; a fake `docker` CLI that answers by argv and records every call; a fake clock; a fake swarm."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analyticbot_ops import compose, model, runner, stack_settings
from analyticbot_ops.errors import OpsError
from analyticbot_ops.paths import COMPOSE_DIR
from analyticbot_ops.swarm import lab as swarm_lab

PROJECT = "abswarm"
NAMESPACE = "ns"
IMAGES = {
    "POSTGRES_IMAGE": f"{NAMESPACE}/postgres:bookworm",
    "REDIS_IMAGE": f"{NAMESPACE}/redis:bookworm",
    "API_IMAGE": f"{NAMESPACE}/api:build-7",
    "BOT_IMAGE": f"{NAMESPACE}/bot:build-7",
    "MTPROTO_IMAGE": f"{NAMESPACE}/mtproto:build-7",
    "PROXY_IMAGE": f"{NAMESPACE}/proxy:build-7",
}
# What the toolkit sets for the monitoring overlay (its images, the exporter's address on Compose).
MONITORING_SETTINGS = {
    **{variable: f"{NAMESPACE}/{variable.removesuffix('_IMAGE').lower().replace('_', '-')}:bookworm"
       for variable in ("PROMETHEUS_IMAGE", "ALERTMANAGER_IMAGE", "POSTGRES_EXPORTER_IMAGE", "REDIS_EXPORTER_IMAGE",
                        "NGINX_EXPORTER_IMAGE", "BLACKBOX_EXPORTER_IMAGE")},
    "NGINX_EXPORTER_IP": "172.20.0.253",
}  # fmt: skip
# The secrets only the backup overlay declares and mounts (postgres' and its own services' pgBackRest settings):
# without the overlay, a service mounts what the model says it reads but these.
BACKUP_SECRETS = frozenset(yaml.safe_load((COMPOSE_DIR / compose.BACKUP_FILE).read_text())["secrets"])
# The backup path's TLS files (tls/backup.py's folder), as render() is given them.
BACKUP_TLS_FILES = ("ca.crt", "ca.key", "backup-agent.crt", "backup-agent.key", "backup-repo.crt", "backup-repo.key")


def swarm_secrets(service: model.Service, *, backup: bool = False) -> tuple[str, ...]:
    """The secrets a service mounts on Swarm (from the Docker secrets Compose declares: the backup overlay's TLS
    files are not among them)."""
    return tuple(name for name in service.secrets if backup or name not in BACKUP_SECRETS)


def backup_tls_dir(tmp_path: Path) -> Path:
    """A folder holding the backup path's TLS files (placeholders: render() reads only their bytes)."""
    folder = tmp_path / "backup-tls"
    folder.mkdir(exist_ok=True)
    for name in BACKUP_TLS_FILES:
        (folder / name).write_text(f"placeholder {name}")
    return folder


_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _interpolate(value: Any, settings: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, settings) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, settings) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if settings.get(name):
            return settings[name]
        if operator and operator.endswith("?"):
            raise AssertionError(f"{name} is required: {default}")
        return default or ""

    return _VARIABLE.sub(one, value)


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _secret(entry: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"source": entry} if isinstance(entry, str) else dict(entry)


def _merge_service(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """One service's overlay on its base, as Compose 1.29 merges them: volumes by their container path, secrets by
    their source, tmpfs entries unioned; the rest as _merge (mappings merged, the command replaced)."""
    lists: dict[str, Any] = {}
    if "volumes" in overlay and base.get("volumes"):
        by_target = {str(v).split(":")[1]: v for v in base["volumes"]}
        by_target.update({str(v).split(":")[1]: v for v in overlay["volumes"]})
        lists["volumes"] = list(by_target.values())
    if "secrets" in overlay and base.get("secrets"):
        by_source = {s["source"]: s for s in map(_secret, base["secrets"])}
        by_source.update({s["source"]: s for s in map(_secret, overlay["secrets"])})
        lists["secrets"] = list(by_source.values())
    if "tmpfs" in overlay and base.get("tmpfs"):
        lists["tmpfs"] = sorted({*base["tmpfs"], *overlay["tmpfs"]})
    _merge(base, {k: v for k, v in overlay.items() if k not in lists})
    base.update(lists)
    return base


def _volume(entry: str) -> str:
    source, target, *mode = entry.split(":")
    if source.startswith((".", "/")):  # a bind mount: Compose makes its path absolute
        source = str((COMPOSE_DIR / source).resolve())
    return ":".join([source, target, *(mode or ["rw"])])


def merged_config(
    settings: Mapping[str, str], env: str = "prod", *, monitoring: bool = False, backup: bool = False
) -> dict[str, Any]:
    """The environment's compose files merged and interpolated (with the monitoring and backup overlays if
    asked), in the shape `docker-compose config` 1.29 prints: networks as mappings, bind mounts with absolute
    host paths, named volumes with their mode, cpus as numbers, secrets in long form."""
    merged: dict[str, Any] = {"services": {}}
    overlays = (*((compose.MONITORING_FILE,) if monitoring else ()), *((compose.BACKUP_FILE,) if backup else ()))
    settings = {**MONITORING_SETTINGS, **settings} if monitoring else settings
    for name in (*compose.BASE_FILES, *compose.OVERLAYS[env], *overlays):
        document = yaml.safe_load((COMPOSE_DIR / name).read_text())
        document = _interpolate({k: v for k, v in document.items() if not k.startswith("x-")}, settings)
        services = document.pop("services", None) or {}
        for service_name, service in services.items():
            if isinstance(service.get("networks"), list):
                service["networks"] = {n: {} for n in service["networks"]}
            _merge_service(merged["services"].setdefault(service_name, {}), service)
        _merge(merged, document)
    for service in merged["services"].values():
        service["volumes"] = [_volume(v) for v in service.get("volumes") or []]
        if not service["volumes"]:
            del service["volumes"]
        limits = service["deploy"]["resources"]["limits"]
        limits["cpus"] = float(limits["cpus"])
        service["secrets"] = sorted(map(_secret, service.get("secrets") or []), key=lambda s: s["source"])
        if not service["secrets"]:
            del service["secrets"]
    merged["volumes"] = {name: {} for name in merged["volumes"]}
    merged["version"] = "3.9"
    return merged


def settings(tmp_path: Path) -> dict[str, str]:
    return {
        **stack_settings.COMMON_DEFAULTS,
        "PROXY_FRONTEND_IP": stack_settings.proxy_address(stack_settings.COMMON_DEFAULTS["FRONTEND_SUBNET"]),
        **IMAGES,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "TLS_DIR": str(tmp_path / "tls"),
        "HTTP_PORT": "80",
        "HTTPS_PORT": "443",
        "PROXY_BIND": "0.0.0.0",
    }


# --- a fake docker CLI ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    args: tuple[str, ...]
    env: dict[str, str] | None
    check: bool
    timeout: float | None
    stdin: bytes | None


Answer = runner.Completed | BaseException | Callable[[], Any]


def done(stdout: str = "", stderr: str = "", returncode: int = 0) -> runner.Completed[str]:
    return runner.Completed([], returncode, stdout, stderr)


@dataclass
class FakeDocker:
    """Stands in for docker.docker: answers each argv from `answer()` (each answer once, in order, the last one
    for good), else from `handler` (a function of the call), else with an empty success; records every call."""

    calls: list[Ran] = field(default_factory=list)
    answers: dict[tuple[str, ...], list[Answer]] = field(default_factory=dict)
    handler: Callable[[Ran], runner.Completed[str] | None] | None = None
    on_call: Callable[[Ran], None] | None = None

    def answer(self, *args: str, stdout: str = "", stderr: str = "", returncode: int = 0) -> None:
        self.answers.setdefault(tuple(args), []).append(done(stdout, stderr, returncode))

    def answer_with(self, args: tuple[str, ...], *answers: Answer) -> None:
        self.answers.setdefault(tuple(args), []).extend(answers)

    def __call__(
        self,
        args: Any,
        *,
        check: bool = True,
        capture: bool = True,
        env: Mapping[str, str] | None = None,
        input_bytes: bytes | None = None,
        timeout: float | None = None,
    ) -> runner.Completed[str]:
        key = tuple(args)
        ran = Ran(key, dict(env) if env is not None else None, check, timeout, input_bytes)
        self.calls.append(ran)
        if self.on_call:
            self.on_call(ran)
        queue = self.answers.get(key)
        result: Any = None
        if queue:
            result = queue.pop(0) if len(queue) > 1 else queue[0]
            if isinstance(result, BaseException):
                raise result
            if callable(result):
                result = result()
        elif self.handler:
            result = self.handler(ran)
        if result is None:
            result = done()
        result = runner.Completed(list(key), result.returncode, result.stdout, result.stderr)
        if check and result.returncode != 0:
            raise OpsError(f"docker {key[0]} failed: {runner.first_line(result.stderr)}")
        return result

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        return [c.args for c in self.calls]

    def made(self, *prefix: str) -> list[Ran]:
        """The calls whose argv starts with `prefix`."""
        return [c for c in self.calls if c.args[: len(prefix)] == prefix]


@dataclass
class FakeClock:
    """time.monotonic and time.sleep: sleeping moves the clock on, nothing waits."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def three_nodes(name: str = "ablab") -> swarm_lab.Lab:
    nodes = tuple(swarm_lab.Node(f"{name}-node{i}", f"node{i}", f"172.29.7.{10 + i}") for i in (1, 2, 3))
    return swarm_lab.Lab(name, f"{name}-net", "172.29.7.0/24", nodes, "172.29.7.2:5000", "127.0.0.1:49153")


# --- a fake swarm: what `docker service ...` says, poll after poll ----------------------------------------


@dataclass
class Svc:
    """One service as the manager reports it."""

    running: int = 1
    desired: int = 1
    image: str = ""
    update: str = ""  # UpdateStatus.State; "" for none
    errors: tuple[str, ...] = ()  # tasks (desired running) that failed
    nodes: tuple[str, ...] = ("node1",)
    previous: bool = False  # has a PreviousSpec
    states: tuple[str, ...] = ()  # the job's tasks' states, the current one first, then its history
    logs: str = ""
    global_mode: bool = False  # one task per eligible node: the manager lists `desired` tasks, some not running


@dataclass
class FakeSwarm:
    """Answers the manager's `service ls/inspect/ps/logs` from a list of snapshots: each `service ls` moves to
    the next one (the last one stays)."""

    snapshots: list[dict[str, Svc]]
    project: str = PROJECT
    polls: int = 0

    @property
    def now(self) -> dict[str, Svc]:
        return self.snapshots[min(max(self.polls - 1, 0), len(self.snapshots) - 1)]

    def _name(self, ref: str) -> str:
        return ref.removeprefix("id-").removeprefix(f"{self.project}_")

    def inspect(self, name: str) -> dict[str, Any]:
        svc = self.now[name]
        info: dict[str, Any] = {
            "ID": f"id-{name}",
            "Spec": {
                "Name": f"{self.project}_{name}",
                "Mode": {"Global": {}} if svc.global_mode else {"Replicated": {"Replicas": svc.desired}},
                "TaskTemplate": {"ContainerSpec": {"Image": svc.image or f"172.29.7.2:5000/ns/{name}@sha256:{name}"}},
            },
        }
        if svc.update:
            # Each poll shows a later start, as an update in progress would (a new rollback, not a stale one).
            started = f"2026-12-01T00:00:{self.polls:02d}Z"
            info["UpdateStatus"] = {"State": svc.update, "Message": "update " + svc.update, "StartedAt": started}
        if svc.previous:
            info["PreviousSpec"] = {"Name": f"{self.project}_{name}"}
        return info

    def tasks(self, name: str) -> str:
        svc = self.now[name]
        rows = [
            {"Name": f"{self.project}_{name}.{i + 1}", "CurrentState": "Running 4 seconds ago", "Error": "",
             "Node": svc.nodes[i % len(svc.nodes)]}
            for i in range(svc.running)
        ]  # fmt: skip
        rows += [{"CurrentState": "Starting 1 second ago", "Error": e, "Node": "node3"} for e in svc.errors]
        if svc.global_mode:  # the eligible nodes' tasks that do not run (yet, or any more: a node down)
            rows += [{"CurrentState": "Pending 2 seconds ago", "Error": "", "Node": ""}] * (svc.desired - len(rows))
        return "".join(json.dumps(r) + "\n" for r in rows)

    def __call__(self, ran: Ran) -> runner.Completed[str] | None:
        args = ran.args
        if args[:2] == ("service", "ls"):
            self.polls += 1
            return done("".join(f"id-{n}\n" for n in self.now))
        if args[:2] == ("service", "inspect"):
            return done(json.dumps([self.inspect(self._name(args[2]))]))
        if args[:2] == ("service", "ps") and "{{json .}}" in args:
            return done(self.tasks(self._name(args[2])))
        if args[:2] == ("service", "ps") and "{{.Name}}|{{.CurrentState}}" in args:
            # The current task first, then its history, all under the slot's name: Docker's table view marks the
            # history "\\_ ", a --format view does not (seen on the lab, Engine 20.10).
            name = self._name(args[2])
            states = self.now[name].states
            lines = [f"{self.project}_{name}.1|{state}\n" for state in states]
            return done("".join(lines))
        if args[:2] == ("service", "ps") and "{{.Error}}" in args:
            return done("".join(e + "\n" for e in self.now[self._name(args[2])].errors))
        if args[:2] == ("service", "logs"):
            return done(self.now[self._name(args[-1])].logs)
        return None


def converged(**changes: Svc) -> dict[str, Svc]:
    """Every service of the stack running as desired, the migrate job done; `changes` replace some."""
    services = {
        "postgres": Svc(nodes=("node1",)),
        "redis": Svc(nodes=("node1",)),
        "migrate": Svc(running=0, states=("Complete 20 seconds ago",)),
        "api": Svc(running=2, desired=2, nodes=("node2", "node3"), update="completed"),
        "bot": Svc(nodes=("node2",)),
        "mtproto": Svc(nodes=("node3",)),
        "proxy": Svc(nodes=("node2",)),
    }
    return {**services, **changes}
