"""The services against real PostgreSQL and Redis (local images, testcontainers):
dependency-aware health that tells the truth, and recovery without restarts."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from testcontainers.core.network import Network

from analyticbot_ops import docker, secrets
from analyticbot_ops.paths import COMPOSE_DIR
from tests.sandbox import FAKE_BOT_TOKEN

from .containers import PostgresContainer, RedisContainer, ServiceContainer, get_json, post_json, run_migrate

DEPENDENCY_TIMEOUT = 1.0  # the API's per-dependency probe timeout


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("service-secrets") / "secrets"
    secrets.from_env("prod", directory, environ={"BOT_TOKEN": FAKE_BOT_TOKEN})
    return directory


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    with Network() as net:
        yield net


@pytest.fixture(scope="module")
def postgres(network: Network, secrets_dir: Path) -> Iterator[PostgresContainer]:
    container = PostgresContainer(network, secrets_dir).start()
    try:
        # The schema and the runtime roles the API and the collector log in as. A failed job must not leave
        # the database running: the daemon is shared, and nothing else would remove it.
        run_migrate(network, secrets_dir)
        yield container
    finally:
        container.stop()


@pytest.fixture(scope="module")
def redis(network: Network, secrets_dir: Path) -> Iterator[RedisContainer]:
    container = RedisContainer(network, secrets_dir, COMPOSE_DIR / "redis" / "redis.conf").start()
    try:
        yield container
    finally:
        container.stop()


@pytest.fixture(scope="module")
def api(
    network: Network, secrets_dir: Path, postgres: PostgresContainer, redis: RedisContainer
) -> Iterator[ServiceContainer]:
    container = ServiceContainer("api", network, secrets_dir).start()
    try:
        yield container
    finally:
        container.stop()


def _ready(api: ServiceContainer) -> tuple[int, dict]:
    return get_json(f"{api.url}/health/ready")


def _wait_for(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")


def test_api_image_passes_its_own_healthcheck_against_real_stores(api: ServiceContainer) -> None:
    assert api.wait_docker_healthy() == "healthy"
    status, report = get_json(f"{api.url}/health")
    assert status == 200 and report["status"] == "healthy"
    assert {name: dep["state"] for name, dep in report["dependencies"].items()} == {
        "postgres": "up",
        "redis": "up",
        "redis_writes": "up",
    }


def test_channel_endpoints_touch_postgres_and_cache_in_redis(api: ServiceContainer) -> None:
    token = api.token("write")
    assert post_json(f"{api.url}/channels", {"username": "ops_test", "title": "Ops"}, token=token)[0] == 201
    assert post_json(f"{api.url}/channels/ops_test/views", {"post_id": 1, "views": 120}, token=token)[0] == 201
    assert post_json(f"{api.url}/channels/ops_test/views", {"post_id": 2, "views": 80}, token=token)[0] == 201
    status, first = get_json(f"{api.url}/channels/ops_test/summary", token=token)
    assert status == 200 and first["posts"] == 2 and first["total_views"] == 200 and first["cached"] is False
    assert get_json(f"{api.url}/channels/ops_test/summary", token=token)[1]["cached"] is True
    assert post_json(f"{api.url}/channels/ops_test/views", {"post_id": 3, "views": 5}, token=token)[0] == 201
    refreshed = get_json(f"{api.url}/channels/ops_test/summary", token=token)[1]
    assert refreshed["total_views"] == 205 and refreshed["cached"] is False  # a write invalidates the cache


def _redis_as_ops(redis: RedisContainer, secrets_dir: Path, script: str) -> list[str]:
    """redis-cli in the Redis container as the toolkit's `ops` user; AUTH goes in on stdin, never in arguments."""
    admin = secrets.read_secret("redis_admin_password", secrets_dir)
    result = subprocess.run(
        [docker.client().path, "exec", "-i", redis.get_container_id(), "redis-cli", "-h", "127.0.0.1"],
        input=f"AUTH ops {admin}\n{script}",
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()[1:]  # without AUTH's OK


def _redis_gets(redis: RedisContainer, secrets_dir: Path) -> int:
    stats = _redis_as_ops(redis, secrets_dir, "INFO commandstats\n")
    line = next((line for line in stats if line.startswith("cmdstat_get:")), "cmdstat_get:calls=0,")
    return int(line.split("calls=")[1].split(",")[0])


def test_a_summary_is_kept_in_each_process_until_redis_says_it_changed(
    api: ServiceContainer, redis: RedisContainer, secrets_dir: Path
) -> None:
    """Redis tracks the summary keys for every api process (CLIENT TRACKING): a summary read again is answered
    from the process's copy, not fetched, and a change made behind the api's back, straight in Redis, is
    served at once: not after the copy's LOCAL_COPY_SECONDS (5 s)."""
    token = api.token("write")
    assert post_json(f"{api.url}/channels", {"username": "kept_copy", "title": "Kept"}, token=token)[0] == 201
    assert post_json(f"{api.url}/channels/kept_copy/views", {"post_id": 1, "views": 10}, token=token)[0] == 201
    url = f"{api.url}/channels/kept_copy/summary"
    assert get_json(url, token=token)[1]["cached"] is False
    processes = get_json(f"{api.url}/performance")[1]["worker"]["of"]
    before = _redis_gets(redis, secrets_dir)
    answers = [get_json(url, token=token)[1] for _ in range(30)]
    fetched = _redis_gets(redis, secrets_dir) - before
    assert all(answer["cached"] is True and answer["total_views"] == 10 for answer in answers)
    # Each process fetches it once (the connection's spread may not reach every one), then keeps it.
    assert 1 <= fetched <= processes, f"{fetched} GETs for 30 reads on {processes} processes"
    entry = json.loads(_redis_as_ops(redis, secrets_dir, "GET summary:kept_copy\n")[0])
    changed = json.dumps({**entry, "total_views": 999})
    assert _redis_as_ops(redis, secrets_dir, f"SET summary:kept_copy '{changed}' KEEPTTL\n") == ["OK"]
    started = time.monotonic()
    while get_json(url, token=token)[1]["total_views"] != 999:
        assert time.monotonic() - started < 1.0, "a copy outlived Redis's invalidation"
        time.sleep(0.05)
    answers = [get_json(url, token=token)[1]["total_views"] for _ in range(10)]
    assert answers == [999] * 10  # on every process: each was told
    with urllib.request.urlopen(f"{api.url}/metrics", timeout=5) as response:
        assert "\ncache_copies_tracked 1.0\n" in response.read().decode()


@pytest.mark.parametrize("dependency", ["redis", "postgres"])
def test_stopping_a_dependency_turns_ready_503_and_back_without_restarting_the_api(
    api: ServiceContainer, request: pytest.FixtureRequest, dependency: str
) -> None:
    store = request.getfixturevalue(dependency)
    started_at = api.get_wrapped_container().attrs["State"]["StartedAt"]
    store.get_wrapped_container().stop(timeout=10)
    try:
        _wait_for(lambda: _ready(api)[0] == 503, 10)
        status, body = _ready(api)
        assert status == 503 and dependency in body["failing"]
        assert get_json(f"{api.url}/health/live")[0] == 200
    finally:
        store.get_wrapped_container().start()
    _wait_for(lambda: _ready(api)[0] == 200, 30)
    api.get_wrapped_container().reload()
    state = api.get_wrapped_container().attrs["State"]
    assert state["StartedAt"] == started_at and api.get_wrapped_container().attrs["RestartCount"] == 0


def test_a_paused_dependency_costs_at_most_its_timeout(api: ServiceContainer, redis: RedisContainer) -> None:
    docker.docker(["pause", redis.get_container_id()])
    try:
        time.sleep(1.2)  # past the health cache's TTL, so the next call really probes
        started = time.monotonic()
        status, report = get_json(f"{api.url}/health", timeout=10)
        elapsed = time.monotonic() - started
        assert status == 503 and report["dependencies"]["redis"]["state"] == "down"
        assert elapsed <= DEPENDENCY_TIMEOUT + 0.5, f"/health took {elapsed:.2f} s with Redis paused"
    finally:
        docker.docker(["unpause", redis.get_container_id()])
    _wait_for(lambda: _ready(api)[0] == 200, 15)


def test_bot_without_a_token_runs_degraded_and_says_why(network: Network, tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    secrets.from_env("dev", directory, environ={})
    bot = ServiceContainer("bot", network, directory, environment="development").start()
    try:
        assert bot.wait_docker_healthy() == "healthy"
        # aiogram loads in the background; until then the reason is "starting".
        _wait_for(lambda: "token" in (get_json(f"{bot.url}/health")[1]["dependencies"]["telegram"]["error"] or ""), 60)
        status, report = get_json(f"{bot.url}/health")
        assert status == 200 and report["status"] == "degraded"
        telegram = report["dependencies"]["telegram"]
        assert telegram["state"] == "down" and not telegram["critical"]
        assert "token" in (telegram["error"] or "")
    finally:
        bot.stop()


def test_bot_never_echoes_its_token(network: Network, secrets_dir: Path) -> None:
    bot = ServiceContainer("bot", network, secrets_dir).start()
    try:
        _wait_for(lambda: get_json(f"{bot.url}/health")[1]["dependencies"]["telegram"]["error"] not in (None, ""), 40)
        _status, report = get_json(f"{bot.url}/health")
        assert report["dependencies"]["telegram"]["state"] == "down"  # Telegram is a closed local port here
        stdout, stderr = bot.get_logs()
        secret_part = FAKE_BOT_TOKEN.split(":")[1]
        assert secret_part not in (stdout + stderr).decode()
        assert secret_part not in str(report)
    finally:
        bot.stop()


def test_collector_without_credentials_is_disabled_never_healthy(
    network: Network, secrets_dir: Path, api: ServiceContainer
) -> None:
    collector = ServiceContainer("mtproto", network, secrets_dir).start()
    try:
        assert collector.wait_docker_healthy() == "healthy"
        status, report = get_json(f"{collector.url}/health")
        assert status == 200 and report["status"] == "degraded"
        assert report["dependencies"]["telegram"]["state"] == "disabled"
        assert report["dependencies"]["postgres"]["state"] == "up"
    finally:
        collector.stop()
