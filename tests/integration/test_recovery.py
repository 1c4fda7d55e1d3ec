"""Point-in-time recovery with pgBackRest on a prod-mode stack of its own, on real containers: a lost
database volume costs at most the last archive interval of writes (RPO), a dropped table comes back from the
moment before it was dropped (PITR), repository 2 alone restores when repository 1 is lost too (off-host), a
schedule backs up with nobody calling a task, and the refusals change nothing.

Each test prints its figure (the writes lost and their seconds, the restore's seconds)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from analyticbot_ops import compose, deploy, docker, schedule, stack_settings
from analyticbot_ops.errors import EXIT_BAD_INPUT, BadInput, OpsError
from analyticbot_ops.monitoring import client
from analyticbot_ops.paths import REPO_ROOT
from analyticbot_ops.recovery import drill, pitr
from analyticbot_ops.recovery.target import Target, parse_target
from tests import sandbox
from tests.sandbox import RunningStack, make_stack

# The promise: a lost disk takes at most this many seconds of acknowledged writes (ARCHIVE_TIMEOUT is 5 s).
RPO_SECONDS = 10.0
CHANNEL = sandbox.WRITER_CHANNEL


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[RunningStack]:
    """A prod-mode stack with the backup and monitoring overlays, both repositories holding a first full backup."""
    running = make_stack(tmp_path_factory.mktemp("archived"), f"abpitr-{run_id}", backup=True, monitoring=True)
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


def _metric(stack: RunningStack, query: str) -> dict[str, float]:
    """An instant query's value per `repo` label (or "" without one)."""
    found = client.for_stack(stack.stack).prometheus.get(f"/api/v1/query?query={quote(query)}", "data", "result")
    return {r["metric"].get("repo", ""): float(r["value"][1]) for r in found}


def test_the_backups_and_the_wal_archive_are_metrics_with_alerts_quiet(archived: RunningStack) -> None:
    newest = "max by (repo) (analyticbot_backup_last_completed_timestamp_seconds)"
    waited = _until(lambda: set(_metric(archived, newest)) == {"1", "2"}, 150, "each repository's newest backup")
    ends = {b.repo: b.stopped.timestamp() for b in pitr.catalog(archived.stack).backups}
    assert _metric(archived, newest) == {str(repo): end for repo, end in ends.items()}
    assert _metric(archived, "analyticbot_backup_repository_reachable") == {"1": 1.0, "2": 1.0}
    assert _metric(archived, "analyticbot_wal_archive_archived_total")[""] > 0
    assert _metric(archived, "analyticbot_wal_archive_failing") == {"": 0.0}
    names = {a.name for a in client.for_stack(archived.stack).alerts()}
    assert not names & {"BackupTooOld", "WalArchiveFailing", "RepositoryUnreachable"}
    print(f"metrics: both repositories' backups in Prometheus {waited:.0f} s after the first backups")


def test_a_lost_database_disk_costs_at_most_the_last_archive_interval_of_writes(archived: RunningStack) -> None:
    writer = sandbox.AckWriter(archived, first=1_000_000)
    writer.start()
    time.sleep(20)
    killed_at = time.time()
    sandbox.lose_database_disk(archived)
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
    writer = sandbox.AckWriter(archived, first=2_000_000)
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
    sandbox.lose_database_disk(archived, and_repository_1=True)

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
        # A differential backup in each: the schedule's own kind for this setting. (A full one may come first,
        # when a repository's schedule state went with its volume in an earlier test, and it may still be
        # running as this test starts: the toolkit's readiness does not wait for Docker's 10 s checks.)
        waited = _until(
            lambda: (
                {b.repo for b in pitr.catalog(archived.stack).backups if b.label not in before and b.kind == "diff"}
                == {1, 2}
            ),
            120,
            "a scheduled differential backup in each repository",
        )
        print(f"unattended: a scheduled backup in each repository {waited:.0f} s after the schedule was shortened")
        rows = {r.job: r for r in schedule.stack_rows(shortened)}
        for repo in (1, 2):
            row = rows[f"backup repository {repo}"]
            assert row.installed and row.last_run and row.result.startswith("ok: diff backup"), row
    finally:
        archived.stack.compose("up", "-d", "--no-deps", "--no-build", "backup-agent", "backup-repo")


def _invoke(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `invoke` on this stack: its settings and project through the environment, as a user's .env
    would give them."""
    settings = {k: v for k, v in stack.stack.settings.items() if k in stack_settings.SETTINGS}
    env = {**os.environ, **settings, "COMPOSE_PROJECT_NAME": stack.project}
    command = [str(Path(sys.executable).with_name("invoke")), *args, "--env", stack.stack.env]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess[str], code: int, said: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("repository ")]
    assert result.returncode == code, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(said, lines[0]), lines
    assert "Traceback" not in result.stdout + result.stderr


def test_the_refusals_name_the_problem_and_touch_nothing(archived: RunningStack) -> None:
    tables = _sql(archived, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';")
    started = compose.service_states(archived.project)["postgres"].started_at
    earliest = min(b.stopped for b in pitr.catalog(archived.stack).backups)
    too_early = (earliest - dt.timedelta(hours=1)).isoformat()
    _one_error_line(
        _invoke(archived, "stack.restore", "--to", too_early, "--force"),
        EXIT_BAD_INPUT,
        r"before the earliest restore point of repository 1 .*nothing was touched",
    )
    with pytest.raises(BadInput, match="--repo must be 1"):
        pitr.restore(archived.stack, Target(None), repo=3, force=True)
    repo_host = compose.service_states(archived.project)["backup-repo"].container
    docker.docker(["stop", repo_host])
    try:
        _one_error_line(
            _invoke(archived, "stack.restore", "--to", "latest", "--repo", "2", "--force"),
            EXIT_BAD_INPUT,
            r"repository 2 cannot be read \(.*\); nothing was touched",
        )
    finally:
        docker.docker(["start", repo_host])
    # PostgreSQL's archiver backs off for a minute after three failures: archiving resumes after that.
    _until(lambda: not pitr.archiver(archived.stack).failing(), 240, "archiving resumed")  # type: ignore[union-attr]
    key = archived.secrets_dir / "pgbackrest_cipher_pass"
    aside = key.with_name(key.name + ".aside")
    key.rename(aside)  # moved, not rewritten: its mode and owner come back with it
    try:
        with pytest.raises(BadInput, match="cipher key is missing"):
            pitr.restore(archived.stack, Target(None), force=True)
    finally:
        aside.rename(key)
    assert _sql(archived, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';") == tables
    assert compose.service_states(archived.project)["postgres"].started_at == started


def test_the_drill_restores_into_a_throwaway_copy_that_matches_and_is_removed(archived: RunningStack) -> None:
    project = f"{archived.project}-drill"
    found = drill.drill(archived.stack, Target(None), project, progress=print)

    print(f"drill: {len(found.counts)} tables restored from repository {found.repo}, RTO {found.seconds:.1f} s")
    assert found.matches, found.counts
    assert found.counts["post_views"][0] and found.counts["post_views"][0] > 0
    assert not docker.containers_by_label(f"com.docker.compose.project={project}")
    assert docker.inspect("volume", f"{project}_pgdata") is None


# Damage pgBackRest can name: a data file of the newest full backup and a WAL segment, each overwritten with
# another file's bytes of the same backup or archive (same cipher pass, so it decrypts and decompresses, and
# fails its checksum). A flipped byte in an encrypted, compressed file usually stops verify at the decompressor
# instead, naming no file (pitr.Damaged says so; tests/unit/test_pitr.py): whether it does depends on the bytes.
_DAMAGE = """
import pathlib
repo = pathlib.Path("/repo")
full = sorted((repo / "backup/analyticbot").glob("*F"))[-1]
files = sorted((p for p in (full / "pg_data/base").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
data = files[-1]
other = next(p for p in reversed(files) if p.read_bytes() != data.read_bytes())
wals = sorted(p for p in (repo / "archive/analyticbot").rglob("0000*-*") if ".partial" not in p.name)
for path, source in ((data, other), (wals[0], wals[1])):
    path.write_bytes(source.read_bytes())
print(data.relative_to(repo / "backup/analyticbot"))
print(wals[0].relative_to(repo / "archive/analyticbot"))
"""


def test_a_damaged_file_is_named_by_verify_and_a_restore_needing_it_touches_nothing(archived: RunningStack) -> None:
    damage = ["run", "--rm", "--user", "10001:10001", "-v", f"{archived.project}_pgbackrest:/repo"]
    damage += ["--entrypoint", "python3", archived.stack.settings["API_IMAGE"], "-c", _DAMAGE]
    damaged = docker.docker(damage).stdout.split()
    before = _sql(archived, "SELECT count(*) FROM post_views;")
    started = compose.service_states(archived.project)["postgres"].started_at

    with pytest.raises(pitr.Damaged) as named:
        pitr.verify(archived.stack, [1])
    assert set(named.value.files) == set(damaged)
    with pytest.raises(BadInput, match="repository 1 is damaged: 2 files") as refused:
        pitr.restore(archived.stack, Target(None), repo=1, force=True)
    assert "\n" not in str(refused.value)
    print(f"damage: verify named {', '.join(damaged)}; the restore refused")

    assert _sql(archived, "SELECT count(*) FROM post_views;") == before
    assert compose.service_states(archived.project)["postgres"].started_at == started
