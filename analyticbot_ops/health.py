"""The health sweep: every service of a stack, probed concurrently through its own
health endpoint and its Docker health state, folded into one verdict and exit code.

Services are found from the stack itself (Compose labels, container addresses on
the stack's own networks), never from fixed host ports."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from . import compose, docker, errors, model
from .compose import project_containers
from .model import Labels

APP_PORT = model.APP_PORT
# The verdict of a sweep as the exit code of the tasks that run it (errors.EXIT_CODES).
EXIT_HEALTHY, EXIT_DEGRADED, EXIT_UNHEALTHY = errors.EXIT_OK, errors.EXIT_DEGRADED, errors.EXIT_UNHEALTHY
RANK = {"healthy": 0, "degraded": 1, "disabled": 1, "unhealthy": 2, "unreachable": 2, "missing": 2}


@dataclass
class ServiceHealth:
    service: str
    container: str = ""
    docker_state: str = "missing"  # running, exited, ... or missing
    docker_health: str = "none"  # healthy, unhealthy, starting, none
    endpoint_status: str = "-"  # the service's own verdict, "unreachable", or "-" when it has none
    http_status: int | None = None
    latency_ms: float | None = None
    dependencies: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    # While Docker has no verdict yet ("starting": its first check comes 10 s after start), the sweep runs the
    # container's healthcheck itself: "passed" or "failed"; "-" when Docker's own verdict stands.
    probed: str = "-"

    @property
    def verdict(self) -> str:
        """The worst of what Docker (or, before its first check, the same check run now) and the endpoint say."""
        if self.docker_state != "running":
            return "missing" if self.docker_state == "missing" else "unhealthy"
        docker_verdict = {
            "healthy": "healthy",
            "starting": "healthy" if self.probed == "passed" else "degraded",
            "none": "healthy",
        }.get(self.docker_health, "unhealthy")
        if self.endpoint_status == "-":
            return docker_verdict
        return max(docker_verdict, self.endpoint_status, key=lambda s: RANK.get(s, 2))


@dataclass
class Sweep:
    project: str
    services: list[ServiceHealth]
    seconds: float

    @property
    def verdict(self) -> str:
        if not self.services:
            return "missing"
        return max((s.verdict for s in self.services), key=lambda v: RANK.get(v, 2))

    @property
    def exit_code(self) -> int:
        return {0: EXIT_HEALTHY, 1: EXIT_DEGRADED}.get(RANK.get(self.verdict, 2), EXIT_UNHEALTHY)

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "status": self.verdict,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "services": [{**asdict(s), "verdict": s.verdict} for s in self.services],
        }


def _address(info: dict[str, Any]) -> str | None:
    """The container's address on one of its non-internal networks: the host can
    reach those directly, and they belong to the stack this toolkit created."""
    networks = info.get("NetworkSettings", {}).get("Networks", {}) or {}
    internal = {name for name in networks if _is_internal(name)}
    for name, net in sorted(networks.items()):
        if name not in internal and net.get("IPAddress"):
            return str(net["IPAddress"])
    return None


_INTERNAL_CACHE: dict[str, bool] = {}


def _is_internal(network: str) -> bool:
    if network not in _INTERNAL_CACHE:
        info = docker.inspect("network", network) or {}
        _INTERNAL_CACHE[network] = bool(info.get("Internal"))
    return _INTERNAL_CACHE[network]


def fetch(url: str, timeout: float) -> tuple[int | None, Any, float, str]:
    """(HTTP status, parsed JSON or text, latency ms, error) for one GET."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # a stack container's own address
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, None, (time.monotonic() - started) * 1000, str(reason)[:200]
    latency = (time.monotonic() - started) * 1000
    try:
        return status, json.loads(body), latency, ""
    except ValueError:
        return status, body.decode(errors="replace"), latency, ""


def _probe(info: dict[str, Any], path: str, timeout: float) -> ServiceHealth:
    labels = info["Config"].get("Labels") or {}
    state = info["State"]
    result = ServiceHealth(
        service=labels.get(Labels.SERVICE, info["Name"].lstrip("/")),
        container=info["Name"].lstrip("/"),
        docker_state=state.get("Status", "missing"),
        docker_health=(state.get("Health") or {}).get("Status", "none"),
    )
    starting = result.docker_state == "running" and result.docker_health == "starting"
    if starting and result.service not in model.APPS:
        healthcheck = tuple((info["Config"].get("Healthcheck") or {}).get("Test") or ())
        started = compose.ServiceState(result.service, result.container, "running", "starting", 0, 0, "", healthcheck)
        result.probed = "passed" if compose.probe_ready(started) else "failed"
    if result.service not in model.APPS or result.docker_state != "running":
        return result
    address = _address(info)
    if address is None:
        result.endpoint_status, result.error = "unreachable", "no address on a reachable network"
        return result
    status, body, latency, error = fetch(f"http://{address}:{APP_PORT}{path}", timeout)
    result.http_status, result.latency_ms, result.error = status, round(latency, 1), error
    if starting:
        # An app's healthcheck asks its own readiness: the endpoint just asked answers for it, without an exec
        # that would wait on the same dependencies a second time.
        result.probed = "passed" if status == 200 else "failed"
    if status is None:
        result.endpoint_status = "unreachable"
    elif isinstance(body, dict):
        result.endpoint_status = str(body.get("status", "healthy" if status == 200 else "unhealthy"))
        result.dependencies = body.get("dependencies", {}) or {}
    else:
        result.endpoint_status = "healthy" if status == 200 else "unhealthy"
    return result


def sweep(project: str, services: Sequence[str] = (), path: str = "/health", timeout: float = 2.0) -> Sweep:
    """Probe every service of `project` (or the named ones) at once."""
    started = time.monotonic()
    infos = [
        i
        for i in project_containers(project)
        if i["Config"]["Labels"].get(Labels.SERVICE) not in model.JOBS
        and (not services or i["Config"]["Labels"].get(Labels.SERVICE) in services)
    ]
    with ThreadPoolExecutor(max_workers=max(1, len(infos))) as pool:
        results = list(pool.map(lambda info: _probe(info, path, timeout), infos))
    found = {r.service for r in results}
    results += [ServiceHealth(service=name) for name in services if name not in found]
    results.sort(key=lambda r: r.service)
    return Sweep(project, results, time.monotonic() - started)


@dataclass
class EndpointCall:
    service: str
    path: str
    http_status: int | None
    latency_ms: float
    error: str


ENDPOINTS = ("/health/live", "/health/ready", "/health", "/performance", "/metrics")


def not_healthy(project: str, rows: list[dict[str, Any]]) -> list[str]:
    """The services of `uptimes` rows that count against the stack: not running, or unhealthy; a job (migrate)
    only when it failed (it has done its work when it exited 0); one Docker has not checked yet (its first check
    comes one 10 s interval after start) only when its healthcheck, run now, fails."""
    asks = any(row["service"] in model.JOBS or row["health"] == "starting" for row in rows)
    states = compose.service_states(project) if asks else {}

    def counts(row: dict[str, Any]) -> bool:
        state = states.get(row["service"])
        if row["service"] in model.JOBS and state is not None:
            return state.exit_code != 0
        if row["state"] != "running" or row["health"] not in ("healthy", "none", "starting"):
            return True
        return row["health"] == "starting" and not (state is not None and compose.probe_ready(state))

    return [row["service"] for row in rows if counts(row)]


def call_endpoints(project: str, timeout: float = 2.0) -> list[EndpointCall]:
    """Every health and performance endpoint of every Python service, with status and latency."""
    targets = []
    for info in project_containers(project):
        labels: dict[str, str] = info["Config"].get("Labels") or {}
        service = labels.get(Labels.SERVICE, "")
        address = _address(info) if service in model.APPS else None
        if address:
            targets += [(service, path, f"http://{address}:{APP_PORT}{path}") for path in ENDPOINTS]
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        fetched = list(pool.map(lambda t: fetch(t[2], timeout), targets))
    return [
        EndpointCall(service, path, status, round(latency, 1), error)
        for (service, path, _), (status, _body, latency, error) in zip(targets, fetched, strict=True)
    ]


def uptimes(project: str) -> list[dict[str, Any]]:
    """State, health, restarts and uptime of each service of a project."""
    import datetime as dt

    from .compose import service_states

    rows = []
    now = dt.datetime.now(dt.UTC)
    for state in sorted(service_states(project).values(), key=lambda s: s.service):
        uptime = "-"
        if state.status == "running" and state.started_at:
            started = dt.datetime.fromisoformat(state.started_at[:26].rstrip("Z") + "+00:00")
            uptime = str(now - started).split(".")[0]
        rows.append(
            {
                "service": state.service,
                "container": state.container,
                "state": state.status,
                "health": state.health,
                "restarts": state.restarts,
                "uptime": uptime,
            }
        )
    return rows
