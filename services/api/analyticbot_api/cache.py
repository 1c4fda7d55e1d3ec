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


def summary_key(username: str) -> str:
    return f"summary:{username}"


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
