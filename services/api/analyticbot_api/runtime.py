"""The API's connections: the PostgreSQL pool and the Redis client, their startup, probes, gauges and shutdown.

Startup reads the secrets, waits for PostgreSQL and for the schema the migrate job applies (up to
STARTUP_TIMEOUT), and only then lets the app serve. Afterwards neither client is ever recreated: asyncpg's pool
opens new connections in place of broken ones on acquire, and redis-py reconnects on the next command, so the
API survives PostgreSQL or Redis going away and coming back without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import asyncpg
from analyticbot_common import workers
from analyticbot_common.health import DependencyDown
from analyticbot_common.scrub import SCRUBBER, Scrubber
from analyticbot_common.startup import retry_until
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from .auth import TokenVerifier
from .cache import LocalCopies, RedisSummaryCache, TrackedSummaryCache
from .migrations import LATEST_VERSION
from .repository import PgChannelRepository
from .service import CacheStats, ChannelService
from .settings import ApiSecrets, ApiSettings, load_secrets
from .tracking import InvalidationTracker, RedisAddress

log = logging.getLogger("analyticbot.api")
# Written by the write probe; the ACL lets the API's Redis user write health:* and summary:* only.
HEALTH_KEY = f"health:api:{socket.gethostname()}"


class Resources:
    def __init__(
        self, settings: ApiSettings, scrubber: Scrubber = SCRUBBER, cache_stats: CacheStats | None = None
    ) -> None:
        self.settings = settings
        self.scrubber = scrubber
        # Given, not made here: they hold the counters the app registered, and startup hands them to the service.
        self.cache_stats = cache_stats if cache_stats is not None else CacheStats()
        self.pool: asyncpg.Pool | None = None
        self.redis: Redis | None = None
        self.channels: ChannelService | None = None
        self.tokens: TokenVerifier | None = None
        self.local_copies = LocalCopies()
        self._tracking: asyncio.Task[None] | None = None

    async def start(self) -> ChannelService:
        """Everything the app needs before serving; raises SettingsError or StartupAborted."""
        settings = self.settings
        secrets = load_secrets(settings)
        for value in secrets.values():
            self.scrubber.add(value)
        self.tokens = TokenVerifier(secrets.jwt_secret_key)
        self.pool = await retry_until(
            lambda: self._create_pool(secrets),
            what=f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port}",
            timeout=settings.startup_timeout,
            log=log,
        )
        # The migrate job (run as the owner before the API starts) applies the schema; this role cannot.
        version = await retry_until(
            self._schema_version,
            what="the database schema (applied by the migrate job)",
            timeout=settings.startup_timeout,
            log=log,
        )
        log.info("schema at version %d", version)
        # A blocking pool: with a plain one, the 33rd concurrent request got MaxConnectionsError, which
        # the cache counts as Redis being down, so every read went to PostgreSQL for the cool-down.
        pool = BlockingConnectionPool(
            host=settings.redis_host,
            port=settings.redis_port,
            db=settings.redis_db,
            username=settings.redis_username or None,
            password=secrets.redis_password,
            socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_socket_timeout,
            # One immediate retry: after a Redis restart the first command meets a dead pooled socket.
            retry=Retry(NoBackoff(), retries=1),
            # REDIS_POOL_MAX is the service's: each of its processes takes a share.
            max_connections=workers.share(settings.redis_pool_max),
            timeout=settings.redis_socket_timeout,  # the longest a request waits for a free connection
            client_name="analyticbot-api",
        )
        self.redis = Redis.from_pool(pool)  # from_pool: aclose() closes the pool's connections too
        repository = PgChannelRepository(self.pool, acquire_timeout=settings.db_connect_timeout)
        address = RedisAddress(
            settings.redis_host,
            settings.redis_port,
            settings.redis_username or None,
            secrets.redis_password,
            settings.redis_socket_timeout,
        )
        tracker = InvalidationTracker(address, self.local_copies.drop, self.local_copies.set_tracking)
        self._tracking = asyncio.create_task(tracker.run(), name="redis-tracking")
        cache = TrackedSummaryCache(RedisSummaryCache(self.redis, settings.cache_ttl_seconds), self.local_copies)
        self.channels = ChannelService(repository, cache, self.cache_stats)
        return self.channels

    async def _schema_version(self) -> int:
        assert self.pool is not None
        version = await self.pool.fetchval("SELECT max(version) FROM schema_migrations")
        if version is None or version < LATEST_VERSION:
            raise RuntimeError(f"schema at version {version}, this API needs {LATEST_VERSION}")
        return int(version)

    async def _create_pool(self, secrets: ApiSecrets) -> asyncpg.Pool:
        settings = self.settings
        return await asyncpg.create_pool(
            host=settings.postgres_host,
            port=settings.postgres_port,
            database=settings.postgres_db,
            user=settings.postgres_user,
            password=secrets.postgres_password,
            # DB_POOL_MAX is the service's: with several processes each takes a share, so PostgreSQL
            # sees the same number of connections whatever the CPU limit makes of the API.
            min_size=min(settings.db_pool_min, workers.share(settings.db_pool_max)),
            max_size=workers.share(settings.db_pool_max),
            timeout=settings.db_connect_timeout,
            command_timeout=settings.db_command_timeout,
            server_settings={"application_name": "analyticbot-api"},
        )

    async def close(self) -> None:
        if self._tracking is not None:
            self._tracking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tracking
        if self.redis is not None:
            await self.redis.aclose()
        if self.pool is not None:
            try:
                # Bounded: close() waits for acquired connections, and shutdown must not hang on a dead server.
                await asyncio.wait_for(self.pool.close(), timeout=5.0)
            except Exception as exc:  # a pool whose server is gone cannot close cleanly; end it anyway
                log.warning("closing the database pool failed (%s); terminating it", type(exc).__name__)
                self.pool.terminate()

    # --- health probes: raise when the dependency is unusable ---

    async def probe_postgres(self) -> None:
        if self.pool is None:
            raise RuntimeError("not connected yet")
        await self.pool.fetchval("SELECT 1")

    async def probe_redis(self) -> None:
        if self.redis is None:
            raise RuntimeError("not connected yet")
        if not await self.redis.ping():
            raise RuntimeError("PING was not answered with PONG")

    async def probe_redis_writes(self) -> None:
        """A Redis that answers PING but refuses writes (OOM at maxmemory, a read-only replica) makes the
        cache useless: an optional dependency, so the API reports itself degraded, not unhealthy."""
        if self.redis is None:
            raise RuntimeError("not connected yet")
        try:
            await self.redis.set(HEALTH_KEY, "1", ex=30)
        except ResponseError as exc:
            # The kind only (OutOfMemoryError, ReadOnlyError, NoPermissionError): the text may echo the command.
            raise DependencyDown(f"Redis refuses writes ({type(exc).__name__})") from None

    # --- gauges for /performance and /metrics ---

    def pool_size(self) -> int | None:
        return self.pool.get_size() if self.pool is not None else None

    def pool_in_use(self) -> int | None:
        return self.pool.get_size() - self.pool.get_idle_size() if self.pool is not None else None

    def pool_max(self) -> int | None:
        """This process's ceiling (its share of DB_POOL_MAX), as the pool was given it."""
        return self.pool.get_max_size() if self.pool is not None else None

    def cache_hit_ratio(self) -> float | None:
        return self.cache_stats.hit_ratio
