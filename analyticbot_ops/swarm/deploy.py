"""Deploy the stack on a swarm: push the images to the lab's registry and pin them by digest, render the
stack with versioned secrets, `docker stack deploy`, and wait until every service has converged (Engine
20.10's `stack deploy` returns at once). A service that fails, or that Swarm rolled back, fails the
deploy with its tasks' error and its last log lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import compose, model, preflight, registry, secrets, tls
from ..errors import BadInput, OpsError
from ..monitoring.config import swarm_files
from ..paths import COMPOSE_DIR, STATE_DIR
from ..tls import backup
from . import render
from .lab import Lab, describe_nodes

Progress = Callable[[str], None]
STACK_FILES = STATE_DIR / "swarm"


@dataclass
class ServiceState:
    name: str
    running: int
    desired: int
    image: str
    update: str = ""  # Swarm's UpdateStatus.State: updating, completed, rollback_completed, ...
    errors: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    update_started: str = ""  # when that update began: tells a new rollback from one left by an earlier deploy

    @property
    def converged(self) -> bool:
        return self.running == self.desired and self.update not in ("updating", "rollback_started")


def push_images(stack: compose.Stack, lab: Lab, progress: Progress) -> dict[str, str]:
    """Each image variable's reference for the nodes: the lab's registry, pinned by digest (every node runs
    the same bytes). Pushed from this host through the registry's loopback port."""
    return registry.push_pinned(stack, lab.registry_local, lab.registry, progress)


def stack_file(
    stack: compose.Stack, lab: Lab, images: dict[str, str], first_start: dict[str, str] | None = None
) -> Path:
    """The rendered stack, written under .state/swarm/ (file paths and names only, never a secret's value).
    `first_start`: what first_start_versions() found on the running stack."""
    secrets_dir = Path(stack.settings["SECRETS_DIR"])
    secrets.ensure_optional_placeholders(secrets_dir)  # an absent optional secret is an empty file, as on Compose
    # The secrets the services mount (the model says which). Swarm refuses an empty secret: an optional one
    # left empty is not mounted, which the services read the same way (absent or empty: not configured).
    mounted = {name for service in stack.services for name in service.secrets}
    secret_files = {
        name: secrets_dir / name
        for name in sorted(mounted)
        if (secrets_dir / name).is_file() and (secrets_dir / name).stat().st_size > 0
    }
    backup_tls_dir = secrets_dir / backup.FOLDER
    if stack.backup:
        backup.ensure_backup_certificates(backup_tls_dir)
    STACK_FILES.mkdir(parents=True, exist_ok=True)
    rendered = render.render(
        compose.merged_config(stack),
        project=stack.project,
        images=images,
        secret_files=secret_files,
        tls_dir=Path(stack.settings["TLS_DIR"]),
        redis_conf=COMPOSE_DIR / "redis" / "redis.conf",
        http_port=int(stack.settings["HTTP_PORT"]),
        https_port=int(stack.settings["HTTPS_PORT"]),
        monitoring_files=swarm_files(stack.project, STACK_FILES) if stack.monitoring else {},
        backup_tls_dir=backup_tls_dir if stack.backup else None,
        first_start_versions=first_start,
    )
    path = STACK_FILES / f"{stack.project}.yml"
    path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    return path


def first_start_versions(lab: Lab, project: str) -> dict[str, str]:
    """The versioned name of each secret of model.FIRST_START_ONLY that the running stack's service mounts (none
    before a first deploy): render keeps them, so that the deploy after a rotation does not restart postgres for
    nothing."""
    found: dict[str, str] = {}
    for service, names in model.FIRST_START_ONLY.items():
        said = lab.manage(["service", "inspect", f"{project}_{service}"], check=False)
        if said.returncode != 0 or not said.stdout.strip():  # not deployed yet
            continue
        mounts = json.loads(said.stdout)[0]["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
        for mount in mounts:
            target = (mount.get("File") or {}).get("Name")
            if target in names:
                found[target] = mount["SecretName"]
    return found


def states(lab: Lab, project: str) -> dict[str, ServiceState]:
    """Each service of the stack: replicas running/desired, the image it runs, its update state, task errors."""
    listed = lab.manage(["service", "ls", "--filter", f"label=com.docker.stack.namespace={project}", "-q"])
    found = {}
    for service_id in listed.stdout.split():
        info = json.loads(lab.manage(["service", "inspect", service_id]).stdout)[0]
        name = info["Spec"]["Name"].removeprefix(f"{project}_")
        tasks = lab.manage(
            ["service", "ps", service_id, "--no-trunc", "--format", "{{json .}}", "--filter", "desired-state=running"]
        ).stdout
        rows = [json.loads(line) for line in tasks.splitlines() if line.strip()]
        running = [r for r in rows if str(r.get("CurrentState", "")).startswith("Running")]
        mode = info["Spec"].get("Mode") or {}
        # A global service wants one task on each node its constraints allow: the orchestrator lists one task
        # per such node, desired running (a lost node's included, until the node is removed).
        desired = len(rows) if "Global" in mode else int((mode.get("Replicated") or {}).get("Replicas", 1))
        state = ServiceState(
            name=name,
            running=len(running),
            desired=desired,
            image=info["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
            update=((info.get("UpdateStatus") or {}).get("State") or ""),
            update_started=((info.get("UpdateStatus") or {}).get("StartedAt") or ""),
            errors=[r["Error"] for r in rows if r.get("Error")],
            nodes=sorted({r.get("Node", "") for r in running}),
        )
        found[name] = state
    return found


def _job_done(lab: Lab, project: str, name: str) -> bool:
    """Whether the job's current task completed. `service ps` lists each slot's current task first, then its
    earlier ones (a retry's failed attempt, a completed run of an earlier deploy), all under the slot's name: the
    table view marks the earlier ones "\\_ ", a --format view does not. So the first line of each slot counts."""
    said = lab.manage(["service", "ps", f"{project}_{name}", "--format", "{{.Name}}|{{.CurrentState}}"], check=False)
    current: dict[str, str] = {}
    for line in said.stdout.splitlines():
        if "|" in line:
            slot, state = line.split("|", 1)
            current.setdefault(slot.strip().removeprefix("\\_").strip(), state)
    return bool(current) and all(state.startswith("Complete") for state in current.values())


def updates(lab: Lab, project: str) -> dict[str, str]:
    """When each service's last update began, before a change: a rollback counts only if it is newer."""
    return {name: state.update_started for name, state in states(lab, project).items()}


def wait_converged(
    lab: Lab,
    project: str,
    timeout: float,
    progress: Progress,
    *,
    rolled_back_ok: bool = False,
    since: dict[str, str] | None = None,
) -> float:
    """Poll until every service runs its desired replicas (jobs: completed); fail on a rollback (unless
    a rollback is what was asked for). A rollback left by an earlier deploy (its update began as `since`
    says, or, without `since`, before this wait) is history, not this change's failure."""
    started, last = time.monotonic(), ""
    while True:
        found = states(lab, project)
        if since is None:
            since = {name: s.update_started for name, s in found.items() if s.update.startswith("rollback")}
        jobs = [name for name in model.JOBS if name in found]
        pending = [s.name for s in found.values() if s.name not in jobs and not s.converged]
        pending += [name for name in jobs if not _job_done(lab, project, name)]
        rolled = [
            s.name for s in found.values() if s.update.startswith("rollback") and since.get(s.name) != s.update_started
        ]
        shown = ", ".join(f"{s.name} {s.running}/{s.desired}" for s in sorted(found.values(), key=lambda s: s.name))
        if shown != last:
            progress(f"  {time.monotonic() - started:5.1f}s  {shown}")
            last = shown
        if rolled and not pending and not rolled_back_ok:
            raise OpsError(f"Swarm rolled back {', '.join(rolled)}: {_why(lab, project, rolled[0], found)}")
        if found and not pending:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            waiting = pending or ["(no service)"]
            why = _why(lab, project, waiting[0], found)
            raise OpsError(f"timed out after {timeout:.0f} s waiting for {', '.join(waiting)}: {why}")
        time.sleep(1)


def _why(lab: Lab, project: str, name: str, found: dict[str, ServiceState]) -> str:
    state = found.get(name)
    said = lab.manage(["service", "ps", f"{project}_{name}", "--no-trunc", "--format", "{{.Error}}"], check=False)
    errors = [line for line in said.stdout.splitlines() if line.strip()] or (state.errors if state else [])
    logs = lab.manage(["service", "logs", "--tail", "10", "--raw", f"{project}_{name}"], check=False, timeout=30)
    tail = (logs.stdout + logs.stderr).strip()
    return f"{errors[0] if errors else 'no task error'}; its last log lines:\n{tail or '(none)'}"


def manager(lab: Lab) -> str:
    """The swarm answers through a manager (the one node that takes `stack deploy`), and has the nodes the stack
    is placed by: one data node (postgres' and redis' volumes) and at least one edge node (the proxy)."""
    said = lab.manage(["info", "--format", "{{json .Swarm}}"], check=False, timeout=30)
    if said.returncode != 0:
        first = (said.stderr or said.stdout).strip().splitlines() or ["no answer"]
        raise OpsError(f"the swarm's manager ({lab.context or lab.manager.host}) does not answer: {first[0]}")
    swarm = json.loads(said.stdout or "{}") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        state = swarm.get("LocalNodeState") or "unknown"
        raise BadInput(f"{lab.name} reaches an engine that is not a swarm manager (state: {state})")
    found = describe_nodes(lab)
    data = [n.hostname for n in found if n.labelled(render.DATA_LABEL)]
    edge = [n.hostname for n in found if n.labelled(render.EDGE_LABEL)]
    how = "label {what} with `docker node update --label-add {label}=true NODE`"
    if len(data) != 1:
        which = "no node of {} is" if not data else f"{len(data)} nodes ({' '.join(data)}) of {{}} are"
        need = how.format(what="one node", label=render.DATA_LABEL)
        raise BadInput(f"{which.format(lab.name)} labelled {render.DATA_LABEL}=true; the data lives on one: {need}")
    if not edge:
        need = how.format(what="each node clients reach", label=render.EDGE_LABEL)
        raise BadInput(f"no node of {lab.name} is labelled {render.EDGE_LABEL}=true, where the proxy runs: {need}")
    return f"{lab.name}: {len(found)} nodes, data on {data[0]}, edge {' '.join(edge)}"


def preflight_checks(
    find: Callable[[], Lab], *, replacing_certificate: bool = False
) -> tuple[tuple[str, Callable[[compose.Stack], str]], ...]:
    """The Compose preflight's checks that a swarm deploy needs too, in its order (compose renders the stack
    file; the images are pushed from this daemon), then the swarm itself, found by `find` (a check of its own,
    so an unknown context is a row, not a stop). Not the file owners: the CLI reads each file and sends it to
    the swarm as a secret, so no container reads the host's copy; nor the running stack's guards (host ports,
    subnets), which are this host's, not the swarm's. `replacing_certificate` (tls.prod, tls.renew): nor the
    certificate, which is what is being replaced: an expired one is why a renewal runs."""
    skipped = ("file owners", "certificate") if replacing_certificate else ("file owners",)
    return (
        *((name, check) for name, check in preflight.CHECKS if name not in skipped),
        ("swarm", lambda _stack: manager(find())),
    )


def preflight_rows(stack: compose.Stack, find: Callable[[], Lab]) -> list[preflight.Check]:
    """Every check on its own, none raising: what `invoke env.preflight --swarm` shows."""
    return preflight.run_checks(stack, preflight_checks(find))


def require(
    stack: compose.Stack,
    find: Callable[[], Lab],
    progress: Progress = lambda _m: None,
    *,
    replacing_certificate: bool = False,
) -> Lab:
    """Stop at the first check that fails, with its own error (one line, its exit code); the swarm is looked
    for last, so a certificate or a secret that would stop the deploy is named before any swarm is reached.
    `replacing_certificate`: the installed certificate is not checked (see preflight_checks)."""
    found: list[Lab] = []

    def located() -> Lab:
        found.append(find())
        return found[-1]

    checks = preflight_checks(located, replacing_certificate=replacing_certificate)
    said = {name: check(stack) for name, check in checks}
    certificate = f"certificate ({said['certificate']}), " if "certificate" in said else ""
    progress(f"preflight ok: images, secrets ({stack.env}), {certificate}{said['swarm']}")
    return found[-1]


def deploy(
    stack: compose.Stack,
    lab: Lab,
    *,
    timeout: float = 300,
    progress: Progress = lambda _m: None,
    wait: bool = True,
    checked: bool = False,
) -> float:
    """Check, push, render, deploy, wait: the seconds from `stack deploy` to converged. Without `wait`, return
    once the stack is submitted (the caller waits with settle()); `checked`: the caller ran require() on this
    stack and swarm just now. A first deploy needs nothing but secrets: with no certificate yet, the proxy
    starts on the same short-lived one a Compose deploy writes."""
    if not checked:
        require(stack, lambda: lab, progress)
    # Changes only after every check passed.
    tls_dir = Path(stack.settings["TLS_DIR"])
    if preflight.needs_bootstrap_certificate(stack):
        tls.write_bootstrap_certificate(tls_dir, stack.settings.get("DOMAIN", "localhost"))
        progress(f"wrote a 1-day bootstrap certificate in {tls_dir}; run `invoke tls.prod` for a real one")
    progress(f"pushing images to {lab.registry} (pinned by digest)")
    images = push_images(stack, lab, progress)
    path = stack_file(stack, lab, images, first_start_versions(lab, stack.project))
    progress(f"deploying {stack.project} on {lab.name} ({len(lab.nodes)} nodes) from {path.name}")
    _before[stack.project] = updates(lab, stack.project)
    lab.manage(["stack", "deploy", "--prune", "--resolve-image", "never", "-c", str(path), stack.project])
    _submitted[stack.project] = path
    return settle(stack, lab, timeout, progress) if wait else 0.0


# The stack file each project was last deployed from in this process (settle() keeps its secrets), and
# when each service's last update began just before (settle() judges only what this deploy started).
_submitted: dict[str, Path] = {}
_before: dict[str, dict[str, str]] = {}


def settle(stack: compose.Stack, lab: Lab, timeout: float, progress: Progress = lambda _m: None) -> float:
    """Wait until the submitted stack converges, then remove the secret versions nothing uses any more."""
    seconds = wait_converged(lab, stack.project, timeout, progress, since=_before.get(stack.project))
    known = [p for p in (_submitted.get(stack.project), STACK_FILES / f"{stack.project}.yml") if p and p.is_file()]
    if known:  # without the file that says which versions are wanted, none is removed
        _remove_unused_secrets(lab, stack.project, known[0])
    return seconds


def _remove_unused_secrets(lab: Lab, project: str, path: Path) -> None:
    """Versions of the stack's secrets that no service uses any more (a rotation's old ones)."""
    wanted = {s["name"] for s in (yaml.safe_load(path.read_text()).get("secrets") or {}).values()}
    listed = lab.manage(["secret", "ls", "--format", "{{.Name}}"]).stdout.split()
    for name in listed:
        if name.startswith(f"{project}_") and name not in wanted:
            lab.manage(["secret", "rm", name], check=False)  # refused while a task still holds it: kept


def rollback(lab: Lab, project: str, *, timeout: float = 300, progress: Progress = lambda _m: None) -> list[str]:
    """`docker service rollback` for each service that has a previous spec; then wait until converged."""
    rolled = []
    for name in states(lab, project):
        info = json.loads(lab.manage(["service", "inspect", f"{project}_{name}"]).stdout)[0]
        if info.get("PreviousSpec"):
            progress(f"  rolling {name} back")
            lab.manage(["service", "rollback", "--detach", f"{project}_{name}"])
            rolled.append(name)
    if rolled:
        wait_converged(lab, project, timeout, progress, rolled_back_ok=True)
    return rolled


def remove(lab: Lab, project: str, *, volumes: bool = False, progress: Progress = lambda _m: None) -> None:
    """`docker stack rm`, then wait until its containers and networks are gone (a redeploy at once would
    find the old networks still being removed); with `volumes`, the data volumes on every node too."""
    lab.manage(["stack", "rm", project])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = lab.manage(["network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={project}"]).stdout
        if not left.split():
            break
        time.sleep(1)
    if not volumes:
        return
    for node in lab.nodes:
        for _ in range(30):  # a task's container goes away a moment after its service
            listed = lab.on(node, ["volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={project}"])
            names = listed.stdout.split()
            if not names or lab.on(node, ["volume", "rm", *names], check=False).returncode == 0:
                break
            time.sleep(1)
        else:
            raise OpsError(f"the data volumes of {project} on {node.hostname} are still in use: {', '.join(names)}")
        progress(f"  {node.hostname}: data volumes removed")


def status(lab: Lab, project: str) -> list[dict[str, Any]]:
    shown = sorted(states(lab, project).values(), key=lambda s: s.name)
    return [{k: v for k, v in s.__dict__.items() if k != "update_started"} for s in shown]
