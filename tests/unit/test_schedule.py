"""The host's timers (schedule.py): the units as written, checked by the real `systemd-analyze verify` (which
needs no running systemd), installed into and removed from a folder in tmp_path, the run records, and the
in-stack backup schedule's rows read from faked state files. No Docker, no systemctl."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import runner, schedule, stack_settings
from analyticbot_ops.compose import ServiceState, Stack
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.paths import REPO_ROOT

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian's systemd package)"
)


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each environment's settings from a .env file in tmp_path (none: the defaults), none from the process."""
    for key in stack_settings.SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(stack_settings, "env_file", lambda env: tmp_path / f".env.{stack_settings.check_env(env)}")


def lines(text: str) -> list[str]:
    return text.splitlines()


def calls_to(monkeypatch: pytest.MonkeyPatch, program: str, answer: str = "") -> list[list[str]]:
    """`program`'s commands recorded and answered with `answer`; every other command (systemd-analyze) runs."""
    seen: list[list[str]] = []
    real = runner.run

    def run(argv: Sequence[str], **kwargs: Any) -> Any:
        if Path(str(argv[0])).name == program:
            seen.append([str(a) for a in argv])
            return subprocess.CompletedProcess(list(argv), 0, answer, "")
        return real(argv, **kwargs)

    monkeypatch.setattr(runner, "run", run)
    return seen


# --- the units ----------------------------------------------------------------------------------------


def test_each_job_has_a_service_and_a_timer_named_by_environment() -> None:
    assert list(schedule.units("prod")) == [
        "analyticbot-prod-tls-renew.service",
        "analyticbot-prod-tls-renew.timer",
        "analyticbot-prod-restore-drill.service",
        "analyticbot-prod-restore-drill.timer",
    ]
    assert schedule.unit_names("staging") == list(schedule.units("staging"))


@pytest.mark.parametrize("job", schedule.JOBS, ids=lambda j: j.name)
def test_the_service_is_hardened_and_runs_the_job_through_the_toolkit(job: schedule.Job) -> None:
    text = lines(schedule.service_unit("prod", job))
    assert f"Description=AnalyticBot Ops (prod): {job.does}" in text
    assert "Type=oneshot" in text and f"WorkingDirectory={REPO_ROOT}" in text
    assert f"ExecStart={REPO_ROOT}/.venv/bin/invoke schedule.run --job {job.name} --env prod" in text
    # Read-only everywhere but the checkout; no privilege gained; only the capabilities that give files away.
    assert "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text
    assert [line for line in text if line.startswith("ReadWritePaths=")] == [f"ReadWritePaths={REPO_ROOT}"]
    assert "CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE" in text
    assert {"PrivateTmp=yes", "RestrictSUIDSGID=yes", "UMask=0077", "ProtectKernelModules=yes"} <= set(text)
    # Docker is ordered before, never required: the unit also verifies where Docker is no systemd unit.
    assert "After=docker.service network-online.target" in text
    assert not any(line.startswith(("Requires=", "User=")) for line in text)


def test_the_environments_folders_outside_the_checkout_are_writable_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env.prod").write_text("TLS_DIR=/srv/analyticbot/tls\nSECRETS_DIR=/home/ops/secrets\n")
    text = lines(schedule.service_unit("prod", schedule.JOBS[0]))
    assert [line for line in text if line.startswith("ReadWritePaths=")] == [
        f"ReadWritePaths={REPO_ROOT}",
        "ReadWritePaths=-/home/ops/secrets",
        "ReadWritePaths=-/srv/analyticbot/tls",
    ]
    # A folder the job writes is under /home: /home stays visible.
    assert "ProtectHome=yes" not in text
    # Another environment's file is not read.
    staging = lines(schedule.service_unit("staging", schedule.JOBS[0]))
    assert [line for line in staging if line.startswith("ReadWritePaths=")] == [f"ReadWritePaths={REPO_ROOT}"]


@pytest.mark.parametrize(("checkout", "hidden"), [("/opt/analyticbot", True), ("/home/ops/analyticbot", False)])
def test_home_is_hidden_unless_the_checkout_lives_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, checkout: str, hidden: bool
) -> None:
    monkeypatch.setattr(schedule, "REPO_ROOT", Path(checkout))
    (tmp_path / ".env.dev").write_text(f"SECRETS_DIR={checkout}/secrets\nTLS_DIR={checkout}/secrets/tls\n")
    text = lines(schedule.service_unit("dev", schedule.JOBS[0]))
    assert ("ProtectHome=yes" in text) is hidden
    assert [line for line in text if line.startswith("ReadWritePaths=")] == [f"ReadWritePaths={checkout}"]


@pytest.mark.parametrize("job", schedule.JOBS, ids=lambda j: j.name)
def test_the_timer_runs_its_service_on_the_jobs_calendar_and_catches_up(job: schedule.Job) -> None:
    text = lines(schedule.timer_unit("prod", job))
    assert f"OnCalendar={job.calendar}" in text and "Persistent=true" in text
    assert f"Unit=analyticbot-prod-{job.name}.service" in text
    assert "WantedBy=timers.target" in text and "RandomizedDelaySec=15m" in text


def test_the_jobs_calendars_and_tasks() -> None:
    assert schedule.BY_NAME["tls-renew"].calendar == "*-*-* 03,15:17:00"
    assert schedule.BY_NAME["tls-renew"].task == ("tls.renew",)
    assert schedule.BY_NAME["restore-drill"].calendar == "Sun *-*-* 04:30:00"
    assert schedule.BY_NAME["restore-drill"].task == ("stack.restore", "--to", "latest", "--into", "{project}-drill")
    assert schedule.job_named("tls-renew") is schedule.JOBS[0]
    with pytest.raises(BadInput, match="unknown job 'backup'; jobs: tls-renew, restore-drill"):
        schedule.job_named("backup")


# --- systemd-analyze verify (the real one) -------------------------------------------------------------


def write_units(folder: Path, env: str = "prod", **replace: str) -> list[Path]:
    """The environment's units in `folder`, each `key=value` line of `replace` (keys with _ for -) changed."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in schedule.units(env).items():
        for key, value in replace.items():
            text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.MULTILINE)
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


@needs_systemd_analyze
@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_our_units_pass_systemd_analyze_verify(env: str, tmp_path: Path) -> None:
    schedule.verify(write_units(tmp_path / "units", env))


@needs_systemd_analyze
def test_a_calendar_systemd_cannot_read_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match=r"systemd-analyze verify refused the units: .*calendar.*bogus"):
        schedule.verify(write_units(tmp_path / "units", OnCalendar="bogus"))


@needs_systemd_analyze
def test_a_relative_command_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(
        OpsError, match=r"refused the units: .*tls-renew\.service:\d+: .*absolute path: \.venv/bin/invoke"
    ):
        schedule.verify(write_units(tmp_path / "units", ExecStart=".venv/bin/invoke schedule.run --job tls-renew"))


def test_without_systemd_analyze_verify_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule.shutil, "which", lambda name: None)
    with pytest.raises(OpsError, match="systemd-analyze is not installed"):
        schedule.verify([Path("/nonexistent.service")])


# --- install, remove -----------------------------------------------------------------------------------


@needs_systemd_analyze
def test_install_writes_the_verified_units_into_a_folder_and_enables_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    systemctl = calls_to(monkeypatch, "systemctl", "running\n")
    folder = tmp_path / "units"
    folder.mkdir()
    done = schedule.install("prod", folder, enable=True)  # not systemd's folder: written only
    assert done.enabled is False and systemctl == []
    assert sorted(p.name for p in done.written) == sorted(schedule.units("prod"))
    for path in done.written:
        assert path.read_text() == schedule.units("prod")[path.name]
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # Again: the same files, replaced.
    assert schedule.install("prod", folder, enable=False).written == done.written
    assert len(list(folder.iterdir())) == 4


@needs_systemd_analyze
def test_install_into_systemds_folder_reloads_and_starts_the_timers_where_systemd_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(schedule, "UNIT_DIR", tmp_path)
    systemctl = calls_to(monkeypatch, "systemctl", "degraded\n")
    monkeypatch.setattr(schedule.shutil, "which", lambda name: f"/usr/bin/{name}")
    done = schedule.install("staging", tmp_path)
    assert done.enabled is True
    assert systemctl == [
        ["systemctl", "is-system-running"],
        ["systemctl", "daemon-reload"],
        [
            "systemctl",
            "enable",
            "--now",
            "analyticbot-staging-tls-renew.timer",
            "analyticbot-staging-restore-drill.timer",
        ],
    ]
    # Not asked to: written, not started.
    systemctl.clear()
    assert schedule.install("staging", tmp_path, enable=False).enabled is False
    assert ["systemctl", "enable"] not in [c[:2] for c in systemctl]


@needs_systemd_analyze
def test_a_unit_systemd_refuses_is_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = schedule.Job("tls-renew", "renew", "bogus", ("tls.renew",))
    monkeypatch.setattr(schedule, "JOBS", (broken,))
    with pytest.raises(OpsError, match="bogus"):
        schedule.install("prod", tmp_path, enable=False)
    assert list(tmp_path.iterdir()) == []


@needs_systemd_analyze
def test_install_into_a_missing_folder_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="is not a folder: is this host run by systemd"):
        schedule.install("prod", tmp_path / "absent", enable=False)


def test_systemd_runs_only_when_systemctl_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule.shutil, "which", lambda name: f"/usr/bin/{name}")
    for said, runs in (("running\n", True), ("degraded\n", True), ("offline\n", False), ("", False)):
        calls_to(monkeypatch, "systemctl", said)
        assert schedule.systemd_runs() is runs, said
    monkeypatch.setattr(schedule.shutil, "which", lambda name: None)
    assert schedule.systemd_runs() is False


def test_remove_deletes_our_units_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    systemctl = calls_to(monkeypatch, "systemctl", "offline\n")
    for name in schedule.units("prod"):
        (tmp_path / name).write_text("x")
    (tmp_path / "analyticbot-staging-tls-renew.timer").write_text("another environment's")
    (tmp_path / "docker.service").write_text("someone else's")
    removed = schedule.remove("prod", tmp_path)
    assert sorted(p.name for p in removed) == sorted(schedule.units("prod"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analyticbot-staging-tls-renew.timer", "docker.service"]
    assert schedule.remove("prod", tmp_path) == ()
    assert systemctl == []  # not systemd's folder: nothing to stop


def test_remove_from_systemds_folder_stops_the_timers_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(schedule, "UNIT_DIR", tmp_path)
    monkeypatch.setattr(schedule.shutil, "which", lambda name: f"/usr/bin/{name}")
    systemctl = calls_to(monkeypatch, "systemctl", "running\n")
    (tmp_path / "analyticbot-dev-tls-renew.timer").write_text("x")
    assert schedule.remove("dev", tmp_path) == (tmp_path / "analyticbot-dev-tls-renew.timer",)
    assert [c[1:] for c in systemctl if c[1] != "is-system-running"] == [
        ["disable", "--now", "analyticbot-dev-tls-renew.timer", "analyticbot-dev-restore-drill.timer"],
        ["daemon-reload"],
    ]


# --- run, the records ----------------------------------------------------------------------------------


def answering(returncode: int, stdout: str = "", stderr: str = "") -> tuple[list[list[str]], Callable[..., Any]]:
    seen: list[list[str]] = []

    def command(args: list[str]) -> subprocess.CompletedProcess[str]:
        seen.append(args)
        return subprocess.CompletedProcess(args, returncode, stdout, stderr)

    return seen, command


def test_run_runs_the_jobs_task_and_records_its_result(tmp_path: Path) -> None:
    seen, command = answering(0, "renewing\nnothing due: renewed [], not due ['example.org']\n\n")
    record = schedule.run("prod", "tls-renew", "analyticbot", records=tmp_path / "records", command=command)
    assert seen == [[str(Path(schedule.sys.executable).with_name("invoke")), "tls.renew", "--env", "prod"]]
    assert (record.job, record.env, record.exit_code) == ("tls-renew", "prod", 0)
    assert record.said == "nothing due: renewed [], not due ['example.org']"
    assert record.seconds >= 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record.started)
    path = tmp_path / "records" / "prod-tls-renew.json"
    assert json.loads(path.read_text()) == {
        "job": "tls-renew",
        "env": "prod",
        "started": record.started,
        "seconds": record.seconds,
        "exit_code": 0,
        "said": record.said,
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert schedule.last_record("prod", "tls-renew", tmp_path / "records") == record


def test_the_drill_restores_into_the_projects_throwaway_copy_and_a_failure_is_recorded(tmp_path: Path) -> None:
    seen, command = answering(1, "", "restoring\nerror: the drill's restore failed: no backup\n")
    record = schedule.run("staging", "restore-drill", "analyticbot-staging", records=tmp_path, command=command)
    assert seen[0][1:] == [
        "stack.restore",
        "--to",
        "latest",
        "--into",
        "analyticbot-staging-drill",
        "--env",
        "staging",
    ]
    assert (record.exit_code, record.said) == (1, "error: the drill's restore failed: no backup")
    assert schedule.last_record("staging", "restore-drill", tmp_path) == record
    assert schedule.last_record("prod", "restore-drill", tmp_path) is None


def test_run_refuses_an_unknown_job_before_running_anything(tmp_path: Path) -> None:
    seen, command = answering(0)
    with pytest.raises(BadInput, match="unknown job 'backup'"):
        schedule.run("prod", "backup", "analyticbot", records=tmp_path, command=command)
    assert seen == [] and list(tmp_path.iterdir()) == []


def test_a_record_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "prod-tls-renew.json").write_text("{not json")
    with pytest.raises(BadInput, match=r"prod-tls-renew.json is not a readable run record \(JSONDecodeError\)"):
        schedule.last_record("prod", "tls-renew", tmp_path)
    (tmp_path / "prod-tls-renew.json").write_text('{"job": "tls-renew"}')
    with pytest.raises(BadInput, match=r"\(KeyError\)"):
        schedule.last_record("prod", "tls-renew", tmp_path)


# --- next_elapse, host_rows ----------------------------------------------------------------------------


@needs_systemd_analyze
def test_next_elapse_is_systemds_reading_of_the_calendar_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    assert re.fullmatch(r"\w{3} \d{4}-\d\d-\d\d (03|15):17:00 UTC", schedule.next_elapse("*-*-* 03,15:17:00") or "")
    # Where the host's zone is another, the UTC form: 04:30 in Berlin is 03:30 (CET) or 02:30 (CEST) UTC.
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert re.fullmatch(r"Sun \d{4}-\d\d-\d\d 0[23]:30:00 UTC", schedule.next_elapse("Sun *-*-* 04:30:00") or "")
    assert schedule.next_elapse("bogus") is None


def test_next_elapse_without_systemd_analyze_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule.shutil, "which", lambda name: None)
    assert schedule.next_elapse("*-*-* 03:00:00") is None


def write_record(folder: Path, env: str, job: str, exit_code: int, said: str) -> schedule.Record:
    record = schedule.Record(job, env, "2026-12-06T03:17:04+00:00", 2.5, exit_code, said)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{env}-{job}.json").write_text(json.dumps(dataclasses.asdict(record)))
    return record


def test_host_rows_say_installed_never_ran_ok_or_the_exit_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(schedule, "next_elapse", lambda calendar: f"next of {calendar}")
    units, records = tmp_path / "units", tmp_path / "records"
    units.mkdir()
    rows = schedule.host_rows("prod", units, records)
    assert [(r.job, r.where, r.installed, r.last_run, r.result, r.next_run) for r in rows] == [
        ("tls-renew", "host timer", False, None, "never ran", None),
        ("restore-drill", "host timer", False, None, "never ran", None),
    ]
    (units / "analyticbot-prod-tls-renew.timer").write_text("x")
    write_record(records, "prod", "tls-renew", 0, "nothing due")
    write_record(records, "prod", "restore-drill", 1, "error: the drill's copy differs from the source in bot_users")
    write_record(records, "staging", "tls-renew", 5, "another environment's")
    tls, drill = schedule.host_rows("prod", units, records)
    assert (tls.installed, tls.last_run, tls.result) == (True, "2026-12-06T03:17:04+00:00", "ok: nothing due")
    assert tls.next_run == "next of *-*-* 03,15:17:00"
    assert (drill.installed, drill.next_run) == (False, None)
    assert drill.result == "exit 1: error: the drill's copy differs from the source in bot_users"
    write_record(records, "prod", "tls-renew", 0, "")
    assert schedule.host_rows("prod", units, records)[0].result == "ok"


@needs_systemd_analyze
def test_an_installed_timers_next_run_comes_from_systemd(tmp_path: Path) -> None:
    (tmp_path / "analyticbot-dev-restore-drill.timer").write_text("x")
    drill = schedule.host_rows("dev", tmp_path, tmp_path / "records")[1]
    assert drill.installed and re.fullmatch(r"Sun \d{4}-\d\d-\d\d \d\d:30:00 UTC", drill.next_run or "")


# --- the in-stack backup schedule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90", 90), ("90s", 90), ("15m", 900), ("6h", 21600), ("7d", 604800), ("0", 0), (" 1d ", 86400)],
)
def test_seconds_reads_the_schedules_durations(text: str, expected: int) -> None:
    assert schedule.seconds(text) == expected


@pytest.mark.parametrize("text", ["", "d", "7w", "1.5h", "-1d", "soon"])
def test_seconds_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(BadInput, match="is not a duration like 90s, 15m, 6h or 7d"):
        schedule.seconds(text)


STAMP = 1796610000  # 2026-12-07T02:20:00Z
NOW = STAMP + 3600
STATE_FILES = f"last={STAMP} full ok 4\nfull={STAMP}\ndiff={STAMP}\n"


def state(service: str, status: str = "running") -> ServiceState:
    return ServiceState(service, f"analyticbot-{service}-1", status, "healthy", 0, 0, "")


def backup_stack(**settings: str) -> Stack:
    return Stack("prod", "analyticbot", dict(settings), backup=True)


def in_stack(monkeypatch: pytest.MonkeyPatch, states: dict[str, ServiceState], said: dict[str, str]) -> list[list[str]]:
    """The project's services, and what `docker exec` reads of each container's state files."""
    execs: list[list[str]] = []
    asked: list[str] = []
    monkeypatch.setattr(schedule, "service_states", lambda project: asked.append(project) or states)

    def docker(args: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        execs.append(list(args))
        assert check is False
        return subprocess.CompletedProcess(args, 0, said.get(args[1], ""), "")

    monkeypatch.setattr(schedule.docker, "docker", docker)
    monkeypatch.setattr(schedule.time, "time", lambda: float(NOW))
    return execs


def test_a_running_agent_shows_its_last_backup_and_the_next_one_due(monkeypatch: pytest.MonkeyPatch) -> None:
    execs = in_stack(
        monkeypatch,
        {"backup-agent": state("backup-agent"), "backup-repo": state("backup-repo", "exited")},
        {"analyticbot-backup-agent-1": STATE_FILES},
    )
    agent, repo = schedule.stack_rows(backup_stack())
    assert agent == schedule.Row(
        "backup repository 1",
        "in the stack (backup-agent)",
        True,
        "2026-12-07T02:20:00+00:00",
        "ok: full backup in 4 s",
        # min(full + 7d, diff + 1d): the differential one a day later.
        "2026-12-08T02:20:00+00:00",
    )
    assert repo == schedule.Row(
        "backup repository 2", "in the stack (backup-repo)", False, None, "backup-repo is not running", None
    )
    # Only the running container is asked, once, for the three files.
    ((exec_, container, sh, flag, script),) = execs
    assert (exec_, container, sh, flag) == ("exec", "analyticbot-backup-agent-1", "sh", "-c")
    assert "schedule.$k" in script and "for k in last full diff" in script


def test_the_next_backup_is_whichever_kind_is_due_first(monkeypatch: pytest.MonkeyPatch) -> None:
    running = {"backup-agent": state("backup-agent"), "backup-repo": state("backup-repo")}
    files = {"analyticbot-backup-agent-1": STATE_FILES, "analyticbot-backup-repo-1": STATE_FILES}
    in_stack(monkeypatch, running, files)
    # A full backup every 2 hours comes before the daily differential one.
    agent, repo = schedule.stack_rows(backup_stack(BACKUP_FULL_EVERY="2h", BACKUP_DIFF_EVERY="1d"))
    assert agent.next_run == repo.next_run == "2026-12-07T04:20:00+00:00"
    # No full backup at all: the differential one only.
    assert schedule.stack_rows(backup_stack(BACKUP_FULL_EVERY="0"))[0].next_run == "2026-12-08T02:20:00+00:00"
    # Both off: nothing is due.
    assert schedule.stack_rows(backup_stack(BACKUP_FULL_EVERY="0", BACKUP_DIFF_EVERY="0"))[0].next_run is None
    # Overdue (the agent was down): now.
    assert schedule.stack_rows(backup_stack(BACKUP_DIFF_EVERY="30m"))[0].next_run == "2026-12-07T03:20:00+00:00"


def test_a_failed_backup_or_none_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    running = {"backup-agent": state("backup-agent"), "backup-repo": state("backup-repo")}
    files = {
        "analyticbot-backup-agent-1": f"last={STAMP} diff failed 31\nfull={STAMP - 86400}\ndiff=\n",
        "analyticbot-backup-repo-1": "last=\nfull=\ndiff=\n",  # the files are not there yet
    }
    in_stack(monkeypatch, running, files)
    agent, repo = schedule.stack_rows(backup_stack())
    assert (agent.last_run, agent.result) == ("2026-12-07T02:20:00+00:00", "failed: diff backup in 31 s")
    # diff never succeeded (0): due now.
    assert agent.next_run == "2026-12-07T03:20:00+00:00"
    assert (repo.installed, repo.last_run, repo.result) == (True, None, "never ran")
    assert repo.next_run == "2026-12-07T03:20:00+00:00"


def test_a_state_file_being_written_reads_as_none_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    running = {"backup-agent": state("backup-agent")}
    in_stack(monkeypatch, running, {"analyticbot-backup-agent-1": "last=17966 full\nfull=abc\ndiff=1796610000\n"})
    agent, repo = schedule.stack_rows(backup_stack())
    # No full backup that can be read: one is due now.
    assert (agent.last_run, agent.result, agent.next_run) == (None, "never ran", "2026-12-07T03:20:00+00:00")
    assert repo.result == "backup-repo is not running"  # no container at all


# --- for a swarm --------------------------------------------------------------------------------------------


def test_for_a_swarm_only_the_renewal_runs_and_its_units_carry_the_context(tmp_path: Path) -> None:
    base = "analyticbot-prod-analyticbot-lab-tls-renew"
    names = schedule.unit_names("prod", "analyticbot-lab")
    assert names == [f"{base}.service", f"{base}.timer"]
    texts = schedule.units("prod", "analyticbot-lab")
    invoke = f"{schedule.REPO_ROOT}/.venv/bin/invoke"
    assert f"ExecStart={invoke} schedule.run --job tls-renew --env prod --context analyticbot-lab" in texts[names[0]]
    assert "(prod on analyticbot-lab): renew the TLS certificates that are due" in texts[names[0]]
    assert f"Unit={base}.service" in texts[names[1]]
    # Beside the Compose stack's units, never in their place.
    assert not set(names) & set(schedule.unit_names("prod"))


def test_our_swarm_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    written = schedule.install("prod", tmp_path, enable=False, context="analyticbot-lab")
    assert [p.name for p in written.written] == schedule.unit_names("prod", "analyticbot-lab")


def test_a_swarm_run_passes_the_context_to_the_task_and_records_it_apart(tmp_path: Path) -> None:
    ran: list[list[str]] = []

    def command(args: list[str]) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        return subprocess.CompletedProcess(args, 0, "nothing due: the proxies were left as they are\n", "")

    record = schedule.run("prod", "tls-renew", "analyticbot", records=tmp_path, command=command, context="lab-1")
    assert ran[0][1:] == ["tls.renew", "--env", "prod", "--context", "lab-1"]
    assert record.said == "nothing due: the proxies were left as they are"
    assert schedule.last_record("prod", "tls-renew", tmp_path, "lab-1") == record
    assert schedule.last_record("prod", "tls-renew", tmp_path) is None  # the Compose stack's record is its own
    rows = schedule.host_rows("prod", tmp_path, tmp_path, context="lab-1")
    assert [(r.job, r.where, r.result) for r in rows] == [
        ("tls-renew", "host timer, for lab-1", "ok: nothing due: the proxies were left as they are")
    ]


@pytest.mark.parametrize("bad", ["a+b", "-lead", "has space", "x" * 64])
def test_a_context_a_unit_cannot_carry_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BadInput, match="is not a name a timer can carry"):
        schedule.install("prod", tmp_path, enable=False, context=bad)


def test_the_drill_does_not_run_for_a_swarm(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="restore-drill does not run for a swarm; jobs that do: tls-renew"):
        schedule.run("prod", "restore-drill", "analyticbot", records=tmp_path, context="lab-1")
