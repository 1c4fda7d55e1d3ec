"""pgBackRest's backups, verify and point-in-time restore (recovery/pitr.py) against a fake Docker host
(recovery_support): which command runs where (`docker exec` in a running container, a one-off `compose run`
when none runs), what each refusal says and that it touched nothing, and the restore's steps in order, from the
checks to the migrate job. pgBackRest's info is real output of 2.45 (test_recovery's)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import backups, runner
from analyticbot_ops.compose import InContainer, Stack
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.recovery import catalog, pitr
from analyticbot_ops.recovery.target import Target
from tests.unit.cli_support import record
from tests.unit.recovery_support import PSQL, Host, by_sql, fake_host
from tests.unit.test_recovery import T0, VERIFY_OUTPUT, _backup, _info

UTC = dt.UTC
PROJECT = "abfull"
AGENT = f"docker exec {PROJECT}-backup-agent-1 pgbackrest --stanza=analyticbot"
REPO_HOST = f"docker exec {PROJECT}-backup-repo-1 pgbackrest --stanza=analyticbot"
IN_POSTGRES = f"docker exec -i {PROJECT}-postgres-1 {PSQL}"
ONEOFF = ("run", "--rm", "--no-deps", "-T", "--entrypoint", "pgbackrest")
TABLES_SQL = "information_schema.tables WHERE table_schema = 'public'"
ARCHIVED_AT = T0 + 600  # the last archived segment: 02:33:45
ARCHIVER_ROW = (
    f'{{"archived": 12, "last_wal": "00000001000000000000000A", "last_at": {ARCHIVED_AT}, "failed": 0, '
    '"last_failed_wal": null, "last_failed_at": null}'
)


def at(seconds_after_t0: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + seconds_after_t0, UTC)


@dataclass
class PgBackRest:
    """pgBackRest in the agent, the repository host or a one-off run: `info` lists `backups`; each other
    command answers from `said` (a result, or a function of the call), else succeeds saying nothing."""

    backups: list[dict[str, object]] = field(
        default_factory=lambda: [_backup(1, "20261207-022345F", "full", T0, T0 + 4)]
    )
    said: dict[str, runner.Completed[Any] | Callable[[runner.Call], runner.Completed[Any]]] = field(
        default_factory=dict
    )

    def __call__(self, call: runner.Call) -> runner.Completed[Any]:
        command = call.argv[-1]
        if command == "info":
            return runner.Completed(list(call.argv), 0, _info(self.backups), "")
        found = self.said.get(command)
        if found is None:
            return runner.Completed(list(call.argv), 0, "", "")
        return found(call) if callable(found) else found


def failed(stderr: str) -> runner.Completed[Any]:
    return runner.Completed([], 1, "", stderr)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """The prod stack of project abfull with the backup overlay and the cipher key and its settings files."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name in pitr.CIPHER_SECRETS:
        (folder / name).write_text("x")
    return Stack("prod", PROJECT, {"SECRETS_DIR": str(folder), "API_IMAGE": "ns/api:build-7"}, backup=True)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    """abfull's postgres, agent and repository host running; psql says the archiver's row and 3 tables."""
    with fake_host(monkeypatch, PROJECT) as made:
        made.states.update({"postgres": "running", "backup-agent": "running", "backup-repo": "running"})
        made.fake.answers[("docker", "exec", "-i", f"{PROJECT}-postgres-1")] = by_sql(
            {"pg_stat_archiver": ARCHIVER_ROW, TABLES_SQL: "3", "pg_is_in_recovery": ["t", "f"]}
        )
        yield made


@pytest.fixture
def pgbackrest(host: Host) -> PgBackRest:
    """pgBackRest wherever the code under test runs it: in the agent, the repository host, or a one-off run."""
    fake = PgBackRest()
    for where in ("backup-agent", "backup-repo"):
        host.fake.answers[("docker", "exec", f"{PROJECT}-{where}-1", "pgbackrest")] = fake
    host.fake.answers[("docker", "compose", "-p", PROJECT, *ONEOFF)] = fake
    return fake


# --- require: the overlay and the cipher key -------------------------------------------------------------


def test_a_stack_without_the_backup_overlay_is_refused_before_anything_runs(stack: Stack, host: Host) -> None:
    stack.backup = False
    with pytest.raises(BadInput, match=r"^the backup overlay is off \(invoke.yaml: ops.backup: false\)"):
        pitr.catalog(stack)
    assert host.commands() == []


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_a_missing_or_empty_cipher_file_is_refused_naming_it_and_nothing_runs(
    stack: Stack, host: Host, how: str
) -> None:
    lost = Path(stack.settings["SECRETS_DIR"]) / "pgbackrest_db_conf"
    if how == "missing":
        lost.unlink()
    else:
        lost.write_text("")
    with pytest.raises(BadInput) as refused:
        pitr.verify(stack)
    assert str(refused.value) == (
        f"the repositories' cipher key is missing ({lost}): without it no backup can be read or written; put back "
        "your copy of secrets/pgbackrest_cipher_pass (and run `invoke secrets.check`); nothing was touched"
    )
    assert host.commands() == []


# --- pgBackRest where it runs ----------------------------------------------------------------------------


def test_the_catalog_is_read_in_the_running_agent_with_a_short_io_timeout_and_the_archiver_from_postgres(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    found = pitr.catalog(stack)
    assert host.commands() == [f"{AGENT} --output=json --io-timeout=5 info", IN_POSTGRES]
    info, archiver = host.fake.calls
    assert info.timeout == 180 and archiver.input == catalog.ARCHIVER_SQL.encode()
    assert [(b.repo, b.label, b.kind) for b in found.backups] == [(1, "20261207-022345F", "full")]
    assert [(r.repo, r.ok) for r in found.repositories] == [(1, True), (2, True)]
    assert found.archiver == catalog.Archiver(12, "00000001000000000000000A", at(600), 0, None, None)


def test_a_stopped_agent_is_read_in_a_one_off_run_and_a_stopped_postgres_has_no_archiver(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    host.states.update({"backup-agent": "exited", "postgres": "exited"})
    found = pitr.catalog(stack)
    # The agent's data volume was lost, say: a one-off run of its service has it again.
    assert host.commands() == [
        host.compose(*ONEOFF, "backup-agent", "--stanza=analyticbot", "--output=json", "--io-timeout=5", "info")
    ]
    assert found.archiver is None and len(found.backups) == 1


@pytest.mark.parametrize("running", [True, False], ids=["exec", "one-off"])
def test_a_failure_of_pgbackrest_is_its_own_error_line_naming_the_command_and_service(
    stack: Stack, host: Host, pgbackrest: PgBackRest, running: bool
) -> None:
    host.states["backup-repo"] = "running" if running else "exited"
    pgbackrest.said["verify"] = runner.Completed(
        [], 82, "2026-12-07 03:04:10.125 P00   INFO: verify command begin\n", "ERROR: [082]: lock already held\n"
    )
    with pytest.raises(OpsError) as failure:
        pitr.verify(stack, [2])
    assert str(failure.value) == "pgBackRest (verify in backup-repo): lock already held"


# --- backup ----------------------------------------------------------------------------------------------


def test_a_backup_runs_where_each_repository_is_local_and_reports_what_it_stored(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    def backed_up(call: runner.Call) -> runner.Completed[Any]:
        repo = int(call.argv[-3].removeprefix("--repo="))
        host.clock.now += 40.0 + repo  # 41 s into repository 1, 42 s into repository 2
        pgbackrest.backups.append(
            _backup(repo, f"20261207-0300{repo}0F_20261207-0310{repo}0D", "diff", T0 + 900, T0 + 960)
        )
        return runner.Completed(list(call.argv), 0, "", "")

    pgbackrest.said["backup"] = backed_up
    # The free space of repository 1's volume is read here; repository 2's volume is not on this host.
    host.held.add(("volume", f"{PROJECT}_pgbackrest"))
    host.fake.answer("docker", "run", "--rm", "--network", "none", stdout="987654321\n")
    said: list[str] = []
    taken = pitr.backup(stack, "diff", (2, 1, 2), progress=said.append)
    assert taken == [
        pitr.Taken(2, "diff", "20261207-030020F_20261207-031020D", 42.0, 3792560),
        pitr.Taken(1, "diff", "20261207-030010F_20261207-031010D", 41.0, 3792560),
    ]
    assert said == ["repository 2: diff backup in backup-repo", "repository 1: diff backup in backup-agent"]
    backups_run = [c for c in host.commands() if c.endswith(" backup")]
    assert backups_run == [f"{REPO_HOST} --repo=2 --type=diff backup", f"{AGENT} --repo=1 --type=diff backup"]
    assert [c.timeout for c in host.fake.calls if c.argv[-1] == "backup"] == [3600.0, 3600.0]


def test_an_unknown_kind_is_refused_before_the_repositories_are_asked(stack: Stack, host: Host) -> None:
    with pytest.raises(BadInput, match=r"^--kind must be dump, full, diff, incr; got 'weekly'$"):
        pitr.backup(stack, "weekly")
    assert host.commands() == []


def test_a_backup_the_repository_does_not_list_afterwards_is_an_error(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    with pytest.raises(OpsError, match=r"^repository 2 lists no backup after a backup that succeeded$"):
        pitr.backup(stack, "full", (2,))
    assert f"{REPO_HOST} --repo=2 --type=full backup" in host.commands()


def test_a_backup_that_fails_for_another_reason_than_space_keeps_pgbackrests_line(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    pgbackrest.said["backup"] = failed("ERROR: [049]: unable to open missing file '/var/lib/postgresql/data/x'\n")
    with pytest.raises(OpsError) as failure:
        pitr.backup(stack, "incr", (1,))
    assert (
        str(failure.value)
        == "pgBackRest (backup in backup-agent): unable to open missing file '/var/lib/postgresql/data/x'"
    )
    assert "no space" not in str(failure.value)


def test_repositories_are_checked_and_each_taken_once_in_the_order_given() -> None:
    assert pitr.check_repos([2, 1, 2]) == (2, 1)
    with pytest.raises(BadInput, match=r"^--repo must be 1 \(this host\) or 2 \(the repository host\), got 0$"):
        pitr.check_repos([1, 0])


# --- verify ----------------------------------------------------------------------------------------------


def test_verify_checks_each_repository_where_it_is_local_and_says_one_line_each(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    clean = "\n".join(line for line in VERIFY_OUTPUT.splitlines() if " P01 " not in line)
    pgbackrest.said["verify"] = runner.Completed([], 0, clean, "")
    assert pitr.verify(stack) == [
        "repository 1: every backup file and WAL segment matches its checksum",
        "repository 2: every backup file and WAL segment matches its checksum",
    ]
    assert host.commands() == [
        f"{AGENT} --repo=1 --log-level-console=info verify",
        f"{REPO_HOST} --repo=2 --log-level-console=info verify",
    ]


def test_verify_names_the_damaged_repository_and_its_files_though_pgbackrest_exits_0(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    pgbackrest.said["verify"] = runner.Completed([], 0, VERIFY_OUTPUT, "")
    with pytest.raises(pitr.Damaged) as damaged:
        pitr.verify(stack, [2, 1])
    assert damaged.value.repo == 2
    assert damaged.value.files == (
        "15-1/0000000200000000/00000002000000000000000A-ec2e0c7b.zst",
        "20261207-022822F/pg_data/base/13572/2654.zst",
    )
    assert host.commands() == [f"{REPO_HOST} --repo=2 --log-level-console=info verify"]  # repository 1 not reached


# --- restore ---------------------------------------------------------------------------------------------

MOMENT = Target(at(300))  # 02:28:45, inside repository 1's window (02:23:49 to 02:33:45)
RESTORE_ARGS = (
    "--stanza=analyticbot",
    "--repo=1",
    "--delta",
    "--type=time",
    "--target=2026-12-07 02:28:45.000000+00",
    "--target-action=promote",
    "restore",
)


@pytest.fixture
def healthy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The wait for every service's health after the restore, recorded instead of polled."""
    calls: list[Any] = []
    monkeypatch.setattr(pitr, "wait_healthy", record(calls, 3.0))
    return calls


@pytest.fixture
def safety(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    """The logical safety dump, recorded; it answers as written to tmp_path."""
    calls: list[Any] = []
    monkeypatch.setattr(pitr.backups, "backup", record(calls, backups.Backup(tmp_path / "pre-restore.dump", 9, 4)))
    return calls


def test_a_forced_restore_dumps_stops_restores_replays_migrates_and_waits_for_health_in_that_order(
    stack: Stack, host: Host, pgbackrest: PgBackRest, healthy: list[Any], safety: list[Any], tmp_path: Path
) -> None:
    def restored(call: runner.Call) -> runner.Completed[Any]:
        host.clock.now += 30.0
        return runner.Completed(list(call.argv), 0, "", "")

    pgbackrest.said["restore"] = restored
    said: list[str] = []
    done = pitr.restore(stack, MOMENT, force=True, timeout=60, backup_dir=tmp_path, keep=3, progress=said.append)
    dump = backups.Backup(tmp_path / "pre-restore.dump", 9, 4)
    # From stopping postgres: 30 s of restore, one half-second wait while the WAL was replayed.
    assert done == pitr.Restored(1, MOMENT, 30.5, 3, dump)
    assert host.commands() == [
        f"{AGENT} --output=json --io-timeout=5 info",
        IN_POSTGRES,  # the archiver
        f"{AGENT} --repo=1 --log-level-console=info verify",
        IN_POSTGRES,  # its tables
        host.compose("stop", "backup-agent", "postgres"),
        host.compose(*ONEOFF, "backup-agent", *RESTORE_ARGS),
        host.compose("up", "-d", "--no-deps", "--no-build", "postgres"),
        IN_POSTGRES,  # still in recovery
        IN_POSTGRES,  # promoted
        host.compose("up", "-d", "--no-deps", "--no-build", "backup-agent"),
        host.compose("run", "--rm", "--no-deps", "-T", "migrate"),
        IN_POSTGRES,  # the tables restored
    ]
    assert [c.input for c in host.fake.calls if c.argv[1:3] == ("exec", "-i")][2:4] == [
        b"SELECT pg_is_in_recovery();"
    ] * 2
    ((dumped_stack, folder), options), *_ = safety
    assert dumped_stack is stack and folder == tmp_path
    assert options == {"keep": 3, "label": "pre-restore", "database": InContainer(f"{PROJECT}-postgres-1")}
    assert healthy == [((stack, list(stack.running), 60, said.append), {"fail_fast": False})]
    assert said == [
        "repository 1: checking every backup file and WAL segment (pgBackRest's verify)",
        f"safety dump of the current database: {tmp_path / 'pre-restore.dump'}",
        "stopping postgres and backup-agent; restoring to 2026-12-07T02:28:45+00:00 from repository 1",
        "restored the files; starting postgres to replay the WAL",
    ]


def test_a_database_with_tables_is_not_replaced_without_force_and_nothing_is_stopped(
    stack: Stack, host: Host, pgbackrest: PgBackRest, healthy: list[Any], safety: list[Any]
) -> None:
    with pytest.raises(BadInput) as refused:
        pitr.restore(stack, MOMENT)
    assert str(refused.value) == (
        "the abfull database is not empty (3 tables): use --force to replace it with its state at "
        "2026-12-07T02:28:45+00:00 (a logical safety dump is taken first)"
    )
    assert not [c for c in host.commands() if c.startswith("docker compose")]
    assert safety == [] and healthy == []
    assert host.states["postgres"] == "running"


def test_a_stopped_postgres_is_restored_to_latest_without_a_safety_dump(
    stack: Stack, host: Host, pgbackrest: PgBackRest, healthy: list[Any], safety: list[Any]
) -> None:
    host.states["postgres"] = "exited"
    done = pitr.restore(stack, Target(None))
    assert done.safety_dump is None and done.repo == 1 and done.tables == 3
    assert safety == []
    assert (
        host.compose(
            *ONEOFF, "backup-agent", "--stanza=analyticbot", "--repo=1", "--delta", "--type=default", "restore"
        )
        in host.commands()
    )
    # The tables are counted once, after the restore; nothing asked postgres before it was started.
    first_psql = host.commands().index(IN_POSTGRES)
    assert first_psql > host.commands().index(host.compose("up", "-d", "--no-deps", "--no-build", "postgres"))
    assert host.states == {"postgres": "running", "backup-agent": "running", "backup-repo": "running"}


ABORTED_VERIFY = (
    "2026-12-07 09:12:04.371 P00   INFO: verify command begin 2.45: --repo=1 --stanza=analyticbot\n"
    "2026-12-07 09:12:04.379 P00  ERROR: [029]: zst error: [-20] Data corruption detected\n"
    "2026-12-07 09:12:04.380 P00   INFO: verify command end: aborted with exception [029]\n"
)


def test_a_file_that_no_longer_decompresses_is_damage_too_though_pgbackrest_names_none(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    pgbackrest.said["verify"] = runner.Completed([], 29, "", ABORTED_VERIFY)
    with pytest.raises(pitr.Damaged) as damaged:
        pitr.verify(stack, [1])
    assert (damaged.value.repo, damaged.value.files) == (1, ())
    assert str(damaged.value) == (
        "repository 1 is damaged: pgBackRest's verify stopped at a file it cannot read back "
        "(zst error: [-20] Data corruption detected)"
    )


def test_a_verify_that_fails_for_another_reason_is_no_verdict_on_the_files(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    said = "2026-12-07 09:12:04.379 P00  ERROR: [056]: unable to find primary cluster - cannot proceed\n"
    pgbackrest.said["verify"] = runner.Completed(
        [], 56, "", said + "verify command end: aborted with exception [056]\n"
    )
    with pytest.raises(OpsError, match=r"unable to find primary cluster") as failed:
        pitr.verify(stack, [1])
    assert not isinstance(failed.value, pitr.Damaged)


def test_a_damaged_repository_refuses_the_restore_pointing_at_the_other_one(
    stack: Stack, host: Host, pgbackrest: PgBackRest, healthy: list[Any], safety: list[Any]
) -> None:
    pgbackrest.said["verify"] = runner.Completed([], 0, VERIFY_OUTPUT, "")
    with pytest.raises(BadInput) as refused:
        pitr.restore(stack, MOMENT, force=True)
    assert str(refused.value) == (
        "repository 1 is damaged: 2 files fail pgBackRest's verify: "
        "15-1/0000000200000000/00000002000000000000000A-ec2e0c7b.zst, 20261207-022822F/pg_data/base/13572/2654.zst; "
        "a restore from it could stop half-way, so nothing was touched (try --repo 2)"
    )
    assert not [c for c in host.commands() if c.startswith("docker compose")] and safety == []


def test_a_moment_after_the_last_archived_segment_is_restored_with_a_note(
    stack: Stack, host: Host, pgbackrest: PgBackRest, healthy: list[Any], safety: list[Any]
) -> None:
    host.fake.answers[("docker", "exec", "-i", f"{PROJECT}-postgres-1")] = by_sql(
        {"pg_stat_archiver": ARCHIVER_ROW, TABLES_SQL: "0", "pg_is_in_recovery": "f"}
    )
    said: list[str] = []
    done = pitr.restore(stack, Target(at(700)), progress=said.append)
    assert "note: the last archived segment is from 02:33:45; writes after it may not be there" in said
    # An empty database needs neither --force nor a safety dump.
    assert done.safety_dump is None and safety == []


def test_a_moment_the_repository_cannot_reach_is_refused_before_verify(
    stack: Stack, host: Host, pgbackrest: PgBackRest
) -> None:
    with pytest.raises(BadInput, match="before the earliest restore point of repository 1"):
        pitr.restore(stack, Target(at(0)), force=True)
    assert not [c for c in host.commands() if c.endswith(" verify") or c.startswith("docker compose")]


@pytest.mark.parametrize("tables", ["3", "0"], ids=["safety dump", "empty database"])
def test_a_failed_restore_says_postgres_is_stopped_and_where_the_safety_dump_is(
    stack: Stack,
    host: Host,
    pgbackrest: PgBackRest,
    healthy: list[Any],
    safety: list[Any],
    tmp_path: Path,
    tables: str,
) -> None:
    host.fake.answers[("docker", "exec", "-i", f"{PROJECT}-postgres-1")] = by_sql(
        {"pg_stat_archiver": ARCHIVER_ROW, TABLES_SQL: tables}
    )
    pgbackrest.said["restore"] = runner.Completed(
        [],
        38,
        "P00   INFO: restore command begin 2.45\n",
        "ERROR: [038]: unable to restore while PostgreSQL is running\n",
    )
    with pytest.raises(OpsError) as failure:
        pitr.restore(stack, MOMENT, force=True)
    where = f"; the safety dump is {tmp_path / 'pre-restore.dump'}" if tables != "0" else ""
    assert str(failure.value) == (
        f"the restore failed: unable to restore while PostgreSQL is running; postgres is stopped{where}"
    )
    assert host.commands()[-1] == host.compose(*ONEOFF, "backup-agent", *RESTORE_ARGS)  # nothing started after it
    assert host.states["postgres"] == "exited" and healthy == []


# --- wait_promoted ---------------------------------------------------------------------------------------


class Replaying:
    """A PostgreSQL that answers pg_is_in_recovery() with `answers` in turn (the last from then on)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[list[str], bytes | None]] = []

    def run(self, command: list[str], stdin: bytes | None = None) -> bytes:
        self.asked.append((command, stdin))
        return (self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]).encode() + b"\n"


def test_promotion_is_awaited_until_postgres_leaves_recovery(host: Host) -> None:
    database = Replaying("t", "t", "f")
    pitr.wait_promoted(lambda: database, 10)
    assert host.clock.slept == [0.5, 0.5]
    assert (
        database.asked
        == [(["psql", "-U", backups.DB_USER, "-d", backups.DB_NAME, "-tA"], b"SELECT pg_is_in_recovery();")] * 3
    )


def test_a_replay_that_outlasts_the_timeout_is_one_line_saying_so(host: Host) -> None:
    with pytest.raises(OpsError) as late:
        pitr.wait_promoted(lambda: Replaying("t"), 2)
    assert str(late.value) == (
        "postgres did not finish recovery within 2 s (still replaying the WAL); see `invoke stack.logs postgres`"
    )
    assert host.clock.slept == [0.5] * 4


def test_a_postgres_that_never_comes_back_is_one_line_with_the_last_reason(host: Host) -> None:
    def gone() -> backups.Database:
        raise OpsError(f"postgres of {PROJECT} is not running; start the stack first")

    with pytest.raises(OpsError) as late:
        pitr.wait_promoted(gone, 1.5)
    assert str(late.value) == (
        "postgres did not finish recovery within 1.5 s (postgres of abfull is not running; start the stack first); "
        "see `invoke stack.logs postgres`"
    )


def test_now_is_an_aware_utc_time() -> None:
    moment = pitr.now()
    assert moment.tzinfo is UTC and abs((dt.datetime.now(UTC) - moment).total_seconds()) < 5


def test_a_failure_after_the_files_are_restored_still_says_where_the_safety_dump_is(
    monkeypatch: pytest.MonkeyPatch,
    stack: Stack,
    host: Host,
    pgbackrest: PgBackRest,
    healthy: list[Any],
    safety: list[Any],
    tmp_path: Path,
) -> None:
    """The files are replaced by then: whatever fails next (here the WAL replay never ends), the database as it
    was is in the safety dump, and the message says where."""
    host.fake.answers[("docker", "exec", "-i", f"{PROJECT}-postgres-1")] = by_sql(
        {"pg_stat_archiver": ARCHIVER_ROW, TABLES_SQL: "3"}
    )

    def never_promoted(_database: Any, _timeout: float) -> None:
        raise OpsError("postgres is still replaying the WAL after 1 s")

    monkeypatch.setattr(pitr, "wait_promoted", never_promoted)
    with pytest.raises(OpsError) as failure:
        pitr.restore(stack, MOMENT, force=True)
    assert str(failure.value) == (
        "postgres is still replaying the WAL after 1 s; the database before the restore is in the safety dump "
        f"{tmp_path / 'pre-restore.dump'}"
    )
