"""PostgreSQL access for channels and post views, behind a small protocol that tests can fake.

Connection-level failures (database down, restarted, unreachable) become `DatabaseUnavailable`, which the
routes answer with 503; the pool replaces broken connections by itself on the next acquire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What a lost or refused connection raises; SQL errors (constraint violations, ...) are not in this list.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached right now."""


@dataclass(frozen=True)
class Channel:
    id: int
    username: str
    title: str | None
    created_at: datetime


@dataclass(frozen=True)
class Summary:
    username: str
    title: str | None
    posts: int
    total_views: int
    max_views: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ChannelRepository(Protocol):
    async def create_channel(self, username: str, title: str | None) -> Channel | None:
        """The new channel, or None when the username exists already."""

    async def list_channels(self, limit: int, offset: int) -> list[Channel]: ...

    async def record_views(self, username: str, post_id: int, views: int) -> int | None:
        """The views now stored for the post, or None when the channel is unknown."""

    async def correct_views(self, username: str, post_id: int, views: int) -> int | None:
        """Set the post's views to exactly `views`; None when the channel is unknown."""

    async def summary(self, username: str) -> Summary | None: ...


class PgChannelRepository:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as connection:
                yield connection
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc

    async def create_channel(self, username: str, title: str | None) -> Channel | None:
        async with self._connection() as db:
            row = await db.fetchrow(
                "INSERT INTO channels (username, title) VALUES ($1, $2) ON CONFLICT (username) DO NOTHING"
                " RETURNING id, username, title, created_at",
                username,
                title,
            )
        return Channel(**row) if row else None

    async def list_channels(self, limit: int, offset: int) -> list[Channel]:
        async with self._connection() as db:
            rows = await db.fetch(
                "SELECT id, username, title, created_at FROM channels ORDER BY username LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
        return [Channel(**row) for row in rows]

    async def record_views(self, username: str, post_id: int, views: int) -> int | None:
        async with self._connection() as db:
            # View counters only grow: a late or replayed report must not lower the stored figure.
            stored: int | None = await db.fetchval(
                "INSERT INTO post_views (channel_id, post_id, views)"
                " SELECT id, $2, $3 FROM channels WHERE username = $1"
                " ON CONFLICT (channel_id, post_id) DO UPDATE"
                " SET views = GREATEST(post_views.views, EXCLUDED.views), recorded_at = now()"
                " RETURNING views",
                username,
                post_id,
                views,
            )
        return stored

    async def correct_views(self, username: str, post_id: int, views: int) -> int | None:
        async with self._connection() as db:
            # A correction replaces the figure, lower or higher: GREATEST is for reports, not for fixes.
            stored: int | None = await db.fetchval(
                "INSERT INTO post_views (channel_id, post_id, views)"
                " SELECT id, $2, $3 FROM channels WHERE username = $1"
                " ON CONFLICT (channel_id, post_id) DO UPDATE SET views = EXCLUDED.views, recorded_at = now()"
                " RETURNING views",
                username,
                post_id,
                views,
            )
        return stored

    async def summary(self, username: str) -> Summary | None:
        async with self._connection() as db:
            row = await db.fetchrow(
                "SELECT c.username, c.title, count(v.post_id) AS posts,"
                " coalesce(sum(v.views), 0)::bigint AS total_views, coalesce(max(v.views), 0) AS max_views"
                " FROM channels c LEFT JOIN post_views v ON v.channel_id = c.id"
                " WHERE c.username = $1 GROUP BY c.id",
                username,
            )
        return Summary(**row) if row else None
