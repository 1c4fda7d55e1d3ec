"""--timings: each phase of a task, timed as it runs, nested phases under their outer one."""

from __future__ import annotations

from typing import Any

import pytest

from analyticbot_ops import timings
from analyticbot_ops.cli import _task


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(timings, "time", fake)
    timings.reset()
    return fake


def test_phases_are_listed_in_start_order_with_their_depth_and_seconds(clock: Clock) -> None:
    with timings.phase("build"):
        clock.now += 2
        with timings.phase("api"):
            clock.now += 0.5
    with timings.phase("deploy"):
        clock.now += 1
    phases, total = timings.report()
    assert phases == [timings.Phase("build", 2.5, 0), timings.Phase("api", 0.5, 1), timings.Phase("deploy", 1.0, 0)]
    assert total == 3.5


def test_a_phase_that_fails_is_still_timed(clock: Clock) -> None:
    with pytest.raises(RuntimeError), timings.phase("compose up"):
        clock.now += 4
        raise RuntimeError("compose failed")
    assert timings.report()[0] == [timings.Phase("compose up", 4.0, 0)]
    with timings.phase("after"):
        pass
    assert timings.report()[0][1].depth == 0  # the failure left no depth behind


def test_reset_forgets_and_restarts_the_total(clock: Clock) -> None:
    with timings.phase("old"):
        clock.now += 1
    timings.reset()
    assert timings.report() == ([], 0.0)


@pytest.mark.parametrize("show", [True, False])
def test_timed_prints_the_table_on_stderr_only_when_asked_even_after_a_failure(
    clock: Clock, capsys: Any, show: bool
) -> None:
    with pytest.raises(ValueError), _task.timed(show):
        with timings.phase("preflight"):
            clock.now += 0.25
        raise ValueError("bad input")
    captured = capsys.readouterr()
    assert captured.out == ""
    if show:
        assert "timings: 0.25 s in all" in captured.err and "preflight" in captured.err and "0.25" in captured.err
    else:
        assert captured.err == ""
