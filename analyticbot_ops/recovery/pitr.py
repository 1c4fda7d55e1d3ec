"""Backups into the pgBackRest repositories, what they hold, and point-in-time restores.

A restore checks first (the repository answers, holds a backup, reaches the moment; the database is
empty or --force), takes a logical safety dump of a database that has tables, then stops PostgreSQL,
restores with a one-off run of `backup-agent` (which has the data volume), starts PostgreSQL, waits until
the WAL is replayed and the server promoted, and runs the migrate job for the runtime grants."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import backups, deploy, docker, runner
from ..compose import Stack, in_service, service_states, wait_healthy
from ..docker import client
from ..errors import BadInput, OpsError
from .catalog import ARCHIVER_SQL, KINDS, REPOSITORIES, STANZA, Archiver, Catalog, parse_archiver, parse_info
from .target import Target, check_window

Progress = Callable[[str], None]
# Where each repository is local: a backup or a verify of it runs there.
HOLDER = {1: "backup-agent", 2: "backup-repo"}
AGENT = "backup-agent"


def pgbackrest_error(output: str) -> str:
    """pgBackRest's own error line (`ERROR: [055]: unable to ...`), without its code; else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        # Alone, or after a log line's time and process (`2026-12-07 09:12:04.380 P00  ERROR: [029]: ...`).
        if line.startswith("ERROR:") or " ERROR: " in line:
            message = line.split("ERROR:", 1)[1].strip()
            if message.startswith("[") and "]:" in message:
                message = message.split("]:", 1)[1].strip()
            return message
    return lines[-1] if lines else "no output"


def _pgbackrest(stack: Stack, service: str, args: Sequence[str], *, timeout: float = 3600.0) -> str:
    """pgBackRest in a service's running container, or in a one-off run of it when none runs (the agent
    after its data volume was lost). OpsError with pgBackRest's own error line."""
    command = ["pgbackrest", f"--stanza={STANZA}", *args]
    state = service_states(stack.project).get(service)
    if state is not None and state.status == "running":
        result = runner.run([client().path, "exec", state.container, *command], check=False, timeout=timeout)
        output = f"{result.stdout}\n{result.stderr}"
    else:
        result = stack.compose(
            "run", "--rm", "--no-deps", "-T", "--entrypoint", "pgbackrest", service, *command[1:], check=False
        )
        output = f"{result.stdout}\n{result.stderr}"
    if result.returncode != 0:
        raise PgBackRestFailed(f"pgBackRest ({' '.join(args[-1:])} in {service}): {pgbackrest_error(output)}", output)
    return str(result.stdout)


class PgBackRestFailed(OpsError):
    """pgBackRest exited non-zero: its error line, and all it printed (`output`) for a caller that reads on."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


# The cipher key and the two settings files made from it: without them no repository can be read.
CIPHER_SECRETS = ("pgbackrest_cipher_pass", "pgbackrest_db_conf", "pgbackrest_repo_conf")


def require(stack: Stack) -> None:
    """Refuse, before anything runs, a stack without the backup overlay or without the cipher key."""
    if not stack.backup:
        raise BadInput("the backup overlay is off (invoke.yaml: ops.backup: false), so there is no pgBackRest here")
    folder = Path(stack.settings["SECRETS_DIR"])
    for name in CIPHER_SECRETS:
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            raise BadInput(
                f"the repositories' cipher key is missing ({path}): without it no backup can be read or written; "
                "put back your copy of secrets/pgbackrest_cipher_pass (and run `invoke secrets.check`); nothing was "
                "touched"
            )


def catalog(stack: Stack) -> Catalog:
    """Every backup of both repositories (read from the database side), and PostgreSQL's archiver."""
    require(stack)
    # A repository host that does not answer costs this many seconds per attempt, not pgBackRest's minute.
    repositories, sets = parse_info(_pgbackrest(stack, AGENT, ["--output=json", "--io-timeout=5", "info"], timeout=180))
    return Catalog(repositories, sets, archiver(stack))


def archiver(stack: Stack) -> Archiver | None:
    """pg_stat_archiver, or None while PostgreSQL is not running."""
    try:
        database = in_service(stack, "postgres")
        out = database.run(["psql", "-U", backups.DB_USER, "-d", backups.DB_NAME, "-tA"], stdin=ARCHIVER_SQL.encode())
    except OpsError:
        return None
    return parse_archiver(out.decode().strip())


def check_repos(repos: Sequence[int]) -> tuple[int, ...]:
    for repo in repos:
        if repo not in REPOSITORIES:
            raise BadInput(f"--repo must be 1 (this host) or 2 (the repository host), got {repo}")
    return tuple(dict.fromkeys(repos))


@dataclass(frozen=True)
class Taken:
    repo: int
    kind: str
    label: str
    seconds: float
    stored: int


def backup(
    stack: Stack, kind: str, repos: Sequence[int] = REPOSITORIES, progress: Progress = lambda _m: None
) -> list[Taken]:
    """A full, differential or incremental backup into each repository, where that repository is local."""
    if kind not in KINDS:
        raise BadInput(f"--kind must be dump, {', '.join(KINDS)}; got {kind!r}")
    require(stack)
    taken: list[Taken] = []
    before = catalog(stack)
    for repo in check_repos(repos):
        needed = needed_bytes(before, repo, kind)
        free = free_bytes(stack, repo)
        if free is not None and free < needed:
            raise OpsError(_no_space(stack, repo, kind, needed, free))
        progress(f"repository {repo}: {kind} backup in {HOLDER[repo]}")
        started = time.monotonic()
        try:
            _pgbackrest(stack, HOLDER[repo], [f"--repo={repo}", f"--type={kind}", "backup"])
        except OpsError as exc:
            if "No space left on device" not in str(exc):
                raise
            # The disk filled while writing (the WAL archive shares it): pgBackRest resumes or removes the
            # partial backup at the next one.
            raise OpsError(_no_space(stack, repo, kind, needed, free_bytes(stack, repo), partial=True)) from None
        seconds = time.monotonic() - started
        newest = catalog(stack).last_backup(repo)
        if newest is None:
            raise OpsError(f"repository {repo} lists no backup after a backup that succeeded")
        taken.append(Taken(repo, newest.kind, newest.label, seconds, newest.stored))
    return taken


# Each repository's volume (compose/docker-compose.backup.yml) and where its holder mounts it.
VOLUMES = {1: "pgbackrest", 2: "pgbackrest-repo"}
REPOSITORY_PATH = "/var/lib/pgbackrest"
# zstd level 3 on PostgreSQL pages: what a first full backup is expected to take of the database's size.
FIRST_FULL_RATIO = 0.25
FREE_SCRIPT = "import shutil; print(shutil.disk_usage('/repository').free)"


def needed_bytes(found: Catalog, repo: int, kind: str) -> int:
    """What a backup of `kind` is expected to store in `repo`: as much as the last one of that kind there, else
    as the last full one, else a quarter of the database (nothing known: 0)."""
    same = [b.stored for b in found.backups_of(repo) if b.kind == kind]
    full = [b.stored for b in found.backups_of(repo) if b.kind == "full"]
    if same or full:
        return (same or full)[-1]
    sizes = [b.size for b in found.backups]
    return int(sizes[-1] * FIRST_FULL_RATIO) if sizes else 0


def free_bytes(stack: Stack, repo: int) -> int | None:
    """The free space of a repository's volume, read by the API image's Python in a container of its own (no
    network, read-only); None where the volume is not on this Docker host (a real second machine)."""
    volume = f"{stack.project}_{VOLUMES[repo]}"
    image = stack.settings.get("API_IMAGE")
    if not image or docker.inspect("volume", volume) is None:
        return None
    command = ["run", "--rm", "--network", "none", "--read-only", "--user", "10001:10001"]
    command += ["-v", f"{volume}:/repository:ro", "--entrypoint", "python3", image, "-c", FREE_SCRIPT]
    result = docker.docker(command, check=False, timeout=60)
    said = result.stdout.strip()
    return int(said) if result.returncode == 0 and said.isdigit() else None


def _no_space(stack: Stack, repo: int, kind: str, needed: int, free: int | None, *, partial: bool = False) -> str:
    where = f"{REPOSITORY_PATH} of {HOLDER[repo]}, volume {stack.project}_{VOLUMES[repo]}"
    left = "-" if free is None else f"{free / 1e6:.1f} MB"
    outcome = "the partial backup is resumed or removed by the next one" if partial else "nothing was written"
    return (
        f"no space for a {kind} backup in repository {repo} ({where}): it needs about {needed / 1e6:.1f} MB, "
        f"{left} is free; {outcome}"
    )


# pgBackRest's verify reports each bad file from a worker (P01...) at info level, and then completes
# "successfully": its exit code says nothing about damage, these lines do.
_DAMAGE = re.compile(r"P0*[1-9]\d*\s+INFO: (?P<what>[a-z ]+?) '?(?P<path>[^' :]+)'?(?::|$)")


def damaged_files(output: str) -> tuple[str, ...]:
    """The repository files `pgbackrest verify` named as damaged (checksum, size, unreadable, missing)."""
    found = []
    for line in output.splitlines():
        match = _DAMAGE.search(line)
        if match and match.group("path") not in found:
            found.append(match.group("path"))
    return tuple(found)


# A repository file that no longer decrypts or decompresses stops pgBackRest's verify at that file (it names
# none): with aes-256-cbc and zstd, a flipped byte usually does that rather than reach the checksum.
_UNREADABLE = re.compile(r"(zst error|lz4 error|gz error|unable to decrypt|Data corruption|bad decrypt)", re.I)


def unreadable(output: str) -> str:
    """pgBackRest's error when its verify stopped at a file it could not decrypt or decompress; "" otherwise."""
    if "aborted with exception" not in output:
        return ""
    message = pgbackrest_error(output)
    return message if _UNREADABLE.search(output) else ""


class Damaged(OpsError):
    """A repository with files that do not match their checksums, or one that no longer decrypts or
    decompresses (`cause`: pgBackRest's words, which name no file)."""

    def __init__(self, repo: int, files: Sequence[str], cause: str = "") -> None:
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        if files:
            said = f"repository {repo} is damaged: {len(files)} files fail pgBackRest's verify: {shown}"
        else:
            said = f"repository {repo} is damaged: pgBackRest's verify stopped at a file it cannot read back ({cause})"
        super().__init__(said)
        self.repo = repo
        self.files = tuple(files)
        self.cause = cause


def verify(stack: Stack, repos: Sequence[int] = REPOSITORIES) -> list[str]:
    """pgBackRest's verify of each repository (every backup file and WAL segment against its checksum):
    Damaged naming each damaged file; else one line per repository."""
    require(stack)
    said: list[str] = []
    for repo in check_repos(repos):
        try:
            output = _pgbackrest(stack, HOLDER[repo], [f"--repo={repo}", "--log-level-console=info", "verify"])
        except PgBackRestFailed as exc:
            cause = unreadable(exc.output)
            if cause:
                raise Damaged(repo, damaged_files(exc.output), cause) from None
            raise
        damaged = damaged_files(output)
        if damaged:
            raise Damaged(repo, damaged)
        said.append(f"repository {repo}: every backup file and WAL segment matches its checksum")
    return said


@dataclass(frozen=True)
class Restored:
    repo: int
    target: Target
    seconds: float  # from stopping PostgreSQL to the migrate job's end
    tables: int
    safety_dump: backups.Backup | None


def choose_repo(catalog_: Catalog, repo: int | None) -> int:
    """The repository asked for, or the first that answers and holds a backup."""
    if repo is not None:
        check_repos([repo])
        state = catalog_.repository(repo)
        if state is None or not state.ok:
            why = state.message if state else "not configured"
            raise BadInput(f"repository {repo} cannot be read ({why}); nothing was touched")
        return repo
    for candidate in REPOSITORIES:
        state = catalog_.repository(candidate)
        if state is not None and state.ok and catalog_.backups_of(candidate):
            return candidate
    raise BadInput("no repository answers with a backup in it; nothing was touched")


def restore(
    stack: Stack,
    target: Target,
    *,
    repo: int | None = None,
    force: bool = False,
    timeout: float = 600.0,
    backup_dir: Path = backups.BACKUP_DIR,
    keep: int = backups.DEFAULT_KEEP,
    progress: Progress = lambda _m: None,
) -> Restored:
    """Restore the database to `target` from a repository, or change nothing (see the module)."""
    current = catalog(stack)
    chosen = choose_repo(current, repo)
    check_window(target, current, chosen)
    progress(f"repository {chosen}: checking every backup file and WAL segment (pgBackRest's verify)")
    try:
        verify(stack, [chosen])
    except Damaged as exc:
        others = [r for r in REPOSITORIES if r != chosen]
        raise BadInput(
            f"{exc}; a restore from it could stop half-way, so nothing was touched (try --repo {others[0]})"
        ) from None
    if target.moment is not None and current.archiver is not None:
        latest = current.latest(chosen)
        if latest is not None and target.moment > latest:
            progress(f"note: the last archived segment is from {latest:%H:%M:%S}; writes after it may not be there")
    safety: backups.Backup | None = None
    running = service_states(stack.project).get("postgres")
    if running is not None and running.status == "running":
        database = backups.database_of(stack)
        tables = backups.table_count(database)
        if tables and not force:
            raise BadInput(
                f"the {stack.project} database is not empty ({tables} tables): use --force to replace it with "
                f"its state at {target} (a logical safety dump is taken first)"
            )
        if tables:
            safety = backups.backup(stack, backup_dir, keep=keep, label="pre-restore", database=database)
            progress(f"safety dump of the current database: {safety.path}")
    started = time.monotonic()
    progress(f"stopping postgres and {AGENT}; restoring to {target} from repository {chosen}")
    stack.compose("stop", AGENT, "postgres")
    try:
        args = [f"--repo={chosen}", "--delta", *target.pgbackrest_args(), "restore"]
        _pgbackrest_oneoff(stack, args)
    except OpsError as exc:
        where = f"; the safety dump is {safety.path}" if safety else ""
        raise OpsError(f"the restore failed: {exc}; postgres is stopped{where}") from None
    progress("restored the files; starting postgres to replay the WAL")
    try:
        stack.compose("up", "-d", "--no-deps", "--no-build", "postgres")
        wait_promoted(lambda: in_service(stack, "postgres"), timeout)
        stack.compose("up", "-d", "--no-deps", "--no-build", AGENT)
        deploy.run_migrate(stack)
        seconds = time.monotonic() - started
        wait_healthy(stack, list(stack.running), timeout, progress, fail_fast=False)
    except OpsError as exc:
        # The files are already replaced: say where the database as it was went, whatever failed after.
        if safety is None:
            raise
        raise OpsError(f"{exc}; the database before the restore is in the safety dump {safety.path}") from None
    return Restored(chosen, target, seconds, backups.table_count(backups.database_of(stack)), safety)


def _pgbackrest_oneoff(stack: Stack, args: Sequence[str]) -> None:
    """A restore in a one-off run of the agent: postgres is stopped, and the agent's container may be gone."""
    result = stack.compose(
        "run", "--rm", "--no-deps", "-T", "--entrypoint", "pgbackrest", AGENT, f"--stanza={STANZA}", *args, check=False
    )
    if result.returncode != 0:
        raise OpsError(pgbackrest_error(f"{result.stdout}\n{result.stderr}"))


def wait_promoted(connect: Callable[[], backups.Database], timeout: float) -> None:
    """Until PostgreSQL has replayed the WAL to the target and left recovery (it answers pg_isready before).
    `connect` finds the server again on each try: its container may still be starting."""
    deadline = time.monotonic() + timeout
    said = ""
    while time.monotonic() < deadline:
        try:
            out = connect().run(
                ["psql", "-U", backups.DB_USER, "-d", backups.DB_NAME, "-tA"], b"SELECT pg_is_in_recovery();"
            )
            if out.decode().strip() == "f":
                return
            said = "still replaying the WAL"
        except OpsError as exc:
            said = str(exc)
        time.sleep(0.5)
    raise OpsError(f"postgres did not finish recovery within {timeout:g} s ({said}); see `invoke stack.logs postgres`")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
