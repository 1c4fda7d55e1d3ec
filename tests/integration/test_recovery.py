"""Point-in-time recovery with pgBackRest on a prod-mode stack of its own, on real containers: a lost
database volume costs at most the last archive interval of writes (RPO), a dropped table comes back from the
moment before it was dropped (PITR), repository 2 alone restores when repository 1 is lost too (off-host), a
schedule backs up with nobody calling a task, and the refusals change nothing.

Each test prints its figure (the writes lost and their seconds, the restore's seconds)."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from analyticbot_ops import compose, deploy, docker
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.recovery import pitr
from analyticbot_ops.recovery.target import Target, parse_target
from tests.sandbox import RunningStack, make_stack

# The promise: a lost disk takes at most this many seconds of acknowledged writes (ARCHIVE_TIMEOUT is 5 s).
RPO_SECONDS = 10.0
CHANNEL = 424242


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[RunningStack]:
    """A prod-mode stack with the backup overlay, both repositories holding a first full backup."""
    running = make_stack(tmp_path_factory.mktemp("archived"), f"abpitr-{run_id}", backup=True)
    try:
        deploy.up(running.stack, timeout=240, progress=print)
        _until(lambda: all(pitr.catalog(running.stack).backups_of(r) for r in (1, 2)), 180, "a full backup in each")
        _sql(running, f"INSERT INTO channels (id, username) VALUES ({CHANNEL}, 'recovery') ON CONFLICT DO NOTHING;")
        yield running
    finally:
        deploy.down(running.stack, volumes=True)


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except OpsError:
            pass  # not there yet (the stanza, a container)
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _sql(stack: RunningStack, sql: str) -> str:
    database = compose.in_service(stack.stack, "postgres")
    return (
        database.run(["psql", "-U", "analyticbot", "-d", "analyticbot", "-tA", "-v", "ON_ERROR_STOP=1"], sql.encode())
        .decode()
        .strip()
    )


def _post_ids(stack: RunningStack) -> set[int]:
    out = _sql(stack, f"SELECT post_id FROM post_views WHERE channel_id = {CHANNEL};")
    return {int(line) for line in out.splitlines() if line}


@dataclass(eq=False)
class Writer(threading.Thread):
    """One psql session inserting a row every 50 ms; a row counts as acknowledged when psql has printed
    its RETURNING line, which it does after the commit (autocommit)."""

    stack: RunningStack
    first: int
    acknowledged: dict[int, float] = field(default_factory=dict)  # post_id -> time.time() of the ack
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        container = compose.service_states(self.stack.project)["postgres"].container
        self.process = subprocess.Popen(
            [docker.client().path, "exec", "-i", container, "psql", "-U", "analyticbot", "-d", "analyticbot", "-qtA"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def run(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        post = self.first
        try:
            while not self.stop.is_set():
                self.process.stdin.write(
                    f"INSERT INTO post_views (channel_id, post_id, views) VALUES ({CHANNEL}, {post}, 1) "
                    "RETURNING post_id;\n"
                )
                self.process.stdin.flush()
                line = self.process.stdout.readline()
                if not line.strip().isdigit():
                    return  # the server went away: what was acknowledged is recorded
                self.acknowledged[int(line)] = time.time()
                post += 1
                time.sleep(0.05)
        except (BrokenPipeError, OSError):
            return

    def finish(self) -> None:
        self.stop.set()
        self.process.kill()
        self.join(10)


def _lose_the_database_disk(stack: RunningStack, *, and_repository_1: bool = False) -> None:
    """postgres killed and its volume deleted, as a dead disk would take it (repository 1's volume too)."""
    states = compose.service_states(stack.project)
    docker.docker(["kill", states["postgres"].container], check=False)
    stack.stack.compose("rm", "-s", "-f", "postgres", "backup-agent")
    volumes = ["pgdata", *(["pgbackrest"] if and_repository_1 else [])]
    for volume in volumes:
        docker.docker(["volume", "rm", f"{stack.project}_{volume}"])


def test_a_lost_database_disk_costs_at_most_the_last_archive_interval_of_writes(archived: RunningStack) -> None:
    writer = Writer(archived, first=1_000_000)
    writer.start()
    time.sleep(20)
    killed_at = time.time()
    _lose_the_database_disk(archived)
    writer.finish()
    assert len(writer.acknowledged) > 100, "the writer never got going"

    done = pitr.restore(archived.stack, Target(None), timeout=300, progress=print)

    restored = _post_ids(archived)
    lost = sorted(set(writer.acknowledged) - restored)
    lost_seconds = killed_at - min(writer.acknowledged[p] for p in lost) if lost else 0.0
    print(
        f"RPO: {len(lost)} of {len(writer.acknowledged)} acknowledged writes lost, the last {lost_seconds:.1f} s "
        f"before the disk went; restored from repository {done.repo} in {done.seconds:.1f} s"
    )
    assert lost_seconds <= RPO_SECONDS
    # What was restored is a prefix of what was written: no hole before the loss.
    assert all(p in restored for p in writer.acknowledged if not lost or p < lost[0])


def test_a_dropped_table_comes_back_from_the_second_before_it_was_dropped(archived: RunningStack) -> None:
    writer = Writer(archived, first=2_000_000)
    writer.start()
    time.sleep(5)
    writer.finish()
    time.sleep(2)
    dropped_at = dt.datetime.now(dt.UTC)
    _sql(archived, "DROP TABLE post_views CASCADE;")
    target = parse_target((dropped_at - dt.timedelta(seconds=1)).isoformat(), dt.datetime.now(dt.UTC))
    # The drop must reach the archive for the test to mean anything: the next segment switch at most 5 s on.
    time.sleep(7)

    with pytest.raises(BadInput, match="not empty"):
        pitr.restore(archived.stack, target)  # without --force: refused, nothing touched
    assert "post_views" not in _sql(archived, "SELECT tablename FROM pg_tables WHERE schemaname = 'public';")

    done = pitr.restore(archived.stack, target, force=True, timeout=300, progress=print)

    restored = _post_ids(archived)
    before = {p for p, at in writer.acknowledged.items() if at < target.moment.timestamp()}  # type: ignore[union-attr]
    print(f"PITR: {len(before)} rows acknowledged before {target} all back in {done.seconds:.1f} s")
    assert before and before <= restored
    assert done.safety_dump is not None and done.safety_dump.path.is_file()


def test_repository_2_alone_restores_when_repository_1_is_lost_too(archived: RunningStack) -> None:
    _sql(archived, f"INSERT INTO post_views (channel_id, post_id, views) VALUES ({CHANNEL}, 3000000, 7);")
    _sql(archived, "SELECT pg_switch_wal();")
    _until(lambda: "3000000" in _archived_marker(archived), 30, "the segment with the row archived")
    _lose_the_database_disk(archived, and_repository_1=True)

    with pytest.raises(BadInput, match="repository 1 cannot be read"):
        pitr.restore(archived.stack, Target(None), repo=1)
    done = pitr.restore(archived.stack, Target(None), repo=2, timeout=300, progress=print)

    print(f"off-host: restored from repository 2 alone in {done.seconds:.1f} s")
    assert done.repo == 2
    assert 3000000 in _post_ids(archived)
    # The agent made repository 1 again when it started: archiving goes on into both.
    _until(lambda: pitr.catalog(archived.stack).repository(1).ok, 60, "repository 1 back")  # type: ignore[union-attr]


def _archived_marker(stack: RunningStack) -> str:
    """The row, once pg_stat_archiver says the segment it was written in is archived."""
    archiver = pitr.archiver(stack.stack)
    if archiver is None or archiver.failing():
        return ""
    return _sql(stack, "SELECT post_id FROM post_views WHERE post_id = 3000000;") if archiver.archived else ""


def test_a_shortened_schedule_backs_up_with_nobody_calling_a_task(archived: RunningStack) -> None:
    before = {b.label for b in pitr.catalog(archived.stack).backups}
    shortened = archived.reloaded(BACKUP_DIFF_EVERY="20s", BACKUP_SCHEDULE_TICK="5s")
    shortened.compose("up", "-d", "--no-deps", "--no-build", "backup-agent", "backup-repo")
    try:
        waited = _until(
            lambda: {b.repo for b in pitr.catalog(archived.stack).backups if b.label not in before} == {1, 2},
            120,
            "a scheduled backup in each repository",
        )
        print(f"unattended: a scheduled backup in each repository {waited:.0f} s after the schedule was shortened")
    finally:
        archived.stack.compose("up", "-d", "--no-deps", "--no-build", "backup-agent", "backup-repo")


def test_the_refusals_name_the_problem_and_touch_nothing(archived: RunningStack) -> None:
    tables = _sql(archived, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';")
    earliest = min(b.stopped for b in pitr.catalog(archived.stack).backups)
    with pytest.raises(BadInput, match="before the earliest restore point"):
        pitr.restore(archived.stack, Target(earliest - dt.timedelta(hours=1)), force=True)
    with pytest.raises(BadInput, match="--repo must be 1"):
        pitr.restore(archived.stack, Target(None), repo=3, force=True)
    repo_host = compose.service_states(archived.project)["backup-repo"].container
    docker.docker(["stop", repo_host])
    try:
        with pytest.raises(BadInput, match="repository 2 cannot be read"):
            pitr.restore(archived.stack, Target(None), repo=2, force=True)
    finally:
        docker.docker(["start", repo_host])
    key = archived.secrets_dir / "pgbackrest_cipher_pass"
    aside = key.with_name(key.name + ".aside")
    key.rename(aside)  # moved, not rewritten: its mode and owner come back with it
    try:
        with pytest.raises(BadInput, match="cipher key is missing"):
            pitr.restore(archived.stack, Target(None), force=True)
    finally:
        aside.rename(key)
    assert _sql(archived, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';") == tables
    assert compose.service_states(archived.project)["postgres"].status == "running"
