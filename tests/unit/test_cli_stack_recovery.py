"""`stack.restore --to T --into PROJECT` (the drill), the restore task's option checks, and `stack.backup`'s
pgBackRest paths (--kind, --verify) in cli/stack.py. The drill and pgBackRest are replaced: no Docker."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import releases
from analyticbot_ops.cli import stack as stack_cli
from analyticbot_ops.errors import EXIT_BAD_INPUT, EXIT_FAILED
from analyticbot_ops.recovery import drill
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
