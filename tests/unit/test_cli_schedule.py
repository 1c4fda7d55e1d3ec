"""The `schedule` tasks (cli/schedule.py): what install, remove and status print, status's exit code when a
job's last run failed, and run's record and exit code. The units go to tmp_path, the records too; systemd
and Docker are replaced (tests/unit/test_schedule.py runs the real systemd-analyze)."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import schedule
from analyticbot_ops.cli import schedule as schedule_cli
from analyticbot_ops.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNHEALTHY
from tests.unit.cli_support import context, fails, record
from tests.unit.cli_support import no_docker as no_docker  # autouse: each test's tasks run isolated

TIMERS = "analyticbot-prod-tls-renew.timer analyticbot-prod-restore-drill.timer"


@pytest.fixture
def records(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The run records in tmp_path; next runs without systemd-analyze."""
    folder = tmp_path / "records"
    monkeypatch.setattr(schedule, "host_rows", functools.partial(schedule.host_rows, records=folder))
    monkeypatch.setattr(schedule, "next_elapse", lambda calendar: f"next {calendar}")
    return folder


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """systemd-analyze verify passes; the names of the units it was given."""
    seen: list[list[str]] = []
    monkeypatch.setattr(schedule, "verify", lambda paths: seen.append([p.name for p in paths]))
    return seen


def write_record(folder: Path, job: str, exit_code: int, said: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"job": job, "env": "prod", "started": "2026-12-06T03:17:04+00:00", "seconds": 3.0}
    (folder / f"prod-{job}.json").write_text(json.dumps({**data, "exit_code": exit_code, "said": said}))


# --- install, remove -------------------------------------------------------------------------------------


def test_install_into_a_folder_where_systemd_does_not_run_says_how_to_start_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verified: list[list[str]], capsys: Any
) -> None:
    monkeypatch.setattr(schedule, "systemd_runs", lambda: False)
    units = tmp_path / "units"
    units.mkdir()
    schedule_cli.install(context(), env="prod", unit_dir=str(units))
    assert verified == [list(schedule.units("prod"))]
    assert sorted(p.name for p in units.iterdir()) == sorted(schedule.units("prod"))
    captured = capsys.readouterr()
    assert captured.out == (
        f"prod: units written and verified; systemd does not run them here: `systemctl enable --now {TIMERS}`\n"
    )
    assert f"wrote {units / 'analyticbot-prod-tls-renew.timer'}" in captured.err


def test_install_into_another_folder_where_systemd_runs_enables_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verified: list[list[str]], capsys: Any
) -> None:
    monkeypatch.setattr(schedule, "systemd_runs", lambda: True)
    schedule_cli.install(context(), unit_dir=str(tmp_path))
    out = capsys.readouterr().out
    assert f"prod: units written to {tmp_path} and verified; it is not /etc/systemd/system, so none was" in out
    assert f"`systemctl enable --now {TIMERS}`" in out


def test_install_says_when_the_timers_were_started(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(schedule, "install", record(calls, schedule.Installed((), True)))
    schedule_cli.install(context(), env="staging")
    assert calls == [(("staging", schedule.UNIT_DIR), {"context": None})]
    assert capsys.readouterr().out == "staging: timers enabled and started (tls-renew, restore-drill)\n"
    # For a swarm: only what runs for one.
    schedule_cli.install(context(), env="prod", context="analyticbot-lab")
    assert calls[-1] == (("prod", schedule.UNIT_DIR), {"context": "analyticbot-lab"})
    assert capsys.readouterr().out == "prod on analyticbot-lab: timers enabled and started (tls-renew)\n"


def test_install_refuses_an_unknown_environment_or_a_missing_folder(tmp_path: Path, verified: list[list[str]]) -> None:
    assert "unknown environment 'qa'" in fails(EXIT_BAD_INPUT, schedule_cli.install, context(), env="qa")
    message = fails(EXIT_BAD_INPUT, schedule_cli.install, context(), unit_dir=str(tmp_path / "absent"))
    assert message == f"error: {tmp_path / 'absent'} is not a folder: is this host run by systemd?"


def test_remove_deletes_the_units_and_says_when_there_were_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    for name in schedule.units("prod"):
        (tmp_path / name).write_text("x")
    schedule_cli.remove(context(), unit_dir=str(tmp_path))
    schedule_cli.remove(context(), unit_dir=str(tmp_path))
    assert capsys.readouterr().out == "prod: removed 4 units\nprod: no units of ours were installed\n"
    assert list(tmp_path.iterdir()) == []


# --- status ----------------------------------------------------------------------------------------------

BACKUP_OK = schedule.Row(
    "backup repository 1", "in the stack (backup-agent)", True, "2026-12-07T02:20:00+00:00", "ok: full backup in 4 s",
    "2026-12-08T02:20:00+00:00",
)  # fmt: skip
BACKUP_FAILED = schedule.Row(
    "backup repository 2", "in the stack (backup-repo)", True, "2026-12-07T02:20:00+00:00",
    "failed: diff backup in 9 s", "2026-12-07T03:20:00+00:00",
)  # fmt: skip


def test_status_shows_every_schedule_and_exits_0_when_none_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, records: Path, capsys: Any
) -> None:
    stacks: list[Any] = []
    monkeypatch.setattr(schedule, "stack_rows", lambda stack: stacks.append(stack) or [BACKUP_OK])
    (tmp_path / "analyticbot-prod-tls-renew.timer").write_text("x")
    write_record(records, "tls-renew", 0, "nothing due")
    schedule_cli.status(context(), env="prod", unit_dir=str(tmp_path))
    out = capsys.readouterr().out
    assert "prod: schedules" in out and "ok: nothing due" in out and "next *-*-* 03,15:17:00" in out
    assert "never ran" in out and "ok: full backup in 4 s" in out
    assert [s.project for s in stacks] == ["analyticbot"]


def test_status_exits_1_when_a_host_jobs_last_run_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, records: Path, capsys: Any
) -> None:
    monkeypatch.setattr(schedule, "stack_rows", lambda stack: [BACKUP_OK])
    write_record(records, "tls-renew", 0, "nothing due")
    write_record(records, "restore-drill", 1, "error: the drill's copy differs from the source in bot_users")
    message = fails(EXIT_FAILED, schedule_cli.status, context(), unit_dir=str(tmp_path))
    assert message == "error: the last run of restore-drill failed"
    assert "exit 1: error:" in capsys.readouterr().out


def test_status_exits_1_when_the_stacks_last_backup_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, records: Path
) -> None:
    monkeypatch.setattr(schedule, "stack_rows", lambda stack: [BACKUP_OK, BACKUP_FAILED])
    message = fails(EXIT_FAILED, schedule_cli.status, context(), unit_dir=str(tmp_path))
    assert message == "error: the last run of backup repository 2 failed"


def test_status_as_json_lists_the_rows_and_still_exits_by_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, records: Path, capsys: Any
) -> None:
    monkeypatch.setattr(schedule, "stack_rows", lambda stack: [BACKUP_OK])
    write_record(records, "tls-renew", 2, "error: --domain is not a domain")
    fails(EXIT_FAILED, schedule_cli.status, context(), unit_dir=str(tmp_path), json=True)
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "job": "tls-renew",
        "where": "host timer",
        "installed": False,
        "last_run": "2026-12-06T03:17:04+00:00",
        "result": "exit 2: error: --domain is not a domain",
        "next_run": None,
    }
    assert [r["job"] for r in rows] == ["tls-renew", "restore-drill", "backup repository 1"]
    assert rows[1]["result"] == "never ran" and rows[2]["result"] == "ok: full backup in 4 s"


def test_status_without_the_backup_overlay_asks_no_container(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, records: Path, capsys: Any
) -> None:
    monkeypatch.setattr(schedule, "stack_rows", record([], AssertionError("the stack was asked")))
    schedule_cli.status(context(backup=False), unit_dir=str(tmp_path), json=True)
    assert [r["job"] for r in json.loads(capsys.readouterr().out)] == ["tls-renew", "restore-drill"]


# --- run -------------------------------------------------------------------------------------------------


def running(monkeypatch: pytest.MonkeyPatch, folder: Path, returncode: int, output: str) -> list[list[str]]:
    """schedule.run with its records in `folder` and the job's `invoke` answering `returncode` and `output`."""
    seen: list[list[str]] = []

    def command(args: list[str]) -> subprocess.CompletedProcess[str]:
        seen.append(args)
        return subprocess.CompletedProcess(args, returncode, output, "")

    monkeypatch.setattr(schedule, "run", functools.partial(schedule.run, records=folder, command=command))
    return seen


def test_run_records_the_job_and_prints_its_last_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    seen = running(monkeypatch, tmp_path / "records", 0, "restored and promoted in 41.5 s (the RTO)\n")
    schedule_cli.run(context(), job="restore-drill", env="staging")
    assert seen[0][1:] == ["stack.restore", "--to", "latest", "--into", "analyticbot-staging-drill", "--env", "staging"]
    out = capsys.readouterr().out
    assert out.startswith("restore-drill: exit 0 after ") and out.endswith(
        "s; restored and promoted in 41.5 s (the RTO)\n"
    )
    saved = json.loads((tmp_path / "records" / "staging-restore-drill.json").read_text())
    assert (saved["exit_code"], saved["said"]) == (0, "restored and promoted in 41.5 s (the RTO)")


def test_run_exits_with_the_jobs_code_after_recording_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    running(monkeypatch, tmp_path, EXIT_UNHEALTHY, "error: proxy is unhealthy after the reload\n")
    message = fails(EXIT_UNHEALTHY, schedule_cli.run, context(), job="tls-renew")
    assert message == "error: tls-renew failed (exit 5): error: proxy is unhealthy after the reload"
    assert schedule.last_record("prod", "tls-renew", tmp_path).exit_code == EXIT_UNHEALTHY  # type: ignore[union-attr]


def test_run_killed_by_a_signal_exits_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    running(monkeypatch, tmp_path, -9, "")
    assert fails(EXIT_FAILED, schedule_cli.run, context(), job="tls-renew") == "error: tls-renew failed (exit -9)"


def test_run_of_an_unknown_job_is_one_line_and_runs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = running(monkeypatch, tmp_path, 0, "")
    message = fails(EXIT_BAD_INPUT, schedule_cli.run, context(), job="backup")
    assert message == "error: unknown job 'backup'; jobs: tls-renew, restore-drill"
    assert seen == [] and list(tmp_path.iterdir()) == []
    assert "unknown environment 'qa'" in fails(EXIT_BAD_INPUT, schedule_cli.run, context(), job="tls-renew", env="qa")
