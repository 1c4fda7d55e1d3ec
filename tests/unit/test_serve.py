"""analyticbot_common.serve with several processes: real uvicorn workers forked on one port, stopped by
SIGTERM, stopped together when one fails at startup, and one /metrics that counts every process's requests
(and adds up a service's own counters) while build_info and dependency_up are the answering process's."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from analyticbot_common import __version__, footprint

COMMON = Path(__file__).resolve().parents[2] / "services" / "common"
# A service as the images run one: the app module on PYTHONPATH, served by analyticbot_common.serve.
APP = """
import os
from fastapi import FastAPI
from analyticbot_common import http, workers
from analyticbot_common.health import Dependency, HealthMonitor
from analyticbot_common.metrics import Metrics


async def store_up() -> None:
    return None


app = FastAPI()
metrics = Metrics("probe-app")
# Made here, in the process that forks the workers: each must still count into its own file.
pid_calls = metrics.counter("probe_pid_calls_total", "Calls of /pid.")
http.install(app, HealthMonitor([Dependency("store", store_up)]), metrics, "probe-app")


@app.on_event("startup")
async def startup() -> None:
    if os.environ.get("FAIL_WORKER") == str(workers.current().index):
        raise RuntimeError("this worker cannot start")


@app.get("/pid")
async def pid() -> dict[str, int]:
    pid_calls.inc()
    return {"pid": os.getpid(), "worker": workers.current().index}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def service(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    (tmp_path / "probe_app.py").write_text(APP)
    port = free_port()
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(COMMON), *sys.path]),
        "APP_MODULE": "probe_app:app",
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        **env,
    }
    # A session of its own: its process group is the supervisor and the workers it forks.
    process = subprocess.Popen(
        [sys.executable, "-m", "analyticbot_common.serve"], env=environ, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        # A supervisor killed outright cannot stop its workers: each test run left two serving, orphaned.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def wait_serving(port: int, process: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if get(port, "/health/live")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the service never answered")


def children_of(pid: int) -> list[int]:
    return footprint.server_processes(pid)[1:]  # the same reading of /proc the benchmark's footprint uses


def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    with service(tmp_path, APP_WORKERS="2") as (process, port):
        wait_serving(port, process)
        workers = children_of(process.pid)
        assert len(workers) == 2
        seen = set()
        for _ in range(400):  # a new connection each time: the kernel hands them to either process
            seen.add(get(port, "/pid")[1])
            if len(seen) == 2:
                break
        assert len(seen) == 2, seen
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_metrics_count_the_requests_of_every_worker(tmp_path: Path) -> None:
    with service(tmp_path, APP_WORKERS="2") as (process, port):
        wait_serving(port, process)
        workers, calls = set(), 0
        while calls < 30 or (len(workers) < 2 and calls < 400):  # until both processes have counted some
            workers.add(json.loads(get(port, "/pid")[1])["worker"])
            calls += 1
        assert workers == {0, 1}
        counts, totals = set(), set()
        for _ in range(10):  # whichever process answers /metrics, it reports every call
            body = get(port, "/metrics")[1]
            found = re.search(r'http_requests_total\{[^}]*route="/pid"[^}]*\} ([\d.]+)', body)
            assert found, body
            counts.add(float(found.group(1)))
            total = re.search(r"^probe_pid_calls_total ([\d.]+)$", body, re.MULTILINE)
            assert total, body
            totals.add(float(total.group(1)))
            build = [line for line in body.splitlines() if line.startswith("build_info{")]
            assert build == [f'build_info{{release="unknown",service="probe-app",version="{__version__}"}} 1.0']
            assert 'dependency_up{critical="true",dependency="store"} 1.0' in body
        assert counts == {float(calls)}
        assert totals == {float(calls)}


def test_a_worker_that_fails_at_startup_stops_the_service_with_3(tmp_path: Path) -> None:
    with service(tmp_path, APP_WORKERS="2", FAIL_WORKER="1") as (process, _port):
        assert process.wait(timeout=30) == 3
        assert process.stderr is not None
        assert "worker 1 exited with 3" in process.stderr.read()


def test_a_killed_worker_stops_the_service_with_an_error(tmp_path: Path) -> None:
    with service(tmp_path, APP_WORKERS="2") as (process, port):
        wait_serving(port, process)
        os.kill(children_of(process.pid)[0], signal.SIGKILL)
        assert process.wait(timeout=15) == 1


def test_a_bad_worker_count_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with service(tmp_path, APP_WORKERS="many") as (process, _port):
        assert process.wait(timeout=15) == 2
        assert process.stderr is not None
        lines = process.stderr.read().strip().splitlines()
        assert len(lines) == 1 and "APP_WORKERS" in lines[0]


def test_one_worker_is_one_process(tmp_path: Path) -> None:
    with service(tmp_path, APP_WORKERS="1") as (process, port):
        wait_serving(port, process)
        assert children_of(process.pid) == []
        assert '"worker":0' in get(port, "/pid")[1]
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the SIGTERM it drained on: fatal here, ignored as a container's PID 1.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)


def test_without_a_writable_tmp_one_process_serves_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from analyticbot_common import serve

    def read_only(prefix: str = "") -> str:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(serve.tempfile, "mkdtemp", read_only)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert serve._shared_directory(2) is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert "serving with one process" in caplog.text
