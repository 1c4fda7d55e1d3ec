"""Schedule tasks: the host's systemd timers for the jobs that need the toolkit (certificate renewal, the
restore drill), and what every schedule did last, the in-stack backup schedule's included."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from invoke import Collection
from rich.table import Table

from .. import schedule, stack_settings
from ..errors import EXIT_CODES, EXIT_FAILED, CheckFailed, OpsError
from ._task import ops_task, out, print_json, progress, stack_of

ENV = "Environment whose jobs these are: dev, staging or prod."
UNIT_DIR = f"Where the units go (default {schedule.UNIT_DIR}); another folder only writes them there."
CONTEXT = "For the stack on a swarm (the lab's name or a Docker context): the jobs that run for one (tls-renew)."


@ops_task(help={"env": ENV, "unit_dir": UNIT_DIR, "context": CONTEXT})
def install(c: Any, env: str = "prod", unit_dir: str | None = None, context: str | None = None) -> None:
    """Write hardened systemd timers for certificate renewal and the weekly restore drill; start them."""
    stack_settings.check_env(env)
    folder = Path(unit_dir) if unit_dir else schedule.UNIT_DIR
    done = schedule.install(env, folder, context=context)
    for path in done.written:
        progress(f"wrote {path}")
    timers = " ".join(n for n in schedule.unit_names(env, context) if n.endswith(".timer"))
    env = f"{env} on {context}" if context else env
    if done.enabled:
        out.print(f"{env}: timers enabled and started ({', '.join(j.name for j in schedule.jobs(context))})")
    elif not schedule.systemd_runs():
        out.print(
            f"{env}: units written and verified; systemd does not run them here: `systemctl enable --now {timers}`"
        )
    else:
        out.print(
            f"{env}: units written to {folder} and verified; it is not {schedule.UNIT_DIR}, so none was enabled: "
            f"link them there, then `systemctl enable --now {timers}`"
        )


@ops_task(help={"env": ENV, "unit_dir": UNIT_DIR, "context": CONTEXT})
def remove(c: Any, env: str = "prod", unit_dir: str | None = None, context: str | None = None) -> None:
    """Stop the timers and delete their units (the run records stay)."""
    stack_settings.check_env(env)
    removed = schedule.remove(env, Path(unit_dir) if unit_dir else schedule.UNIT_DIR, context)
    env = f"{env} on {context}" if context else env
    out.print(f"{env}: removed {len(removed)} units" if removed else f"{env}: no units of ours were installed")


@ops_task(help={"env": ENV, "unit_dir": UNIT_DIR, "json": "Print the rows as JSON.", "context": CONTEXT})
def status(
    c: Any, env: str = "prod", unit_dir: str | None = None, json: bool = False, context: str | None = None
) -> None:
    """Show each scheduled job: installed, its last run and result, its next run; exit 1 when one failed."""
    stack_settings.check_env(env)
    rows = schedule.host_rows(env, Path(unit_dir) if unit_dir else schedule.UNIT_DIR, context=context)
    stack = stack_of(c, env)
    if stack.backup and not context:  # the Compose stack's own backup schedule (a swarm's runs in its tasks)
        rows += schedule.stack_rows(stack)
    if json:
        print_json([asdict(r) for r in rows])
    else:
        table = Table("job", "runs", "installed", "last run (UTC)", "result", "next run", title=f"{env}: schedules")
        for r in rows:
            table.add_row(
                r.job, r.where, "yes" if r.installed else "no", r.last_run or "-", r.result, r.next_run or "-"
            )
        out.print(table)
    failed = [r.job for r in rows if r.last_run and not r.result.startswith("ok")]
    if failed:
        raise CheckFailed(f"the last run of {', '.join(failed)} failed")


@ops_task(help={"job": f"The job: {', '.join(schedule.BY_NAME)}.", "env": ENV, "context": CONTEXT})
def run(c: Any, job: str, env: str = "prod", context: str | None = None) -> None:
    """Run one scheduled job now and record its result (what the timers' services call)."""
    schedule.job_named(job, schedule.check_context(context))  # a wrong job before the stack's settings are read
    stack = stack_of(c, env)
    record = schedule.run(env, job, stack.project, context=context)
    out.print(f"{job}: exit {record.exit_code} after {record.seconds} s" + (f"; {record.said}" if record.said else ""))
    if record.exit_code:
        # The task's own code, one of the table's; a signal's (negative) or any other: 1.
        code = record.exit_code if record.exit_code in {e.code for e in EXIT_CODES} else EXIT_FAILED
        said = f": {record.said}" if record.said else ""
        raise OpsError(f"{job} failed (exit {record.exit_code}){said}", code=code)


ns = Collection("schedule")
for _task in (install, status, remove, run):
    ns.add_task(_task, default=_task is status)
LEGACY: dict[str, Any] = {}
