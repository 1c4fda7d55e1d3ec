"""Health tasks: sweeps of every service's endpoint and Docker state, exit 0 healthy, 4 degraded, 5 unhealthy."""

from __future__ import annotations

from typing import Any

from invoke import Collection
from rich.table import Table

from .. import compose, health, model
from ..errors import Degraded, Unhealthy
from ._task import ops_task, out, print_json, stack_of
from .legacy import Legacy

ENV = "Environment whose stack to sweep: dev, staging or prod."
JSON = "Print the result as JSON."


def print_sweep(result: health.Sweep, verbose: bool) -> None:
    table = Table("service", "verdict", "docker", "endpoint", "latency ms", title=f"{result.project}: {result.verdict}")
    for s in result.services:
        latency = "-" if s.latency_ms is None else f"{s.latency_ms:.0f}"
        # Before Docker's first check, the same check was run by the sweep: say so beside Docker's "starting".
        docker_said = f"{s.docker_state}/{s.docker_health}" + ("" if s.probed == "-" else f" (check now: {s.probed})")
        table.add_row(s.service, s.verdict, docker_said, s.endpoint_status, latency)
        if verbose:
            for name, dep in sorted(s.dependencies.items()):
                critical = "critical" if dep.get("critical") else "optional"
                detail = f"{dep.get('state')} ({critical}) {dep.get('error') or ''}".strip()
                table.add_row(f"  └ {name}", "", "", detail, f"{dep.get('latency_ms') or 0:.0f}")
            if s.error:
                table.add_row("  └ error", "", "", s.error, "")
    out.print(table)
    out.print(f"swept in {result.seconds * 1000:.0f} ms")


@ops_task(
    help={
        "env": ENV,
        "json": JSON,
        "verbose": "Show every dependency, its latency and its last error.",
        "service": "Sweep only this service (repeatable); default: all. --service api shows the API's dependencies.",
    },
    iterable=["service"],
)
def check(
    c: Any, env: str = "dev", json: bool = False, verbose: bool = False, service: list[str] | None = None
) -> None:
    """Sweep every service (endpoint and Docker health); exit 0 healthy, 4 degraded, 5 unhealthy."""
    result = health.sweep(compose.load_stack(env).project, tuple(compose.check_services(service or [])))
    if json:
        print_json(result.to_dict())
    else:
        print_sweep(result, verbose or bool(service))
    # The table is on stdout; stderr gets the one line a script or a person reads first.
    if result.exit_code == health.EXIT_DEGRADED:
        raise Degraded(f"{result.project} is {result.verdict}")
    if result.exit_code:
        raise Unhealthy(f"{result.project} is {result.verdict}")


@ops_task(help={"env": ENV, "json": JSON})
def endpoints(c: Any, env: str = "dev", json: bool = False) -> None:
    """Call every health and performance endpoint of each service; show status and latency."""
    calls = health.call_endpoints(stack_of(c, env).project)
    if json:
        print_json([call.__dict__ for call in calls])
    else:
        table = Table("service", "endpoint", "HTTP", "latency ms", "error")
        for call in calls:
            table.add_row(call.service, call.path, str(call.http_status or "-"), f"{call.latency_ms:.0f}", call.error)
        out.print(table)
    # /health/ready and /health may be 503 by design; live, performance and metrics must answer 200.
    broken = [
        f"{x.service}{x.path}"
        for x in calls
        if x.path in ("/health/live", "/performance", "/metrics") and x.http_status != 200
    ]
    if not calls or broken:
        raise Unhealthy(f"not answering 200: {', '.join(broken) or 'no service found'}")


ns = Collection("health")
ns.add_task(check, default=True)
ns.add_task(endpoints)
# Old flat names (cli/legacy.py): the four sweeps are one task with options now.
LEGACY = {
    "health-check": Legacy("health.check"),
    "health-check-verbose": Legacy("health.check", {"verbose": True}),
    "health-check-api": Legacy("health.check", {"service": ["api"]}),
    "health-check-services": Legacy("health.check", {"service": list(model.APPS)}),
    "test-health-endpoints": Legacy("health.endpoints"),
}
