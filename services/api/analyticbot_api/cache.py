"""The channel-summary cache in Redis: best effort, never a reason for a request to fail.

Redis is critical for readiness (the health check says so), but a summary can always be computed from
PostgreSQL: every Redis error is logged, counted and treated as a miss. After an error Redis is skipped for a
short cool-down, so that while it is down each request does not wait for a connect timeout first."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("analyticbot.api.cache")
COOLDOWN_SECONDS = 2.0


SUMMARY_PREFIX = "summary:"


def summary_key(username: str) -> str:
    return f"{SUMMARY_PREFIX}{username}"


class SummaryCache(Protocol):
    async def get(self, username: str) -> dict[str, object] | None: ...

    async def set(self, username: str, summary: dict[str, object]) -> None: ...

    async def invalidate(self, username: str) -> None: ...


class RedisSummaryCache:
    def __init__(
        self,
        client: Redis,
        ttl_seconds: int,
        *,
        cooldown: float = COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._cooldown = cooldown
        self._clock = clock
        self._skip_until = 0.0
        self.errors = 0

    def _available(self) -> bool:
        return self._clock() >= self._skip_until

    def _failed(self, operation: str, exc: Exception) -> None:
        self.errors += 1
        self._skip_until = self._clock() + self._cooldown
        log.warning("redis %s failed, summary served without cache: %s", operation, type(exc).__name__)

    async def get(self, username: str) -> dict[str, object] | None:
        if not self._available():
            return None
        try:
            raw = await self._client.get(summary_key(username))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return None
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None  # a corrupt entry is a miss; the next set() overwrites it
        return value if isinstance(value, dict) else None

    async def set(self, username: str, summary: dict[str, object]) -> None:
        if not self._available():
            return
        try:
            await self._client.set(summary_key(username), json.dumps(summary), ex=self._ttl)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("set", exc)

    async def invalidate(self, username: str) -> None:
        # Tried even during the cool-down: a stale summary is worse than one wasted timeout. If Redis is
        # unreachable, the stale entry (if Redis kept it) lives at most ttl_seconds.
        try:
            await self._client.delete(summary_key(username))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("delete", exc)


# A copy kept in the process is dropped when Redis says its key changed (tracking.py); this bounds its life
# should a message ever be missed without the connection closing (a network that drops packets silently).
LOCAL_COPY_SECONDS = 5.0
# At most this many copies: a client walking through many channels must not grow the process without bound.
LOCAL_COPY_LIMIT = 10_000


class LocalCopies:
    """The summaries this process read from Redis, kept while Redis tracks their keys for it.

    Nothing is kept while untracked. A copy is taken only if no invalidation came between the Redis read it
    stems from and its taking (the generation), so a change that raced the read is never papered over."""

    def __init__(
        self,
        seconds: float = LOCAL_COPY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        limit: int = LOCAL_COPY_LIMIT,
    ) -> None:
        self._seconds = seconds
        self._limit = limit
        self._clock = clock
        self._copies: dict[str, tuple[dict[str, object], float]] = {}
        self.tracking = False
        self.generation = 0

    def get(self, username: str) -> dict[str, object] | None:
        found = self._copies.get(username)
        if found is None:
            return None
        value, until = found
        if self._clock() >= until:
            del self._copies[username]
            return None
        return value

    def offer(self, username: str, value: dict[str, object], generation: int) -> None:
        if not self.tracking or generation != self.generation:
            return
        now = self._clock()
        # Re-inserted at the end: every copy lives the same seconds, so the dict's order is expiry order, and
        # making room takes from the front (the expired, then the oldest) without walking the rest.
        self._copies.pop(username, None)
        while self._copies:
            oldest = next(iter(self._copies))
            if self._copies[oldest][1] > now and len(self._copies) < self._limit:
                break
            del self._copies[oldest]
        self._copies[username] = (value, now + self._seconds)

    def drop(self, keys: list[str] | None) -> None:
        """Redis's invalidation: these keys (summary:NAME), or every key (None)."""
        self.generation += 1
        if keys is None:
            self._copies.clear()
            return
        for key in keys:
            if key.startswith(SUMMARY_PREFIX):
                self._copies.pop(key[len(SUMMARY_PREFIX) :], None)

    def set_tracking(self, tracking: bool) -> None:
        self.generation += 1
        self.tracking = tracking
        self._copies.clear()

    def __len__(self) -> int:
        return len(self._copies)


class TrackedSummaryCache:
    """The Redis cache with a copy in the process (LocalCopies): a summary read twice within LOCAL_COPY_SECONDS,
    unchanged in Redis meanwhile, is not fetched again. That round trip (redis-py's pool, the command and its
    reply) was a fifth of a cached summary's CPU under load (py-spy, 2026-12-07)."""

    def __init__(self, redis_cache: SummaryCache, copies: LocalCopies) -> None:
        self._redis = redis_cache
        self.copies = copies

    async def get(self, username: str) -> dict[str, object] | None:
        local = self.copies.get(username)
        if local is not None:
            return local
        generation = self.copies.generation
        value = await self._redis.get(username)
        if value is not None:
            self.copies.offer(username, value, generation)
        return value

    async def set(self, username: str, summary: dict[str, object]) -> None:
        # Not copied here: the write makes Redis send this process an invalidation for the key anyway.
        await self._redis.set(username, summary)

    async def invalidate(self, username: str) -> None:
        self.copies.drop([summary_key(username)])
        await self._redis.invalidate(username)
        # Again: a read of this process may have fetched the old value before the DEL and kept it, and Redis's
        # message about the DEL can come after its reply. The writer's own next read must see the change.
        self.copies.drop([summary_key(username)])
