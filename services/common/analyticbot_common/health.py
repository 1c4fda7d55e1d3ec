"""Dependency health: probes, their concurrent bounded execution, aggregation and a short result cache.

A service lists its `Dependency`s (name, async probe, critical or optional, timeout); `HealthMonitor.check()`
runs every probe at once, each bounded by its timeout, and aggregates the states into one status:
any critical dependency down -> unhealthy; else any optional one down, or any disabled -> degraded; else healthy.
Reports are cached for `ttl` seconds so that frequent health calls cannot hammer a dependency.

With several server processes (serve.py), each probes its own connections and keeps its own cache; a
process whose report changes status touches a file they share (`StatusSignal`), and every other process
then drops its cached report and probes again at its next call. So the processes agree at once, each
answer still being the answering process's own measurement, instead of one saying 503 while another
serves a healthy report it cached a moment earlier."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from .scrub import SCRUBBER, Scrubber

SHARED_DIR_VARIABLE = "APP_SHARED_DIR"  # set by serve.py when it forks several processes

State = Literal["up", "down", "disabled"]
Status = Literal["healthy", "degraded", "unhealthy"]
DEFAULT_TTL = 1.0
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True)
class DependencyDisabled:
    """Returned by a probe whose dependency is deliberately not configured (state `disabled`, not `down`)."""

    reason: str


class DependencyDisabledError(Exception):
    """Raised by a probe, as an alternative to returning `DependencyDisabled`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DependencyDown(Exception):
    """Raised by a probe to report `down` with exactly this reason (no exception type prepended)."""


# A probe returns None (up) or DependencyDisabled; any exception means down, with the exception as the reason.
Probe = Callable[[], Awaitable[DependencyDisabled | None]]


@dataclass(frozen=True)
class Dependency:
    name: str
    probe: Probe
    critical: bool = True
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class DependencyResult:
    name: str
    state: State
    critical: bool
    latency_ms: float
    error: str | None
    checked_at: str  # ISO 8601, UTC

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "critical": self.critical,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "checked_at": self.checked_at,
        }


@dataclass(frozen=True)
class HealthReport:
    status: Status
    dependencies: tuple[DependencyResult, ...]

    @property
    def failing_critical(self) -> list[str]:
        """Critical dependencies that are down: a non-empty list means the service is not ready."""
        return [d.name for d in self.dependencies if d.critical and d.state == "down"]

    @property
    def ready(self) -> bool:
        return not self.failing_critical


def aggregate(results: Iterable[DependencyResult]) -> Status:
    results = list(results)
    if any(r.critical and r.state == "down" for r in results):
        return "unhealthy"
    if any(r.state != "up" for r in results):
        return "degraded"
    return "healthy"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _within(probe: Awaitable[object], timeout: float) -> object:
    """The probe's result, or TimeoutError once `timeout` has passed.

    Not asyncio.wait_for: it waits for the cancelled probe to wind down, and a
    driver cancelling a query on a hung server (asyncpg against a paused
    PostgreSQL) can block for seconds. Here the probe is cancelled and left to
    finish in the background: a hung dependency costs at most its timeout."""
    task = asyncio.ensure_future(probe)
    done, _pending = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        raise TimeoutError
    return task.result()


def _consume(task: asyncio.Future[object]) -> None:
    """Retrieve an abandoned probe's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def run_probe(dependency: Dependency, scrubber: Scrubber = SCRUBBER) -> DependencyResult:
    """Run one probe within its timeout; never raises (except cancellation of the caller)."""
    started = time.perf_counter()
    state: State = "up"
    error: str | None = None
    try:
        outcome = await _within(dependency.probe(), dependency.timeout)
        if isinstance(outcome, DependencyDisabled):
            state, error = "disabled", outcome.reason
    except DependencyDisabledError as exc:
        state, error = "disabled", exc.reason
    except TimeoutError:
        state, error = "down", f"timeout after {dependency.timeout:g} s"
    except DependencyDown as exc:
        state, error = "down", str(exc)
    except Exception as exc:  # a probe's failure is data, not an error of the health check
        detail = str(exc)
        state, error = "down", f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return DependencyResult(
        name=dependency.name,
        state=state,
        critical=dependency.critical,
        latency_ms=latency_ms,
        error=scrubber.error_text(error) if error else None,
        checked_at=_now_iso(),
    )


class StatusSignal:
    """A file the processes of one service share: touched when one of them sees the status change; its
    modification time (with the inode, should it be replaced) is the generation the others compare."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_environment(cls) -> StatusSignal | None:
        directory = os.environ.get(SHARED_DIR_VARIABLE)
        return cls(Path(directory) / "health-status-changed") if directory else None

    def generation(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def announce(self) -> None:
        # A failed touch only costs agreement: each process still re-probes within its ttl.
        with contextlib.suppress(OSError):
            self.path.touch()  # a new modification time (ns on the tmpfs serve.py puts it in)


class HealthMonitor:
    """Runs the probes concurrently and caches the report for `ttl` seconds.

    Callers that arrive while a refresh is running await that same refresh instead of starting their own;
    the refresh is shielded, so a caller that goes away (client disconnect) does not cancel it for the others."""

    def __init__(
        self,
        dependencies: Iterable[Dependency] = (),
        *,
        ttl: float = DEFAULT_TTL,
        scrubber: Scrubber = SCRUBBER,
        clock: Callable[[], float] = time.monotonic,
        signal: StatusSignal | None = None,
    ) -> None:
        self._dependencies: list[Dependency] = []
        self._ttl = ttl
        self._signal = signal if signal is not None else StatusSignal.from_environment()
        self._generation: dict[bool, tuple[int, int] | None] = {}
        self._last_status: dict[bool, Status] = {}
        self._scrubber = scrubber
        self._clock = clock
        # Two scopes, each with its cache and its shared refresh: every dependency (GET /health) or only the
        # critical ones (GET /health/ready), so that readiness never waits for a slow optional dependency.
        self._cached: dict[bool, tuple[HealthReport, float]] = {}
        self._refresh: dict[bool, asyncio.Task[HealthReport]] = {}
        for dependency in dependencies:
            self.add(dependency)

    @property
    def dependencies(self) -> tuple[Dependency, ...]:
        return tuple(self._dependencies)

    def add(self, dependency: Dependency) -> None:
        if any(d.name == dependency.name for d in self._dependencies):
            raise ValueError(f"dependency {dependency.name!r} is already registered")
        self._dependencies.append(dependency)
        self._cached.clear()

    def invalidate(self) -> None:
        self._cached.clear()

    def _fresh(self, critical_only: bool) -> HealthReport | None:
        entry = self._cached.get(critical_only)
        if entry is None or self._clock() - entry[1] >= self._ttl:
            return None
        if self._signal is not None and self._signal.generation() != self._generation.get(critical_only):
            return None  # another process saw the status change since this report was cached
        return entry[0]

    async def check(self, *, critical_only: bool = False) -> HealthReport:
        """The cached report if fresh, else a refresh shared by all concurrent callers.

        With critical_only, a fresh full report also answers (it holds the critical results)."""
        report = self._fresh(False) or (self._fresh(True) if critical_only else None)
        if report is not None:
            return report
        task = self._refresh.get(critical_only)
        # A task left over from another event loop (test clients start one per request) is never reused.
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._run(critical_only))
            self._refresh[critical_only] = task
        return await asyncio.shield(task)

    async def _run(self, critical_only: bool) -> HealthReport:
        selected = [d for d in self._dependencies if d.critical or not critical_only]
        # The generation before probing: a change another process announces while these probes run makes
        # this report stale (it may have been measured before the change), and so does this process's own
        # announcement, which costs it one more probe and no further announcement.
        generation = self._signal.generation() if self._signal is not None else None
        results = await asyncio.gather(*(run_probe(d, self._scrubber) for d in selected))
        report = HealthReport(status=aggregate(results), dependencies=tuple(results))
        if self._signal is not None:
            # A first report counts as a change unless healthy: the others may hold a healthy one.
            if report.status != self._last_status.get(critical_only, "healthy"):
                self._signal.announce()
            self._generation[critical_only] = generation
        self._last_status[critical_only] = report.status
        self._cached[critical_only] = (report, self._clock())
        return report
