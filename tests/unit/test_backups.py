"""Backups and restores with a fake database: what is refused, what is written, what is kept."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from analyticbot_ops import backups
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import BadInput, OpsError

GOOD = b"PGDMP" + b"x" * 200
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


class FakeDatabase:
    """pg_restore accepts only GOOD; psql counts tables; every command is recorded."""

    def __init__(self, tables: int = 3, restore_fails: bool = False) -> None:
        self.tables = tables
        self.restore_fails = restore_fails
        self.calls: list[tuple[str, ...]] = []

    def run(self, command: Sequence[str], stdin: bytes | None = None) -> bytes:
        self.calls.append(tuple(command))
        program = command[0]
        if program == "pg_dump":
            return GOOD
        if program == "psql":
            return f"{self.tables}\n".encode()
        if program == "pg_restore":
            if stdin != GOOD:
                raise OpsError("pg_restore failed: could not read input file: end of file")
            if "--list" in command:
                return b";\n; Archive created\n;\n1; 2615 2200 SCHEMA - public\n2; 1259 16 TABLE public channels\n"
            if "-d" in command and self.restore_fails:
                raise OpsError("pg_restore failed: relation exists")
            return b""
        raise AssertionError(f"unexpected command {command}")

    def restores(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == "pg_restore" and "-d" in c]


def stack(project: str = "abtest", env: str = "prod") -> Stack:
    return Stack(env, project, {})


def test_a_backup_is_verified_in_full_written_whole_and_records_its_origin(tmp_path: Path) -> None:
    db = FakeDatabase()
    result = backups.backup(stack(), tmp_path, now=NOW, database=db)
    assert result.path == tmp_path / "abtest-20261201T120000Z.dump"
    assert result.path.read_bytes() == GOOD and result.entries == 2
    assert result.path.stat().st_mode & 0o777 == 0o600
    # Not only the table of contents: a second pass reads every data block.
    assert ("pg_restore", "--file=/dev/null", "--exit-on-error") in db.calls
    origin = json.loads(backups.origin_path(result.path).read_text())
    assert (origin["project"], origin["env"], origin["size"]) == ("abtest", "prod", len(GOOD))
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_backup_into_a_folder_it_cannot_write_fails_before_dumping(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    db = FakeDatabase()
    with pytest.raises(BadInput, match=r"cannot write backups to .*nothing was dumped"):
        backups.backup(stack(), blocker / "backups", database=db)
    assert db.calls == []


def test_two_backups_in_one_second_do_not_overwrite_each_other(tmp_path: Path) -> None:
    first = backups.backup(stack(), tmp_path, now=NOW, database=FakeDatabase())
    second = backups.backup(stack(), tmp_path, now=NOW, database=FakeDatabase())
    assert first.path != second.path and first.path.exists() and second.path.exists()


def test_retention_keeps_the_newest_and_only_this_projects(tmp_path: Path) -> None:
    other = backups.backup(stack("other"), tmp_path, now=NOW, database=FakeDatabase())
    made = [
        backups.backup(stack(), tmp_path, keep=2, now=NOW + dt.timedelta(hours=h), database=FakeDatabase())
        for h in range(4)
    ]
    assert [p.name for p in backups.backups_of(tmp_path, "abtest")] == [m.path.name for m in made[-2:]]
    assert made[-1].pruned == (made[1].path,)
    assert not backups.origin_path(made[0].path).exists()
    assert other.path.exists()
    with pytest.raises(BadInput, match="at least 1"):
        backups.prune(tmp_path, "abtest", 0)


def _saved(tmp_path: Path, content: bytes = GOOD, project: str = "abtest", env: str = "prod") -> Path:
    path = backups.backup(stack(project, env), tmp_path / "in", now=NOW, database=FakeDatabase()).path
    path.write_bytes(content)
    return path


def test_a_damaged_archive_is_refused_even_with_force_and_nothing_is_touched(tmp_path: Path) -> None:
    truncated = _saved(tmp_path, GOOD[: len(GOOD) // 2])
    db = FakeDatabase()
    with pytest.raises(BadInput, match=r"does not match the checksum.*not touched"):
        backups.restore(stack(), truncated, force=True, backup_dir=tmp_path / "out", database=db, regrant=lambda: None)
    assert db.calls == [] and not (tmp_path / "out").exists()
    # Without a record the full read catches it, before any safety backup or restore.
    backups.origin_path(truncated).unlink()
    with pytest.raises(BadInput, match=r"is damaged .*not touched"):
        backups.restore(
            stack(),
            truncated,
            force=True,
            allow_foreign=True,
            backup_dir=tmp_path / "out",
            database=db,
            regrant=lambda: None,
        )
    assert db.restores() == [] and not (tmp_path / "out").exists()


def test_a_foreign_or_unrecorded_archive_is_refused_unless_allowed(tmp_path: Path) -> None:
    foreign = _saved(tmp_path, project="someone-else")
    db = FakeDatabase(tables=0)
    with pytest.raises(BadInput, match=r"backup of someone-else \(prod\), not of abtest"):
        backups.restore(stack(), foreign, database=db, regrant=lambda: None)
    staging = _saved(tmp_path, env="staging")
    with pytest.raises(BadInput, match=r"not of abtest \(prod\)"):
        backups.restore(stack(), staging, database=db, regrant=lambda: None)
    assert db.calls == []
    backups.origin_path(foreign).unlink()
    with pytest.raises(BadInput, match="no backup record"):
        backups.restore(stack(), foreign, database=db, regrant=lambda: None)
    assert backups.restore(stack(), foreign, allow_foreign=True, database=db, regrant=lambda: None).entries == 2


def test_a_non_empty_database_needs_force_and_then_gets_a_safety_backup_first(tmp_path: Path) -> None:
    archive = _saved(tmp_path)
    db = FakeDatabase(tables=3)
    with pytest.raises(BadInput, match=r"not empty \(3 tables\).*whole archive of 2 entries.*--force"):
        backups.restore(stack(), archive, backup_dir=tmp_path / "out", database=db, regrant=lambda: None)
    assert db.restores() == []
    result = backups.restore(
        stack(), archive, force=True, backup_dir=tmp_path / "out", database=db, regrant=lambda: None
    )
    assert result.safety_backup is not None and result.safety_backup.path.exists()
    assert result.safety_backup.path.name.endswith("-pre-restore.dump")
    dump_at = next(i for i, c in enumerate(db.calls) if c[0] == "pg_dump")
    restore_at = db.calls.index(db.restores()[0])
    assert dump_at < restore_at
    assert "--single-transaction" in db.restores()[0] and "--clean" in db.restores()[0]


def test_a_failed_restore_says_it_was_rolled_back_and_where_the_safety_copy_is(tmp_path: Path) -> None:
    archive = _saved(tmp_path)
    with pytest.raises(OpsError, match=r"rolled back.*safety backup is .*pre-restore"):
        backups.restore(
            stack(),
            archive,
            force=True,
            backup_dir=tmp_path / "out",
            database=FakeDatabase(restore_fails=True),
            regrant=lambda: None,
        )


def test_the_safety_backup_never_prunes_the_archive_being_restored(tmp_path: Path) -> None:
    archive = backups.backup(stack(), tmp_path, now=NOW - dt.timedelta(days=1), database=FakeDatabase()).path
    backups.backup(stack(), tmp_path, now=NOW, database=FakeDatabase())
    backups.restore(
        stack(), archive, force=True, backup_dir=tmp_path, keep=1, database=FakeDatabase(), regrant=lambda: None
    )
    assert archive.exists()


def test_verify_runs_the_full_check_and_names_the_damage(tmp_path: Path) -> None:
    archive = _saved(tmp_path)
    assert backups.verify(stack(), archive, database=FakeDatabase()) == 2
    backups.origin_path(archive).unlink()
    archive.write_bytes(GOOD[:50])
    with pytest.raises(BadInput, match="is damaged: pg_restore failed"):
        backups.verify(stack(), archive, database=FakeDatabase())
    with pytest.raises(BadInput, match="no backup at"):
        backups.verify(stack(), tmp_path / "absent.dump", database=FakeDatabase())


class InterruptedDatabase(FakeDatabase):
    def run(self, command: Sequence[str], stdin: bytes | None = None) -> bytes:
        if command[0] == "pg_dump":
            raise KeyboardInterrupt
        return super().run(command, stdin)


def test_an_interrupted_backup_says_nothing_was_written_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="interrupted while dumping; nothing was written") as caught:
        backups.backup(stack(), tmp_path, database=InterruptedDatabase())
    assert caught.value.code == 130 and list(tmp_path.iterdir()) == []


def test_an_interrupt_while_pruning_still_reports_the_whole_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object) -> tuple[Path, ...]:
        raise KeyboardInterrupt

    monkeypatch.setattr(backups, "prune", interrupted)
    result = backups.backup(stack(), tmp_path, now=NOW, database=FakeDatabase())
    assert result.path.is_file() and backups.origin_path(result.path).is_file() and result.pruned == ()


def test_a_full_folder_is_one_line_with_the_space_needed_and_free_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10_000_000, 9_900_000, 100_000))
    with pytest.raises(OpsError) as refused:
        backups.backup(stack(), tmp_path, now=NOW, database=FakeDatabase())
    said = str(refused.value)
    assert said.startswith(f"no space for the dump in {tmp_path}: it needs 1.0 MB, 0.1 MB is free")
    assert "nothing was written" in said and "\n" not in said
    assert list(tmp_path.iterdir()) == [] or all(p.name.startswith(".probe") for p in tmp_path.iterdir())


def test_a_disk_that_fills_while_writing_leaves_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from analyticbot_ops import files

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "create_exclusive", full)
    with pytest.raises(OpsError, match=r"^no space for the dump in .*nothing was written$"):
        backups.backup(stack(), tmp_path, now=NOW, database=FakeDatabase())
    assert not list(tmp_path.glob("*.dump*"))
