"""What the repositories hold, read from `pgbackrest info --output=json` and PostgreSQL's pg_stat_archiver:
each backup of each repository, each repository's state, the WAL archive's progress, and the window a
point-in-time restore can reach."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ..errors import OpsError

STANZA = "analyticbot"
REPOSITORIES = (1, 2)
KINDS = ("full", "diff", "incr")


@dataclass(frozen=True)
class BackupSet:
    """One backup in one repository."""

    repo: int
    label: str
    kind: str  # full, diff or incr
    started: dt.datetime
    stopped: dt.datetime  # the earliest moment a restore from it can reach
    size: int  # the database's size
    stored: int  # its size in the repository (compressed, and for diff/incr only what changed)
    wal_start: str
    wal_stop: str


@dataclass(frozen=True)
class Repository:
    repo: int
    ok: bool
    message: str  # pgBackRest's word on it: ok, no valid backups, or why it cannot be read
    wal_min: str | None
    wal_max: str | None


@dataclass(frozen=True)
class Archiver:
    """pg_stat_archiver: what PostgreSQL's archive_command has done since the statistics were reset."""

    archived: int
    last_wal: str | None
    last_at: dt.datetime | None
    failed: int
    last_failed_wal: str | None
    last_failed_at: dt.datetime | None

    def age(self, now: dt.datetime) -> float | None:
        """Seconds since the last segment was archived."""
        return None if self.last_at is None else max(0.0, (now - self.last_at).total_seconds())

    def failing(self) -> bool:
        """The last attempt failed: no segment was archived since the last failure."""
        if self.last_failed_at is None:
            return False
        return self.last_at is None or self.last_failed_at > self.last_at


@dataclass(frozen=True)
class Catalog:
    repositories: tuple[Repository, ...]
    backups: tuple[BackupSet, ...]  # oldest first
    archiver: Archiver | None  # None while PostgreSQL does not answer

    def repository(self, repo: int) -> Repository | None:
        return next((r for r in self.repositories if r.repo == repo), None)

    def backups_of(self, repo: int) -> tuple[BackupSet, ...]:
        return tuple(b for b in self.backups if b.repo == repo)

    def earliest(self, repo: int) -> dt.datetime | None:
        """The earliest moment a restore from `repo` can reach: the end of its oldest backup."""
        return min((b.stopped for b in self.backups_of(repo)), default=None)

    def latest(self, repo: int) -> dt.datetime | None:
        """The latest moment known to be in the archive: the last archived segment (when PostgreSQL
        answers), else the end of the repository's newest backup."""
        newest = max((b.stopped for b in self.backups_of(repo)), default=None)
        if newest is None:
            return None
        if self.archiver is not None and self.archiver.last_at is not None:
            return max(newest, self.archiver.last_at)
        return newest

    def last_backup(self, repo: int, kind: str | None = None) -> BackupSet | None:
        """The newest backup of a repository (of a kind: a full one also counts for diff, as its base)."""
        wanted = {"full": ("full",), "diff": ("full", "diff"), "incr": KINDS, None: KINDS}[kind]
        return max((b for b in self.backups_of(repo) if b.kind in wanted), key=lambda b: b.stopped, default=None)


def _time(epoch: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC)


def parse_info(text: str) -> tuple[tuple[Repository, ...], tuple[BackupSet, ...]]:
    """The repositories and backups of the stanza in `pgbackrest info --output=json`."""
    try:
        stanzas = json.loads(text)
        stanza = next((s for s in stanzas if s.get("name") == STANZA), None)
        if stanza is None:
            raise OpsError(f"pgBackRest knows no stanza {STANZA!r} yet: the backup agent creates it when it starts")
        wal: dict[int, tuple[str | None, str | None]] = {}
        for archive in stanza.get("archive", []):
            wal[int(archive["database"]["repo-key"])] = (archive.get("min"), archive.get("max"))
        repositories = tuple(
            Repository(
                int(r["key"]),
                int(r["status"]["code"]) in (0, 2, 6),  # 2: no valid backups yet; 6: a backup runs
                str(r["status"]["message"]),
                *wal.get(int(r["key"]), (None, None)),
            )
            for r in stanza.get("repo", [])
        )
        backups = tuple(
            sorted(
                (
                    BackupSet(
                        repo=int(b["database"]["repo-key"]),
                        label=str(b["label"]),
                        kind=str(b["type"]),
                        started=_time(b["timestamp"]["start"]),
                        stopped=_time(b["timestamp"]["stop"]),
                        size=int(b["info"]["size"]),
                        stored=int(b["info"]["repository"]["delta"]),
                        wal_start=str(b["archive"]["start"]),
                        wal_stop=str(b["archive"]["stop"]),
                    )
                    for b in stanza.get("backup", [])
                    if not b.get("error")
                ),
                key=lambda b: (b.stopped, b.repo),
            )
        )
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise OpsError(f"pgBackRest's info is not what this toolkit reads ({type(exc).__name__}: {exc})") from None
    return repositories, backups


ARCHIVER_SQL = (
    "SELECT json_build_object('archived', archived_count, 'last_wal', last_archived_wal, "
    "'last_at', extract(epoch FROM last_archived_time), 'failed', failed_count, "
    "'last_failed_wal', last_failed_wal, 'last_failed_at', extract(epoch FROM last_failed_time)) "
    "FROM pg_stat_archiver;"
)


def parse_archiver(text: str) -> Archiver:
    """ARCHIVER_SQL's one row."""
    try:
        row = json.loads(text)

        def moment(key: str) -> dt.datetime | None:
            return None if row[key] is None else dt.datetime.fromtimestamp(float(row[key]), dt.UTC)

        return Archiver(
            int(row["archived"]),
            row["last_wal"],
            moment("last_at"),
            int(row["failed"]),
            row["last_failed_wal"],
            moment("last_failed_at"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise OpsError(f"pg_stat_archiver's row is not what this toolkit reads ({type(exc).__name__})") from None
