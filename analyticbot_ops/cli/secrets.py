"""The `secrets` namespace: check, init, from-env, list, rotate (on the running stack), and token, which
mints an API bearer token with the stack's jwt_secret_key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection
from rich.table import Table

from .. import compose, docker, guard, maintenance, secrets, stack_settings, tokens
from ..errors import BadInput, CheckFailed, DockerUnavailable
from ._task import ops_task, out, print_json, progress, stack_of
from .legacy import Legacy

ENV_HELP = "Environment: dev, staging or prod (decides which secrets are required)."


def _print_report(report: secrets.ApplyReport) -> None:
    table = Table("secret", "status", "detail")
    for outcome in report.outcomes:
        table.add_row(outcome.name, outcome.status, outcome.detail)
    out.print(table)


def _refuse_a_new_database_password(env: str) -> None:
    """A new postgres_password would not open the project's existing database volume: refuse to make one.
    Without a daemon there is no volume to ask about, and the secrets are made as usual."""
    try:
        row = guard.secrets_match_database(compose.load_stack(env))
    except DockerUnavailable:
        return
    if not row.ok:
        raise BadInput(row.detail)


@ops_task(help={"env": ENV_HELP, "force": "Replace existing values (each old one is backed up first)."})
def init(c: Any, env: str = "dev", force: bool = False) -> None:
    """Ask for missing user secrets (no echo) and generate the rest; needs a terminal."""
    _refuse_a_new_database_password(env)
    _print_report(secrets.init_interactive(env, stack_settings.secrets_dir(env), force=force))


@ops_task(
    help={
        "env_file": "A .env file to read values from (the process environment wins over it).",
        "env": ENV_HELP,
        "force": "Replace existing values (each old one is backed up first).",
    }
)
def from_env(c: Any, env_file: str | None = None, env: str = "dev", force: bool = False) -> None:
    """Create secrets from environment variables and/or a .env file; generate the rest."""
    _refuse_a_new_database_password(env)
    try:
        directory = stack_settings.secrets_dir(env)
        report = secrets.from_env(env, directory, env_file=Path(env_file) if env_file else None, force=force)
    except secrets.SecretsRejected as exc:
        _print_report(secrets.ApplyReport(env, stack_settings.secrets_dir(env), exc.outcomes))
        raise
    _print_report(report)


@ops_task(help={"env": ENV_HELP, "json": "Print the rows as JSON."})
def check(c: Any, env: str = "dev", json: bool = False) -> None:
    """Check every secret: present, modes, owner, format, strength, placeholder, age."""
    rows = secrets.check(env, stack_settings.secrets_dir(env))
    if json:
        print_json([row.__dict__ for row in rows])
    else:
        table = Table(
            "secret", "kind", "required", "present", "mode", "consumer can read", "valid", "strength", "age d"
        )
        for r in rows:
            table.add_row(
                r.name,
                r.kind,
                "yes" if r.required else "no",
                "yes" if r.present else "NO",
                "-" if not r.present else ("ok" if r.mode_ok else "BAD"),
                r.readable_by_consumer,
                "-" if not r.present else ("ok" if r.valid else "INVALID"),
                r.strength,
                "-" if r.age_days is None else str(r.age_days),
            )
        out.print(table)
        for r in rows:
            for problem in r.problems:
                out.print(f"  {r.name}: {problem}", markup=False)
    if secrets.check_failed(rows, env):
        raise CheckFailed("a required secret is missing or a secret is invalid (see above)")


@ops_task(help={"json": "Print the list as JSON.", "env": ENV_HELP})
def list_(c: Any, json: bool = False, env: str = "dev") -> None:
    """List secrets by name, size, age and consumers; never their values."""
    rows = secrets.list_secrets(stack_settings.secrets_dir(env))
    if json:
        print_json([row.__dict__ for row in rows])
        return
    table = Table("secret", "size", "age d", "consumers")
    for r in rows:
        table.add_row(r.name, str(r.size), str(r.age_days), ", ".join(r.consumers) or "(unknown file)")
    out.print(table)


@ops_task(
    help={
        "scope": "read, or write (which includes read).",
        "ttl": "How long the token is valid: 90s, 15m, 1h, 7d (at most 366d).",
        "subject": "Who the token is for, recorded in it (default: operator).",
        "env": "Environment whose jwt_secret_key signs it: dev, staging or prod.",
        "json": "Print the token, its scopes and expiry as JSON.",
    }
)
def token(
    c: Any, scope: str = "read", ttl: str = "1h", subject: str = "operator", env: str = "dev", json: bool = False
) -> None:
    """Mint a bearer token for the API (Authorization: Bearer ...), signed with the stack's jwt_secret_key."""
    scopes, lifetime = tokens.parse_scopes(scope), tokens.parse_ttl(ttl)
    key = secrets.read_secret("jwt_secret_key", stack_settings.secrets_dir(env))
    token = tokens.mint(key, scopes, lifetime, subject=subject)
    if json:
        print_json({"token": token.value, "subject": subject, "scopes": list(scopes), "expires": token.expires})
        return
    progress(f"token for {subject}: scopes {' '.join(scopes)}, expires {token.expires:%Y-%m-%d %H:%M:%S} UTC")
    # The token alone on stdout, so that TOKEN=$(invoke secrets.token ...) works.
    print(token.value)


@ops_task(
    help={"name": "The secret to rotate (a generated one).", "env": ENV_HELP, "timeout": "Seconds to wait for health."}
)
def rotate(c: Any, name: str, env: str = "dev", timeout: float = 120) -> None:
    """Rotate a secret on the running stack, in order, rolling back on failure."""
    docker.require_daemon()  # before any file is touched: a rotation needs the running services
    stack = stack_of(c, env, pinned=True)
    secrets.get_spec(name)
    result = secrets.rotate(
        name, Path(stack.settings["SECRETS_DIR"]), maintenance.LiveStack(stack, progress), timeout=timeout
    )
    out.print(f"rotated {result.name}; restarted {', '.join(result.restarted) or 'nothing'}; backups kept")


ns = Collection("secrets")
ns.add_task(check, default=True)
ns.add_task(init)
ns.add_task(from_env)
ns.add_task(list_, name="list")  # `list_`: a task named list would hide the builtin here
ns.add_task(rotate)
ns.add_task(token)
LEGACY = {
    "secrets-check": Legacy("secrets.check"),
    "secrets-init": Legacy("secrets.init"),
    "secrets-from-env": Legacy("secrets.from-env"),
    "secrets-list": Legacy("secrets.list"),
    "secrets-rotate": Legacy("secrets.rotate"),
    "api-token": Legacy("secrets.token"),
}
