"""What point-in-time recovery costs and promises, in one run on a throwaway prod-mode stack with the backup
overlay (own project, ports, subnets), on a database of at least a million post_views rows:

- backup time and size: a pgBackRest full backup and an incremental one after 1% of the rows changed,
  against a verified pg_dump of the same data in the same run (the baseline);
- archive lag under a steady writer: how old the last archived segment gets, and how many segments wait;
- RPO: the writer's acknowledged writes lost when postgres is killed and its volume deleted, in seconds
  (target <= 10), restored with `--to latest`;
- RTO: the seconds that restore took, and a point-in-time restore to a minute before.

    python benchmarks/backup.py [--rows 1000000] [--load 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console
from rich.table import Table
from stack import verdict

from analyticbot_ops import backups, compose, deploy
from analyticbot_ops.recovery import pitr
from analyticbot_ops.recovery.target import Target
from tests import sandbox

console = Console(width=140)
RPO_TARGET_S = 10.0


def _sql(stack: sandbox.RunningStack, sql: str) -> str:
    database = compose.in_service(stack.stack, "postgres")
    return database.run(["psql", "-U", "analyticbot", "-d", "analyticbot", "-tA"], sql.encode()).decode().strip()


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(1)
    raise SystemExit(f"benchmark: not ready within {timeout:.0f} s")


def _load(stack: sandbox.RunningStack, rows: int) -> None:
    channel = sandbox.WRITER_CHANNEL
    _sql(stack, f"INSERT INTO channels (id, username) VALUES ({channel}, 'bench') ON CONFLICT DO NOTHING;")
    _sql(stack, "INSERT INTO channels (id, username) VALUES (7, 'bulk') ON CONFLICT DO NOTHING;")
    _sql(
        stack, f"INSERT INTO post_views (channel_id, post_id, views) SELECT 7, g, g FROM generate_series(1, {rows}) g;"
    )


def _timed(action: object) -> tuple[float, object]:
    started = time.monotonic()
    result = action()  # type: ignore[operator]
    return time.monotonic() - started, result


def _archive_lag(stack: sandbox.RunningStack, seconds: float) -> tuple[float, int]:
    """Under the writer: the oldest the last archived segment got (s), and the most segments waiting."""
    writer = sandbox.AckWriter(stack, first=5_000_000)
    writer.start()
    worst_age, worst_waiting = 0.0, 0
    sql = (
        "SELECT COALESCE(extract(epoch FROM now() - last_archived_time), 0)::float, "
        "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 9, 16))::bit(64)::bigint - "
        "('x' || substr(COALESCE(last_archived_wal, pg_walfile_name(pg_current_wal_lsn())), 9, 16))::bit(64)::bigint "
        "FROM pg_stat_archiver;"
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        age, waiting = _sql(stack, sql).split("|")
        worst_age, worst_waiting = max(worst_age, float(age)), max(worst_waiting, int(waiting) - 1)
        time.sleep(1)
    writer.finish()
    return worst_age, max(worst_waiting, 0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="post_views rows to load (at least 1 million)")
    parser.add_argument("--load", type=float, default=60, help="seconds of steady writes for the archive lag")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="abbenchbackup-"))
    stack = sandbox.make_stack(root, f"abbenchbak-{int(time.time())}", backup=True)
    try:
        deploy.up(stack.stack, timeout=300)
        _wait(lambda: all(pitr.catalog(stack.stack).backups_of(r) for r in (1, 2)), 240)
        load_s, _ = _timed(lambda: _load(stack, args.rows))
        size = _sql(stack, "SELECT pg_size_pretty(pg_database_size('analyticbot'));")
        console.print(f"loaded {args.rows} post_views rows in {load_s:.1f} s; the database is {size}")

        full_s, full = _timed(lambda: pitr.backup(stack.stack, "full", (1,))[0])
        _sql(stack, "UPDATE post_views SET views = views + 1 WHERE channel_id = 7 AND post_id % 100 = 0;")
        incr_s, incr = _timed(lambda: pitr.backup(stack.stack, "incr", (1,))[0])
        with tempfile.TemporaryDirectory() as folder:
            dump_s, dump = _timed(lambda: backups.backup(stack.stack, Path(folder)))
        table = Table("backup", "seconds", "stored MB", "time vs pg_dump", "size vs pg_dump", title="Backups")
        dump_mb = dump.size / 1e6  # type: ignore[attr-defined]
        table.add_row("pg_dump, verified (baseline)", f"{dump_s:.1f}", f"{dump_mb:.1f}", "1.00", "1.00")
        for name, seconds, taken in (("pgBackRest full", full_s, full), ("pgBackRest incr (1% changed)", incr_s, incr)):
            mb = taken.stored / 1e6  # type: ignore[attr-defined]
            table.add_row(name, f"{seconds:.1f}", f"{mb:.1f}", f"{seconds / dump_s:.2f}", f"{mb / dump_mb:.2f}")
        console.print(table)

        age, waiting = _archive_lag(stack, args.load)
        console.print(
            f"archive lag under a steady writer over {args.load:.0f} s: the last archived segment at most "
            f"{age:.1f} s old (ARCHIVE_TIMEOUT 5 s), at most {waiting} segments waiting"
        )

        writer = sandbox.AckWriter(stack, first=6_000_000)
        writer.start()
        time.sleep(20)
        pitr_target = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
        killed_at = time.time()
        sandbox.lose_database_disk(stack)
        writer.finish()
        rto_latest, done = _timed(lambda: pitr.restore(stack.stack, Target(None), timeout=600))
        restored = {int(x) for x in _sql(stack, "SELECT post_id FROM post_views WHERE post_id >= 6000000;").split()}
        lost = sorted(set(writer.acknowledged) - restored)
        lost_s = killed_at - min(writer.acknowledged[p] for p in lost) if lost else 0.0
        rto_pitr, _ = _timed(lambda: pitr.restore(stack.stack, Target(pitr_target), force=True, timeout=600))
        table = Table("recovery", "figure", "target", "result", title="RPO and RTO")
        table.add_row(
            "RPO: writes lost with the disk",
            f"{len(lost)} of {len(writer.acknowledged)}, {lost_s:.1f} s",
            f"<= {RPO_TARGET_S:.0f} s",
            verdict(lost_s <= RPO_TARGET_S),
        )
        table.add_row("RTO: --to latest (volume lost)", f"{rto_latest:.1f} s ({done.seconds:.1f} s offline)", "-", "-")  # type: ignore[attr-defined]
        table.add_row("RTO: --to a moment 10 s before", f"{rto_pitr:.1f} s", "-", "-")
        console.print(table)
        return 0 if lost_s <= RPO_TARGET_S else 1
    finally:
        deploy.down(stack.stack, volumes=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
