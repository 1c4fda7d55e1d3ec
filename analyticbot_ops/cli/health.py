"""Health tasks: sweeps with exit codes 0 healthy, 1 degraded, 2 unhealthy or unreachable."""

from __future__ import annotations

from typing import Any

from invoke import Collection, Exit
from rich.table import Table

from .. import compose, docker, health
from ._task import ops_task, out, print_json

ENV = "Environment whose stack to sweep: dev, staging or prod."
JSON = "Print the result as JSON."


def print_sweep(result: health.Sweep, verbose: bool) -> None:
    table = Table("service", "verdict", "docker", "endpoint", "latency ms", title=f"{result.project}: {result.verdict}")
    for s in result.services:
        latency = "-" if s.latency_ms is None else f"{s.latency_ms:.0f}"
        table.add_row(s.service, s.verdict, f"{s.docker_state}/{s.docker_health}", s.endpoint_status, latency)
        if verbose:
            for name, dep in sorted(s.dependencies.items()):
                critical = "critical" if dep.get("critical") else "optional"
                detail = f"{dep.get('state')} ({critical}) {dep.get('error') or ''}".strip()
                table.add_row(f"  └ {name}", "", "", detail, f"{dep.get('latency_ms') or 0:.0f}")
            if s.error:
                table.add_row("  └ error", "", "", s.error, "")
    out.print(table)
    out.print(f"swept in {result.seconds * 1000:.0f} ms")


def _sweep(env: str, json: bool, verbose: bool, services: tuple[str, ...] = ()) -> None:
    result = health.sweep(compose.load_stack(env).project, services)
    if json:
        print_json(result.to_dict())
    else:
        print_sweep(result, verbose)
    if result.exit_code:
        # The table is on stdout; stderr gets the one line a script or a person reads first.
        raise Exit(f"error: {result.project} is {result.verdict}", code=result.exit_code)


@ops_task(help={"env": ENV, "json": JSON})
def health_check(c: Any, env: str = "dev", json: bool = False) -> None:
    """Sweep every service (endpoint and Docker health); exit 0 healthy, 1 degraded, 2 unhealthy."""
    _sweep(env, json, verbose=False)


@ops_task(help={"env": ENV, "json": JSON})
def health_check_verbose(c: Any, env: str = "dev", json: bool = False) -> None:
    """The same sweep, with every dependency, its latency and its last error."""
    _sweep(env, json, verbose=True)


@ops_task(help={"env": ENV, "json": JSON})
def health_check_api(c: Any, env: str = "dev", json: bool = False) -> None:
    """Sweep the API alone, with its dependencies."""
    _sweep(env, json, verbose=True, services=("api",))


@ops_task(help={"env": ENV, "json": JSON})
def health_check_services(c: Any, env: str = "dev", json: bool = False) -> None:
    """Sweep each application service through its own endpoint (api, bot, mtproto)."""
    _sweep(env, json, verbose=True, services=compose.PYTHON_SERVICES)


@ops_task(help={"env": ENV, "json": JSON})
def health_status(c: Any, env: str = "dev", json: bool = False) -> None:
    """Docker's health state of every container of the stack (and Swarm services if active)."""
    states = compose.service_states(compose.load_stack(env).project)
    swarm = health.swarm_services()
    if json:
        print_json({"containers": [s.__dict__ for s in states.values()], "swarm": swarm})
    else:
        table = Table("service", "container", "state", "health")
        for s in sorted(states.values(), key=lambda s: s.service):
            table.add_row(s.service, s.container, s.status, s.health)
        out.print(table)
        for line in swarm:
            out.print(f"swarm service {line['name']}: {line['replicas']}", markup=False)
    if not states or any(s.health not in ("healthy", "none") for s in states.values()):
        raise Exit(code=2)


@ops_task(help={"env": ENV, "json": JSON})
def service_status(c: Any, env: str = "dev", json: bool = False) -> None:
    """The state, restart count and uptime of each service."""
    rows = health.uptimes(compose.load_stack(env).project)
    if json:
        print_json(rows)
        return
    table = Table("service", "state", "health", "restarts", "uptime")
    for row in rows:
        table.add_row(row["service"], row["state"], row["health"], str(row["restarts"]), row["uptime"])
    out.print(table)


@ops_task(
    help={"service": "The service whose logs to show.", "env": ENV, "follow": "Keep following.", "tail": "Lines."}
)
def service_logs(c: Any, service: str, env: str = "dev", follow: bool = False, tail: int = 100) -> None:
    """Show one service's logs."""
    compose.check_services([service])
    docker.require_daemon()
    compose.load_stack(env).compose(
        "logs", "--tail", str(tail), *(["--follow"] if follow else []), service, capture=False
    )


@ops_task(help={"env": ENV, "json": JSON})
def test_health_endpoints(c: Any, env: str = "dev", json: bool = False) -> None:
    """Call every health and performance endpoint of each service; show status and latency."""
    calls = health.call_endpoints(compose.load_stack(env).project)
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
        raise Exit(f"error: not answering 200: {', '.join(broken) or 'no service found'}", code=2)


ns = Collection(
    health_check,
    health_check_verbose,
    health_check_api,
    health_check_services,
    health_status,
    service_status,
    service_logs,
    test_health_endpoints,
)
