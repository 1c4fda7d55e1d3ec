"""The API without PostgreSQL or Redis: request validation, the summary cache logic, errors and readiness wiring.

The repository and the Redis client are replaced by small fakes; the routes, the service, the Redis cache
adapter and the health wiring are the real code."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from analyticbot_api.auth import TokenVerifier
from analyticbot_api.cache import RedisSummaryCache
from analyticbot_api.main import create_app
from analyticbot_api.migrations import MIGRATION_LOCK_KEY, MIGRATIONS, migrate
from analyticbot_api.repository import Channel, DatabaseUnavailable, Summary
from analyticbot_api.routes import SummaryFastPath
from analyticbot_api.service import ChannelService
from analyticbot_api.settings import ApiSettings
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from starlette.routing import Match

from analyticbot_ops import tokens

# Minted by the toolkit, verified by the API: the token contract is tested end to end.
JWT_KEY = "unit-test-signing-key-" + "k" * 40
WRITE_TOKEN = tokens.mint(JWT_KEY, ("read", "write"), tokens.parse_ttl("1h"), subject="tests").value


class FakeRepository:
    """Channels and views in dicts, with the same contract as PgChannelRepository."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.views: dict[tuple[str, int], int] = {}
        self.summary_queries = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise DatabaseUnavailable("ConnectionRefusedError")

    async def create_channel(self, username: str, title: str | None) -> Channel | None:
        self._check()
        if username in self.channels:
            return None
        channel = Channel(len(self.channels) + 1, username, title, datetime(2026, 1, 1, tzinfo=UTC))
        self.channels[username] = channel
        return channel

    async def list_channels(self, limit: int, offset: int) -> list[Channel]:
        self._check()
        return sorted(self.channels.values(), key=lambda c: c.username)[offset : offset + limit]

    async def record_views(self, username: str, post_id: int, views: int) -> int | None:
        self._check()
        if username not in self.channels:
            return None
        stored = max(views, self.views.get((username, post_id), 0))
        self.views[(username, post_id)] = stored
        return stored

    async def correct_views(self, username: str, post_id: int, views: int) -> int | None:
        self._check()
        if username not in self.channels:
            return None
        self.views[(username, post_id)] = views
        return views

    async def summary(self, username: str) -> Summary | None:
        self._check()
        self.summary_queries += 1
        channel = self.channels.get(username)
        if channel is None:
            return None
        views = [v for (name, _), v in self.views.items() if name == username]
        return Summary(username, channel.title, len(views), sum(views), max(views, default=0))


class FakeRedis:
    """The three commands the cache adapter uses; `down` makes each raise like a lost connection."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.calls = 0
        self.down = False
        self.full = False  # at maxmemory with nothing to evict: writes answer OOM
        self.ttls: dict[str, int] = {}

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return self.data.get(key)

    async def set(self, key: str, value: str, ex: int) -> None:
        self._check()
        if self.full:
            raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
        self.data[key], self.ttls[key] = value.encode(), ex

    async def delete(self, key: str) -> None:
        self._check()
        self.data.pop(key, None)

    async def ping(self) -> bool:
        self._check()
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, environment: str = "production") -> None:
        self.repository = FakeRepository()
        self.redis = FakeRedis()
        self.clock = Clock()
        self.cache = RedisSummaryCache(self.redis, ttl_seconds=30, clock=self.clock)  # type: ignore[arg-type]
        self.app = create_app(ApiSettings(environment=environment, health_cache_ttl=0))  # type: ignore[arg-type]
        # What the lifespan would set up from real connections (with the stats that hold the app's counters).
        self.app.state.channels = ChannelService(self.repository, self.cache, self.app.state.resources.cache_stats)
        self.app.state.tokens = TokenVerifier(JWT_KEY)

    def call(
        self, *requests: tuple[str, str, dict[str, Any] | None], token: str | None = WRITE_TOKEN
    ) -> list[httpx.Response]:
        return call(self.app, *requests, token=token)


def call(
    app: FastAPI, *requests: tuple[str, str, dict[str, Any] | None], token: str | None = None
) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            return [await client.request(method, url, json=body) for method, url, body in requests]

    return asyncio.run(run())


@pytest.fixture
def api() -> Iterator[Harness]:
    yield Harness()


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/channels", {"username": "ab"}),
        ("POST", "/channels", {"username": "has space"}),
        ("POST", "/channels", {"username": "dash-ed"}),
        ("POST", "/channels", {"username": "x" * 65}),
        ("POST", "/channels", {"username": "durov", "extra": 1}),
        ("POST", "/channels", {"title": "no username"}),
        ("GET", "/channels/ab/summary", None),
        ("GET", "/channels/bad%21name/summary", None),
        ("POST", "/channels/durov/views", {"post_id": 0, "views": 1}),
        ("POST", "/channels/durov/views", {"post_id": 1, "views": -1}),
        ("POST", "/channels/durov/views", {"post_id": 1}),
        ("POST", "/channels/d!/views", {"post_id": 1, "views": 1}),
        ("GET", "/channels?limit=0", None),
    ],
)
def test_invalid_requests_are_rejected_with_422(api: Harness, method: str, url: str, body: dict | None) -> None:
    (response,) = api.call((method, url, body))
    assert response.status_code == 422
    assert api.repository.channels == {}


def test_channels_are_created_once_and_listed(api: Harness) -> None:
    created, duplicate, same_other_case, listing = api.call(
        ("POST", "/channels", {"username": "Durov", "title": "Pavel"}),
        ("POST", "/channels", {"username": "durov"}),
        ("POST", "/channels", {"username": "DUROV"}),
        ("GET", "/channels", None),
    )
    assert created.status_code == 201
    assert created.json()["username"] == "durov" and created.json()["title"] == "Pavel"
    assert duplicate.status_code == 409 and same_other_case.status_code == 409
    assert [c["username"] for c in listing.json()] == ["durov"]


def test_views_for_an_unknown_channel_are_404(api: Harness) -> None:
    (response,) = api.call(("POST", "/channels/nobody/views", {"post_id": 1, "views": 5}))
    assert response.status_code == 404


def test_summary_is_cached_and_invalidated_by_new_views(api: Harness) -> None:
    responses = api.call(
        ("POST", "/channels", {"username": "durov", "title": "Pavel"}),
        ("POST", "/channels/durov/views", {"post_id": 1, "views": 100}),
        ("POST", "/channels/durov/views", {"post_id": 2, "views": 50}),
        ("GET", "/channels/durov/summary", None),
        ("GET", "/channels/Durov/summary", None),
    )
    first, second = responses[-2].json(), responses[-1].json()
    assert responses[1].status_code == 201
    assert first == {
        "username": "durov",
        "title": "Pavel",
        "posts": 2,
        "total_views": 150,
        "max_views": 100,
        "cached": False,
    }
    assert second == {**first, "cached": True}
    assert api.repository.summary_queries == 1
    assert api.redis.ttls["summary:durov"] == 30

    stored, after = api.call(
        ("POST", "/channels/durov/views", {"post_id": 1, "views": 90}),  # lower: the stored figure stays 100
        ("GET", "/channels/durov/summary", None),
    )
    assert stored.status_code == 201 and stored.json()["views"] == 100
    assert after.json()["cached"] is False  # the write removed the cached entry
    assert api.repository.summary_queries == 2
    service: ChannelService = api.app.state.channels
    assert (service.stats.hits, service.stats.misses, service.stats.hit_ratio) == (1, 2, 0.3333)


def test_summary_is_served_from_postgres_while_redis_is_down(api: Harness) -> None:
    api.call(
        ("POST", "/channels", {"username": "durov"}), ("POST", "/channels/durov/views", {"post_id": 1, "views": 7})
    )
    api.redis.down = True
    calls_before = api.redis.calls
    first, second = api.call(("GET", "/channels/durov/summary", None), ("GET", "/channels/durov/summary", None))
    assert first.status_code == second.status_code == 200
    assert first.json()["cached"] is False and second.json()["cached"] is False
    assert first.json()["total_views"] == 7
    # After the first failure Redis is skipped for the cool-down, instead of costing every request a timeout.
    assert api.redis.calls == calls_before + 1
    assert api.cache.errors == 1

    api.redis.down = False
    api.clock.now += 5  # past the cool-down
    third, fourth = api.call(("GET", "/channels/durov/summary", None), ("GET", "/channels/durov/summary", None))
    assert third.json()["cached"] is False and fourth.json()["cached"] is True


def test_database_outage_is_503_not_500(api: Harness) -> None:
    api.repository.down = True
    listing, summary = api.call(("GET", "/channels", None), ("GET", "/channels/durov/summary", None))
    assert listing.status_code == 503 and summary.status_code == 503
    assert listing.json() == {"detail": "database unavailable"}


def test_requests_before_startup_are_503() -> None:
    app = create_app(ApiSettings(environment="production"))
    (response,) = call(app, ("GET", "/channels", None))
    assert response.status_code == 503


class FakePool:
    def __init__(self) -> None:
        self.down = False

    async def fetchval(self, query: str) -> int:
        if self.down:
            raise ConnectionRefusedError("connect call failed")
        return 1

    def get_size(self) -> int:
        return 4

    def get_idle_size(self) -> int:
        return 3

    def get_max_size(self) -> int:
        return 5


def test_readiness_names_redis_when_redis_is_down(api: Harness) -> None:
    resources = api.app.state.resources
    resources.pool, resources.redis, resources.channels = FakePool(), api.redis, api.app.state.channels
    (ready,) = api.call(("GET", "/health/ready", None))
    assert ready.status_code == 200

    api.redis.down = True
    ready, health, performance = api.call(
        ("GET", "/health/ready", None), ("GET", "/health", None), ("GET", "/performance", None)
    )
    assert ready.status_code == 503 and ready.json()["failing"] == ["redis"]
    assert health.status_code == 503 and health.json()["dependencies"]["postgres"]["state"] == "up"
    assert performance.json()["gauges"]["db_pool_size"] == 4
    assert performance.json()["gauges"]["db_pool_in_use"] == 1
    assert performance.json()["gauges"]["db_pool_max"] == 5

    api.redis.down = False
    resources.pool.down = True
    (ready,) = api.call(("GET", "/health/ready", None))
    assert ready.status_code == 503 and ready.json()["failing"] == ["postgres"]


def test_cache_lookups_are_counters_in_metrics_and_the_ratio_stays_a_gauge(api: Harness) -> None:
    api.call(("POST", "/channels", {"username": "durov"}))
    (before,) = api.call(("GET", "/metrics", None))
    # From the first scrape on, so that rate() has a start.
    assert "cache_hits_total 0.0" in before.text and "cache_misses_total 0.0" in before.text
    assert "cache_hit_ratio" not in before.text  # no lookup yet: no ratio

    api.call(*[("GET", "/channels/durov/summary", None)] * 4)  # one miss fills the cache, then three hits
    metrics, performance = api.call(("GET", "/metrics", None), ("GET", "/performance", None))
    assert "# TYPE cache_hits_total counter" in metrics.text and "# TYPE cache_misses_total counter" in metrics.text
    assert "cache_hits_total 3.0" in metrics.text
    assert "cache_misses_total 1.0" in metrics.text
    assert "cache_hit_ratio 0.75" in metrics.text
    assert performance.json()["gauges"]["cache_hit_ratio"] == 0.75
    # The gauges the counters replace are gone (from both).
    exposed = {line.split(" ")[0] for line in metrics.text.splitlines() if not line.startswith("#")}
    assert not exposed & {"cache_hits", "cache_misses"}
    assert not set(performance.json()["gauges"]) & {"cache_hits", "cache_misses"}


def test_metrics_hold_the_pool_ceiling_and_the_dependency_states(api: Harness) -> None:
    resources = api.app.state.resources
    resources.pool, resources.redis, resources.channels = FakePool(), api.redis, api.app.state.channels
    api.redis.down = True
    (metrics,) = api.call(("GET", "/metrics", None))
    assert metrics.status_code == 200
    assert "db_pool_size 4.0" in metrics.text and "db_pool_in_use 1.0" in metrics.text
    assert "db_pool_max 5.0" in metrics.text
    up = sorted(line for line in metrics.text.splitlines() if line.startswith("dependency_up{"))
    assert up == [
        'dependency_up{critical="false",dependency="redis_writes"} 0.0',
        'dependency_up{critical="true",dependency="postgres"} 1.0',
        'dependency_up{critical="true",dependency="redis"} 0.0',
    ]


def test_before_startup_the_pool_gauges_are_absent_and_postgres_is_down() -> None:
    app = create_app(ApiSettings(environment="production", health_cache_ttl=0))  # type: ignore[call-arg]
    (metrics,) = call(app, ("GET", "/metrics", None))
    assert "db_pool_max" not in metrics.text  # unknown until the pool exists, like db_pool_size
    assert 'dependency_up{critical="true",dependency="postgres"} 0.0' in metrics.text


def test_build_info_names_the_api_and_its_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_VERSION", "2.3.4")
    monkeypatch.setenv("APP_RELEASE", "r42")
    app = create_app(ApiSettings(environment="production"))  # type: ignore[call-arg]
    metrics, health = call(app, ("GET", "/metrics", None), ("GET", "/health", None))
    assert 'build_info{release="r42",service="api",version="2.3.4"} 1.0' in metrics.text
    assert health.json()["version"] == "2.3.4"  # the same version in both


@pytest.mark.parametrize(("environment", "status"), [("production", 404), ("development", 200)])
def test_interactive_docs_only_in_development(environment: str, status: int) -> None:
    app = create_app(ApiSettings(environment=environment))  # type: ignore[arg-type]
    docs, schema = call(app, ("GET", "/docs", None), ("GET", "/openapi.json", None))
    assert docs.status_code == status and schema.status_code == status


class FakeConnection:
    """Records the statements migrate() runs; `applied` plays the schema_migrations table."""

    def __init__(self, applied: set[int]) -> None:
        self.applied = applied
        self.statements: list[str] = []
        self.in_transaction = False

    @asynccontextmanager
    async def transaction(self) -> Any:
        self.in_transaction = True
        yield
        self.in_transaction = False

    async def execute(self, sql: str, *args: object, timeout: float | None = None) -> None:
        assert self.in_transaction, "every migration statement runs inside the transaction"
        self.statements.append(" ".join(sql.split()))
        if sql.startswith("INSERT INTO schema_migrations"):
            self.applied.add(int(args[0]))  # type: ignore[call-overload]
        if "pg_advisory_xact_lock" in sql:
            assert args == (MIGRATION_LOCK_KEY,)

    async def fetch(self, sql: str) -> list[dict[str, int]]:
        return [{"version": v} for v in sorted(self.applied)]


def test_migrations_take_the_lock_first_and_apply_only_what_is_missing() -> None:
    versions = [version for version, _, _ in MIGRATIONS]
    assert versions == sorted(set(versions))

    fresh = FakeConnection(applied=set())
    assert asyncio.run(migrate(fresh)) == versions  # type: ignore[arg-type]
    assert fresh.statements[0].startswith("SELECT pg_advisory_xact_lock")
    assert any("CREATE TABLE channel_stats" in s for s in fresh.statements)

    partial = FakeConnection(applied={1, 2})
    assert asyncio.run(migrate(partial)) == versions[2:]  # type: ignore[arg-type]
    assert not any("CREATE TABLE channels" in s for s in partial.statements)


# --- bearer tokens ----------------------------------------------------------------------------------------------

READ_TOKEN = tokens.mint(JWT_KEY, ("read",), tokens.parse_ttl("1h"), subject="bot").value


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, 401),
        ("not-a-jwt", 401),
        (tokens.mint("another-key-" + "z" * 40, ("read", "write"), tokens.parse_ttl("1h")).value, 401),
        (
            tokens.mint(
                JWT_KEY, ("read", "write"), tokens.parse_ttl("60s"), now=datetime(2026, 1, 1, tzinfo=UTC)
            ).value,
            401,
        ),
        (READ_TOKEN, 403),
        (WRITE_TOKEN, 201),
    ],
    ids=["none", "malformed", "other-key", "expired", "read-scope", "write-scope"],
)
def test_writes_need_a_valid_unexpired_token_with_the_write_scope(
    api: Harness, token: str | None, expected: int
) -> None:
    (response,) = api.call(("POST", "/channels", {"username": "durov"}), token=token)
    assert response.status_code == expected, response.text
    assert (api.repository.channels != {}) == (expected == 201)
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_reads_need_the_read_scope_and_a_read_token_suffices(api: Harness) -> None:
    api.call(("POST", "/channels", {"username": "durov"}))
    anonymous = api.call(("GET", "/channels", None), ("GET", "/channels/durov/summary", None), token=None)
    assert [r.status_code for r in anonymous] == [401, 401]
    reader = api.call(("GET", "/channels", None), ("GET", "/channels/durov/summary", None), token=READ_TOKEN)
    assert [r.status_code for r in reader] == [200, 200]


def test_health_stays_public(api: Harness) -> None:
    (response,) = api.call(("GET", "/health/live", None), token=None)
    assert response.status_code == 200


def test_views_have_an_upper_bound_and_a_figure_can_be_corrected_down(api: Harness) -> None:
    api.call(
        ("POST", "/channels", {"username": "durov"}), ("POST", "/channels/durov/views", {"post_id": 1, "views": 500})
    )
    (too_many,) = api.call(("POST", "/channels/durov/views", {"post_id": 1, "views": 2**63 - 1}))
    assert too_many.status_code == 422
    corrected, lower_report, summary = api.call(
        ("PUT", "/channels/durov/views/1", {"views": 40}),
        ("POST", "/channels/durov/views", {"post_id": 1, "views": 30}),
        ("GET", "/channels/durov/summary", None),
    )
    assert corrected.status_code == 200 and corrected.json()["views"] == 40
    assert lower_report.json()["views"] == 40  # reports still only grow, from the corrected figure
    assert summary.json()["total_views"] == 40
    (read_only,) = api.call(("PUT", "/channels/durov/views/1", {"views": 1}), token=READ_TOKEN)
    (unknown,) = api.call(("PUT", "/channels/nobody/views/1", {"views": 1}))
    assert (read_only.status_code, unknown.status_code) == (403, 404)


def test_tokens_are_refused_before_startup_has_read_the_key(api: Harness) -> None:
    api.app.state.tokens = None
    (response,) = api.call(("GET", "/channels", None))
    assert response.status_code == 503


def test_a_redis_that_refuses_writes_makes_the_api_degraded_not_unhealthy(api: Harness) -> None:
    resources = api.app.state.resources
    resources.pool, resources.redis, resources.channels = FakePool(), api.redis, api.app.state.channels
    api.redis.full = True
    ready, health = api.call(("GET", "/health/ready", None), ("GET", "/health", None))
    assert ready.status_code == 200  # still serving: summaries come from PostgreSQL
    body = health.json()
    assert body["status"] == "degraded"
    assert body["dependencies"]["redis"]["state"] == "up"
    assert body["dependencies"]["redis_writes"] == {**body["dependencies"]["redis_writes"], "state": "down"}
    assert body["dependencies"]["redis_writes"]["error"] == "Redis refuses writes (OutOfMemoryError)"


# --- the migrate job's roles and grants -------------------------------------------------------------------------


def test_runtime_roles_get_login_without_powers_and_exactly_their_grants() -> None:
    from analyticbot_api.migrations import RUNTIME_GRANTS, role_statements

    statements = role_statements("analyticbot_api", "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy", "analyticbot")
    alter = next(s for s in statements if s.startswith("ALTER ROLE"))
    assert "NOSUPERUSER" in alter and "NOCREATEDB" in alter and "NOCREATEROLE" in alter and "NOBYPASSRLS" in alter
    # Everything is revoked before the listed grants, so a grant taken out of the list leaves the database too.
    revoke = statements.index("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM analyticbot_api")
    grants = [grant.format(role="analyticbot_api") for grant in RUNTIME_GRANTS["analyticbot_api"]]
    assert all(statements.index(g) > revoke for g in grants)
    for role, role_grants in RUNTIME_GRANTS.items():
        text = " ".join(role_grants)
        assert "DELETE" not in text and "TRUNCATE" not in text and "ALL" not in text, role
    with pytest.raises(ValueError):
        role_statements("analyticbot", "x", "analyticbot")  # the owner is never a runtime role


def test_the_migrate_jobs_verifier_is_the_toolkits() -> None:
    from analyticbot_api.migrate import scram_verifier

    from analyticbot_ops import secrets

    salt = bytes(range(16))
    assert scram_verifier("Sw0rdfish-and-more", salt=salt) == secrets.scram_verifier("Sw0rdfish-and-more", salt=salt)


def test_the_api_waits_for_the_schema_version_it_needs() -> None:
    from analyticbot_api.migrations import LATEST_VERSION
    from analyticbot_api.runtime import Resources

    class Pool:
        def __init__(self, version: int | None) -> None:
            self.version = version

        async def fetchval(self, sql: str) -> int | None:
            assert "schema_migrations" in sql
            return self.version

    resources = Resources(ApiSettings())  # type: ignore[call-arg]
    resources.pool = Pool(LATEST_VERSION - 1)  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match=f"needs {LATEST_VERSION}"):
        asyncio.run(resources._schema_version())
    resources.pool = Pool(LATEST_VERSION)  # type: ignore[assignment]
    assert asyncio.run(resources._schema_version()) == LATEST_VERSION


# --- the verifier remembers the tokens it accepted, until they expire ----------------------------------------


class WallClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def test_an_accepted_token_is_not_checked_again_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = WallClock()
    verifier = TokenVerifier(JWT_KEY, clock=clock)
    token = tokens.mint(JWT_KEY, ("read",), tokens.parse_ttl("90s"), subject="tests").value
    checks: list[str] = []
    real_check = verifier._check
    monkeypatch.setattr(verifier, "_check", lambda t: checks.append(t) or real_check(t))
    first = verifier.verify(token)
    assert verifier.verify(token) == first
    assert len(checks) == 1  # the second request was answered from memory
    clock.now += 90 + 11  # past its expiry and the leeway: forgotten, so checked again (jwt.decode's own clock
    verifier.verify(token)  # has not moved, so it still passes; the expired case is tested above)
    assert len(checks) == 2


def test_only_the_exact_token_is_remembered_and_memory_is_bounded() -> None:
    verifier = TokenVerifier(JWT_KEY, remember=2)
    good = tokens.mint(JWT_KEY, ("read",), tokens.parse_ttl("1h"), subject="tests").value
    verifier.verify(good)
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")  # same claims, another signature
    with pytest.raises(Exception, match="not valid"):
        verifier.verify(forged)
    for subject in ("a", "b", "c"):
        verifier.verify(tokens.mint(JWT_KEY, ("read",), tokens.parse_ttl("1h"), subject=subject).value)
    assert len(verifier._accepted) == 2


# --- the summary's fast path (routes.SummaryFastPath) ---------------------------------------------------------------

ONLY_WRITE_TOKEN = tokens.mint(JWT_KEY, ("write",), tokens.parse_ttl("1h"), subject="tests").value


def _without_fast_path(harness: Harness) -> Harness:
    harness.app.router.routes[:] = [r for r in harness.app.router.routes if not isinstance(r, SummaryFastPath)]
    return harness


def _answers(harness: Harness, token: str | None, *urls: str) -> list[tuple[int, bytes, list[tuple[str, str]]]]:
    harness.call(("POST", "/channels", {"username": "durov", "title": "Pavel"}))
    harness.call(("POST", "/channels/durov/views", {"post_id": 1, "views": 7}))
    responses = harness.call(*[("GET", url, None) for url in urls], token=token)
    return [(r.status_code, r.content, sorted(r.headers.items())) for r in responses]


@pytest.mark.parametrize(
    "token",
    [WRITE_TOKEN, READ_TOKEN, None, ONLY_WRITE_TOKEN, "not.a.token", f"{READ_TOKEN[:-2]}xx"],
    ids=["write", "read", "none", "write-only", "malformed", "bad-signature"],
)
def test_the_fast_path_answers_every_summary_request_as_the_fastapi_route_does(token: str | None) -> None:
    urls = ["/channels/durov/summary", "/channels/DUROV/summary", "/channels/nobody/summary", "/channels/ab/summary",
            "/channels/bad%21name/summary"]  # fmt: skip
    fast, routed = Harness(), _without_fast_path(Harness())
    assert _answers(fast, token, *urls) == _answers(routed, token, *urls)
    assert fast.repository.summary_queries == routed.repository.summary_queries
    fast.repository.down = routed.repository.down = True
    fast.redis.data.clear()
    routed.redis.data.clear()
    assert _answers(fast, token, urls[0]) == _answers(routed, token, urls[0])  # the store's 503


def _scope(app: FastAPI, path: str, token: str | None, method: str = "GET") -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers, "app": app}


def test_the_fast_path_takes_only_what_it_can_answer(api: Harness) -> None:
    route = next(r for r in api.app.router.routes if isinstance(r, SummaryFastPath))
    assert api.app.router.routes[0] is route

    def matched(path: str = "/channels/durov/summary", token: str | None = READ_TOKEN, method: str = "GET") -> bool:
        match, child = route.matches(_scope(api.app, path, token, method))
        assert (match is Match.FULL) == (child.get("route") is route)
        return match is Match.FULL

    assert matched() and matched(token=WRITE_TOKEN) and matched("/channels/Some_Name_1/summary")
    assert not matched(token=None) and not matched(token=ONLY_WRITE_TOKEN) and not matched(token="x.y.z")
    assert not matched("/channels/ab/summary") and not matched("/channels/durov/views") and not matched(method="POST")
    api.app.state.channels = None  # starting: the FastAPI route says 503
    assert not matched()


def test_summaries_through_the_fast_path_are_counted_under_the_routes_template(api: Harness) -> None:
    api.call(("POST", "/channels", {"username": "durov"}))
    api.call(*[("GET", "/channels/durov/summary", None)] * 3, token=READ_TOKEN)
    (metrics,) = api.call(("GET", "/metrics", None))
    assert 'route="/channels/{username}/summary"' in metrics.text
