"""The database schema, as ordered migrations applied once each, and the runtime roles' grants.

The migrate job (`python3 -m analyticbot_api.migrate`, the compose service `migrate`) applies both as the
database owner before the API and the collector start; they log in as their own non-superuser roles, with only
the grants listed here, and only wait for the schema. Every migration runs in one transaction that first
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
    (
        5,
        "backup_info",
        # What pgBackRest's backup agent writes each minute (`pgbackrest info --output=json` and when), for the
        # PostgreSQL exporter's backup metrics. SECURITY DEFINER, so that the monitoring role may read this one
        # file and no other: pg_read_server_files would let it read the secrets mounted beside the server.
        # NULL where there is no file (the backup overlay is off) or while the agent rewrites it.
        """
        CREATE FUNCTION backup_info(OUT info jsonb, OUT written timestamptz)
        LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
        BEGIN
            info := pg_read_file('/var/lib/pgbackrest/schedule.info.json', 0, 16777216, true)::jsonb;
            written := (pg_stat_file('/var/lib/pgbackrest/schedule.info.json', true)).modification;
        EXCEPTION WHEN invalid_text_representation THEN  -- the agent is rewriting it: half a JSON text
            info := NULL;
            written := NULL;
        END $$;
        REVOKE ALL ON FUNCTION backup_info() FROM PUBLIC
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


LATEST_VERSION = MIGRATIONS[-1][0]
# Each service's own login role, and exactly what it may do: the statements it runs, no DDL, no DELETE. The
# owner (POSTGRES_USER, the superuser initdb made) serves only init, migrations and backup/restore.
RUNTIME_GRANTS: dict[str, tuple[str, ...]] = {
    "analyticbot_api": (
        "GRANT SELECT, INSERT ON channels TO {role}",
        "GRANT SELECT, INSERT, UPDATE (views, recorded_at) ON post_views TO {role}",
        "GRANT USAGE ON SEQUENCE channels_id_seq TO {role}",
        "GRANT SELECT ON schema_migrations TO {role}",
    ),
    "analyticbot_collector": (
        "GRANT SELECT, INSERT, UPDATE (title) ON channels TO {role}",
        "GRANT INSERT ON channel_stats TO {role}",
        "GRANT USAGE ON SEQUENCE channels_id_seq TO {role}",
        "GRANT SELECT ON schema_migrations TO {role}",
    ),
    # The PostgreSQL exporter's: the statistics views through the predefined pg_monitor role, no table.
    # And the backup agent's report (migration 5), the one file it may read.
    "analyticbot_monitor": ("GRANT pg_monitor TO {role}", "GRANT EXECUTE ON FUNCTION backup_info() TO {role}"),
}


def role_statements(role: str, verifier: str, database: str) -> list[str]:
    """Create or update a runtime role: login with this SCRAM verifier, no special powers, and exactly its grants
    (everything revoked first, so that a grant taken out of RUNTIME_GRANTS is taken out of the database too)."""
    if role not in RUNTIME_GRANTS:
        raise ValueError(f"unknown runtime role {role}")
    if "'" in verifier:
        raise ValueError("a SCRAM verifier never contains a quote")
    return [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role}; END IF;"
        " END $$",
        f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
        f" PASSWORD '{verifier}'",
        f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        *(grant.format(role=role) for grant in RUNTIME_GRANTS[role]),
    ]


async def apply_roles(connection: asyncpg.Connection, verifiers: dict[str, str], database: str) -> None:
    """Every runtime role with its verifier and grants, in one transaction."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        for role, verifier in verifiers.items():
            for statement in role_statements(role, verifier, database):
                await connection.execute(statement)
