#!/bin/sh
# backup-agent and backup-repo: pgBackRest's TLS server and the backup schedule
# of one repository, in one container with no shell tools but dash's builtins,
# date and sleep (the postgres image).
#
#   ROLE=agent: the database side. Waits for PostgreSQL, creates the stanza in
#     both repositories (a no-op when it exists), then serves the repository host
#     and backs up repository 1.
#   ROLE=repo: the repository host. Serves the database side's archive-push,
#     info and restore, and backs up repository 2 (a backup runs where its
#     repository is: pgBackRest pulls it from the database side).
#
# The schedule: a full backup when the last full one is FULL_EVERY old, else a
# differential one when the last backup is DIFF_EVERY old; checked every
# SCHEDULE_TICK. A failed backup is retried RETRY_AFTER later (at the first
# start, the stanza or the other side may not be there yet), and so is one that
# found the other repository's backup running. The times of the
# last backups and the last run's outcome are files in the repository's volume
# (schedule.*), read by `invoke schedule.status`; `stack.backups` reads the
# repositories themselves. A backup that runs while the server is down would
# still work; the container stops when the server stops, and its restart
# policy starts both again.
set -eu
: "${ROLE:?ROLE must be agent or repo}" "${BACKUP_REPO:?BACKUP_REPO must be 1 or 2}"
: "${FULL_EVERY:=7d}" "${DIFF_EVERY:=1d}" "${SCHEDULE_TICK:=60s}" "${RETRY_AFTER:=15s}"
state=/var/lib/pgbackrest/schedule
stanza=analyticbot

seconds() {  # seconds DURATION: 90, 90s, 15m, 6h or 7d in seconds; 0 turns the schedule off
    case "$1" in
        *[!0-9smhd]* | "" | [smhd]*) echo "backup schedule: $1 is not a duration like 90s, 15m, 6h or 7d" >&2; exit 2 ;;
        *d) echo $(( ${1%d} * 86400 )) ;;
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}
full_every=$(seconds "$FULL_EVERY")
diff_every=$(seconds "$DIFF_EVERY")
tick=$(seconds "$SCHEDULE_TICK")
retry=$(seconds "$RETRY_AFTER")

last() {  # last KIND: when the last KIND backup of the schedule succeeded (0: never)
    value=0
    if [ -r "$state.$1" ]; then read -r value < "$state.$1" || value=0; fi
    echo "${value:-0}"
}

backup() {  # backup KIND: one backup of this repository, its outcome recorded
    started=$(date +%s)
    echo "backup schedule: $1 backup of repository $BACKUP_REPO" >&2
    if pgbackrest --stanza=$stanza --repo="$BACKUP_REPO" --type="$1" backup; then
        echo "$started" > "$state.$1"
        # A full backup is also the base the next differential one is counted from.
        [ "$1" != full ] || echo "$started" > "$state.diff"
        outcome=ok
    else
        if [ $? -eq 50 ]; then
            # LockAcquireError: pgBackRest 2.45 runs one backup of a stanza at a time (its lock is per stanza;
            # per repository only from 2.53), and the other repository's schedule is backing up now. Nothing
            # failed: tried again RETRY_AFTER later, and the last outcome stays that of the last backup that ran.
            echo "backup schedule: $1 backup of repository $BACKUP_REPO: deferred, the other repository's backup is running" >&2
            outcome=busy
            return 0
        fi
        outcome=failed
        # A repository that lost its volume (a new disk, a new node) has no stanza: make it again, so that
        # the retry and the WAL archive work (a no-op when the stanza is there).
        pgbackrest --stanza=$stanza stanza-create >/dev/null 2>&1 || true
    fi
    echo "$started $1 $outcome $(( $(date +%s) - started ))" > "$state.last"
    echo "backup schedule: $1 backup of repository $BACKUP_REPO: $outcome" >&2
}

server=""
stop() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    exit 0
}
trap stop TERM INT

# The server first: each side's stanza-create needs the other side's server.
pgbackrest server &
server=$!
if [ "$ROLE" = agent ]; then
    # The stanza needs a running primary and both repositories; until then, wait
    # (briefly: Compose starts this agent with PostgreSQL, not once it is healthy).
    until pg_isready -q -h /var/run/pgbackrest && pgbackrest --stanza=$stanza stanza-create; do
        sleep 0.5 & wait $! || true
    done
fi
# The healthcheck's mark: the stanza exists (agent) and the server runs.
: > /tmp/ready

while kill -0 "$server" 2>/dev/null; do
    now=$(date +%s)
    outcome=ok
    if [ "$ROLE" = agent ]; then
        # Both repositories as the database side sees them, for the backup metrics (PostgreSQL's
        # backup_info() reads the file): a short I/O timeout, so that a repository host that does not
        # answer is reported within a tick instead of holding the schedule up.
        pgbackrest --stanza=$stanza --output=json --io-timeout=5 info > "$state.info.json" 2>/dev/null || true
    fi
    if [ "$full_every" -gt 0 ] && [ $(( now - $(last full) )) -ge "$full_every" ]; then
        backup full
    elif [ "$diff_every" -gt 0 ] && [ $(( now - $(last diff) )) -ge "$diff_every" ]; then
        backup diff
    fi
    # In the background, so that a stop signal is handled at once, not after the sleep.
    [ "$outcome" = ok ] && wait_for=$tick || wait_for=$retry
    sleep "$wait_for" & wait $! || true
done
echo "backup schedule: pgBackRest's server stopped; exiting so that the container restarts" >&2
exit 1
