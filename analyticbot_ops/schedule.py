"""The jobs that need the toolkit, run by systemd timers on the host: certificate renewal twice a day and a
restore drill once a week. The backup schedule itself runs inside the stack (compose/pgbackrest/service.sh),
so that it needs neither this host's timers nor the Docker socket in a container.

`install` writes a hardened service and a timer per job (checked with `systemd-analyze verify` before
anything is installed), `status` shows each job's last run and result (recorded by `run`, which is what the
services call) and its next run, beside the in-stack backup schedule's, and `remove` takes the units away."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import docker, files, runner, stack_settings
from .compose import Stack, service_states
from .errors import BadInput, OpsError
from .paths import REPO_ROOT, STATE_DIR

UNIT_DIR = Path("/etc/systemd/system")
RECORDS = STATE_DIR / "schedule"


@dataclass(frozen=True)
class Job:
    name: str
    does: str  # the unit's Description, after "AnalyticBot Ops (ENV): "
    calendar: str  # systemd's OnCalendar
    task: tuple[str, ...]  # the invoke task and its options; {project} is the stack's project
    on_swarm: bool = False  # also run for a swarm (`--context C`): the task takes --context


JOBS: tuple[Job, ...] = (
    # Twice a day, as certbot's own timer does: a renewal that fails has many chances before expiry.
    Job("tls-renew", "renew the TLS certificates that are due", "*-*-* 03,15:17:00", ("tls.renew",), on_swarm=True),
    # Weekly: restores the latest backup into a throwaway copy, compares it and removes it.
    Job(
        "restore-drill",
        "restore drill of the latest backup into a throwaway copy",
        "Sun *-*-* 04:30:00",
        ("stack.restore", "--to", "latest", "--into", "{project}-drill"),
    ),
)
BY_NAME = {job.name: job for job in JOBS}


# A Docker context's name as it may go into a unit's name and a command line (systemd allows no "+").
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def job_named(name: str, context: str | None = None) -> Job:
    job = BY_NAME.get(name)
    if job is None:
        raise BadInput(f"unknown job {name!r}; jobs: {', '.join(BY_NAME)}")
    if context and not job.on_swarm:
        raise BadInput(f"{name} does not run for a swarm; jobs that do: {', '.join(j.name for j in jobs(context))}")
    return job


def check_context(context: str | None) -> str | None:
    if context is not None and not _CONTEXT.match(context):
        raise BadInput(f"--context {context!r} is not a name a timer can carry (letters, digits, '_', '.', '-')")
    return context


def jobs(context: str | None = None) -> tuple[Job, ...]:
    """The jobs for a Compose stack, or, with a swarm's context, those that run for a swarm."""
    return tuple(job for job in JOBS if job.on_swarm) if context else JOBS


def unit_name(env: str, job: Job, suffix: str, context: str | None = None) -> str:
    return f"analyticbot-{env}{f'-{context}' if context else ''}-{job.name}.{suffix}"


def unit_names(env: str, context: str | None = None) -> list[str]:
    return [unit_name(env, job, suffix, context) for job in jobs(context) for suffix in ("service", "timer")]


def writable(env: str) -> list[Path]:
    """Where the jobs write: the checkout (records, dumps, the default secrets and certificates), and the
    environment's SECRETS_DIR and TLS_DIR where its .env file puts them outside it."""
    paths = [REPO_ROOT]
    for path in (stack_settings.secrets_dir(env), stack_settings.tls_dir(env)):
        if not any(path.is_relative_to(p) for p in paths):
            paths.append(path)
    return paths


def _hardening(env: str) -> list[str]:
    """What the job's service may do: write the checkout (records, certificates, dumps) and the environment's
    secrets and certificates only, reach the Docker socket, keep the file capabilities the toolkit needs to
    give secrets and certificates to uid 10001."""
    paths = writable(env)
    lines = [
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={REPO_ROOT}",
        # "-": a folder that does not exist (yet) is no reason for the service not to start.
        *(f"ReadWritePaths=-{path}" for path in paths[1:]),
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE",
        "UMask=0077",
    ]
    # /home and /root hidden, unless the checkout (or a folder the jobs write) lives there.
    if not any(p.is_relative_to(home) for p in paths for home in (Path("/home"), Path("/root"))):
        lines.append("ProtectHome=yes")
    return lines


def service_unit(env: str, job: Job, context: str | None = None) -> str:
    invoke = REPO_ROOT / ".venv" / "bin" / "invoke"
    on = f" --context {context}" if context else ""
    return "\n".join(
        [
            "[Unit]",
            f"Description=AnalyticBot Ops ({env}{f' on {context}' if context else ''}): {job.does}",
            f"Documentation=file://{REPO_ROOT}/README.md",
            # After, not Requires: the units verify (and run) where Docker is not a systemd unit.
            "After=docker.service network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"WorkingDirectory={REPO_ROOT}",
            f"ExecStart={invoke} schedule.run --job {job.name} --env {env}{on}",
            "TimeoutStartSec=1h",
            "Nice=10",
            *_hardening(env),
            "",
        ]
    )


def timer_unit(env: str, job: Job, context: str | None = None) -> str:
    return "\n".join(
        [
            "[Unit]",
            f"Description=AnalyticBot Ops ({env}{f' on {context}' if context else ''}): {job.does}, on schedule",
            "",
            "[Timer]",
            f"OnCalendar={job.calendar}",
            # Spread over a quarter of an hour; a run missed while the host was off happens at the next boot.
            "RandomizedDelaySec=15m",
            "Persistent=true",
            f"Unit={unit_name(env, job, 'service', context)}",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


def units(env: str, context: str | None = None) -> dict[str, str]:
    """Each unit's text by its name: a service and a timer per job (for a swarm, per job that runs for one)."""
    return {
        unit_name(env, job, suffix, context): render(env, job, context)
        for job in jobs(context)
        for suffix, render in (("service", service_unit), ("timer", timer_unit))
    }


def verify(paths: Sequence[Path]) -> None:
    """`systemd-analyze verify` on unit files; OpsError with its first complaint."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise OpsError("systemd-analyze is not installed: the timers need systemd (Debian's systemd package)")
    result = runner.run([analyze, "verify", *map(str, paths)], check=False)
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 or said:
        raise OpsError(f"systemd-analyze verify refused the units: {said[0] if said else result.returncode}")


def systemd_runs() -> bool:
    result = runner.run(["systemctl", "is-system-running"], check=False) if shutil.which("systemctl") else None
    return result is not None and result.stdout.strip() in ("running", "degraded", "starting")


@dataclass(frozen=True)
class Installed:
    written: tuple[Path, ...]
    enabled: bool  # systemd runs here and the timers were started


def install(env: str, unit_dir: Path = UNIT_DIR, *, enable: bool = True, context: str | None = None) -> Installed:
    """Write the units (verified first, in a scratch folder), then enable the timers where systemd runs."""
    wanted = units(env, check_context(context))
    with tempfile.TemporaryDirectory() as scratch:
        staged = [Path(scratch) / name for name in wanted]
        for path in staged:
            path.write_text(wanted[path.name], encoding="utf-8")
        verify(staged)
    if not unit_dir.is_dir():
        raise BadInput(f"{unit_dir} is not a folder: is this host run by systemd?")
    written = []
    for name, text in wanted.items():
        files.replace_atomic(unit_dir / name, text.encode(), 0o644)
        written.append(unit_dir / name)
    enabled = False
    if enable and unit_dir == UNIT_DIR and systemd_runs():
        runner.run(["systemctl", "daemon-reload"])
        timers = [name for name in wanted if name.endswith(".timer")]
        runner.run(["systemctl", "enable", "--now", *timers])
        enabled = True
    return Installed(tuple(written), enabled)


def remove(env: str, unit_dir: Path = UNIT_DIR, context: str | None = None) -> tuple[Path, ...]:
    """Stop and disable the timers (where systemd runs), then delete the units; what was deleted."""
    names = unit_names(env, check_context(context))
    if unit_dir == UNIT_DIR and systemd_runs():
        runner.run(["systemctl", "disable", "--now", *(n for n in names if n.endswith(".timer"))], check=False)
    removed = []
    for name in names:
        path = unit_dir / name
        if path.exists():
            path.unlink()
            removed.append(path)
    if removed and unit_dir == UNIT_DIR and systemd_runs():
        runner.run(["systemctl", "daemon-reload"], check=False)
    return tuple(removed)


@dataclass(frozen=True)
class Record:
    """One run of a job, as `run` records it."""

    job: str
    env: str
    started: str
    seconds: float
    exit_code: int
    said: str  # its last line of output


def record_path(env: str, job: str, records: Path = RECORDS, context: str | None = None) -> Path:
    return records / f"{env}{f'-{context}' if context else ''}-{job}.json"


def run(
    env: str,
    name: str,
    project: str,
    *,
    records: Path = RECORDS,
    command: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None,
    context: str | None = None,
) -> Record:
    """Run a job's task (a new `invoke` process, as a person would) and record how it went; with a swarm's
    `context`, the task acts on that swarm."""
    job = job_named(name, check_context(context))
    args = [str(Path(sys.executable).with_name("invoke")), *(a.format(project=project) for a in job.task)]
    args += ["--env", env, *(["--context", context] if context else [])]
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    result = (command or (lambda a: runner.run(a, check=False, cwd=REPO_ROOT)))(args)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    record = Record(
        job.name,
        env,
        started.isoformat(timespec="seconds"),
        round(time.monotonic() - clock, 1),
        result.returncode,
        lines[-1].strip() if lines else "",
    )
    files.ensure_dir(records)
    files.replace_atomic(
        record_path(env, job.name, records, context), (json.dumps(asdict(record)) + "\n").encode(), 0o600
    )
    return record


def last_record(env: str, job: str, records: Path = RECORDS, context: str | None = None) -> Record | None:
    path = record_path(env, job, records, context)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Record(**{k: data[k] for k in Record.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path} is not a readable run record ({type(exc).__name__})") from None


def next_elapse(calendar: str) -> str | None:
    """When a calendar expression next elapses, by systemd's own reading of it (no running systemd needed)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return None
    result = runner.run([analyze, "calendar", calendar], check=False)
    found = {}
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition(": ")
        found[key] = value.strip()
    # Where the host's zone is not UTC, systemd adds the UTC form: the one to print beside the others.
    return found.get("(in UTC)") or found.get("Next elapse")


@dataclass(frozen=True)
class Row:
    job: str
    where: str  # "host timer" or "in the stack"
    installed: bool
    last_run: str | None
    result: str
    next_run: str | None


def host_rows(env: str, unit_dir: Path = UNIT_DIR, records: Path = RECORDS, context: str | None = None) -> list[Row]:
    rows = []
    for job in jobs(check_context(context)):
        installed = (unit_dir / unit_name(env, job, "timer", context)).is_file()
        record = last_record(env, job.name, records, context)
        result = "never ran" if record is None else "ok" if record.exit_code == 0 else f"exit {record.exit_code}"
        if record is not None and record.said:
            result += f": {record.said}"
        rows.append(
            Row(
                job.name,
                f"host timer, for {context}" if context else "host timer",
                installed,
                None if record is None else record.started,
                result,
                next_elapse(job.calendar) if installed else None,
            )
        )
    return rows


SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    """The schedule's durations (compose/pgbackrest/service.sh): 90, 90s, 15m, 6h, 7d."""
    text = duration.strip()
    unit = SECONDS.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in SECONDS else text
    if not (number.isascii() and number.isdigit()):
        raise BadInput(f"{duration!r} is not a duration like 90s, 15m, 6h or 7d")
    return int(number) * unit


def stack_rows(stack: Stack) -> list[Row]:
    """The in-stack backup schedule of each repository, from its state files (compose/pgbackrest/service.sh)."""
    rows = []
    full_every = seconds(stack.settings.get("BACKUP_FULL_EVERY", "7d"))
    diff_every = seconds(stack.settings.get("BACKUP_DIFF_EVERY", "1d"))
    states = service_states(stack.project)
    for repo, service in ((1, "backup-agent"), (2, "backup-repo")):
        state = states.get(service)
        running = state is not None and state.status == "running"
        stamps = {"last": "", "full": "0", "diff": "0"}
        if running:
            assert state is not None
            # One exec for the three files; dash's read, since the image has no cat.
            script = 'for k in last full diff; do v=; read -r v < /var/lib/pgbackrest/schedule.$k; echo "$k=$v"; done'
            read = docker.docker(["exec", state.container, "sh", "-c", f"{script} 2>/dev/null"], check=False)
            for line in read.stdout.splitlines():
                key, _, value = line.partition("=")
                if key in stamps and value.strip():
                    stamps[key] = value.strip()
        # "STARTED KIND OUTCOME SECONDS", as service.sh writes it; anything else (a file being written): none.
        last = stamps["last"].split()
        if len(last) != 4 or _epoch(last[0]) is None:
            last = []
        last_run = _iso(int(last[0])) if last else None
        result = f"{last[2]}: {last[1]} backup in {last[3]} s" if last else "never ran"
        due = [(_epoch(stamps["full"]) or 0) + full_every if full_every else None]
        due.append((_epoch(stamps["diff"]) or 0) + diff_every if diff_every else None)
        next_due = min((d for d in due if d is not None), default=None)
        rows.append(
            Row(
                f"backup repository {repo}",
                f"in the stack ({service})",
                running,
                last_run,
                result if running else f"{service} is not running",
                None if next_due is None or not running else _iso(max(next_due, int(time.time()))),
            )
        )
    return rows


def _epoch(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")
