"""The preflight that protects what runs: checks made before anything is generated, written, built or
started, each answering with one line that names the way out (BadInput, exit 2, nothing changed).

- the project runs from another checkout or another secrets folder (Compose's labels and mounts say so);
- secrets would be generated while the project's database volume exists (the new password would not open
  the old database);
- a port the stack would publish, which its running proxy does not publish now, is taken by someone else;
- a subnet overlaps another Docker network, or differs from the project's existing network;
- a secret its consumer cannot read (as root this is fixed, and said; otherwise refused)."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import docker, files, secrets
from .compose import Stack, port_in_use, running_containers
from .errors import BadInput
from .model import Labels
from .paths import COMPOSE_DIR

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _running(stack: Stack) -> list[dict[str, Any]]:
    return running_containers(stack.project)


def same_checkout(stack: Stack, containers: Iterable[dict[str, Any]]) -> Check:
    """The project's containers were started from this checkout's compose files and secrets folder."""
    here, secrets_dir = COMPOSE_DIR.resolve(), Path(stack.settings["SECRETS_DIR"]).resolve()
    for info in containers:
        labels = info["Config"]["Labels"]
        working_dir = labels.get(Labels.WORKING_DIR, "")
        if working_dir and Path(working_dir).resolve() != here:
            return Check(
                "checkout",
                False,
                f"project {stack.project} runs from another checkout ({working_dir}); run the tasks there, or "
                "give this one its own COMPOSE_PROJECT_NAME",
            )
        for mount in info.get("Mounts") or []:
            if str(mount.get("Destination", "")).startswith("/run/secrets/"):
                folder = Path(str(mount.get("Source", ""))).parent.resolve()
                if folder != secrets_dir:
                    return Check(
                        "checkout",
                        False,
                        f"project {stack.project} runs with the secrets in {folder}, not {secrets_dir}; set "
                        f"SECRETS_DIR={folder}, or give this stack its own COMPOSE_PROJECT_NAME",
                    )
    return Check("checkout", True, f"{stack.project}: this checkout and secrets folder, or not running")


def secrets_match_database(stack: Stack) -> Check:
    """New database secrets would not open an existing database volume."""
    volume = docker.inspect("volume", f"{stack.project}_pgdata")
    secrets_dir = Path(stack.settings["SECRETS_DIR"])
    missing = [name for name in secrets.POSTGRES_ROLES if not (secrets_dir / name).exists()]
    if volume is None or "postgres_password" not in missing:
        return Check("database volume", True, "no volume, or its owner's password is here")
    return Check(
        "database volume",
        False,
        f"the database volume {stack.project}_pgdata exists but {secrets_dir}/postgres_password does not: a new "
        "password would not open it. Restore the old secrets folder, or "
        f"`invoke stack.down --env {stack.env} --volumes` to start over "
        "(deletes the data)",
    )


def _published(containers: Iterable[dict[str, Any]]) -> set[tuple[str, int]]:
    found = set()
    for info in containers:
        for bindings in ((info.get("NetworkSettings") or {}).get("Ports") or {}).values():
            for binding in bindings or []:
                found.add((binding.get("HostIp", ""), int(binding.get("HostPort", 0))))
    return found


def ports_free(stack: Stack, containers: Iterable[dict[str, Any]]) -> Check:
    """Each port the stack would publish is free, or published by this stack's own containers now."""
    ours = _published(containers)
    for key, (bind, port) in stack.published.items():
        if (bind, port) in ours:
            continue
        if port_in_use(bind, port):
            held = ", ".join(f"{ip}:{p}" for ip, p in sorted(ours)) or "none"
            return Check(
                "ports",
                False,
                f"port {bind}:{port} ({key}) is already in use by another process (this stack publishes {held}); "
                f"free it or set {key} in .env.{stack.env}",
            )
    said = ", ".join(f"{bind}:{port}" for bind, port in stack.published.values())
    return Check("ports", True, f"{said} free or ours")


def _networks() -> list[tuple[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]]:
    found = []
    for net in docker.networks():
        configs = (net.get("IPAM") or {}).get("Config") or []
        found.append((net["Name"], [ipaddress.ip_network(c["Subnet"]) for c in configs if c.get("Subnet")]))
    return found


def subnets_fit(stack: Stack) -> Check:
    """Each subnet setting is the one the project's network has, or overlaps no other network."""
    existing = _networks()
    for name, key in stack.networks.items():
        wanted = ipaddress.ip_network(stack.settings[key])
        own = f"{stack.project}_{name}"
        for network, subnets in existing:
            if network == own and subnets and wanted not in subnets:
                return Check(
                    "subnets",
                    False,
                    f"{key} is {wanted} but the running network {own} has {subnets[0]}: set it back, or "
                    f"`invoke stack.down --env {stack.env}` first to change it",
                )
            if network != own and any(wanted.overlaps(s) for s in subnets):
                return Check(
                    "subnets",
                    False,
                    f"{key} {wanted} overlaps the Docker network {network} ({', '.join(map(str, subnets))}); "
                    f"choose another {key}",
                )
    return Check("subnets", True, "each fits")


def secrets_readable(stack: Stack, fix: bool | None = None) -> Check:
    """Every secret file present can be read by the uid of the containers that mount it: a file they
    cannot read passes today and crash-loops them at their next restart. As root it is fixed."""
    fix = os.geteuid() == 0 if fix is None else fix
    secrets_dir, fixed = Path(stack.settings["SECRETS_DIR"]), []
    for spec in secrets.SECRETS:
        path = secrets_dir / spec.name
        if not path.is_file() or path.is_symlink():
            continue
        info, uid = path.stat(), secrets.consumer_uid(spec)
        if info.st_uid == uid and info.st_mode & stat.S_IRUSR:
            continue
        if not fix:
            return Check(
                "secret owners",
                False,
                f"{path} cannot be read by uid {uid} ({', '.join(spec.consumers)}): owner {info.st_uid}, mode "
                f"{stat.S_IMODE(info.st_mode):04o}; run the task as root, or `chown {uid}:{uid}` and `chmod 600` it",
            )
        files.fix_mode(path, files.PRIVATE_FILE, (uid, uid))
        fixed.append(spec.name)
    detail = f"fixed owner and mode of {', '.join(fixed)}" if fixed else "each readable by its consumer"
    return Check("secret owners", True, detail)


def rows(stack: Stack, *, generating: bool = False, fix: bool = False) -> list[Check]:
    """Every check as a row, none raising (env.preflight shows them all)."""
    docker.require_daemon()
    running = _running(stack)
    found = [same_checkout(stack, running), ports_free(stack, running), subnets_fit(stack)]
    if generating:
        found.append(secrets_match_database(stack))
    return [*found, secrets_readable(stack, fix=fix)]


def protect(stack: Stack, *, generating: bool = False, progress: Progress = lambda _m: None) -> list[Check]:
    """Run every check; the first that fails is BadInput (one line, the way out), nothing changed. Only
    when all the others pass, and as root, are unreadable secret files fixed (and that said)."""
    checked = rows(stack, generating=generating, fix=False)
    failed = [row for row in checked if not row.ok]
    if failed and not (failed[0].name == "secret owners" and os.geteuid() == 0):
        raise BadInput(failed[0].detail)
    if failed:
        checked[-1] = secrets_readable(stack, fix=True)
        progress(f"{checked[-1].name}: {checked[-1].detail}")
    return checked
