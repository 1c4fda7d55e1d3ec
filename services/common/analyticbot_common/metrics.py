"""Request metrics: an ASGI middleware, a rolling latency window and the service's Prometheus registry.

Each `Metrics` owns its own `CollectorRegistry` (never the global one), so tests can build many apps. Services
register gauges as callables (pool size, cache hit ratio, ...) that are read at scrape time: no background
sampling, and the figures are those of the moment they are asked for. Running totals are `counter()`s.

Every service also exposes, from here:
- `build_info{service, version, release}` 1: version is the one the service gives `http.install` (the one its
  /health reports: APP_VERSION, else this package's `__version__`, as no service package has its own);
  release is APP_RELEASE, or "unknown" when unset.
- `dependency_up{dependency, critical}` 1 (up) or 0 (down), from the monitor's full report that the /metrics
  route (http.py) passes to `exposition`. A disabled dependency (deliberately not configured) has no sample:
  an alert on `== 0` must not fire for it.

With several server processes (serve.py, workers.py) the counters and histograms are added up across them
(prometheus_client's multiprocess mode, switched on by serve.py before this module is imported); the gauges,
build_info, dependency_up and /performance's rolling window are those of the process that answers, which
/performance names."""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, workers
from .health import HealthReport

log = logging.getLogger(__name__)
WINDOW = 2048
UNMATCHED = "<unmatched>"  # one label for every unknown path, so scanners cannot blow up the label set
GaugeReader = Callable[[], float | int | None]
RELEASE_VARIABLE = "APP_RELEASE"
UNKNOWN_RELEASE = "unknown"
# The *_created series double the exposition for nothing the dashboards use (a process-wide switch).
disable_created_metrics()


@dataclass(frozen=True)
class _Gauge:
    name: str
    help: str
    read: GaugeReader

    def value(self) -> float | None:
        try:
            value = self.read()
        except Exception as exc:  # a broken reader must not break /metrics or /performance
            log.warning("gauge %s could not be read: %s", self.name, type(exc).__name__)
            return None
        return value


class _GaugeCollector(Collector):
    """This process's gauges, read at each scrape: build_info and the registered callables."""

    def __init__(self, owner: Metrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[GaugeMetricFamily]:
        owner = self._owner
        build = GaugeMetricFamily(
            "build_info",
            "The running build: always 1, its facts in the labels.",
            labels=["service", "version", "release"],
        )
        build.add_metric([owner.service, owner.version, owner.release], 1)
        yield build
        for gauge in owner.gauges:
            value = gauge.value()
            if value is not None:
                yield GaugeMetricFamily(gauge.name, gauge.help, value=value)


class _Scrape(Collector):
    """One answer to GET /metrics: the families of `sources`, then those measured for this scrape alone."""

    def __init__(self, sources: Sequence[Collector], measured: Iterable[Metric]) -> None:
        self._sources = sources
        self._measured = measured

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()
        yield from self._measured


def release_label(environ: Mapping[str, str] = os.environ) -> str:
    """build_info's release: APP_RELEASE (whatever names the deployment: a tag, a commit), else "unknown"."""
    return environ.get(RELEASE_VARIABLE) or UNKNOWN_RELEASE


def dependency_states(report: HealthReport) -> GaugeMetricFamily | None:
    """dependency_up from a health report; None when no dependency has a state to give (none, or all disabled).

    A disabled dependency is left out rather than given 0: it is not configured on purpose (the collector
    without Telegram credentials), and `dependency_up == 0` must mean down."""
    family = GaugeMetricFamily(
        "dependency_up",
        "1 when the dependency answered its health probe, 0 when it is down (disabled ones are left out).",
        labels=["dependency", "critical"],
    )
    for result in report.dependencies:
        if result.state != "disabled":
            family.add_metric([result.name, "true" if result.critical else "false"], 1 if result.state == "up" else 0)
    return family if family.samples else None


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list; None when there is no sample."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Metrics:
    def __init__(
        self,
        service: str,
        *,
        version: str = __version__,
        release: str | None = None,
        window: int = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        # build_info's labels; http.install sets the version the service declares, so /health says the same.
        self.version = version
        self.release = release if release is not None else release_label()
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self.started = clock()
        self._durations: deque[float] = deque(maxlen=window)
        self._by_class: Tally[str] = Tally()
        self._gauges: dict[str, _Gauge] = {}
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status class.",
            ["route", "method", "status_class"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by route template.",
            ["route"],
            registry=self.registry,
        )
        self.registry.register(_GaugeCollector(self))

    @property
    def uptime_s(self) -> float:
        return round(self._clock() - self.started, 3)

    def register_gauge(self, name: str, help: str, read: GaugeReader) -> None:
        """Expose `read()` as gauge `name` in /metrics and in /performance; None means "not known yet"."""
        self._gauges[name] = _Gauge(name, help, read)

    def counter(self, name: str, help: str) -> Counter:
        """A running total on this service's registry (`name` ends in _total); with several server processes
        /metrics adds up every process's, where a gauge would show the answering process's alone."""
        return Counter(name, help, registry=self.registry)

    @property
    def gauges(self) -> tuple[_Gauge, ...]:
        return tuple(self._gauges.values())

    def exposition(self, health: HealthReport | None = None) -> bytes:
        """The Prometheus text for GET /metrics: every process's counters and histograms, this one's gauges,
        and dependency_up from `health` (nothing for it without a report)."""
        states = dependency_states(health) if health is not None else None
        measured = [states] if states is not None else []
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(_Scrape([self.registry], measured))
        from prometheus_client.multiprocess import MultiProcessCollector

        # The registry's own counters would be this process's alone: the files hold every process's.
        every_process = MultiProcessCollector(None, path=directory)
        return generate_latest(_Scrape([every_process, _GaugeCollector(self)], measured))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        status_class = f"{status // 100}xx"
        self.requests.labels(route=route, method=method, status_class=status_class).inc()
        self.latency.labels(route=route).observe(seconds)
        self._by_class[status_class] += 1
        self._durations.append(seconds)

    def performance(self) -> dict[str, object]:
        """The figures behind GET /performance: measured, never made up; None where nothing was measured."""
        ordered = sorted(self._durations)

        def ms(fraction: float) -> float | None:
            value = percentile(ordered, fraction)
            return None if value is None else round(value * 1000, 2)

        worker = workers.current()
        return {
            "service": self.service,
            "uptime_s": self.uptime_s,
            # The figures below are this process's: with several, each request may meet another one.
            "worker": {"index": worker.index, "of": worker.of},
            "requests": {
                "total": sum(self._by_class.values()),
                "by_status_class": dict(sorted(self._by_class.items())),
            },
            "latency_ms": {"p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "samples": len(ordered)},
            "gauges": {gauge.name: gauge.value() for gauge in self.gauges},
        }


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streaming bodies and break cancellation)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before starting a response

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The router stores the matched route in the scope; its path is the template (/channels/{username}).
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(route, scope.get("method", ""), status, time.perf_counter() - started)
