"""`stack.restore --to T --into PROJECT`: the restore drill. It restores a repository's backup and WAL into a
throwaway PostgreSQL of its own (project PROJECT: a data volume and one container, labelled like a Compose
project's), times it (the RTO), compares each table's row count with the source's, and removes it unless
asked to keep it. The source stack is only read: nothing of it is stopped.

The copy never archives (`--archive-mode=off`): its WAL would otherwise go into the source's repositories,
on a timeline of its own. It reads repository 1 through the source's volume, read-only, and repository 2
through the source's backup network, as the source's agent does."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import backups, docker
from ..compose import InContainer, Stack, in_service
from ..errors import BadInput, OpsError
from ..model import APP_UID, Labels
from ..paths import COMPOSE_DIR
from ..tls import backup
from . import pitr
from .catalog import STANZA
from .target import Target, check_window

Progress = Callable[[str], None]
# Each table's exact row count, in one statement (query_to_xml runs a count per table).
COUNTS_SQL = (
    "SELECT table_name || '=' || (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', "
    "table_schema, table_name), false, true, '')))[1]::text FROM information_schema.tables "
    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name;"
)


@dataclass(frozen=True)
class Drill:
    project: str
    repo: int
    target: Target
    seconds: float  # from the start of the restore until the copy was promoted and answered: the RTO
    counts: dict[str, tuple[int | None, int | None]]  # table -> (source, copy); None: no such table there
    kept: str | None  # the copy's container when --keep

    @property
    def matches(self) -> bool:
        return all(source == copy for source, copy in self.counts.values())


def table_counts(run: Callable[[list[str], bytes], bytes]) -> dict[str, int]:
    out = run(["psql", "-U", backups.DB_USER, "-d", backups.DB_NAME, "-tA"], COUNTS_SQL.encode()).decode()
    counts: dict[str, int] = {}
    for line in out.splitlines():
        name, _, value = line.strip().rpartition("=")
        if not name:
            continue
        if not (value.isascii() and value.isdigit()):
            raise OpsError(f"psql's row count of {name} is not a number: {value!r}")
        counts[name] = int(value)
    return counts


# What Compose takes as a project name: lower-case letters, digits, - and _, from a letter or digit.
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def container_name(project: str) -> str:
    return f"{project}_postgres_1"


def _check_project(stack: Stack, project: str) -> None:
    if project == stack.project:
        raise BadInput(f"--into must name a throwaway project, not the source {project}; nothing was touched")
    if not PROJECT_NAME.fullmatch(project):
        raise BadInput(
            f"--into must be a project name of lower-case letters, digits, - and _ (from a letter or digit), "
            f"got {project!r}"
        )
    # The container's name too: the drill removes it by name when it ends, so it must not be someone else's.
    if (
        docker.containers_by_label(f"{Labels.PROJECT}={project}")
        or docker.inspect("volume", f"{project}_pgdata") is not None
        or docker.inspect("container", container_name(project)) is not None
    ):
        raise BadInput(f"project {project} already exists: remove it (or pick another name); nothing was touched")


def _mounts(stack: Stack, project: str) -> list[str]:
    """The copy's data volume, and what pgBackRest on the database side reads: its settings, the cipher key,
    the TLS client files, repository 1 read-only."""
    secrets_dir = Path(stack.settings["SECRETS_DIR"])
    tls_dir = secrets_dir / backup.FOLDER
    pairs = [
        (f"{project}_pgdata", "/var/lib/postgresql/data", ""),
        (f"{stack.project}_pgbackrest", "/var/lib/pgbackrest", ":ro"),
        (str(COMPOSE_DIR / "pgbackrest" / "db.conf"), "/etc/pgbackrest/pgbackrest.conf", ":ro"),
        (str(secrets_dir / "pgbackrest_db_conf"), "/etc/pgbackrest/conf.d/cipher.conf", ":ro"),
        *((str(tls_dir / name), f"/etc/pgbackrest/tls/{name}", ":ro") for name in backup.CLIENT_FILES),
    ]
    return [arg for source, target, mode in pairs for arg in ("-v", f"{source}:{target}{mode}")]


def _container_args(stack: Stack, project: str) -> list[str]:
    image = stack.settings["POSTGRES_IMAGE"]
    hardening = ["--user", f"{APP_UID}:{APP_UID}", "--read-only", "--cap-drop", "ALL"]
    hardening += ["--security-opt", "no-new-privileges:true", "--tmpfs", "/tmp"]
    hardening += ["--tmpfs", f"/var/run/postgresql:uid={APP_UID},gid={APP_UID},mode=0700"]
    hardening += ["--tmpfs", f"/var/spool/pgbackrest:uid={APP_UID},gid={APP_UID},mode=0700"]
    labels = ["--label", f"{Labels.PROJECT}={project}", "--label", f"{Labels.SERVICE}=postgres"]
    return [*hardening, *labels, "--network", f"{stack.project}_backup", *_mounts(stack, project), image]


def drill(
    stack: Stack,
    target: Target,
    project: str,
    *,
    repo: int | None = None,
    keep: bool = False,
    timeout: float = 600.0,
    progress: Progress = lambda _m: None,
) -> Drill:
    """Restore into a throwaway PostgreSQL, compare, and remove it unless `keep` (see the module)."""
    _check_project(stack, project)
    current = pitr.catalog(stack)
    chosen = pitr.choose_repo(current, repo)
    check_window(target, current, chosen)
    source = in_service(stack, "postgres")
    if target.latest:
        # Everything written so far goes into an archived segment: the copy can then match the source.
        # The segment the switch closed (pg_switch_wal returns its end): the copy needs it in the archive.
        switch = b"SELECT pg_walfile_name(pg_switch_wal() - 1);"
        closed = source.run(["psql", "-U", backups.DB_USER, "-d", backups.DB_NAME, "-tA"], switch).decode().strip()
        if not re.fullmatch(r"[0-9A-F]{24}", closed):
            raise OpsError(f"PostgreSQL named the switched WAL segment {closed!r}, which is not a segment's name")
        _wait_archived(stack, closed, ARCHIVE_WAIT)
    source_counts = table_counts(source.run)
    volume = ["volume", "create", "--label", f"{Labels.PROJECT}={project}", "--label"]
    docker.docker([*volume, "com.docker.compose.volume=pgdata", f"{project}_pgdata"])
    container = container_name(project)
    kept: str | None = None
    try:
        progress(f"{project}: restoring {target} from repository {chosen}")
        started = time.monotonic()
        restore = ["run", "--rm", "--entrypoint", "pgbackrest", *_container_args(stack, project)]
        args = [f"--stanza={STANZA}", f"--repo={chosen}", *target.pgbackrest_args(), "--archive-mode=off", "restore"]
        result = docker.docker([*restore, *args], check=False, timeout=timeout)
        if result.returncode != 0:
            said = pitr.pgbackrest_error(result.stdout + "\n" + result.stderr)
            raise OpsError(f"the drill's restore failed: {said}")
        docker.docker(["run", "-d", "--name", container, *_container_args(stack, project), "postgres"])
        copy = InContainer(container)
        pitr.wait_promoted(lambda: copy, timeout)
        seconds = time.monotonic() - started
        copy_counts = table_counts(copy.run)
        kept = container if keep else None
    finally:
        if not keep:
            docker.docker(["rm", "-f", "-v", container], check=False)
            docker.docker(["volume", "rm", "-f", f"{project}_pgdata"], check=False)
    tables = sorted(set(source_counts) | set(copy_counts))
    counts = {t: (source_counts.get(t), copy_counts.get(t)) for t in tables}
    return Drill(project, chosen, target, seconds, counts, kept)


# PostgreSQL's archiver waits a minute after three failures in a row (a repository host that was away):
# long enough for that back-off and the retry after it.
ARCHIVE_WAIT = 180.0


def _wait_archived(stack: Stack, segment: str, timeout: float) -> None:
    """Until `segment` is archived. The segment after it may hold only records PostgreSQL does not switch
    for (a checkpoint, a snapshot of running transactions): it is not waited for."""
    database = in_service(stack, "postgres")
    # The segment part of the name: the last file archived may be a backup's label (SEGMENT.OFFSET.backup).
    sql = f"SELECT substr(last_archived_wal, 1, 24) >= '{segment}' FROM pg_stat_archiver;".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = database.run(["psql", "-U", backups.DB_USER, "-d", backups.DB_NAME, "-tA"], sql).decode().strip()
        if out == "t":
            return
        time.sleep(0.5)
    raise OpsError(
        f"the source's last WAL segment was not archived within {timeout:.0f} s, so the copy could not match it: "
        "see the WAL archive in `invoke stack.backups`"
    )
