"""Operations on a running stack's data: backups, restores, and the live steps of a
secret rotation (ALTER ROLE, Redis ACL) as `secrets.rotate` asks for them.

Every value that is secret travels on a process's stdin, never in its arguments."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import docker, secrets
from .compose import Stack, service_states, wait_healthy
from .errors import BadInput, OpsError
from .paths import REPO_ROOT

BACKUP_DIR = REPO_ROOT / "backups"
DB_USER = DB_NAME = "analyticbot"


def _container(stack: Stack, service: str) -> str:
    state = service_states(stack.project).get(service)
    if state is None or state.status != "running":
        raise OpsError(
            f"{service} of {stack.project} is not running; start the stack first (`invoke up --env {stack.env}`)"
        )
    return state.container


def _exec(container: str, command: Sequence[str], stdin: bytes | None = None, timeout: float = 600) -> bytes:
    result = subprocess.run(
        [docker.client().path, "exec", "-i", container, *command], input=stdin, capture_output=True, timeout=timeout
    )
    if result.returncode != 0:
        raise OpsError(
            f"{command[0]} in {container} failed: {docker.first_line(result.stderr.decode(errors='replace'))}"
        )
    return result.stdout


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    entries: int


def backup(stack: Stack, directory: Path = BACKUP_DIR, now: dt.datetime | None = None) -> Backup:
    """A timestamped pg_dump (custom format), verified by listing it with pg_restore."""
    container = _container(stack, "postgres")
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{stack.project}-{stamp}.dump"
    dump = _exec(container, ["pg_dump", "-U", DB_USER, "-d", DB_NAME, "--format=custom", "--no-owner"])
    listing = _exec(container, ["pg_restore", "--list"], stdin=dump).decode(errors="replace")
    entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
    if entries == 0:
        raise OpsError("the dump lists no entries; nothing was written")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(dump)
    return Backup(path, len(dump), entries)


def table_count(stack: Stack) -> int:
    sql = b"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public';"
    out = _exec(_container(stack, "postgres"), ["psql", "-U", DB_USER, "-d", DB_NAME, "-tA"], stdin=sql)
    return int(out.decode().strip() or 0)


def restore(stack: Stack, path: Path, force: bool = False) -> int:
    """Restore a dump; refuses a database that already has tables unless forced."""
    if not path.is_file():
        raise BadInput(f"no backup at {path}")
    data = path.read_bytes()
    container = _container(stack, "postgres")
    try:
        _exec(container, ["pg_restore", "--list"], stdin=data)
    except OpsError:
        raise BadInput(f"{path} is not a pg_dump custom-format archive") from None
    tables = table_count(stack)
    if tables and not force:
        raise BadInput(f"the {stack.project} database is not empty ({tables} tables); use --force to replace it")
    _exec(
        container,
        ["pg_restore", "-U", DB_USER, "-d", DB_NAME, "--clean", "--if-exists", "--no-owner", "--exit-on-error"],
        stdin=data,
    )
    return table_count(stack)


@dataclass
class LiveStack:
    """secrets.StackControl over a running Compose project."""

    stack: Stack
    progress: Callable[[str], None] = lambda _m: None
    # The password Redis holds right now: after a live change and before the
    # file swap (or during a rollback) the file no longer tells.
    _redis_live: str | None = None

    def exec_postgres_sql(self, sql: str) -> None:
        self.progress("  applying the change in PostgreSQL")
        _exec(
            _container(self.stack, "postgres"),
            ["psql", "-v", "ON_ERROR_STOP=1", "-U", DB_USER, "-d", DB_NAME, "-q"],
            sql.encode(),
        )

    def redis_acl_setpass(self, new_password: str) -> None:
        self.progress("  applying the change in Redis's live ACL")
        current = self._redis_live or secrets.read_secret("redis_password", Path(self.stack.settings["SECRETS_DIR"]))
        digest = hashlib.sha256(new_password.encode()).hexdigest()
        # AUTH and the new hash go in on stdin; redis-cli's arguments hold neither.
        script = f"AUTH analyticbot {current}\nACL SETUSER analyticbot resetpass #{digest}\n".encode()
        out = _exec(_container(self.stack, "redis"), ["redis-cli", "-h", "127.0.0.1"], stdin=script).decode()
        if out.split() != ["OK", "OK"]:
            raise OpsError("Redis refused the ACL change")
        self._redis_live = new_password

    def restart(self, services: list[str]) -> None:
        self.progress(f"  restarting {', '.join(services)}")
        self.stack.compose("restart", *services)

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        wait_healthy(self.stack, services, timeout, self.progress)
