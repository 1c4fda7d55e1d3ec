"""The health and metrics HTTP surface that every service mounts: live, ready, full report, performance, metrics.

- GET /health/live   the process answers; nothing else is checked (Docker's HEALTHCHECK uses it).
- GET /health/ready  200 unless a critical dependency is down, 503 naming those dependencies.
- GET /health        the full report; 503 when unhealthy, 200 when healthy or degraded.
- GET /performance   measured request counts, latency percentiles, uptime and the service's gauges.
- GET /metrics       Prometheus text format from the service's own registry (all its processes' counters),
                     with dependency_up from the monitor's full report: the cached one when it is fresh, so a
                     scrape probes no more often than the health cache allows, and /health reuses its report."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse

from . import __version__
from .health import HealthMonitor, HealthReport
from .metrics import Metrics, MetricsMiddleware

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Health answers change from one second to the next: no proxy or client may cache them.
NO_STORE = {"Cache-Control": "no-store"}


def health_router(monitor: HealthMonitor, metrics: Metrics, service: str, version: str = __version__) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "alive", "service": service}, headers=NO_STORE)

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        report = await monitor.check(critical_only=True)
        failing = report.failing_critical
        body = {"status": "not_ready" if failing else "ready", "service": service, "failing": failing}
        return JSONResponse(body, status_code=503 if failing else 200, headers=NO_STORE)

    @router.get("/health")
    async def health() -> JSONResponse:
        report = await monitor.check()
        body = {
            "service": service,
            "status": report.status,
            "version": version,
            "uptime_s": metrics.uptime_s,
            "dependencies": {d.name: d.as_dict() for d in report.dependencies},
        }
        return JSONResponse(body, status_code=503 if report.status == "unhealthy" else 200, headers=NO_STORE)

    @router.get("/performance")
    async def performance() -> JSONResponse:
        return JSONResponse(metrics.performance(), headers=NO_STORE)

    @router.get("/metrics")
    async def prometheus() -> Response:
        report = await _report_for_metrics(monitor)
        return Response(metrics.exposition(report), media_type=PROMETHEUS_CONTENT_TYPE, headers=NO_STORE)

    return router


async def _report_for_metrics(monitor: HealthMonitor) -> HealthReport | None:
    """The full report (optional dependencies too); None if it cannot be had, which drops dependency_up from
    this scrape instead of failing it: the counters must still reach Prometheus."""
    try:
        return await monitor.check()
    except Exception as exc:
        log.warning("no health report for /metrics: %s", type(exc).__name__)
        return None


def install(app: FastAPI, monitor: HealthMonitor, metrics: Metrics, service: str, version: str = __version__) -> None:
    """Mount the health routes and the request-metrics middleware on `app`; `version` is also build_info's."""
    metrics.version = version
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(health_router(monitor, metrics, service, version))
