"""Monitoring tasks: what the monitoring overlay's Prometheus and Alertmanager say about a running stack."""

from __future__ import annotations

import getpass
from dataclasses import asdict
from typing import Any

from invoke import Collection
from rich.table import Table

from ..errors import EXIT_DEGRADED, BadInput, Degraded, Unhealthy
from ..monitoring import client, rules
from ._task import ops_task, out, print_json, stack_of

ENV = "Environment whose stack to ask: dev, staging or prod."
JSON = "Print the result as JSON."


@ops_task(help={"env": ENV, "json": JSON})
def alerts(c: Any, env: str = "dev", json: bool = False) -> None:
    """Show the alerts Prometheus holds; exit 0 when only Watchdog fires, 4 on warnings, 5 on critical ones."""
    found = client.for_stack(stack_of(c, env)).alerts()
    code, said = client.verdict(found)
    if json:
        print_json({"verdict": said, "exit_code": code, "alerts": [asdict(a) for a in found]})
    else:
        table = Table("alert", "state", "severity", "summary", "since", title=f"{env}: {said}", title_justify="left")
        for a in found:
            table.add_row(a.name, a.state, a.severity, a.summary, a.active_at[:19].replace("T", " "))
        out.print(table)
    if code == EXIT_DEGRADED:
        raise Degraded(said)
    if code:
        raise Unhealthy(said)


@ops_task(help={"env": ENV, "json": JSON})
def targets(c: Any, env: str = "dev", json: bool = False) -> None:
    """Show what Prometheus scrapes and whether each answers; exit 5 when one is down."""
    found = client.for_stack(stack_of(c, env)).targets()
    if json:
        print_json([asdict(t) for t in found])
    else:
        table = Table("job", "instance", "health", "last scrape", "last error")
        for t in found:
            table.add_row(t.job, t.instance, t.health, t.last_scrape[:19].replace("T", " "), t.last_error)
        out.print(table)
    down = [t.job for t in found if t.health != "up"]
    if not found or down:
        raise Unhealthy(f"targets not up: {', '.join(down) or 'none found'}")


@ops_task(
    help={
        "env": ENV,
        "alert": "The alert to silence, by name (PostgresDown, ...): see `invoke monitoring.alerts`.",
        "for": "How long: 30m, 1h, 2d (at most 90 days).",
        "reason": "Why, for whoever reads the silence (Alertmanager keeps it).",
    }
)
def silence(c: Any, alert: str, reason: str, env: str = "dev", for_: str = "1h") -> None:
    """Silence one alert by name for a while, with a reason; Alertmanager keeps who and why."""
    rules.check_alert_name(alert)
    duration = client.parse_duration(for_)
    if not reason.strip():
        raise BadInput("--reason must say why the alert is silenced")
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment or the password database (a container)
        who = "an unnamed user"
    author = f"{who} via invoke monitoring.silence"
    silence_id = client.for_stack(stack_of(c, env)).silence(alert, duration, reason.strip(), author)
    out.print(f"{alert} silenced for {for_} ({silence_id}): {reason.strip()}")


ns = Collection("monitoring")
ns.add_task(alerts, default=True)
ns.add_task(targets)
ns.add_task(silence)
LEGACY: dict[str, Any] = {}
