"""Tasks that run the stack: up, down, ps, logs, restart, the deploy-* and setup-*
jobs, backup, restore and secrets-rotate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection, Exit
from rich.table import Table

from .. import (
    acme,
    backups,
    baseimages,
    build,
    compose,
    deploy,
    docker,
    guard,
    health,
    maintenance,
    rollout,
    secrets,
    tls,
)
from .. import releases as release_log
from ..config import ops
from ._task import ops_task, out, print_json, progress
from .health import print_sweep

ENV = "Environment: dev, staging or prod (picks the compose files, project name and .env file)."
TIMEOUT = "Seconds to wait for every service to be healthy."
DOWNTIME = "Accept recreating the proxy (a new image, ports or settings): refused connections for seconds."
SERVICE = "A service: postgres, redis, api, bot, mtproto or proxy (repeatable). Default: all."


def _stack(env: str) -> compose.Stack:
    # Pinned: what runs is this checkout's build, by immutable tags, whatever another checkout built.
    return compose.load_stack(env, pinned=True)


def _build_all(c: Any) -> None:
    cfg = ops(c.config)
    refs = baseimages.image_refs(baseimages.build_base_images(namespace=cfg["namespace"], progress=progress))
    build.build_services(build.SERVICES, base_images=refs, namespace=cfg["namespace"], progress=progress)


def _deploy(c: Any, env: str, timeout: float, *, sweep: bool = True, allow_downtime: bool = False) -> None:
    stack = _stack(env)
    progress(f"deploying {stack.project} ({env}) from {', '.join(f.name for f in stack.files)}")
    seconds = deploy.up(
        stack,
        timeout=timeout,
        progress=progress,
        allow_downtime=allow_downtime,
        release_keep=ops(c.config)["release_keep"],
    )
    out.print(f"{stack.project}: every service healthy after {seconds:.1f} s")
    if sweep:
        result = health.sweep(stack.project)
        print_sweep(result, verbose=False)
        if result.exit_code == health.EXIT_UNHEALTHY:
            raise Exit(f"error: {stack.project} is {result.verdict} after the deploy", code=2)
        if result.exit_code == health.EXIT_DEGRADED:
            out.print("degraded: optional dependencies are down or disabled (see the table); the stack serves.")


@ops_task(help={"env": ENV, "service": SERVICE, "timeout": TIMEOUT, "allow_downtime": DOWNTIME}, iterable=["service"])
def up(
    c: Any, env: str = "dev", service: list[str] | None = None, timeout: float = 180, allow_downtime: bool = False
) -> None:
    """Start the stack or roll out what changed (api and bot without a gap); wait until healthy."""
    stack = _stack(env)
    seconds = deploy.up(
        stack,
        services=compose.check_services(service or []),
        timeout=timeout,
        progress=progress,
        allow_downtime=allow_downtime,
        release_keep=ops(c.config)["release_keep"],
    )
    out.print(f"{stack.project}: healthy after {seconds:.1f} s")


@ops_task(help={"env": ENV, "json": "Print the releases as JSON."})
def releases(c: Any, env: str = "dev", json: bool = False) -> None:
    """List the releases recorded for an environment's stack, newest first, with their images."""
    stack = compose.load_stack(env)  # only its project name: no daemon needed to read the log
    past = list(reversed(release_log.history(stack.project)))
    if json:
        print_json([r.__dict__ for r in past])
        return
    if not past:
        out.print(f"{stack.project}: no release recorded yet (a whole-stack `invoke up` records one)")
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
    stack = _stack(env)
    release = release_log.choose(stack.project, to)
    missing = release_log.missing_images(release)
    if missing:
        raise Exit(f"error: release #{release.number} needs images no longer here: {', '.join(missing)}", code=2)
    target = compose.load_stack(env, project=stack.project, overrides={**stack.settings, **release.images})
    progress(f"rolling {stack.project} back to release #{release.number} ({release.revision})")
    seconds = deploy.up(
        target,
        timeout=timeout,
        progress=progress,
        allow_downtime=allow_downtime,
        release_keep=ops(c.config)["release_keep"],
    )
    out.print(f"{stack.project}: release #{release.number} ({release.revision}) serving, healthy after {seconds:.1f} s")


@ops_task(help={"env": ENV, "volumes": "Also delete the data volumes (PostgreSQL, Redis): destroys data."})
def down(c: Any, env: str = "dev", volumes: bool = False) -> None:
    """Stop and remove the stack's containers and networks (data volumes are kept)."""
    deploy.down(_stack(env), volumes=volumes)


@ops_task(help={"env": ENV, "json": "Print the states as JSON."})
def ps(c: Any, env: str = "dev", json: bool = False) -> None:
    """Show each service's container state, health and restart count."""
    states = compose.service_states(_stack(env).project)
    if json:
        print_json([s.__dict__ for s in states.values()])
        return
    table = Table("service", "container", "state", "health", "restarts", "started")
    for s in sorted(states.values(), key=lambda s: s.service):
        table.add_row(s.service, s.container, s.status, s.health, str(s.restarts), s.started_at[:19])
    out.print(table)


@ops_task(
    help={"env": ENV, "service": SERVICE, "follow": "Keep following new lines.", "tail": "Lines to show."},
    iterable=["service"],
)
def logs(c: Any, env: str = "dev", service: list[str] | None = None, follow: bool = False, tail: int = 100) -> None:
    """Show the logs of the stack's services."""
    docker.require_daemon()
    args = ["logs", "--tail", str(tail), *(["--follow"] if follow else []), *compose.check_services(service or [])]
    _stack(env).compose(*args, capture=False)


@ops_task(help={"env": ENV, "service": SERVICE, "timeout": TIMEOUT}, iterable=["service"])
def restart(c: Any, env: str = "dev", service: list[str] | None = None, timeout: float = 120) -> None:
    """Restart services: api and bot rolled without a gap, the proxy reloaded, the rest restarted."""
    stack = _stack(env)
    names = compose.check_services(service or []) or list(compose.ALL_SERVICES)
    if not timeout > 0:
        raise Exit(f"error: --timeout must be more than 0 seconds, got {timeout:g}", code=2)
    docker.require_daemon()
    rolled = [n for n in names if rollout.can_roll(stack, n)]
    reload_proxy = "proxy" in names and bool(rollout.containers(stack, "proxy"))
    singletons = [n for n in names if n not in rolled and not (n == "proxy" and reload_proxy)]
    if singletons:
        stack.compose("restart", *singletons)
        compose.wait_healthy(stack, singletons, timeout, progress)
    for name in rolled:
        outcome = rollout.roll(stack, name, timeout=timeout, progress=progress)
        out.print(f"{name}: rolled in {outcome.seconds:.1f} s ({outcome.detail})")
    if reload_proxy:
        # Reloaded, never restarted: nginx -t first, and the workers finish what they serve.
        acme.reload_proxy(stack)
        out.print("proxy: configuration tested and reloaded")


@ops_task(help={"timeout": TIMEOUT, "allow_downtime": DOWNTIME})
def deploy_dev(c: Any, timeout: float = 180, allow_downtime: bool = False) -> None:
    """Deploy the dev stack: build what changed, start, wait on health, sweep."""
    _build_all(c)
    _deploy(c, "dev", timeout, allow_downtime=allow_downtime)


@ops_task(help={"timeout": TIMEOUT, "allow_downtime": DOWNTIME})
def deploy_prod(c: Any, timeout: float = 180, allow_downtime: bool = False) -> None:
    """Deploy prod with its secrets and the TLS proxy; waits on health, then sweeps."""
    _deploy(c, "prod", timeout, allow_downtime=allow_downtime)


@ops_task(help={"timeout": TIMEOUT, "allow_downtime": DOWNTIME})
def deploy_prod_secrets(c: Any, timeout: float = 180, allow_downtime: bool = False) -> None:
    """Check prod's secrets and certificate first, then deploy prod (secrets and proxy overlays)."""
    stack = _stack("prod")
    rows = secrets.check("prod", Path(stack.settings["SECRETS_DIR"]))
    if secrets.check_failed(rows, "prod"):
        raise Exit("error: prod secrets are not ready; run `invoke secrets-check --env prod`", code=2)
    status = tls.certificate_status(Path(stack.settings["TLS_DIR"]))
    if not status.ok:
        raise Exit(f"error: prod certificate: {'; '.join(status.problems)}", code=2)
    _deploy(c, "prod", timeout, allow_downtime=allow_downtime)


@ops_task(help={"env": ENV, "timeout": TIMEOUT, "allow_downtime": DOWNTIME})
def deploy_with_secrets(c: Any, env: str = "staging", timeout: float = 180, allow_downtime: bool = False) -> None:
    """Deploy an environment after checking its secrets (the secrets overlay is always in)."""
    stack = _stack(env)
    if secrets.check_failed(secrets.check(env, Path(stack.settings["SECRETS_DIR"])), env):
        raise Exit(f"error: {env} secrets are not ready; run `invoke secrets-check --env {env}`", code=2)
    _deploy(c, env, timeout, allow_downtime=allow_downtime)


@ops_task(help={"timeout": TIMEOUT, "allow_downtime": DOWNTIME})
def setup_dev(c: Any, timeout: float = 180, allow_downtime: bool = False) -> None:
    """Dev certificates if missing, build, bring the dev stack up, wait, sweep (secrets must exist)."""
    # What runs is protected before anything is written or built: checkout, ports, subnets.
    guard.protect(_stack("dev"), progress=progress)
    result = tls.ensure_dev_certificates(Path(_stack("dev").settings["TLS_DIR"]))
    progress(f"dev certificate: {result.reason}")
    _build_all(c)
    _deploy(c, "dev", timeout, allow_downtime=allow_downtime)


@ops_task(help={"timeout": TIMEOUT, "allow_downtime": DOWNTIME})
def setup_dev_with_secrets(c: Any, timeout: float = 180, allow_downtime: bool = False) -> None:
    """The main job: dev secrets and certificates if missing, build, dev stack up, wait, sweep."""
    stack = _stack("dev")
    guard.protect(stack, generating=True, progress=progress)
    report = secrets.from_env("dev", Path(stack.settings["SECRETS_DIR"]), environ={})
    created = [o.name for o in report.outcomes if o.status == "created"]
    progress(f"dev secrets: {'created ' + ', '.join(created) if created else 'all present, kept'}")
    setup_dev.body(c, timeout=timeout, allow_downtime=allow_downtime)


@ops_task()
def setup_prod(c: Any) -> None:
    """Prepare prod: build images, then check its secrets and certificate (deploys nothing)."""
    _build_all(c)
    stack = _stack("prod")
    rows = secrets.check("prod", Path(stack.settings["SECRETS_DIR"]))
    problems = [f"secret {r.name}" for r in rows if (r.required and not r.present) or r.valid is False]
    if problems:
        raise Exit("error: prod is not ready: " + ", ".join(problems), code=1)
    if deploy.needs_bootstrap_certificate(stack):
        # ssl-prod needs the proxy running; deploy-prod starts it on a bootstrap certificate.
        out.print("prod is ready: run `invoke deploy-prod`, then `invoke ssl-prod --domain D`")
        return
    status = tls.certificate_status(Path(stack.settings["TLS_DIR"]))
    if not status.ok:
        raise Exit(f"error: prod certificate: {'; '.join(status.problems)}; run `invoke ssl-prod --domain D`", code=1)
    out.print("prod is ready: run `invoke deploy-prod-secrets`")


@ops_task(
    help={
        "env": ENV,
        "output": "Directory for the dump (default: backups/).",
        "verify": "Check this dump instead of writing one: checksum and every data block read back.",
        "keep": "How many backups of the project to keep (default: ops.backup_keep, 7).",
    }
)
def backup(c: Any, env: str = "dev", output: str | None = None, verify: str | None = None, keep: int = 0) -> None:
    """Write a timestamped pg_dump, verified in full, and prune the oldest; or --verify a dump."""
    stack = _stack(env)
    if verify:
        entries = backups.verify(stack, Path(verify))
        out.print(f"{verify}: whole, {entries} entries, every data block read back")
        return
    result = backups.backup(
        stack, Path(output) if output else backups.BACKUP_DIR, keep=keep or ops(c.config)["backup_keep"]
    )
    out.print(f"backup {result.path}: {result.size} bytes, {result.entries} entries, every data block read back")
    for path in result.pruned:
        progress(f"pruned {path.name} (keeping the newest {keep or ops(c.config)['backup_keep']})")


@ops_task(
    help={
        "file": "The dump to restore.",
        "env": ENV,
        "force": "Replace a database that already has tables (a safety backup is taken first).",
        "allow_foreign": "Restore a dump of another project or environment, or one without a backup record.",
    }
)
def restore(c: Any, file: str, env: str = "dev", force: bool = False, allow_foreign: bool = False) -> None:
    """Restore a pg_dump in one transaction, after checking all of it; refuses a non-empty database without --force."""
    result = backups.restore(
        _stack(env),
        Path(file),
        force=force,
        allow_foreign=allow_foreign,
        keep=ops(c.config)["backup_keep"],
        progress=progress,
    )
    saved = f"; the database as it was is in {result.safety_backup.path}" if result.safety_backup else ""
    out.print(f"restored {file}: {result.entries} entries, {result.tables} tables{saved}")


@ops_task(help={"name": "The secret to rotate (a generated one).", "env": ENV, "timeout": TIMEOUT})
def secrets_rotate(c: Any, name: str, env: str = "dev", timeout: float = 120) -> None:
    """Rotate a secret on the running stack, in order, rolling back on failure."""
    stack = _stack(env)
    secrets.get_spec(name)
    result = secrets.rotate(
        name, Path(stack.settings["SECRETS_DIR"]), maintenance.LiveStack(stack, progress), timeout=timeout
    )
    out.print(f"rotated {result.name}; restarted {', '.join(result.restarted) or 'nothing'}; backups kept")


ns = Collection(
    up,
    down,
    ps,
    logs,
    restart,
    deploy_dev,
    deploy_prod,
    deploy_prod_secrets,
    deploy_with_secrets,
    setup_dev,
    setup_dev_with_secrets,
    setup_prod,
    backup,
    restore,
    secrets_rotate,
    releases,
    rollback,
)
