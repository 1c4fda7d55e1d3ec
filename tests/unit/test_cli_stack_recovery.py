"""`stack.restore --to T --into PROJECT` (the drill), the restore task's option checks, `stack.restore --to`'s
report, `stack.backup`'s pgBackRest paths (--kind, --verify) in cli/stack.py, and `stack.backups`: its --json
keys and its tables (cli/_recovery.py). The drill and pgBackRest are replaced: no Docker."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from analyticbot_ops import backups, releases
from analyticbot_ops.cli import _recovery
from analyticbot_ops.cli import stack as stack_cli
from analyticbot_ops.errors import EXIT_BAD_INPUT, EXIT_FAILED
from analyticbot_ops.recovery import drill, pitr
from analyticbot_ops.recovery.catalog import Archiver, BackupSet, Catalog, Repository
from analyticbot_ops.recovery.target import Target
from tests.unit.cli_support import context, fails, isolated_tasks, record


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    with isolated_tasks(monkeypatch, tmp_path):
        # The pinned stack's images without asking the daemon which this checkout built.
        monkeypatch.setattr(releases, "pinned_settings", lambda unnamed, state_dir=None: {})
        yield


@pytest.fixture
def nothing_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any restore or drill that would run fails the test."""
    for module, name in ((stack_cli.pitr, "restore"), (stack_cli.backups, "restore"), (stack_cli.drill, "drill")):
        monkeypatch.setattr(module, name, record([], AssertionError(f"{name} ran")))


# --- restore: which options go together ---------------------------------------------------------------


def test_into_without_to_is_bad_input(nothing_restored: None) -> None:
    expected = "error: --into is the drill of a point-in-time restore: give --to latest|TIME with it"
    assert fails(EXIT_BAD_INPUT, stack_cli.restore, context(), into="analyticbot-dev-drill") == expected
    assert fails(EXIT_BAD_INPUT, stack_cli.restore, context(), "x.dump", into="analyticbot-dev-drill") == expected


def test_an_empty_into_is_refused_not_taken_for_a_restore_of_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_cli.pitr, "restore", record([], AssertionError("the stack itself was restored")))
    # The drill's own check (not replaced), before the repositories or the daemon are asked anything.
    message = fails(EXIT_BAD_INPUT, stack_cli.restore, context(), to="latest", into="")
    assert message.startswith("error: --into must be a project name of lower-case letters, digits, - and _")


@pytest.mark.parametrize(
    "options", [{"file": "x.dump", "to": "latest"}, {}, {"file": "", "to": ""}], ids=["both", "neither", "empty"]
)
def test_exactly_one_of_file_and_to(nothing_restored: None, options: dict[str, str]) -> None:
    message = fails(EXIT_BAD_INPUT, stack_cli.restore, context(), **options)
    assert message == "error: give exactly one of --to latest|TIME (point in time) or --file DUMP (a pg_dump)"


@pytest.mark.parametrize("option", ["keep", "json"])
def test_keep_and_json_go_with_into_only(nothing_restored: None, option: str) -> None:
    message = fails(EXIT_BAD_INPUT, stack_cli.restore, context(), to="latest", **{option: True})
    assert message == f"error: --{option} goes with --into (the drill); nothing was touched"


# --- restore --into: the drill -------------------------------------------------------------------------

MOMENT = Target(dt.datetime(2026, 12, 6, 16, 59, tzinfo=dt.UTC))


def drilled(
    monkeypatch: pytest.MonkeyPatch, counts: dict[str, tuple[int | None, int | None]], kept: str | None = None
) -> list[Any]:
    calls: list[Any] = []
    result = drill.Drill("analyticbot-drill", 2, MOMENT, 41.46, counts, kept)
    monkeypatch.setattr(stack_cli.drill, "drill", record(calls, result))
    monkeypatch.setattr(stack_cli.pitr, "restore", record([], AssertionError("the stack itself was restored")))
    return calls


def test_a_drill_that_matches_prints_each_table_and_the_rto(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    calls = drilled(monkeypatch, {"bot_users": (1204, 1204), "channels": (3, 3)})
    stack_cli.restore(
        context(), to="2026-12-06T16:59:00Z", into="analyticbot-drill", env="prod", repo="2", timeout="90"
    )
    ((stack, target, project), kwargs), *_ = calls
    assert (stack.project, target, project) == ("analyticbot", MOMENT, "analyticbot-drill")
    assert kwargs == {"repo": 2, "keep": False, "timeout": 90.0, "progress": stack_cli.progress}
    out = capsys.readouterr().out
    # The title, wrapped to the table's width.
    assert "drill analyticbot-drill:" in out and "2026-12-06T16:59:00+00:00 from repository 2" in out
    assert "bot_users" in out and "1204" in out and "DIFFERS" not in out
    assert "restored and promoted in 41.5 s (the RTO); the copy was removed" in out


def test_a_drill_whose_copy_differs_exits_1_naming_the_tables(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    counts = {"bot_users": (1204, 1203), "channels": (3, 3), "posts": (7, None)}
    calls = drilled(monkeypatch, counts, kept="analyticbot-drill_postgres_1")
    message = fails(EXIT_FAILED, stack_cli.restore, context(), to="latest", into="analyticbot-drill", keep=True)
    assert message.startswith("error: the drill's copy differs from the source in bot_users, posts (rows written")
    ((_, target, _), kwargs), *_ = calls
    assert target == Target(None) and kwargs["repo"] is None and kwargs["keep"] is True
    assert kwargs["timeout"] == 600
    out = capsys.readouterr().out
    assert out.count("DIFFERS") == 2 and "the copy was kept as container analyticbot-drill_postgres_1" in out


def test_a_drill_as_json_prints_the_documented_keys(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    drilled(monkeypatch, {"bot_users": (1204, 1203), "posts": (None, 2)})
    fails(EXIT_FAILED, stack_cli.restore, context(), to="latest", into="analyticbot-drill", json=True)
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "project": "analyticbot-drill",
        "repo": 2,
        "target": "2026-12-06T16:59:00+00:00",
        "seconds": 41.5,
        "tables": {"bot_users": {"source": 1204, "copy": 1203}, "posts": {"source": None, "copy": 2}},
        "matches": False,
        "kept": None,
    }
    drilled(monkeypatch, {"bot_users": (5, 5)})
    stack_cli.restore(context(), to="latest", into="analyticbot-drill", json=True)
    assert json.loads(capsys.readouterr().out)["matches"] is True


def test_a_drill_to_a_bad_time_is_refused_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = drilled(monkeypatch, {})
    assert "--to must be `latest` or a time" in fails(EXIT_BAD_INPUT, stack_cli.restore, context(), to="soon", into="d")
    assert calls == []


# --- backup: pgBackRest --------------------------------------------------------------------------------


def test_backup_of_an_unknown_kind_is_refused_by_pgbackrests_own_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_cli.backups, "backup", record([], AssertionError("a dump was written")))
    monkeypatch.setattr(stack_cli.pitr, "_pgbackrest", record([], AssertionError("pgBackRest ran")))
    message = fails(EXIT_BAD_INPUT, stack_cli.backup, context(), kind="bogus")
    assert message == "error: --kind must be dump, full, diff, incr; got 'bogus'"


def test_verify_alone_checks_both_repositories_and_the_newest_dump(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    verified: list[Any] = []
    monkeypatch.setattr(
        stack_cli.pitr,
        "verify",
        lambda stack, repos: verified.append((stack.project, repos)) or [f"repository {r}: fine" for r in repos],
    )
    newest = tmp_path / "analyticbot-20301201T000000Z.dump"
    monkeypatch.setattr(stack_cli.backups, "backups_of", lambda folder, project: [tmp_path / "older.dump", newest])
    dumps: list[Any] = []
    monkeypatch.setattr(stack_cli.backups, "verify", lambda stack, path: dumps.append(path) or 31)
    stack_cli.backup(context(), env="prod", verify=True)
    assert verified == [("analyticbot", (1, 2))] and dumps == [newest]
    assert capsys.readouterr().out == (
        f"repository 1: fine\nrepository 2: fine\n{newest}: whole, 31 entries, every data block read back\n"
    )
    # One repository; no dump yet: the repository only.
    monkeypatch.setattr(stack_cli.backups, "backups_of", lambda folder, project: [])
    stack_cli.backup(context(), env="prod", verify=True, repo="2")
    assert verified[-1] == ("analyticbot", (2,)) and len(dumps) == 1
    assert capsys.readouterr().out == "repository 2: fine\n"


def test_verify_with_a_file_checks_that_dump_only(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(stack_cli.pitr, "verify", record([], AssertionError("the repositories were verified")))
    dumps: list[Any] = []
    monkeypatch.setattr(stack_cli.backups, "verify", lambda stack, path: dumps.append((stack.env, path)) or 12)
    stack_cli.backup(context(), verify="backups/a.dump")
    assert dumps == [("dev", Path("backups/a.dump"))]
    assert capsys.readouterr().out == "backups/a.dump: whole, 12 entries, every data block read back\n"


def test_backup_of_a_kind_takes_it_in_both_repositories_and_prints_each(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    calls: list[Any] = []
    taken = [
        pitr.Taken(1, "full", "20261207-022345F", 41.46, 3792560),
        pitr.Taken(2, "full", "20261207-022411F", 3.04, 7),
    ]
    monkeypatch.setattr(stack_cli.pitr, "backup", record(calls, taken))
    monkeypatch.setattr(stack_cli.backups, "backup", record([], AssertionError("a dump was written")))
    stack_cli.backup(context(), env="prod", kind="full")
    ((stack, kind, repos), kwargs), *_ = calls
    assert (stack.project, kind, repos, kwargs) == ("analyticbot", "full", (1, 2), {"progress": stack_cli.progress})
    assert capsys.readouterr().out == (
        "repository 1: full backup 20261207-022345F in 41.5 s, 3792560 bytes stored\n"
        "repository 2: full backup 20261207-022411F in 3.0 s, 7 bytes stored\n"
    )


# --- restore --to: the stack itself --------------------------------------------------------------------


@pytest.mark.parametrize("dump", [Path("backups/pre.dump"), None], ids=["safety dump", "empty database"])
def test_a_point_in_time_restore_reports_the_repository_time_tables_and_any_safety_dump(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, dump: Path | None
) -> None:
    calls: list[Any] = []
    safety = backups.Backup(dump, 10, 4) if dump else None
    monkeypatch.setattr(stack_cli.pitr, "restore", record(calls, pitr.Restored(2, MOMENT, 73.26, 14, safety)))
    monkeypatch.setattr(stack_cli.drill, "drill", record([], AssertionError("a drill ran")))
    stack_cli.restore(context(), to="2026-12-06T16:59:00Z", env="prod", repo="2", force=True, timeout="90")
    ((stack, target), kwargs), *_ = calls
    assert (stack.project, target) == ("analyticbot", MOMENT)
    assert kwargs == {"repo": 2, "force": True, "timeout": 90.0, "keep": 7, "progress": stack_cli.progress}
    saved = f"; the database as it was is in {dump}" if dump else ""
    said = " ".join(capsys.readouterr().out.split())  # as one line, however rich wrapped it
    assert said == (
        "restored to 2026-12-06T16:59:00+00:00 from repository 2 in 73.3 s: 14 tables, the runtime grants applied, "
        f"every service healthy{saved}"
    )


# --- backups: the catalog ------------------------------------------------------------------------------

UTC = dt.UTC
CET = dt.timezone(dt.timedelta(hours=1))
ARCHIVED = dt.datetime(2026, 12, 7, 3, 10, tzinfo=UTC)
NOW = ARCHIVED + dt.timedelta(seconds=12.34)
FULL = BackupSet(
    1,
    "20261207-022345F",
    "full",
    dt.datetime(2026, 12, 7, 2, 23, 45, tzinfo=UTC),
    dt.datetime(2026, 12, 7, 2, 23, 49, tzinfo=UTC),
    30754313,
    3792560,
    "000000010000000000000003",
    "000000010000000000000003",
)
DIFF = BackupSet(  # its times as another zone has them: shown in UTC
    1,
    "20261207-022345F_20261207-030000D",
    "diff",
    dt.datetime(2026, 12, 7, 4, 0, 0, tzinfo=CET),
    dt.datetime(2026, 12, 7, 4, 0, 30, tzinfo=CET),
    31000000,
    250000,
    "000000010000000000000007",
    "000000010000000000000008",
)
DOWN = "[HostConnectError] unable to connect to 'backup-repo:8432': [111] Connection refused"


def found(archiver: Archiver | None) -> Catalog:
    """Repository 1 with a full and a diff backup; repository 2 unreachable."""
    repos = (
        Repository(1, True, "ok", "000000010000000000000001", "00000001000000000000000A"),
        Repository(2, False, DOWN, None, None),
    )
    return Catalog(repos, (FULL, DIFF), archiver)


def archiver(failed_at: dt.datetime) -> Archiver:
    return Archiver(12, "00000001000000000000000A", ARCHIVED, 2, "00000001000000000000000B", failed_at)


def test_backups_as_json_gives_each_repository_its_window_each_backup_and_the_archive(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    asked: list[Any] = []
    monkeypatch.setattr(stack_cli.pitr, "now", lambda: NOW)
    monkeypatch.setattr(stack_cli.pitr, "catalog", record(asked, found(archiver(ARCHIVED - dt.timedelta(minutes=5)))))
    stack_cli.backups_(context(), env="prod", json=True)
    ((stack,), _), *_ = asked
    assert (stack.env, stack.project) == ("prod", "analyticbot")
    assert json.loads(capsys.readouterr().out) == {
        "repositories": [
            {
                "repo": 1,
                "ok": True,
                "status": "ok",
                "wal_min": "000000010000000000000001",
                "wal_max": "00000001000000000000000A",
                "earliest_restore_point": "2026-12-07T02:23:49+00:00",  # the end of the oldest backup
                "latest_restore_point": "2026-12-07T03:10:00+00:00",  # the last archived segment
            },
            {
                "repo": 2,
                "ok": False,
                "status": DOWN,
                "wal_min": None,
                "wal_max": None,
                "earliest_restore_point": None,
                "latest_restore_point": None,
            },
        ],
        "backups": [
            {
                "repo": 1,
                "label": "20261207-022345F",
                "kind": "full",
                "started": "2026-12-07T02:23:45+00:00",
                "stopped": "2026-12-07T02:23:49+00:00",
                "size_bytes": 30754313,
                "stored_bytes": 3792560,
                "wal_start": "000000010000000000000003",
                "wal_stop": "000000010000000000000003",
            },
            {
                "repo": 1,
                "label": "20261207-022345F_20261207-030000D",
                "kind": "diff",
                "started": "2026-12-07T03:00:00+00:00",
                "stopped": "2026-12-07T03:00:30+00:00",
                "size_bytes": 31000000,
                "stored_bytes": 250000,
                "wal_start": "000000010000000000000007",
                "wal_stop": "000000010000000000000008",
            },
        ],
        "archive": {
            "archived": 12,
            "last_archived_wal": "00000001000000000000000A",
            "last_archived_at": "2026-12-07T03:10:00+00:00",
            "age_seconds": 12.3,
            "failed": 2,
            "last_failed_wal": "00000001000000000000000B",
            "last_failed_at": "2026-12-07T03:05:00+00:00",
            "failing": False,  # a segment was archived since the last failure
        },
    }


def test_backups_as_json_has_no_archive_while_postgres_is_down(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(stack_cli.pitr, "catalog", record([], found(None)))
    stack_cli.backups_(context(), json=True)
    view = json.loads(capsys.readouterr().out)
    assert view["archive"] is None
    # Without the archiver, repository 1's window ends with its newest backup.
    assert view["repositories"][0]["latest_restore_point"] == "2026-12-07T03:00:30+00:00"


def rows(text: str) -> list[list[str]]:
    """The cells of each row of the rich tables in `text`, a cell rich wrapped onto more lines joined again."""
    found: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if found and not cells[0]:  # a wrapped row goes on
            found[-1] = [" ".join(filter(None, pair)) for pair in zip(found[-1], cells, strict=True)]
        else:
            found.append(cells)
    return found


def test_backups_prints_the_backups_the_repositories_and_a_failing_archive(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(stack_cli.pitr, "now", lambda: NOW)
    failing = archiver(ARCHIVED + dt.timedelta(minutes=2))  # failed after the last segment it archived
    monkeypatch.setattr(stack_cli.pitr, "catalog", record([], found(failing)))
    stack_cli.backups_(context(), env="prod")
    out = capsys.readouterr().out
    assert rows(out) == [
        ["1", "20261207-022345F", "full", "2026-12-07T02:23:49+00:00", "30.8 MB", "3.8 MB"],
        ["1", "20261207-022345F_20261207-030000D", "diff", "2026-12-07T03:00:30+00:00", "31.0 MB", "0.2 MB"],
        ["1", "this host (volume pgbackrest)", "ok", "2026-12-07T02:23:49+00:00", "2026-12-07T03:10:00+00:00"],
        ["2", "repository host (TLS)", DOWN, "-", "-"],  # pgBackRest's words as said, brackets and all
    ]
    assert out.index("backups") < out.index("repositories") < out.index("WAL archive")
    assert out.splitlines()[-1] == (
        "WAL archive: FAILING; last segment 00000001000000000000000A (12.3 s ago), 12 archived, 2 failed "
        "(last 00000001000000000000000B at 2026-12-07T03:12:00+00:00)"
    )


def test_an_archive_that_never_failed_never_archived_or_cannot_be_read_is_one_line_each() -> None:
    console = Console(record=True, width=160)
    for archiver_ in (
        Archiver(5, "000000010000000000000005", ARCHIVED, 0, None, None),
        Archiver(0, None, None, 0, None, None),
        None,
    ):
        _recovery.print_catalog(console, _recovery.as_dict(Catalog((), (), archiver_), NOW))
    lines = [line for line in console.export_text().splitlines() if line.startswith("WAL archive")]
    assert lines == [
        "WAL archive: ok; last segment 000000010000000000000005 (12.3 s ago), 5 archived, 0 failed",
        "WAL archive: ok; last segment - (- s ago), 0 archived, 0 failed",
        "WAL archive: postgres is not running, so its archiver cannot be read",
    ]


def test_a_repository_this_toolkit_does_not_know_is_shown_without_a_place() -> None:
    console = Console(record=True, width=160)
    view = _recovery.as_dict(Catalog((Repository(3, True, "ok", None, None),), (), None), NOW)
    _recovery.print_catalog(console, view)
    assert ["3", "?", "ok", "-", "-"] in rows(console.export_text())
