"""The collector's PostgreSQL access: a small pool that never blocks startup, and the statements it runs.

The pool starts empty (min_size 0), so the service serves its health endpoints while PostgreSQL is down and
connects on first use; broken connections are replaced on the next acquire. The schema belongs to the API:
this module only checks that `channel_stats` exists."""

from __future__ import annotations

import asyncpg

from .settings import MtprotoSecrets, MtprotoSettings


async def create_pool(settings: MtprotoSettings, secrets: MtprotoSecrets) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        host=settings.postgres_host,
        port=settings.postgres_port,
        database=settings.postgres_db,
        user=settings.postgres_user,
        password=secrets.postgres_password,
        min_size=0,
        max_size=3,
        timeout=settings.db_connect_timeout,
        command_timeout=settings.db_command_timeout,
        server_settings={"application_name": "analyticbot-mtproto"},
    )


class StatsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def schema_ready(self) -> bool:
        return bool(await self.pool.fetchval("SELECT to_regclass('public.channel_stats') IS NOT NULL"))

    async def channels(self, wanted: list[str]) -> list[tuple[int, str]]:
        """(id, username) of the channels to collect: `wanted` (registered if new) or every known channel."""
        async with self.pool.acquire() as db:
            if wanted:
                # Rows, not schema: a channel listed in CHANNELS must exist for channel_stats' foreign key.
                await db.executemany(
                    "INSERT INTO channels (username) VALUES ($1) ON CONFLICT (username) DO NOTHING",
                    [(name,) for name in wanted],
                )
                rows = await db.fetch(
                    "SELECT id, username FROM channels WHERE username = ANY($1::text[]) ORDER BY username", wanted
                )
            else:
                rows = await db.fetch("SELECT id, username FROM channels ORDER BY username")
        return [(row["id"], row["username"]) for row in rows]

    async def record(self, channel_id: int, subscribers: int, title: str | None) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                "INSERT INTO channel_stats (channel_id, subscribers) VALUES ($1, $2)", channel_id, subscribers
            )
            if title:
                await db.execute(
                    "UPDATE channels SET title = $2 WHERE id = $1 AND title IS DISTINCT FROM $2", channel_id, title
                )

    def size(self) -> int:
        return self.pool.get_size()

    def in_use(self) -> int:
        return self.pool.get_size() - self.pool.get_idle_size()

    def max_size(self) -> int:
        return int(self.pool.get_max_size())  # asyncpg is untyped
