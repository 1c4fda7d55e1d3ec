"""Where a task's seconds go: its phases, timed as they run, for `--timings`.

A phase is a `with phase("name"):` block; phases may nest (the inner one is shown indented under the outer).
Recording costs a clock read; `report()` says what was recorded since `reset()`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    depth: int


_phases: list[Phase] = []
_depth = 0
_started = time.monotonic()


def reset() -> None:
    """Forget what was recorded; the total counts from now."""
    global _started, _depth
    _phases.clear()
    _depth = 0
    _started = time.monotonic()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as one phase of the running task."""
    global _depth
    index, began = len(_phases), time.monotonic()
    _phases.append(Phase(name, 0.0, _depth))  # in start order: an outer phase lists before its inner ones
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        _phases[index] = Phase(name, time.monotonic() - began, _phases[index].depth)


def report() -> tuple[list[Phase], float]:
    """The phases recorded since `reset()`, in the order they started, and the seconds since then."""
    return list(_phases), time.monotonic() - _started
