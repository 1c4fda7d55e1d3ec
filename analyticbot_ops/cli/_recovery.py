"""How `stack.backups` shows the repositories: one dict (the --json output) and the tables made from it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table

from ..recovery.catalog import REPOSITORIES, Catalog


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def as_dict(catalog: Catalog, now: dt.datetime) -> dict[str, Any]:
    """Every backup, each repository with its restore window, and the WAL archive (None: postgres is down)."""
    archiver = catalog.archiver
    return {
        "repositories": [
            {
                "repo": r.repo,
                "ok": r.ok,
                "status": r.message,
                "wal_min": r.wal_min,
                "wal_max": r.wal_max,
                "earliest_restore_point": _iso(catalog.earliest(r.repo)),
                "latest_restore_point": _iso(catalog.latest(r.repo)),
            }
            for r in catalog.repositories
        ],
        "backups": [
            {
                "repo": b.repo,
                "label": b.label,
                "kind": b.kind,
                "started": _iso(b.started),
                "stopped": _iso(b.stopped),
                "size_bytes": b.size,
                "stored_bytes": b.stored,
                "wal_start": b.wal_start,
                "wal_stop": b.wal_stop,
            }
            for b in catalog.backups
        ],
        "archive": None
        if archiver is None
        else {
            "archived": archiver.archived,
            "last_archived_wal": archiver.last_wal,
            "last_archived_at": _iso(archiver.last_at),
            "age_seconds": None if archiver.age(now) is None else round(archiver.age(now) or 0.0, 1),
            "failed": archiver.failed,
            "last_failed_wal": archiver.last_failed_wal,
            "last_failed_at": _iso(archiver.last_failed_at),
            "failing": archiver.failing(),
        },
    }


def print_catalog(out: Console, view: dict[str, Any]) -> None:
    table = Table(title="backups")
    for column in ("repo", "label", "kind", "stopped (UTC)", "database", "stored"):
        table.add_column(column)
    for b in view["backups"]:
        size, stored = (f"{b[k] / 1e6:.1f} MB" for k in ("size_bytes", "stored_bytes"))
        table.add_row(str(b["repo"]), b["label"], b["kind"], b["stopped"], size, stored)
    out.print(table)
    repos = Table(title="repositories")
    for column in ("repo", "where", "status", "earliest restore point", "latest restore point"):
        repos.add_column(column)
    where = dict(zip(REPOSITORIES, ("this host (volume pgbackrest)", "repository host (TLS)"), strict=True))
    for r in view["repositories"]:
        repos.add_row(
            str(r["repo"]),
            where.get(r["repo"], "?"),
            r["status"],
            r["earliest_restore_point"] or "-",
            r["latest_restore_point"] or "-",
        )
    out.print(repos)
    archive = view["archive"]
    if archive is None:
        out.print("WAL archive: postgres is not running, so its archiver cannot be read")
        return
    state = "FAILING" if archive["failing"] else "ok"
    out.print(
        f"WAL archive: {state}; last segment {archive['last_archived_wal'] or '-'} "
        f"({archive['age_seconds'] if archive['age_seconds'] is not None else '-'} s ago), "
        f"{archive['archived']} archived, {archive['failed']} failed"
        + (f" (last {archive['last_failed_wal']} at {archive['last_failed_at']})" if archive["failed"] else "")
    )
