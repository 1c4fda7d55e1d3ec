#!/bin/sh
# PostgreSQL entrypoint with the official image's contract: POSTGRES_USER,
# POSTGRES_DB, POSTGRES_PASSWORD_FILE and PGDATA. The password is read from the
# file by initdb itself (--pwfile), so it never passes through an argument or
# an environment variable. Like the official image, the file is read only when
# the data directory is first initialised: rotating it needs ALTER ROLE.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"

if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD_FILE:-}" ] || [ ! -r "$POSTGRES_PASSWORD_FILE" ]; then
        echo "docker-entrypoint: POSTGRES_PASSWORD_FILE must name a readable secret file" >&2
        exit 1
    fi
    echo "docker-entrypoint: initialising $PGDATA" >&2
    # C locale: no locale data needed in the image; UTF8 for the text itself.
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" \
        --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --locale=C >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        # Single-user mode: no server, no socket, no password needed yet.
        printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$POSTGRES_DB" "$POSTGRES_USER" \
            | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
    # Remote clients authenticate with SCRAM; the local socket (inside this
    # container only) trusts, which is what lets ops tasks run ALTER ROLE.
    printf '%s\n' "local all all trust" "host all all 127.0.0.1/32 scram-sha-256" \
        "host all all 0.0.0.0/0 scram-sha-256" "host all all ::/0 scram-sha-256" > "$PGDATA/pg_hba.conf"
fi

if [ "${1:-postgres}" = postgres ]; then
    shift $(( $# > 0 ? 1 : 0 ))
    exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off \
        -c unix_socket_directories=/var/run/postgresql "$@"
fi
exec "$@"
