"""Rotation of a generated secret on a live stack, and the PostgreSQL statements it needs.

The order of steps: set the new value in the running service (ALTER ROLE with a SCRAM verifier, or the Redis
ACL), back up and swap the file and every file derived from it, restart the services that read it, wait until
they are healthy. Any failure, Ctrl-C included, rolls back what was done; an error message never holds a value.
`StackControl` is what rotation needs of the running stack, so unit tests fake it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from secrets import token_bytes
from typing import Protocol

from .. import files
from ..errors import BadInput, OpsError
from . import folder
from .registry import DEFAULT_DB_ROLE, POSTGRES_ROLES, REDIS_USERS, SECRETS, SecretSpec, get_spec
from .status import read_secret
from .values import DERIVATIONS, generate_value

DEFAULT_HEALTH_TIMEOUT = 120.0
# PostgreSQL's own defaults for the SCRAM verifiers it makes itself.
_SCRAM_ITERATIONS = 4096
_SCRAM_SALT_BYTES = 16


class StackControl(Protocol):
    """What rotation needs from the running stack; the Docker-backed implementation lives with the stack tasks."""

    def exec_postgres_sql(self, sql: str) -> None:
        """Run SQL as the database superuser in the postgres container, fed on stdin (secrets never go in argv)."""

    def redis_acl_setpass(self, user: str, new_password: str) -> None:
        """Set an ACL user's password in the live Redis, without a restart."""

    def restart(self, services: list[str]) -> None:
        """Restart the services, so they mount the secret files again."""

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        """Wait until the services report healthy; raise OpsError on timeout."""


@dataclass(frozen=True)
class RotationResult:
    """A completed rotation: the files swapped, where the old values went, and the services restarted."""

    name: str
    files: tuple[str, ...]
    backups: tuple[Path, ...]
    restarted: tuple[str, ...]


_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", re.ASCII)


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """Return PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5803 form), as `\\password` in psql makes it.

    Sending the verifier rather than the password keeps the clear text out of the server's statement logs and
    pg_stat_activity; PostgreSQL stores a pre-hashed password as given.
    """
    salt = token_bytes(_SCRAM_SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def alter_role_sql(role: str, password: str) -> str:
    """Return the ALTER ROLE statement that sets `role`'s password, with identifier and literal safely quoted."""
    if not _ROLE_NAME.fullmatch(role):
        raise BadInput(f"invalid database role name {role!r}")
    quoted_role = '"' + role.replace('"', '""') + '"'
    return f"ALTER ROLE {quoted_role} WITH PASSWORD {_quote_literal(scram_verifier(password))};"


def rotate(
    name: str,
    secrets_dir: Path,
    stack: StackControl,
    *,
    role: str | None = None,
    timeout: float = DEFAULT_HEALTH_TIMEOUT,
) -> RotationResult:
    """Replace a generated secret on the live stack, rolling every step back if any step fails.

    postgres_password, postgres_api_password, postgres_collector_password: ALTER ROLE of its role
    (POSTGRES_ROLES, or `role`), back up and swap the file, restart the role's service, wait healthy.
    redis_password: set it in the live ACL, swap redis_password and redis_acl, restart api and bot, wait healthy.
    jwt_secret_key, telegram_webhook_secret: back up and swap the file, restart the consumers, wait healthy.
    """
    spec = get_spec(name)
    if spec.kind == "user":
        raise BadInput(
            f"{name} is supplied by you, not generated: put the new value in the env file and run "
            "`invoke secrets.from-env --force`"
        )
    if spec.kind == "derived":
        # Only the sources that can be rotated are named: the others' rotation would be refused too.
        sources = [source for source in spec.derived_from if get_spec(source).rotatable]
        if not sources:
            reason = get_spec(spec.derived_from[0]).rotation
            named = " and ".join(spec.derived_from)
            raise BadInput(f"{name} is derived from {named}, which cannot be rotated: {reason}")
        raise BadInput(
            f"{name} is derived from {' and '.join(spec.derived_from)}; rotate that: "
            + " or ".join(f"`invoke secrets.rotate {source}`" for source in sources)
        )
    if not spec.rotatable:
        raise BadInput(f"{name} cannot be rotated: {spec.rotation}")
    role = role or POSTGRES_ROLES.get(name, DEFAULT_DB_ROLE)
    if name in POSTGRES_ROLES:
        alter_role_sql(role, "")  # refuse a bad role name before anything changes
    folder.check_writable(secrets_dir)
    old = read_secret(name, secrets_dir)
    new = generate_value(name)
    swaps = [(spec, files.read_bytes(secrets_dir / name), new.encode())]
    set_live: Callable[[str], None] | None = None
    if name in POSTGRES_ROLES:
        set_live = _postgres_setter(stack, role)
    elif name in REDIS_USERS:
        set_live = functools.partial(stack.redis_acl_setpass, REDIS_USERS[name])
    # Every secret derived from this one is swapped with it (redis_acl, api_read_token).
    for derived in (s for s in SECRETS if name in s.derived_from):
        derive = DERIVATIONS[derived.name].derive
        others = {source: read_secret(source, secrets_dir) for source in derived.derived_from if source != name}
        derived_path = folder.secret_path(secrets_dir, derived.name)
        old_content = files.read_bytes(derived_path) if derived_path else derive({**others, name: old}).encode()
        swaps.append((derived, old_content, derive({**others, name: new}).encode()))
    return _rotate(spec, secrets_dir, stack, timeout, swaps, set_live, old, new)


def _postgres_setter(stack: StackControl, role: str) -> Callable[[str], None]:
    def set_password(password: str) -> None:
        stack.exec_postgres_sql(alter_role_sql(role, password))

    return set_password


def _rotate(
    spec: SecretSpec,
    secrets_dir: Path,
    stack: StackControl,
    timeout: float,
    swaps: list[tuple[SecretSpec, bytes, bytes]],
    set_live: Callable[[str], None] | None,
    old: str,
    new: str,
) -> RotationResult:
    """Run the rotation steps in order, and on any failure (Ctrl-C included) roll back what was done."""
    services = list(spec.restart_on_rotate)
    backups: list[Path] = []
    swapped: list[tuple[SecretSpec, bytes]] = []
    live_set = restarted = False
    try:
        if set_live is not None:
            try:
                set_live(new)
            except BaseException:
                _best_effort(set_live, old)  # the change may have landed before the error; undo it quietly
                raise
            live_set = True
        for swap_spec, old_content, new_content in swaps:
            backups.append(folder.backup(secrets_dir, swap_spec.name, old_content))
            folder.replace(secrets_dir, swap_spec, new_content)
            swapped.append((swap_spec, old_content))
        restarted = True
        if services:  # a secret no container reads (redis_admin_password) restarts nothing
            stack.restart(services)
            stack.wait_healthy(services, timeout)
    except BaseException as exc:  # Ctrl-C too: a half-rotated stack is worse than the interruption
        cause = _describe(exc)
        if not live_set and not swapped:
            raise OpsError(
                _scrub(f"rotation of {spec.name} failed before anything changed: {cause}", old, new)
            ) from None
        live = set_live if live_set else None
        failures = _roll_back(secrets_dir, stack, timeout, services if restarted else [], swapped, live, old)
        if failures:
            where = ", ".join(str(b) for b in backups) or "nowhere (no file was swapped)"
            message = (
                f"rotation of {spec.name} failed: {cause}; rollback incomplete: {'; '.join(failures)}; "
                f"old values are backed up in {where}"
            )
            raise OpsError(_scrub(message, old, new)) from None
        raise OpsError(_scrub(f"rotation of {spec.name} failed and was rolled back: {cause}", old, new)) from None
    return RotationResult(spec.name, tuple(s.name for s, _, _ in swaps), tuple(backups), tuple(services))


def _scrub(message: str, *values: str) -> str:
    """Mask secret values in a message built from other code's errors, which may quote what they were given."""
    for value in values:
        if value:
            message = message.replace(value, "***")
    return message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return str(exc) or type(exc).__name__


def _best_effort(step: Callable[[str], None], value: str) -> None:
    with contextlib.suppress(Exception):  # the original error is the one worth reporting
        step(value)


def _roll_back(
    secrets_dir: Path,
    stack: StackControl,
    timeout: float,
    services: list[str],
    swapped: list[tuple[SecretSpec, bytes]],
    set_live: Callable[[str], None] | None,
    old: str,
) -> list[str]:
    """Undo a rotation and return the steps that could not be undone.

    The live service gets its old value back first, so that restarted consumers find it; then the files; then the
    consumers restart, but only if the forward path had restarted them.
    """
    failures: list[str] = []
    if set_live is not None:
        try:
            set_live(old)
        except Exception as exc:
            failures.append(f"could not restore the old value in the service ({_describe(exc)})")
    for swap_spec, old_content in reversed(swapped):
        try:
            folder.replace(secrets_dir, swap_spec, old_content)
        except OSError as exc:
            failures.append(f"could not restore {swap_spec.name} ({exc.strerror or exc})")
    if services:
        try:
            stack.restart(services)
            stack.wait_healthy(services, timeout)
        except Exception as exc:
            failures.append(f"services not healthy after restoring ({_describe(exc)})")
    return failures
