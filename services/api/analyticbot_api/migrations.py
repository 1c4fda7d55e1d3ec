"""The database schema, as ordered migrations applied once each, before the API serves.

The API owns the schema; the collector only waits for it. Every migration runs in one transaction that first
takes a transaction-level advisory lock, so two replicas starting at once apply each migration exactly once
(the second waits, then finds nothing left to do). The lock goes with the transaction, even if the connection
dies. A future migration that cannot run in a transaction (CREATE INDEX CONCURRENTLY) needs its own step."""

from __future__ import annotations

import logging

import asyncpg

log = logging.getLogger("analyticbot.api.migrations")
# An arbitrary constant shared by every replica: the key of the advisory lock (pg_advisory_xact_lock(bigint)).
MIGRATION_LOCK_KEY = 0x616E_616C_7974_6963  # "analytic"

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "channels",
        """
        CREATE TABLE channels (
            id serial PRIMARY KEY,
            username text NOT NULL UNIQUE,
            title text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
    ),
    (
        2,
        "post_views",
        """
        CREATE TABLE post_views (
            channel_id integer NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
            post_id bigint NOT NULL,
            views bigint NOT NULL CHECK (views >= 0),
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (channel_id, post_id)
        )
        """,
    ),
    (
        3,
        "channel_stats",
        """
        CREATE TABLE channel_stats (
            channel_id integer NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
            subscribers bigint NOT NULL CHECK (subscribers >= 0),
            collected_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX channel_stats_channel_time ON channel_stats (channel_id, collected_at DESC)
        """,
    ),
    (
        4,
        "post_views_bound",
        # NOT VALID: enforced for every write from now on; rows stored before stay until corrected.
        """
        ALTER TABLE post_views ADD CONSTRAINT post_views_views_bound CHECK (views <= 100000000000) NOT VALID
        """,
    ),
)


async def migrate(connection: asyncpg.Connection, *, timeout: float = 60.0) -> list[int]:
    """Apply the migrations not yet recorded in schema_migrations; return the versions applied now."""
    applied_now: list[int] = []
    async with connection.transaction():
        # Waiting for another replica's migration may take longer than an ordinary command: own timeout.
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=timeout)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            await connection.execute(sql, timeout=timeout)
            await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("applied migration %d (%s)", version, name)
            applied_now.append(version)
    return applied_now
