"""analyticbot_common.workers: how many server processes a CPU limit gets, read from real cgroup files."""

from __future__ import annotations

from pathlib import Path

import pytest
from analyticbot_common import workers


def cgroup_v2(root: Path, cpu_max: str) -> Path:
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root: Path, quota: int, period: int = 100000) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_the_limit_is_read_from_cgroup_v2(tmp_path: Path) -> None:
    assert workers.cpu_limit(cgroup_v2(tmp_path, "150000 100000")) == 1.5


def test_no_limit_on_cgroup_v2_is_none(tmp_path: Path) -> None:
    assert workers.cpu_limit(cgroup_v2(tmp_path, "max 100000")) is None


def test_the_limit_is_read_from_cgroup_v1(tmp_path: Path) -> None:
    assert workers.cpu_limit(cgroup_v1(tmp_path, 50000)) == 0.5


def test_no_limit_on_cgroup_v1_is_none(tmp_path: Path) -> None:
    assert workers.cpu_limit(cgroup_v1(tmp_path, -1)) is None


def test_no_cgroup_files_is_no_limit(tmp_path: Path) -> None:
    assert workers.cpu_limit(tmp_path) is None


@pytest.mark.parametrize(
    ("limit", "cpus", "expected"),
    [(1.5, 2, 2), (1.0, 2, 1), (0.5, 2, 1), (0.01, 8, 1), (3.0, 2, 2), (2.0, 8, 2), (None, 4, 4), (None, 1, 1)],
)
def test_processes_are_the_limit_rounded_up_within_the_cores(limit: float | None, cpus: int, expected: int) -> None:
    assert workers.sized(limit, cpus) == expected


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("0", None), (" 3 ", 3), ("32", 32)])
def test_app_workers_names_a_count_or_asks_for_sizing(raw: str, expected: int | None) -> None:
    assert workers.configured({"APP_WORKERS": raw}) == expected


@pytest.mark.parametrize("raw", ["two", "-1", "33", "1.5"])
def test_anything_else_in_app_workers_is_refused(raw: str) -> None:
    with pytest.raises(workers.WorkersError, match="APP_WORKERS"):
        workers.configured({"APP_WORKERS": raw})


def test_the_count_is_sized_from_the_cgroup_unless_configured(tmp_path: Path) -> None:
    cgroup = cgroup_v2(tmp_path, "100000 100000")
    assert workers.count({}, cgroup) == 1
    assert workers.count({"APP_WORKERS": "3"}, cgroup) == 3


@pytest.mark.parametrize(("total", "of", "share"), [(10, 1, 10), (10, 2, 5), (16, 3, 6), (1, 2, 1)])
def test_each_process_takes_a_share_of_a_pool(total: int, of: int, share: int) -> None:
    assert workers.share(total, workers.Worker(0, of)) == share
