"""Backups and restores of a stack's PostgreSQL database, built so that no step can lose data.

- A backup checks that its folder is writable before it dumps, verifies the whole archive (every data
  block decompressed by a full `pg_restore` to /dev/null, not just its table of contents), writes it
  atomically with fsync, records its origin and checksum beside it, and keeps the newest N.
- A restore checks the archive the same way and its origin (this project and environment) before it
  touches the database, takes a safety backup before it replaces anything, and runs in one transaction:
  a failure rolls back to the database as it was.

Every command runs inside the stack's postgres container, as the bootstrap superuser over the local socket.
`Database` is what the logic needs of that container (compose.InContainer runs it), so unit tests fake it."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from . import deploy, files, model
from .compose import Stack, in_service
from .errors import BadInput, Interrupted, OpsError
from .paths import REPO_ROOT

BACKUP_DIR = REPO_ROOT / "backups"
DEFAULT_KEEP = 7
DB_USER, DB_NAME = model.DATABASE_OWNER, model.DATABASE
DUMP_SUFFIX = ".dump"
ORIGIN_SUFFIX = ".json"  # beside NAME.dump: NAME.dump.json
FORMAT = "analyticbot-backup/1"

Progress = Callable[[str], None]


class Database(Protocol):
    """Runs a command in the stack's postgres container; OpsError when it exits non-zero."""

    def run(self, command: Sequence[str], stdin: bytes | None = None) -> bytes: ...


def database_of(stack: Stack) -> Database:
    return in_service(stack, "postgres")


@dataclass(frozen=True)
class Origin:
    """What `backup` records beside each archive: whose database it is, and its checksum."""

    format: str
    project: str
    env: str
    created: str
    sha256: str
    size: int
    entries: int

    @classmethod
    def read(cls, path: Path) -> Origin | None:
        """The origin beside an archive; None when there is none, BadInput when it is unreadable."""
        meta = origin_path(path)
        if not meta.exists():
            return None
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{meta} is not a readable backup record ({type(exc).__name__})") from None


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    entries: int
    pruned: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Restored:
    tables: int
    entries: int
    safety_backup: Backup | None


def origin_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ORIGIN_SUFFIX)


def verify_archive(database: Database, data: bytes) -> int:
    """Read the whole archive as pg_restore would restore it; return its entry count.

    `--list` reads only the table of contents; the second pass decompresses every data block, which is
    where a truncated or overwritten file fails."""
    if not data:
        raise OpsError("the file is empty")
    listing = database.run(["pg_restore", "--list"], stdin=data).decode(errors="replace")
    entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
    if entries == 0:
        raise OpsError("the archive lists no entries")
    database.run(["pg_restore", "--file=/dev/null", "--exit-on-error"], stdin=data)
    return entries


def check_writable(directory: Path) -> None:
    """Refuse a folder we cannot write in, before any work is done (a probe file, not os.access:
    a read-only mount says yes to root's access())."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise BadInput(f"cannot write backups to {directory}: {exc.strerror or exc}; nothing was dumped") from None


# Room left beside a dump: its record, and the filesystem's own blocks.
SPACE_MARGIN = 1 << 20


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def check_space(directory: Path, needed: int) -> None:
    """Refuse, before anything is written, a dump that the folder's filesystem has no room for."""
    free = shutil.disk_usage(directory).free
    if free < needed + SPACE_MARGIN:
        raise OpsError(_no_space(directory, needed, free))


def _no_space(directory: Path, needed: int, free: int | None = None) -> str:
    if free is None:
        free = shutil.disk_usage(directory).free
    return (
        f"no space for the dump in {directory}: it needs {_megabytes(needed + SPACE_MARGIN)}, "
        f"{_megabytes(free)} is free; nothing was written"
    )


def _archive_path(directory: Path, project: str, stamp: str, label: str) -> Path:
    suffix = f"-{label}" if label else ""
    path = directory / f"{project}-{stamp}{suffix}{DUMP_SUFFIX}"
    counter = 1
    while path.exists() or origin_path(path).exists():
        path = directory / f"{project}-{stamp}{suffix}-{counter}{DUMP_SUFFIX}"
        counter += 1
    return path


def backups_of(directory: Path, project: str) -> list[Path]:
    """This project's archives in `directory`, oldest first (the names sort by their UTC timestamp)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{project}-*{DUMP_SUFFIX}") if p.name[len(project) + 1 :][:1].isdigit())


def prune(directory: Path, project: str, keep: int, protect: Sequence[Path] = ()) -> tuple[Path, ...]:
    """Remove all but the newest `keep` archives of the project (and their records), never one in `protect`."""
    if keep < 1:
        raise BadInput(f"backup retention must keep at least 1 backup, got {keep}")
    kept = {p.resolve() for p in protect}
    old = [p for p in backups_of(directory, project)[:-keep] if p.resolve() not in kept]
    for path in old:
        path.unlink(missing_ok=True)
        origin_path(path).unlink(missing_ok=True)
    return tuple(old)


def backup(
    stack: Stack,
    directory: Path = BACKUP_DIR,
    *,
    keep: int = DEFAULT_KEEP,
    label: str = "",
    protect: Sequence[Path] = (),
    now: dt.datetime | None = None,
    database: Database | None = None,
) -> Backup:
    """Dump the database (custom format), verify all of it, write it with its origin, keep the newest N."""
    if keep < 1:
        raise BadInput(f"backup retention must keep at least 1 backup, got {keep}")
    database = database or database_of(stack)
    check_writable(directory)
    try:
        data = database.run(["pg_dump", "-U", DB_USER, "-d", DB_NAME, "--format=custom", "--no-owner"])
        entries = verify_archive(database, data)
    except OpsError as exc:
        raise OpsError(f"the fresh dump does not read back ({exc}); nothing was written") from None
    except KeyboardInterrupt:
        raise Interrupted("interrupted while dumping; nothing was written") from None
    moment = now or dt.datetime.now(dt.UTC)
    path = _archive_path(directory, stack.project, moment.strftime("%Y%m%dT%H%M%SZ"), label)
    origin = Origin(
        FORMAT, stack.project, stack.env, moment.isoformat(), hashlib.sha256(data).hexdigest(), len(data), entries
    )
    record = (json.dumps(asdict(origin), indent=2) + "\n").encode()
    check_space(directory, len(data) + len(record))
    try:
        # Each appears whole or not at all, 0600, and never over an existing file.
        files.create_exclusive(path, data, files.PRIVATE_FILE)
        files.create_exclusive(origin_path(path), record, files.PRIVATE_FILE)
    except BaseException as exc:
        # An archive without its record would be refused later: all or nothing.
        path.unlink(missing_ok=True)
        origin_path(path).unlink(missing_ok=True)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted("interrupted while writing the backup; nothing was written") from None
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            # Another writer took the room between the check and the write.
            raise OpsError(_no_space(directory, len(data) + len(record))) from None
        raise
    try:
        pruned = prune(directory, stack.project, keep, protect)
    except KeyboardInterrupt:
        pruned = ()  # the backup is whole and recorded: say so; the oldest go at the next run
    return Backup(path, len(data), entries, pruned)


def check_origin(stack: Stack, path: Path, data: bytes, *, allow_foreign: bool) -> Origin | None:
    """Refuse an archive that is damaged by its own checksum, or that belongs to another stack."""
    origin = Origin.read(path)
    if origin is not None and hashlib.sha256(data).hexdigest() != origin.sha256:
        raise BadInput(
            f"{path} does not match the checksum recorded when it was written ({len(data)} bytes, "
            f"{origin.size} recorded): the file is damaged; the database was not touched"
        )
    if allow_foreign:
        return origin
    if origin is None:
        raise BadInput(
            f"{path} has no backup record ({origin_path(path).name}), so its origin is unknown; "
            "pass --allow-foreign to restore it anyway"
        )
    if (origin.project, origin.env) != (stack.project, stack.env):
        raise BadInput(
            f"{path} is a backup of {origin.project} ({origin.env}), not of {stack.project} ({stack.env}); "
            "pass --allow-foreign to restore it anyway"
        )
    return origin


def table_count(database: Database) -> int:
    sql = b"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public';"
    out = database.run(["psql", "-U", DB_USER, "-d", DB_NAME, "-tA"], stdin=sql)
    return int(out.decode().strip() or 0)


def read_archive(path: Path) -> bytes:
    if not path.is_file():
        raise BadInput(f"no backup at {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None


def verify(stack: Stack, path: Path, *, database: Database | None = None) -> int:
    """The full check a restore makes, without restoring: checksum (when recorded) and every data block."""
    data = read_archive(path)
    check_origin(stack, path, data, allow_foreign=True)
    database = database or database_of(stack)
    try:
        return verify_archive(database, data)
    except OpsError as exc:
        raise BadInput(f"{path} is damaged: {exc}") from None


def restore(
    stack: Stack,
    path: Path,
    *,
    force: bool = False,
    allow_foreign: bool = False,
    backup_dir: Path = BACKUP_DIR,
    keep: int = DEFAULT_KEEP,
    regrant: Callable[[], None] | None = None,
    progress: Progress = lambda _m: None,
    database: Database | None = None,
) -> Restored:
    """Replace the database with an archive, or change nothing.

    Refuses (BadInput, the database untouched) a damaged archive, one of another project or environment
    unless `allow_foreign`, and a non-empty database unless `force`; with `force`, a safety backup of
    the current database comes first. The restore itself is one transaction; afterwards `regrant` (by
    default the migrate job) gives the runtime roles their grants again."""
    data = read_archive(path)
    check_origin(stack, path, data, allow_foreign=allow_foreign)
    database = database or database_of(stack)
    try:
        entries = verify_archive(database, data)
    except OpsError as exc:
        raise BadInput(f"{path} is damaged ({exc}); the database was not touched") from None
    progress(f"{path.name}: {entries} entries, every data block read back")
    tables = table_count(database)
    safety: Backup | None = None
    if tables:
        if not force:
            raise BadInput(
                f"the {stack.project} database is not empty ({tables} tables); {path.name} is a whole archive of "
                f"{entries} entries: use --force to replace the database (a safety backup is taken first)"
            )
        # The archive being restored is never pruned to make room for the safety copy.
        safety = backup(stack, backup_dir, keep=keep, label="pre-restore", protect=(path,), database=database)
        progress(f"safety backup of the current database: {safety.path}")
    try:
        # One transaction: --clean's drops and every create and copy commit together or not at all.
        command = ["pg_restore", "-U", DB_USER, "-d", DB_NAME, "--single-transaction", "--exit-on-error"]
        database.run([*command, "--clean", "--if-exists", "--no-owner"], stdin=data)
    except OpsError as exc:
        where = f"; the safety backup is {safety.path}" if safety else ""
        raise OpsError(f"the restore failed and was rolled back, the database is as it was ({exc}){where}") from None
    # The dump may predate the runtime roles or carry other grants: the migrate job sets them again.
    (regrant or (lambda: deploy.run_migrate(stack)))()
    return Restored(table_count(database), entries, safety)
