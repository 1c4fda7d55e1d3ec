"""Deploys: preflight checks that change nothing, then `up` and a wait on health.

Every deploy checks first (daemon, images, secrets, certificate, ports) and only
then starts anything, so bad input leaves the machine as it was."""

from __future__ import annotations

import ipaddress
import random
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from . import build, docker, model, preflight, releases, rollout, runner, secrets, tls
from .compose import (
    Stack,
    config_hashes,
    running_containers,
    wait_healthy,
)
from .errors import BadInput, OpsError
from .model import Labels
from .paths import REPO_ROOT
from .timings import phase
from .tls import backup

Progress = Callable[[str], None]


def plan(stack: Stack) -> dict[str, str]:
    """What `up` would do to each service now: start (none runs), unchanged, or change (Compose's config
    hash, image ID included, differs from the running container's)."""
    hashes = config_hashes(stack)
    running: dict[str, str] = {}
    for info in running_containers(stack.project):
        labels = info["Config"]["Labels"]
        running[labels.get(Labels.SERVICE, "")] = labels.get(Labels.CONFIG_HASH, "")
    return {
        service: "start" if service not in running else "unchanged" if running[service] == wanted else "change"
        for service, wanted in hashes.items()
    }


def orphans(stack: Stack, changes: dict[str, str]) -> list[str]:
    """Services that run in the project but in none of its compose files now (`plan`'s keys): what
    `up --remove-orphans` would remove."""
    found = {info["Config"]["Labels"].get(Labels.SERVICE, "") for info in running_containers(stack.project)}
    return sorted(found - set(changes))


def check_downtime(changes: dict[str, str], allow_downtime: bool) -> None:
    """The proxy is the one door: recreating it (a new image, new ports or settings) refuses every
    connection for seconds, so it happens only when asked for."""
    if changes.get("proxy") == "change" and not allow_downtime:
        raise BadInput(
            "the proxy would be recreated (its image, published ports or settings changed): every connection "
            "is refused for a few seconds; rerun with --allow-downtime to accept that outage"
        )


def run_migrate(stack: Stack) -> None:
    """The migrate job, before new code serves: its failure stops the deploy with the job's own words."""
    result = stack.compose("run", "--rm", "--no-deps", "-T", "migrate", check=False)
    if result.returncode != 0:
        said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()][-12:]
        hint = ""
        if any("password authentication failed" in line for line in said):
            hint = (
                " The database volume was initialised with another postgres_password: restore the secrets folder it "
                f"was made with, or `invoke stack.down --env {stack.env} --volumes` to start over (deletes the data)."
            )
        raise OpsError(
            f"the migrate job failed (exit code {result.returncode}), so nothing that needs it was started.{hint} "
            "Its last log lines:\n" + "\n".join(said)
        )


def up(
    stack: Stack,
    *,
    services: Sequence[str] = (),
    timeout: float = 180.0,
    progress: Progress = lambda _m: None,
    allow_downtime: bool = False,
    release_keep: int = releases.DEFAULT_KEEP,
) -> float:
    """Start the stack (or some services) and wait until each is healthy; return the seconds waited.

    On a running stack, a new release of an HTTP service is rolled (the new container beside the old one,
    the proxy switched once it is ready, the old one drained), never recreated; services whose
    configuration did not change are left alone and said so."""
    if not timeout > 0:
        raise BadInput(f"--timeout must be more than 0 seconds, got {timeout:g}")
    with phase("preflight"):
        preflight.require(stack, progress)
    with phase("plan (config hashes against what runs)"):
        changes = plan(stack)
    check_downtime(changes, allow_downtime)
    # Changes only after every check passed.
    if preflight.needs_bootstrap_certificate(stack):
        tls.write_bootstrap_certificate(Path(stack.settings["TLS_DIR"]), stack.settings.get("DOMAIN", "localhost"))
        progress("wrote a 1-day bootstrap certificate; run `invoke tls.prod --domain D` once the stack is up")
    secrets.ensure_optional_placeholders(Path(stack.settings["SECRETS_DIR"]))
    if stack.backup:
        issued = backup.ensure_backup_certificates(Path(stack.settings["SECRETS_DIR"]) / backup.FOLDER).issued
        if issued:
            progress(f"backup path: issued the TLS certificates of {', '.join(issued)}")
    wanted = list(services) or list(stack.running)
    running = any(change != "start" for change in changes.values())
    rolling = [s for s in model.ROLLING if s in wanted and changes.get(s) == "change" and rollout.can_roll(stack, s)]
    if running and any(changes.get(s) != "unchanged" for s in _NEEDS_SCHEMA if s in wanted):
        # The schema first: new code may need it, and the old code keeps working on it (expand, then contract).
        with phase("migrate job"):
            run_migrate(stack)
    for service in rolling:
        with phase(f"roll {service}"):
            outcome = rollout.roll(stack, service, timeout=timeout, progress=progress)
        changes[service] = "rolled"
        progress(f"{service}: rolled in {outcome.seconds:.1f} s ({outcome.detail})")
    for service in wanted:
        progress(f"{service}: {_SAID[changes.get(service, 'start')]}")
    # On a running stack, each service is judged on its own (--no-deps): Compose v1 otherwise recreates
    # every dependent of a recreated dependency (a new migrate job would recreate the api just rolled).
    # The job already ran above when anything rolled; a fresh stack starts in dependency order.
    scope = ["--no-deps", *wanted] if running else list(services)
    # --no-build: images come from `invoke images.build`; Compose v1 would use the
    # classic builder. Started in the background so progress shows meanwhile.
    # Not at all when it would do nothing: every service runs its wanted configuration and nothing is left over
    # for --remove-orphans (a second of Compose v1's start-up, a third of a no-change rerun).
    nothing_to_do = all(changes.get(s) in ("unchanged", "rolled") for s in wanted) and (
        bool(services) or not orphans(stack, changes)  # orphans matter to a whole-stack up only
    )
    process = (
        None
        if nothing_to_do
        else runner.start(
            stack.command("up", "-d", "--no-build", "--remove-orphans", *scope),
            env=stack.settings,
            stdout=subprocess.DEVNULL,
            cwd=REPO_ROOT,
        )
    )
    try:
        with phase("compose up, and the wait until every service is ready"):
            seconds = wait_healthy(stack, wanted, timeout, progress, compose_process=process)
    finally:
        if process is not None and process.poll() is None:
            # Compose still working after our wait ended: give it a minute, then stop it, never letting
            # its timeout hide why the wait ended.
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    with phase("the proxy's upstream groups (kept-alive connections)"):
        # After Compose: a container it started or recreated has a new address, which the proxy's upstream group
        # must name (one reload, and only when an address changed; the by-name relay bridges until then).
        rollout.keep_alive(stack, progress)
    if not services:  # the whole stack runs this release now: remember it, forget what no release needs
        with phase("release record and image prune"):
            release = releases.record_release(stack, build.source_revision(["."]).revision, keep=release_keep)
            pruned = releases.prune(keep=release_keep)
        progress(f"release #{release.number} ({release.revision}) recorded for {stack.project}")
        if pruned:
            progress(f"pruned image tags no kept release uses: {', '.join(pruned)}")
    return seconds


# The services that start only once the migrate job has applied the schema.
_NEEDS_SCHEMA = model.DATABASE_CLIENTS
_SAID = {
    "start": "starting",
    "unchanged": "unchanged, left running",
    "change": "changed: recreated (a singleton)",
    "rolled": "rolled without a gap",
}


def down(stack: Stack, *, volumes: bool = False) -> None:
    """Stop and remove the stack's containers and networks; volumes only when asked."""
    args = ["down", "--remove-orphans", "--timeout", "20"]
    if volumes:
        args.append("--volumes")
    stack.compose(*args)


# Where a second stack beside a running one (tests, previews, a lab) takes its /24s: clear of the dev and
# prod subnets (172.20-172.27). Docker's default pools (172.17-172.31 by /16) overlap it: free_subnets
# therefore checks every existing network, and Docker skips a /16 that one of these /24s overlaps.
SUBNET_POOL = "172.28.0.0/14"


def used_subnets() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = docker.networks()
    found = []
    for net in nets:
        for config in (net.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet"):
                found.append(ipaddress.ip_network(config["Subnet"]))
    return found


def free_subnets(count: int, pool: str = SUBNET_POOL, seed: int | None = None) -> list[str]:
    """`count` /24 subnets from `pool` that overlap no existing Docker network, for
    a second stack (tests, previews) beside a running one."""
    taken = used_subnets()
    candidates: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(
        ipaddress.ip_network(pool).subnets(new_prefix=24)
    )
    random.Random(seed).shuffle(candidates)
    chosen: list[str] = []
    for candidate in candidates:
        if not any(candidate.overlaps(t) for t in taken):
            chosen.append(str(candidate))
            taken.append(candidate)
            if len(chosen) == count:
                return chosen
    raise OpsError(f"no {count} free /24 subnets left in {pool}")


def restart(stack: Stack, names: list[str], timeout: float, progress: Progress) -> list[str]:
    """Restart services the way each allows: the rolling ones (api, bot) replaced without a gap, the proxy
    reloaded (never restarted: nginx -t first, and its workers finish what they serve), the rest restarted and
    waited for. Returns what was done, a line each."""
    rolled = [n for n in names if rollout.can_roll(stack, n)]
    reload_proxy = "proxy" in names and bool(rollout.containers(stack, "proxy"))
    singletons = [n for n in names if n not in rolled and not (n == "proxy" and reload_proxy)]
    done = []
    if singletons:
        stack.compose("restart", *singletons)
        wait_healthy(stack, singletons, timeout, progress)
        done.append(f"{', '.join(singletons)}: restarted and healthy")
    for name in rolled:
        outcome = rollout.roll(stack, name, timeout=timeout, progress=progress)
        done.append(f"{name}: rolled in {outcome.seconds:.1f} s ({outcome.detail})")
    if reload_proxy:
        rollout.reload_proxy(stack)
        done.append("proxy: configuration tested and reloaded")
    return done
