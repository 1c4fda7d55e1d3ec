"""One preflight for every deploy: each check a deploy needs, in the order it needs them.

`rows()` runs them all and returns each as a row (what `invoke env.preflight` shows); `require()` stops
at the first that fails, with that check's own error and exit code (what `stack.up`, `stack.deploy`,
`rollback` and `setup` do before anything starts). Plan as data, then act: both read the same list."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import docker, guard, model, secrets, tls
from .compose import Stack, compose_command
from .errors import BadInput, OpsError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def daemon(stack: Stack) -> str:
    return f"engine {docker.require_daemon()}"


def compose_tool(stack: Stack) -> str:
    return " ".join(compose_command())


def missing_images(stack: Stack) -> list[str]:
    """The images the stack names that this daemon does not have (the api's once, though migrate runs it too)."""
    wanted = dict.fromkeys(stack.settings[s.image_variable] for s in stack.services)
    return [tag for tag in wanted if docker.inspect("image", tag) is None]


def images(stack: Stack) -> str:
    missing = missing_images(stack)
    if missing:
        raise OpsError(f"images missing: {', '.join(missing)}; run `invoke images.base images.build`")
    return "all present"


def secrets_ready(stack: Stack) -> str:
    rows = secrets.check(stack.env, Path(stack.settings["SECRETS_DIR"]))
    if secrets.check_failed(rows, stack.env):
        bad = [r.name for r in rows if (r.required and not r.present) or r.valid is False]
        raise BadInput(
            f"secrets not ready for {stack.env}: {', '.join(bad)}; run `invoke secrets.check --env {stack.env}`"
        )
    return f"{sum(r.present for r in rows)} present, the required ones valid"


def needs_bootstrap_certificate(stack: Stack) -> bool:
    """Staging and prod get their certificate from tls.prod, through the running proxy:
    before that exists, nginx starts on a short-lived self-signed one."""
    tls_dir = Path(stack.settings["TLS_DIR"])
    return stack.env != "dev" and not (tls_dir / tls.FULLCHAIN).exists() and not (tls_dir / tls.PRIVKEY).exists()


def certificate(stack: Stack) -> str:
    if needs_bootstrap_certificate(stack):
        return "none yet (a bootstrap certificate will let nginx start)"
    status = tls.certificate_status(Path(stack.settings["TLS_DIR"]), warn_days=0)
    if not status.ok:  # a key that does not match, a broken chain, or expired
        raise BadInput(f"the proxy's certificate is unusable: {'; '.join(status.problems)}")
    return f"{status.subject}, {status.days_left} days left"


def ownership(stack: Stack) -> str:
    """Compose bind-mounts secrets and keys with their host owner: the containers (uid 10001) can read only
    files owned by 10001. Run as root, the toolkit chowns them; as another user it cannot, so say how,
    before a container fails on them."""
    if os.geteuid() == 0:
        return "run as root: owners are fixed where needed"
    uid = model.APP_UID
    candidates = [p for p in Path(stack.settings["SECRETS_DIR"]).glob("*") if p.is_file()]
    candidates += [Path(stack.settings["TLS_DIR"]) / name for name in (tls.FULLCHAIN, tls.PRIVKEY)]
    foreign = [p for p in candidates if p.exists() and p.stat().st_uid != uid]
    if foreign:
        raise BadInput(
            f"{foreign[0]} is owned by uid {foreign[0].stat().st_uid}, but the containers run as uid {uid}: "
            f"run the tasks as root (sudo), or `sudo chown {uid}:{uid}` the files in {foreign[0].parent}"
        )
    return f"every file owned by uid {uid}"


# In order: a check further down may rely on one above (images need a daemon).
CHECKS: tuple[tuple[str, Callable[[Stack], str]], ...] = (
    ("docker daemon", daemon),
    ("compose", compose_tool),
    ("images", images),
    ("secrets", secrets_ready),
    ("certificate", certificate),
    ("file owners", ownership),
)


def run_checks(stack: Stack, checks: Sequence[tuple[str, Callable[[Stack], str]]]) -> list[Check]:
    """Each check on its own, none raising: a failed one is its error's first line."""
    found = []
    for name, check in checks:
        try:
            found.append(Check(name, True, check(stack)))
        except OpsError as exc:
            found.append(Check(name, False, str(exc).splitlines()[0]))
    return found


def rows(stack: Stack) -> list[Check]:
    """Every check on its own, none raising: the whole picture, nothing changed."""
    found = run_checks(stack, CHECKS)
    if not found[0].ok:  # the running stack's checks ask the daemon
        return [*found, Check("running stack", False, "not checked: no Docker daemon")]
    try:
        return found + [Check(row.name, row.ok, row.detail) for row in guard.rows(stack, fix=False)]
    except OpsError as exc:  # the daemon went away between the checks
        return [*found, Check("running stack", False, str(exc).splitlines()[0])]


def require(stack: Stack, progress: Progress = lambda _m: None) -> None:
    """Stop at the first check that fails, with its own error (one line, its exit code)."""
    said = {name: check(stack) for name, check in CHECKS}
    guard.protect(stack, progress=progress)
    progress(
        f"preflight ok: images, secrets ({stack.env}), certificate ({said['certificate']}), checkout, ports, subnets"
    )
