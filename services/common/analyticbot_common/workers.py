"""How many server processes a service runs: sized from the container's CPU limit.

One uvicorn process runs one event loop and uses at most one core. A container limited to 1.5 CPUs
(the production API) leaves half its allowance unused with one process; two use all of it. So the
count is the limit rounded up, never more than the cores the process may run on, at least one.
APP_WORKERS overrides it (0 or unset: sized). Measured on the 2-core development machine, the API
container (1.5 CPUs) with two processes served 1450-1580 summary reads/s against 1006-1018 with one,
load sent straight to it."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
MAX_WORKERS = 32


class WorkersError(ValueError):
    """APP_WORKERS is not a count: one line for the log, exit code 2."""


def cpu_limit(cgroup: Path = CGROUP) -> float | None:
    """The container's CPU limit in cores (`--cpus`, compose's `cpus`); None when it has none.
    cgroup v2 (cpu.max: "150000 100000" or "max 100000") or v1 (cpu.cfs_quota_us, -1 for none)."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def usable_cpus() -> int:
    """The cores this process may run on (a cpuset narrows them; os.cpu_count() would not see that)."""
    return len(os.sched_getaffinity(0))


def sized(limit: float | None, cpus: int) -> int:
    """Server processes for a CPU limit: the limit rounded up (a fraction of a core still needs a
    process to use it), at most the usable cores, at least one; all the cores when there is no limit."""
    wanted = cpus if limit is None else math.ceil(limit - 1e-9)
    return max(1, min(wanted, cpus, MAX_WORKERS))


def configured(environ: Mapping[str, str]) -> int | None:
    """APP_WORKERS: a count, or None (unset, empty or 0) to size from the CPU limit."""
    raw = environ.get("APP_WORKERS", "").strip()
    if not raw or raw == "0":
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise WorkersError(f"APP_WORKERS must be a number of processes from 0 (sized) to {MAX_WORKERS}, got {raw!r}")
    return int(raw)


def count(environ: Mapping[str, str] = os.environ, cgroup: Path = CGROUP) -> int:
    """The number of server processes to run: APP_WORKERS, or sized from the CPU limit."""
    return configured(environ) or sized(cpu_limit(cgroup), usable_cpus())


@dataclass(frozen=True)
class Worker:
    """Which of the service's processes this is: /performance and the pools read it."""

    index: int = 0
    of: int = 1


_current = Worker()


def current() -> Worker:
    return _current


def become(worker: Worker) -> None:
    """Called by the supervisor in each process it forks, before the app starts."""
    global _current
    _current = worker


def share(total: int, worker: Worker | None = None) -> int:
    """One process's share of a service-wide budget (a pool of `total` connections), at least one."""
    of = (worker or _current).of
    return max(1, math.ceil(total / of))
