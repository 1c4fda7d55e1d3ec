"""Faults on the running prod-mode stack, seen from outside through the proxy:
a dependency killed or hung, the API's process crashing, the stack taken down and
brought back. Readiness must tell the truth quickly, recovery needs no manual
step on the API, the proxy never hangs, and no row is lost."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

import pytest

from analyticbot_ops import compose, deploy, docker
from tests.sandbox import RunningStack

# The status _call reports for an answer the proxy began and could not finish: its headers came, then the
# connection closed short of the body (the request a dying API process had already accepted).
CUT_SHORT = -1
READY_WITHIN = 5.0  # seconds for /health/ready to turn 503 once a dependency is gone
RECOVER_WITHIN = 10.0  # seconds for it to turn 200 once the dependency is back


def _call(stack: RunningStack, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, object, float]:
    """(status, JSON body or None, seconds) of one request through the proxy; 0 when no HTTP answer,
    CUT_SHORT when the answer stopped short of its body."""
    context = ssl.create_default_context(cafile=stack.ca_file)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{stack.base_url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {stack.token('write')}")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, context=context, timeout=15) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, None, time.monotonic() - started
    except http.client.IncompleteRead:
        return CUT_SHORT, None, time.monotonic() - started
    try:
        parsed: object = json.loads(raw)
    except ValueError:
        parsed = None
    return status, parsed, time.monotonic() - started


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _ready(stack: RunningStack) -> int:
    return _call(stack, "/api/health/ready")[0]


# The production API runs two processes, each answering from its own probes: a state counts once several
# calls in a row (each a new connection, to either process) agree.
AGREEING_CALLS = 5


def _ready_everywhere(stack: RunningStack) -> bool:
    return all(_ready(stack) == 200 for _ in range(AGREEING_CALLS))


def _not_ready_for(stack: RunningStack, service: str) -> bool:
    for _ in range(AGREEING_CALLS):
        status, body, _seconds = _call(stack, "/api/health/ready")
        if status != 503 or service not in body["failing"]:  # type: ignore[index]
            return False
    return True


def _container(stack: RunningStack, service: str) -> str:
    return compose.service_states(stack.project)[service].container


def _write_rows(stack: RunningStack) -> tuple[str, int]:
    channel = f"fault_{uuid.uuid4().hex[:8]}"
    assert _call(stack, "/api/channels", "POST", {"username": channel, "title": "faults"})[0] == 201
    for post in range(1, 6):
        assert _call(stack, f"/api/channels/{channel}/views", "POST", {"post_id": post, "views": post * 10})[0] == 201
    return channel, 150


def _assert_rows(stack: RunningStack, channel: str, total: int) -> None:
    status, summary, _ = _call(stack, f"/api/channels/{channel}/summary")
    assert status == 200 and summary["posts"] == 5 and summary["total_views"] == total  # type: ignore[index]


_POLICIES: dict[str, str] = {}  # each killed container's restart policy, given back when it is mended


def _stop(container: str) -> None:
    # Killed, and kept down until mended: its restart policy (on-failure) would bring it back within a fraction
    # of a second, racing the checks of the outage below.
    policy = docker.inspect("container", container)["HostConfig"]["RestartPolicy"]  # type: ignore[index]
    _POLICIES[container] = f"{policy['Name']}:{policy['MaximumRetryCount']}"
    docker.docker(["update", "--restart", "no", container])
    docker.docker(["kill", container])


def _start(container: str) -> None:
    docker.docker(["start", container])
    docker.docker(["update", "--restart", _POLICIES.pop(container), container])


def _pause(container: str) -> None:
    docker.docker(["pause", container])


def _unpause(container: str) -> None:
    docker.docker(["unpause", container])


@pytest.mark.parametrize(
    ("service", "break_it", "mend_it"),
    [
        ("postgres", _stop, _start),
        ("redis", _stop, _start),
        ("postgres", _pause, _unpause),
        ("redis", _pause, _unpause),
    ],
    ids=["kill-postgres", "kill-redis", "pause-postgres", "pause-redis"],
)
def test_a_lost_dependency_turns_ready_503_fast_and_recovers_without_touching_the_api(
    prod_stack: RunningStack, service: str, break_it: Callable[[str], None], mend_it: Callable[[str], None]
) -> None:
    _until(lambda: _ready_everywhere(prod_stack), RECOVER_WITHIN, "ready on every API process before the fault")
    channel, total = _write_rows(prod_stack)
    api_before = docker.inspect("container", _container(prod_stack, "api"))["State"]["StartedAt"]
    target = _container(prod_stack, service)
    break_it(target)
    try:
        took = _until(lambda: _not_ready_for(prod_stack, service), READY_WITHIN, f"ready 503 after {service} went")
        status, body, _ = _call(prod_stack, "/api/health/ready")
        assert status == 503 and service in body["failing"]  # type: ignore[index]
        assert _call(prod_stack, "/api/health/live")[0] == 200
        # The proxy keeps serving, and the report its status page renders names the outage.
        assert _call(prod_stack, "/")[0] == 200
        status, report, seconds = _call(prod_stack, "/api/health")
        assert status == 503 and report["dependencies"][service]["state"] == "down"  # type: ignore[index]
        assert seconds < 3, f"/api/health took {seconds:.1f} s during the outage"
        print(f"{service}: ready turned 503 after {took:.2f} s")
    finally:
        mend_it(target)
    took = _until(lambda: _ready_everywhere(prod_stack), RECOVER_WITHIN, f"ready 200 after {service} came back")
    print(f"{service}: ready back to 200 after {took:.2f} s")
    assert docker.inspect("container", _container(prod_stack, "api"))["State"]["StartedAt"] == api_before
    _assert_rows(prod_stack, channel, total)
    compose.wait_healthy(prod_stack.stack, [service], 60, fail_fast=False)


def test_a_crashed_api_is_restarted_by_its_policy_and_the_proxy_never_hangs(prod_stack: RunningStack) -> None:
    _until(lambda: _ready_everywhere(prod_stack), RECOVER_WITHIN, "ready on every API process before the crash")
    channel, total = _write_rows(prod_stack)
    api = docker.inspect("container", _container(prod_stack, "api"))
    restarts = api["RestartCount"]
    os.kill(api["State"]["Pid"], signal.SIGKILL)  # a crash, not a `docker stop`
    answers: list[int] = []
    slowest = 0.0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            status, _body, seconds = _call(prod_stack, "/api/health/ready")
            answers.append(status)
            slowest = max(slowest, seconds)
            if status == 200 and set(answers) - {200}:
                break
            time.sleep(0.05)
    finally:
        # Whatever this test finds, the next one starts on an API that is back.
        compose.wait_healthy(prod_stack.stack, ["api"], 60, fail_fast=False)
    seen = set(answers)
    # A process killed between its answer's headers and its body cuts that one answer short; only the
    # requests it had accepted before it died may end so, never one the proxy sent after.
    assert answers.count(CUT_SHORT) <= 1, f"answers cut short: {answers.count(CUT_SHORT)}"
    assert seen - {200, CUT_SHORT} <= {502, 503, 504}, f"during the restart the proxy answered {sorted(seen)}"
    assert 200 in seen and seen - {200}, f"answers seen: {sorted(seen)}"
    assert slowest < 5, f"a request through the proxy took {slowest:.1f} s"
    assert docker.inspect("container", _container(prod_stack, "api"))["RestartCount"] == restarts + 1
    _assert_rows(prod_stack, channel, total)


def _redis_cli(stack: RunningStack, script: str) -> str:
    redis = _container(stack, "redis")
    result = subprocess.run(
        [docker.client().path, "exec", "-i", redis, "redis-cli", "-h", "127.0.0.1"],
        input=script,
        capture_output=True,
        text=True,
    )
    return result.stdout


def test_down_without_volumes_then_up_keeps_every_row_and_key(prod_stack: RunningStack) -> None:
    _until(lambda: _ready_everywhere(prod_stack), RECOVER_WITHIN, "ready on every API process before the fault")
    channel, total = _write_rows(prod_stack)
    auth = f"AUTH analyticbot {prod_stack.secret('redis_password')}\n"
    assert _redis_cli(prod_stack, auth + "SET summary:fault-persist kept\n").split() == ["OK", "OK"]
    deploy.down(prod_stack.stack)
    assert compose.service_states(prod_stack.project) == {}
    deploy.up(prod_stack.stack, timeout=180)
    _assert_rows(prod_stack, channel, total)
    assert _redis_cli(prod_stack, auth + "GET summary:fault-persist\n").split() == ["OK", "kept"]  # the AOF survived


def test_a_redis_that_refuses_writes_makes_the_api_degraded_but_still_serving(prod_stack: RunningStack) -> None:
    # Redis at its memory ceiling with nothing it may evict: the ceiling is lowered below what it already
    # holds (as the toolkit's ops user may), so every write answers OOM, as in a Redis filled by keys
    # without a TTL. Filling 200 MB instead flaps: the fill's own query buffers push it over, then free.
    _until(lambda: _ready_everywhere(prod_stack), RECOVER_WITHIN, "ready on every API process before the fault")
    admin = f"AUTH ops {prod_stack.secret('redis_admin_password')}\n"
    app = f"AUTH analyticbot {prod_stack.secret('redis_password')}\n"
    assert _redis_cli(prod_stack, admin + "CONFIG SET maxmemory 1\n").split() == ["OK", "OK"]
    try:
        assert "OOM" in _redis_cli(prod_stack, app + "SET summary:oom-probe 1\n")
        _until(lambda: _call(prod_stack, "/api/health")[1]["status"] == "degraded", 10, "degraded")  # type: ignore[index]
        status, report, _ = _call(prod_stack, "/api/health")
        assert status == 200
        assert report["dependencies"]["redis"]["state"] == "up"  # type: ignore[index]
        assert report["dependencies"]["redis_writes"]["state"] == "down"  # type: ignore[index]
        assert report["dependencies"]["redis_writes"]["error"] == "Redis refuses writes (OutOfMemoryError)"  # type: ignore[index]
        assert _ready(prod_stack) == 200  # summaries come from PostgreSQL: it stays in rotation
    finally:
        _redis_cli(prod_stack, admin + "CONFIG SET maxmemory 200mb\n")
    _until(lambda: _call(prod_stack, "/api/health")[1]["status"] == "healthy", 10, "healthy again")  # type: ignore[index]
