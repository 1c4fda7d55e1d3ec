"""Container checks (CIS Docker Benchmark section 5, and our own AB- ones) over one shape of container,
built from a merged compose file or from `docker inspect`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..model import Labels

DB_SERVICES = ("postgres", "redis")
# CIS 5.6's list; a path beneath one counts too (/etc/shadow is as bad as /etc).
SENSITIVE = ("/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/var/run/docker.sock")
NEVER_EXCEPTED = ("AB-DBPORTS",)  # a published database port is never acceptable
SECRET_NAME = re.compile(r"PASSW(OR)?D|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL", re.I)
RESULTS = ("pass", "FAIL", "excepted")


@dataclass(frozen=True)
class Finding:
    check: str
    target: str  # a service, or a file
    ok: bool
    detail: str
    result: str = ""  # pass, FAIL or excepted, once exceptions are applied
    reason: str = ""


@dataclass(frozen=True)
class Mount:
    source: str
    bind: bool
    read_only: bool


@dataclass(frozen=True)
class Port:
    host_ip: str
    host_port: int | None  # None: Docker picks an ephemeral port


@dataclass(frozen=True)
class ImageFacts:
    """What an image we build runs as, so that compose need not repeat it."""

    user: str
    healthcheck: bool


@dataclass(frozen=True)
class Container:
    """What the container checks need, from a compose service or from `docker inspect`."""

    service: str
    cap_add: list[str]
    cap_drop: list[str]
    privileged: bool
    mounts: list[Mount]
    ports: list[Port] | None  # None: publishes nothing
    modes: dict[str, str]  # network, pid, ipc, uts, userns -> mode ("host" shares the host's)
    memory: bool
    cpu: bool
    pids_limit: int
    read_only: bool
    restart: tuple[str, int]  # policy, maximum retries (0: unlimited)
    security_opt: dict[str, str]
    cgroup_parent: str
    healthcheck: bool
    user: str
    log: tuple[str, dict[str, str]]  # driver, options


# --- a container from either source ---------------------------------------------------

_COMPOSE_MODES = {"network": "network_mode", "pid": "pid", "ipc": "ipc", "uts": "uts", "userns": "userns_mode"}
_INSPECT_MODES = {
    "network": "NetworkMode",
    "pid": "PidMode",
    "ipc": "IpcMode",
    "uts": "UTSMode",
    "userns": "UsernsMode",
}


def _volume(text: str) -> Mount:
    source, _, rest = text.partition(":")
    if not rest:  # an anonymous volume: only a target
        return Mount("", False, False)
    return Mount(source, source.startswith(("/", ".", "~")), "ro" in rest.partition(":")[2].split(","))


def _port(entry: Any) -> Port:
    if isinstance(entry, Mapping):  # long syntax, as Compose v2 prints it
        host_ip, published = str(entry.get("host_ip") or ""), str(entry.get("published") or "")
    else:  # [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]
        parts = str(entry).split("/")[0].rsplit(":", 2)
        host_ip, published = (parts[0] if len(parts) == 3 else ""), (parts[-2] if len(parts) > 1 else "")
    first = published.split("-")[0]  # a range: its lowest port
    return Port(host_ip.strip("[]"), int(first) if first.isdigit() else None)


def _options(items: Iterable[str]) -> dict[str, str]:
    """security_opt entries: `no-new-privileges:true` and `seccomp=unconfined` both occur."""
    return {key: value for key, value, *_ in ([*re.split(r"[:=]", str(i), maxsplit=1), ""] for i in items)}


def _non_root(user: str) -> bool:
    return user.split(":")[0] not in ("", "root", "0")


def _health(test: Any, disabled: bool = False) -> bool | None:
    """True/False when a healthcheck is set or disabled; None when it is left to the image."""
    if disabled or test in ("NONE", ["NONE"]):
        return False
    return True if test else None


def _swarm_restart(policy: Mapping[str, Any]) -> str:
    condition = policy.get("condition")
    if condition == "on-failure":
        return f"on-failure:{policy.get('max_attempts') or 0}"
    return {"any": "always", "none": "no"}.get(str(condition), "")


def from_compose(service: str, svc: Mapping[str, Any], images: Mapping[str, ImageFacts]) -> Container:
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    facts = images.get(str(svc.get("image", "")))
    health = svc.get("healthcheck") or {}
    mounts = [
        Mount(str(v.get("source", "")), v.get("type") == "bind", bool(v.get("read_only")))
        if isinstance(v, Mapping)
        else _volume(str(v))
        for v in svc.get("volumes") or []
    ]
    # Compose v1 ignores deploy.restart_policy outside Swarm: only `restart` counts there; a Swarm stack
    # has only the deploy policy (condition any: always).
    swarm_policy = (svc.get("deploy") or {}).get("restart_policy") or {}
    restart = svc.get("restart") or _swarm_restart(swarm_policy)
    policy, _, retries = str(restart or "no").partition(":")
    logging = svc.get("logging") or {}
    healthcheck = _health(health.get("test"), bool(health.get("disable")))
    return Container(
        service=service,
        cap_add=list(svc.get("cap_add") or []),
        cap_drop=list(svc.get("cap_drop") or []),
        privileged=bool(svc.get("privileged")),
        mounts=mounts,
        ports=[_port(p) for p in svc["ports"]] if svc.get("ports") else None,
        modes={k: str(svc.get(key) or "") for k, key in _COMPOSE_MODES.items()},
        memory=bool(limits.get("memory") or svc.get("mem_limit")),
        cpu=bool(limits.get("cpus") or svc.get("cpus") or svc.get("cpu_quota") or svc.get("cpu_shares")),
        pids_limit=int(svc.get("pids_limit") or limits.get("pids") or 0),
        read_only=bool(svc.get("read_only")),
        restart=(policy, int(retries) if retries.isdigit() else 0),
        security_opt=_options(svc.get("security_opt") or []),
        cgroup_parent=str(svc.get("cgroup_parent") or ""),
        healthcheck=bool(facts and facts.healthcheck) if healthcheck is None else healthcheck,
        user=str(svc.get("user") or (facts.user if facts else "")),
        log=(str(logging.get("driver") or ""), {k: str(v) for k, v in (logging.get("options") or {}).items()}),
    )


def from_inspect(info: Mapping[str, Any]) -> Container:
    host, config = info.get("HostConfig") or {}, info.get("Config") or {}
    if "Mounts" in info:  # every mount, whichever way it was requested
        mounts = [Mount(str(m.get("Source", "")), m.get("Type") == "bind", not m.get("RW")) for m in info["Mounts"]]
    else:
        mounts = [_volume(b) for b in host.get("Binds") or []]
        mounts += [
            Mount(m["Source"], m.get("Type") == "bind", bool(m.get("ReadOnly"))) for m in host.get("Mounts") or []
        ]
    bindings = [b or {} for spec in (host.get("PortBindings") or {}).values() for b in spec or [{}]]
    ports = [Port(b.get("HostIp") or "", int(b["HostPort"]) if b.get("HostPort") else None) for b in bindings]
    ports += [Port("", None)] if host.get("PublishAllPorts") else []  # -P: every exposed port, on all addresses
    policy, logs = host.get("RestartPolicy") or {}, host.get("LogConfig") or {}
    shares = host.get("CpuShares") or 0  # 0 and 1024 both mean the default weight
    return Container(
        service=(config.get("Labels") or {}).get(Labels.SERVICE) or str(info.get("Name", "")).lstrip("/"),
        cap_add=list(host.get("CapAdd") or []),
        cap_drop=list(host.get("CapDrop") or []),
        privileged=bool(host.get("Privileged")),
        mounts=mounts,
        ports=ports or None,
        modes={k: str(host.get(key) or "") for k, key in _INSPECT_MODES.items()},
        memory=bool(host.get("Memory")),
        cpu=bool(host.get("NanoCpus") or host.get("CpuQuota") or shares not in (0, 1024)),
        pids_limit=int(host.get("PidsLimit") or 0),
        read_only=bool(host.get("ReadonlyRootfs")),
        restart=(str(policy.get("Name") or "no"), int(policy.get("MaximumRetryCount") or 0)),
        security_opt=_options(host.get("SecurityOpt") or []),
        cgroup_parent=str(host.get("CgroupParent") or ""),
        # Config.Healthcheck merges the image's and the container's; State.Health shows one ran.
        healthcheck=bool(
            _health((config.get("Healthcheck") or {}).get("Test")) or (info.get("State") or {}).get("Health")
        ),
        user=str(config.get("User") or ""),
        log=(str(logs.get("Type") or ""), dict(logs.get("Config") or {})),
    )


# --- container checks: each gives (ok, detail), or None where it does not apply ----------

Check = Callable[[Container], "tuple[bool, str] | None"]


def _say(ok: bool, good: str, bad: str) -> tuple[bool, str]:
    return ok, good if ok else bad


def _sensitive(path: str) -> bool:
    return path == "/" or any(path == s or path.startswith(s + "/") for s in SENSITIVE)


def _mounts(c: Container) -> tuple[bool, str]:
    bad = [f"{m.source} (sensitive)" for m in c.mounts if _sensitive(m.source)]
    bad += [f"{m.source} (read-write bind)" for m in c.mounts if m.bind and not m.read_only]
    return _say(not bad, "no sensitive or writable host paths", ", ".join(bad))


def _mode(kind: str) -> Check:
    return lambda c: _say(c.modes[kind] != "host", f"{kind} namespace not shared", f"{kind}: host")


def _restart(c: Container) -> tuple[bool, str]:
    policy, retries = c.restart
    shown = f"{policy}:{retries}" if retries else policy
    return _say(policy == "on-failure" and 0 < retries <= 5, shown, f"restart {shown}; want on-failure:1..5")


def _low_ports(c: Container) -> tuple[bool, str]:
    low = [str(p.host_port) for p in c.ports or [] if p.host_port is not None and p.host_port < 1025]
    return _say(not low, "no host port below 1025", f"host ports {', '.join(low)}")


def _wildcard(c: Container) -> tuple[bool, str]:
    wild = [
        f"{p.host_ip or '0.0.0.0'}:{p.host_port or '*'}" for p in c.ports or [] if p.host_ip in ("", "0.0.0.0", "::")
    ]
    return _say(not wild, "bound to specific addresses", f"bound to all addresses: {', '.join(wild)}")


def _logs(c: Container) -> tuple[bool, str]:
    driver, opts = c.log
    # The `local` driver rotates by default; json-file only when told to.
    ok = driver == "local" or {"max-size", "max-file"} <= opts.keys()
    good = f"{driver} max-size={opts.get('max-size')} max-file={opts.get('max-file')}"
    return _say(ok, good, f"{driver or 'daemon default'}: no max-size and max-file")


def _db_ports(c: Container) -> tuple[bool, str] | None:
    return _say(c.ports is None, "publishes no ports", "publishes ports") if c.service in DB_SERVICES else None


CONTAINER_CHECKS: tuple[tuple[str, Check], ...] = (
    ("5.4", lambda c: _say(not c.cap_add, "no added capabilities", f"cap_add: {', '.join(c.cap_add)}")),
    ("AB-CAPDROP", lambda c: _say("ALL" in map(str.upper, c.cap_drop), "cap_drop: ALL", f"cap_drop: {c.cap_drop}")),
    ("5.5", lambda c: _say(not c.privileged, "not privileged", "privileged")),
    ("5.6", _mounts),
    ("5.8", _low_ports),
    ("5.10", _mode("network")),
    ("5.11", lambda c: _say(c.memory, "memory limit set", "no memory limit")),
    ("5.12", lambda c: _say(c.cpu, "CPU limit set", "no CPU limit")),
    ("5.13", lambda c: _say(c.read_only, "read-only root filesystem", "writable root filesystem")),
    ("5.14", _wildcard),
    ("5.15", _restart),
    ("5.16", _mode("pid")),
    ("5.17", _mode("ipc")),
    ("5.21", _mode("uts")),
    ("5.22", lambda c: _say(c.security_opt.get("seccomp") != "unconfined", "seccomp on", "seccomp=unconfined")),
    ("5.25", lambda c: _say(not c.cgroup_parent, "default cgroup", f"cgroup_parent: {c.cgroup_parent}")),
    (
        "5.26",
        lambda c: _say(
            c.security_opt.get("no-new-privileges") in ("", "true"), "no-new-privileges", "no-new-privileges unset"
        ),
    ),
    ("5.27", lambda c: _say(c.healthcheck, "healthcheck", "no healthcheck (or disabled)")),
    ("5.29", lambda c: _say(c.pids_limit > 0, f"pids limit {c.pids_limit}", "no pids limit")),
    ("5.31", _mode("userns")),
    (
        "5.32",
        lambda c: _say(
            not any(m.source.endswith("/docker.sock") for m in c.mounts), "no Docker socket", "Docker socket mounted"
        ),
    ),
    ("AB-DBPORTS", _db_ports),
    ("AB-USER", lambda c: _say(_non_root(c.user), f"user {c.user}", f"runs as root (user {c.user or 'unset'})")),
    ("AB-LOGS", _logs),
)


def container_findings(container: Container) -> list[Finding]:
    results = ((check_id, check(container)) for check_id, check in CONTAINER_CHECKS)
    return [Finding(check_id, container.service, *result) for check_id, result in results if result is not None]


def audit_compose(config: Mapping[str, Any], images: Mapping[str, ImageFacts]) -> list[Finding]:
    services = config.get("services") or {}
    return [f for name in sorted(services) for f in container_findings(from_compose(name, services[name], images))]


def audit_containers(infos: Iterable[Mapping[str, Any]]) -> list[Finding]:
    return [f for info in infos for f in container_findings(from_inspect(info))]
