"""The `stack` namespace: up, down, ps, logs, restart, deploy, setup, backup, backups, restore, releases,
rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection
from rich.table import Table

from .. import backups, baseimages, build, compose, docker, guard, health, preflight, stack_settings, tls
from .. import deploy as deploy_module  # aliased: `deploy` is this namespace's task (stack.deploy)
from .. import releases as release_log  # aliased: `releases` is this namespace's task (stack.releases)
from .. import secrets as secrets_module  # aliased: stack.setup's `secrets` option would hide it there
from ..config import ops
from ..errors import BadInput, CheckFailed, Unhealthy
from ..recovery import drill, pitr
from ..recovery import target as recovery_target  # aliased: `target` is a local of rollback and restore
from ..recovery.catalog import REPOSITORIES
from ..timings import phase as timed_phase  # `timings` is the tasks' --timings option
from . import _recovery
from ._task import TIMINGS, ops_task, out, print_json, progress, stack_of, timed
from .health import print_sweep
from .legacy import Legacy

ENV = "Environment: dev, staging or prod (picks the compose files, project name and .env file)."
TIMEOUT = "Seconds to wait for every service to be healthy."
DOWNTIME = "Accept recreating the proxy (a new image, ports or settings): refused connections for seconds."
SERVICE = "A service: postgres, redis, api, bot, mtproto or proxy (repeatable). Default: all."


def _stack(c: Any, env: str) -> compose.Stack:
    # Pinned: what runs is this checkout's build, by immutable tags, whatever another checkout built.
    return stack_of(c, env, pinned=True)


def _build_all(c: Any) -> None:
    cfg = ops(c.config)
    with timed_phase("base images (built or kept)"):
        refs = baseimages.image_refs(
            baseimages.build_base_images(source=cfg.base_source, namespace=cfg.namespace, progress=progress)
        )
    with timed_phase("service images (built or kept)"):
        build.build_services(build.SERVICES, base_images=refs, namespace=cfg.namespace, progress=progress)


def _deploy(c: Any, env: str, timeout: float, *, sweep: bool = True, allow_downtime: bool = False) -> None:
    stack = _stack(c, env)
    progress(f"deploying {stack.project} ({env}) from {', '.join(f.name for f in stack.files)}")
    seconds = deploy_module.up(
        stack,
        timeout=timeout,
        progress=progress,
        allow_downtime=allow_downtime,
        release_keep=ops(c.config).release_keep,
    )
    out.print(f"{stack.project}: every service healthy after {seconds:.1f} s")
    if sweep:
        with timed_phase("health sweep"):
            result = health.sweep(stack.project)
        print_sweep(result, verbose=False)
        if result.exit_code == health.EXIT_UNHEALTHY:
            raise Unhealthy(f"{stack.project} is {result.verdict} after the deploy")
        if result.exit_code == health.EXIT_DEGRADED:
            out.print("degraded: optional dependencies are down or disabled (see the table); the stack serves.")


@ops_task(
    help={"env": ENV, "service": SERVICE, "timeout": TIMEOUT, "allow_downtime": DOWNTIME, "timings": TIMINGS},
    iterable=["service"],
)
def up(
    c: Any,
    env: str = "dev",
    service: list[str] | None = None,
    timeout: float = 180,
    allow_downtime: bool = False,
    timings: bool = False,
) -> None:
    """Start the stack or roll out what changed (api and bot without a gap); wait until healthy."""
    with timed(timings):
        stack = _stack(c, env)
        seconds = deploy_module.up(
            stack,
            services=compose.check_services(service or []),
            timeout=timeout,
            progress=progress,
            allow_downtime=allow_downtime,
            release_keep=ops(c.config).release_keep,
        )
        out.print(f"{stack.project}: healthy after {seconds:.1f} s")


@ops_task(help={"env": ENV, "json": "Print the releases as JSON."})
def releases(c: Any, env: str = "dev", json: bool = False) -> None:
    """List the releases recorded for an environment's stack, newest first, with their images."""
    stack = stack_of(c, env)  # only its project name: no daemon needed to read the log
    past = list(reversed(release_log.history(stack.project)))
    if json:
        print_json([r.__dict__ for r in past])
        return
    if not past:
        out.print(f"{stack.project}: no release recorded yet (a whole-stack `invoke stack.up` records one)")
        return
    table = Table("#", "deployed (UTC)", "revision", "images", title=f"{stack.project}: releases, newest first")
    for index, release in enumerate(past):
        images = ", ".join(tag.rsplit("/", 1)[-1] for tag in release.images.values()) or "(the :latest tags)"
        marker = " (running)" if index == 0 else ""
        table.add_row(f"{release.number}{marker}", release.at[:19], release.revision, images)
    out.print(table)


@ops_task(
    help={
        "env": ENV,
        "to": "The release to go back to: its number or revision (default: the one before the current).",
        "timeout": TIMEOUT,
        "allow_downtime": DOWNTIME,
    }
)
def rollback(
    c: Any, env: str = "dev", to: str | None = None, timeout: float = 180, allow_downtime: bool = False
) -> None:
    """Deploy an earlier recorded release again, rolled like any release (api and bot without a gap)."""
    stack = _stack(c, env)
    release = release_log.choose(stack.project, to)
    missing = release_log.missing_images(release)
    if missing:
        raise BadInput(f"release #{release.number} needs images no longer here: {', '.join(missing)}")
    target = stack_of(c, env, project=stack.project, overrides={**stack.settings, **release.images})
    progress(f"rolling {stack.project} back to release #{release.number} ({release.revision})")
    seconds = deploy_module.up(
        target,
        timeout=timeout,
        progress=progress,
        allow_downtime=allow_downtime,
        release_keep=ops(c.config).release_keep,
    )
    out.print(f"{stack.project}: release #{release.number} ({release.revision}) serving, healthy after {seconds:.1f} s")


@ops_task(help={"env": ENV, "volumes": "Also delete the data volumes (PostgreSQL, Redis): destroys data."})
def down(c: Any, env: str = "dev", volumes: bool = False) -> None:
    """Stop and remove the stack's containers and networks (data volumes are kept)."""
    deploy_module.down(_stack(c, env), volumes=volumes)


@ops_task(
    help={
        "env": ENV,
        "json": "Print the states as JSON.",
        "check": "Exit 5 unless every service is running and healthy (or has no healthcheck).",
    }
)
def ps(c: Any, env: str = "dev", json: bool = False, check: bool = False) -> None:
    """Show each service's container, state, health, restarts and uptime."""
    project = compose.load_stack(env).project
    rows = health.uptimes(project)
    if json:
        print_json(rows)
    else:
        table = Table("service", "container", "state", "health", "restarts", "uptime", title=project)
        for row in rows:
            table.add_row(*(str(row[k]) for k in ("service", "container", "state", "health", "restarts", "uptime")))
        out.print(table)
    bad = health.not_healthy(project, rows)
    if check and (bad or not rows):
        raise Unhealthy(f"{project}: {', '.join(bad) + ' not healthy' if bad else 'no container'}")


@ops_task(
    help={"env": ENV, "service": SERVICE, "follow": "Keep following new lines.", "tail": "Lines to show."},
    iterable=["service"],
)
def logs(c: Any, env: str = "dev", service: list[str] | None = None, follow: bool = False, tail: int = 100) -> None:
    """Show the logs of the stack's services."""
    docker.require_daemon()
    args = ["logs", "--tail", str(tail), *(["--follow"] if follow else []), *compose.check_services(service or [])]
    _stack(c, env).compose(*args, capture=False)


@ops_task(
    help={"service": "The service whose logs to show.", "env": ENV, "follow": "Keep following.", "tail": "Lines."}
)
def service_logs(c: Any, service: str, env: str = "dev", follow: bool = False, tail: int = 100) -> None:
    """Old name of `invoke stack.logs --service SERVICE`, which took the service as its first argument."""
    logs.body(c, env=env, service=[service], follow=follow, tail=tail)


@ops_task(help={"env": ENV, "service": SERVICE, "timeout": TIMEOUT}, iterable=["service"])
def restart(c: Any, env: str = "dev", service: list[str] | None = None, timeout: float = 120) -> None:
    """Restart services: api and bot rolled without a gap, the proxy reloaded, the rest restarted."""
    stack = _stack(c, env)
    names = compose.check_services(service or []) or list(stack.running)
    if not timeout > 0:
        raise BadInput(f"--timeout must be more than 0 seconds, got {timeout:g}")
    docker.require_daemon()
    for line in deploy_module.restart(stack, names, timeout, progress):
        out.print(line)


@ops_task(
    help={
        "env": ENV,
        "build": "Build the images first (what changed; unchanged images are kept).",
        "timeout": TIMEOUT,
        "allow_downtime": DOWNTIME,
        "timings": TIMINGS,
    }
)
def deploy(
    c: Any,
    env: str = "dev",
    build: bool = False,
    timeout: float = 180,
    allow_downtime: bool = False,
    timings: bool = False,
) -> None:
    """Deploy an environment: check secrets and certificate, start or roll what changed, wait, sweep."""
    with timed(timings):
        _checked_deploy(c, env, build, timeout, allow_downtime)


def _checked_deploy(c: Any, env: str, build: bool, timeout: float, allow_downtime: bool) -> None:
    stack = _stack(c, env)
    docker.require_daemon()  # first: a deploy with no daemon says so, whatever else is missing
    if secrets_module.check_failed(secrets_module.check(env, Path(stack.settings["SECRETS_DIR"])), env):
        raise BadInput(f"{env} secrets are not ready; run `invoke secrets.check --env {env}`")
    if not preflight.needs_bootstrap_certificate(stack):
        status = tls.certificate_status(Path(stack.settings["TLS_DIR"]))
        if not status.ok:
            raise BadInput(f"{env} certificate: {'; '.join(status.problems)}")
    if build:
        _build_all(c)
    _deploy(c, env, timeout, allow_downtime=allow_downtime)


@ops_task(
    help={
        "env": "dev (certificates, build, stack up) or prod (build, then check secrets and certificate).",
        "secrets": "dev: generate the secrets that are missing first (the README's main job).",
        "timeout": TIMEOUT,
        "allow_downtime": DOWNTIME,
        "timings": TIMINGS,
    }
)
def setup(
    c: Any,
    env: str = "dev",
    secrets: bool = False,
    timeout: float = 180,
    allow_downtime: bool = False,
    timings: bool = False,
) -> None:
    """Set up an environment: dev gets certificates, images and a healthy stack; prod is built and checked."""
    with timed(timings):
        _setup(c, env, secrets, timeout, allow_downtime)


def _setup(c: Any, env: str, secrets: bool, timeout: float, allow_downtime: bool) -> None:
    if stack_settings.check_env(env) != "dev":
        if secrets:
            raise BadInput("--secrets is for dev; make prod's with `invoke secrets.from-env --env prod`")
        _check_ready(c, env)
        return
    with timed_phase("settings and the running stack's guard"):
        stack = _stack(c, "dev")
        # What runs is protected before anything is written or built: checkout, ports, subnets.
        guard.protect(stack, generating=secrets, progress=progress)
    with timed_phase("secrets and the dev certificate"):
        if secrets:
            report = secrets_module.from_env("dev", Path(stack.settings["SECRETS_DIR"]), environ={})
            created = [o.name for o in report.outcomes if o.status == "created"]
            progress(f"dev secrets: {'created ' + ', '.join(created) if created else 'all present, kept'}")
        result = tls.ensure_dev_certificates(Path(stack.settings["TLS_DIR"]))
        progress(f"dev certificate: {result.reason}")
    _build_all(c)
    _deploy(c, "dev", timeout, allow_downtime=allow_downtime)


def _check_ready(c: Any, env: str) -> None:
    """Build, then say whether the environment's secrets and certificate are ready (deploys nothing)."""
    _build_all(c)
    stack = _stack(c, env)
    rows = secrets_module.check(env, Path(stack.settings["SECRETS_DIR"]))
    problems = [f"secret {r.name}" for r in rows if (r.required and not r.present) or r.valid is False]
    if problems:
        raise CheckFailed(f"{env} is not ready: " + ", ".join(problems))
    if preflight.needs_bootstrap_certificate(stack):
        # tls.prod needs the proxy running; the deploy starts it on a bootstrap certificate.
        out.print(f"{env} is ready: run `invoke stack.deploy --env {env}`, then `invoke tls.prod --domain D`")
        return
    status = tls.certificate_status(Path(stack.settings["TLS_DIR"]))
    if not status.ok:
        raise CheckFailed(f"{env} certificate: {'; '.join(status.problems)}; run `invoke tls.prod --domain D`")
    out.print(f"{env} is ready: run `invoke stack.deploy --env {env}`")


@ops_task(
    help={
        "env": ENV,
        "kind": "dump (a verified pg_dump in backups/, the default), or a pgBackRest full, diff or incr backup.",
        "repo": "pgBackRest backups: only repository 1 (this host) or 2 (the repository host). Default: both.",
        "output": "Directory for the dump (default: backups/).",
        "verify": "Alone: pgBackRest's verify of the repositories and a read-back of the newest dump. "
        "With a path (--verify=FILE): check that dump only.",
        "keep": "How many dumps of the project to keep (default: ops.backup_keep, 7).",
    },
    optional=["verify"],
)
def backup(
    c: Any,
    env: str = "dev",
    kind: str = "dump",
    repo: int = 0,
    output: str | None = None,
    verify: Any = None,
    keep: int = 0,
) -> None:
    """Write a verified pg_dump (default) or a pgBackRest full/diff/incr backup; --verify checks them."""
    stack = _stack(c, env)
    if isinstance(verify, str) and verify:
        entries = backups.verify(stack, Path(verify))
        out.print(f"{verify}: whole, {entries} entries, every data block read back")
        return
    repos = (repo,) if repo else REPOSITORIES
    if verify:
        for line in pitr.verify(stack, pitr.check_repos(repos)):
            out.print(line)
        newest = backups.backups_of(backups.BACKUP_DIR, stack.project)
        if newest:
            entries = backups.verify(stack, newest[-1])
            out.print(f"{newest[-1]}: whole, {entries} entries, every data block read back")
        return
    if kind != "dump":
        for taken in pitr.backup(stack, kind, repos, progress=progress):
            out.print(
                f"repository {taken.repo}: {taken.kind} backup {taken.label} in {taken.seconds:.1f} s, "
                f"{taken.stored} bytes stored"
            )
        return
    result = backups.backup(
        stack, Path(output) if output else backups.BACKUP_DIR, keep=keep or ops(c.config).backup_keep
    )
    out.print(f"backup {result.path}: {result.size} bytes, {result.entries} entries, every data block read back")
    for path in result.pruned:
        progress(f"pruned {path.name} (keeping the newest {keep or ops(c.config).backup_keep})")


@ops_task(help={"env": ENV, "json": "Print the backups, the repositories and the WAL archive as JSON."})
def backups_(c: Any, env: str = "dev", json: bool = False) -> None:
    """List every pgBackRest backup of both repositories, the WAL archive's state and the restore window."""
    stack = _stack(c, env)
    found = pitr.catalog(stack)
    view = _recovery.as_dict(found, pitr.now())
    if json:
        print_json(view)
        return
    _recovery.print_catalog(out, view)


@ops_task(
    help={
        "file": "Restore this pg_dump (the logical restore, in one transaction).",
        "to": "Point-in-time restore from pgBackRest: latest, or a time like 2026-12-07T16:59:00Z (UTC).",
        "repo": "With --to: restore from repository 1 or 2 only. Default: the first that answers with a backup.",
        "env": ENV,
        "force": "Replace a database that already has tables (a safety dump is taken first).",
        "allow_foreign": "With --file: restore a dump of another project or environment, or one without a record.",
        "timeout": "With --to: seconds to wait for the WAL replay and for health (with --into: for the copy's).",
        "into": "With --to: the drill. Restore into this throwaway project instead, compare its row counts with "
        "the source's, print the time it took, and remove it.",
        "keep": "With --into: keep the throwaway copy (its container and volume) to look at.",
        "json": "With --into: print the drill's result as JSON.",
    }
)
def restore(
    c: Any,
    file: str | None = None,
    to: str | None = None,
    repo: int = 0,
    env: str = "dev",
    force: bool = False,
    allow_foreign: bool = False,
    timeout: float = 600,
    into: str | None = None,
    keep: bool = False,
    json: bool = False,
) -> None:
    """Restore a point in time (--to) or a pg_dump (--file); refuses a non-empty database without --force."""
    # `--into ""` is a mistake, never the restore of the stack itself.
    if into is not None and not to:
        raise BadInput("--into is the drill of a point-in-time restore: give --to latest|TIME with it")
    if bool(file) == bool(to):
        raise BadInput("give exactly one of --to latest|TIME (point in time) or --file DUMP (a pg_dump)")
    if into is None and (keep or json):
        raise BadInput(f"--{'keep' if keep else 'json'} goes with --into (the drill); nothing was touched")
    if repo:
        pitr.check_repos([repo])  # --repo 3 is refused before anything is asked of Docker
    stack = _stack(c, env)
    if into is not None:
        target = recovery_target.parse_target(to or "", pitr.now())
        _drill(stack, target, into, repo=repo or None, keep=keep, json=json, timeout=timeout)
        return
    if to:
        target = recovery_target.parse_target(to, pitr.now())
        done = pitr.restore(
            stack,
            target,
            repo=repo or None,
            force=force,
            timeout=timeout,
            keep=ops(c.config).backup_keep,
            progress=progress,
        )
        saved = f"; the database as it was is in {done.safety_dump.path}" if done.safety_dump else ""
        out.print(
            f"restored to {done.target} from repository {done.repo} in {done.seconds:.1f} s: "
            f"{done.tables} tables, the runtime grants applied, every service healthy{saved}"
        )
        return
    assert file is not None
    result = backups.restore(
        stack,
        Path(file),
        force=force,
        allow_foreign=allow_foreign,
        keep=ops(c.config).backup_keep,
        progress=progress,
    )
    saved = f"; the database as it was is in {result.safety_backup.path}" if result.safety_backup else ""
    out.print(f"restored {file}: {result.entries} entries, {result.tables} tables{saved}")


def _drill(
    stack: compose.Stack, target: Any, into: str, *, repo: int | None, keep: bool, json: bool, timeout: float
) -> None:
    result = drill.drill(stack, target, into, repo=repo, keep=keep, timeout=timeout, progress=progress)
    differing = [t for t, (source, copy) in result.counts.items() if source != copy]
    if json:
        print_json(
            {
                "project": result.project,
                "repo": result.repo,
                "target": str(result.target),
                "seconds": round(result.seconds, 1),
                "tables": {t: {"source": s, "copy": c} for t, (s, c) in result.counts.items()},
                "matches": result.matches,
                "kept": result.kept,
            }
        )
    else:
        table = Table(title=f"drill {result.project}: {result.target} from repository {result.repo}")
        for column in ("table", "source rows", "restored rows", ""):
            table.add_column(column)
        for name, (source, copy) in result.counts.items():
            mark = "" if source == copy else "DIFFERS"
            table.add_row(name, "-" if source is None else str(source), "-" if copy is None else str(copy), mark)
        out.print(table)
        where = f"kept as container {result.kept}" if result.kept else "removed"
        out.print(f"restored and promoted in {result.seconds:.1f} s (the RTO); the copy was {where}")
    if differing:
        raise CheckFailed(
            f"the drill's copy differs from the source in {', '.join(differing)} (rows written or removed since "
            f"{result.target}?)"
        )


ns = Collection("stack")
for _task in (up, down, ps, logs, restart, deploy, setup, backup, restore, releases, rollback):
    ns.add_task(_task, default=_task is up)
ns.add_task(backups_, name="backups")
# Old flat names (cli/legacy.py): the deploy and setup variants are options of one task each now.
LEGACY: dict[str, Legacy | Any] = {
    "up": Legacy("stack.up"),
    "down": Legacy("stack.down"),
    "ps": Legacy("stack.ps"),
    "service-status": Legacy("stack.ps"),
    "health-status": Legacy("stack.ps", {"check": True}),
    "logs": Legacy("stack.logs"),
    "service-logs": service_logs,
    "restart": Legacy("stack.restart"),
    "deploy-dev": Legacy("stack.deploy", {"env": "dev", "build": True}),
    "deploy-prod": Legacy("stack.deploy", {"env": "prod"}),
    "deploy-prod-secrets": Legacy("stack.deploy", {"env": "prod"}),
    "deploy-with-secrets": Legacy("stack.deploy", defaults={"env": "staging"}),
    "setup-dev": Legacy("stack.setup", {"env": "dev"}),
    "setup-dev-with-secrets": Legacy("stack.setup", {"env": "dev", "secrets": True}),
    "setup-prod": Legacy("stack.setup", {"env": "prod"}),
    "backup": Legacy("stack.backup"),
    "restore": Legacy("stack.restore"),
    "releases": Legacy("stack.releases"),
    "rollback": Legacy("stack.rollback"),
}
