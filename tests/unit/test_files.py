"""Unit tests of the file-safety door (analyticbot_ops.files): staging, atomic replace, exclusive create,
backups, folder and mode fixing, reading, and the writable checks."""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyticbot_ops import files
from analyticbot_ops.errors import BadInput, OpsError

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


class FrozenDatetime(datetime):
    """Every backup made within one second, whatever the clock does."""

    @classmethod
    def now(cls, tz: object = None) -> FrozenDatetime:
        return cls(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


# --- owner ------------------------------------------------------------------------------------------------------


def test_owner_is_given_only_by_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert files.owner_if_root(4242) == (4242, 4242)
    assert files.owner_if_root(4242, 4343) == (4242, 4343)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert files.owner_if_root(4242, 4343) is None


# --- stage, commit, replace -------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_mode", [0o600, 0o644, 0o400])
def test_stage_writes_a_hidden_temp_with_its_final_mode_whatever_the_umask(tmp_path: Path, file_mode: int) -> None:
    old_umask = os.umask(0o077)
    try:
        tmp = files.stage(tmp_path / "fullchain.pem", b"data", file_mode)
    finally:
        os.umask(old_umask)
    assert tmp.parent == tmp_path
    assert re.fullmatch(r"\.fullchain\.pem\..+\.tmp", tmp.name)
    assert tmp.read_bytes() == b"data"
    assert mode(tmp) == file_mode
    assert not (tmp_path / "fullchain.pem").exists()


def test_stage_removes_its_temp_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int, file_mode: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fchmod", broken)
    with pytest.raises(OSError, match="No space left"):
        files.stage(tmp_path / "key", b"secret", 0o600)
    assert list(tmp_path.iterdir()) == []


def test_stage_chowns_the_temp_before_it_has_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: calls.append((Path(path).name, uid, gid)))
    tmp = files.stage(tmp_path / "key", b"secret", 0o600, (4242, 4343))
    assert calls == [(tmp.name, 4242, 4343)]


@as_root
def test_stage_gives_the_file_to_its_owner_as_root(tmp_path: Path) -> None:
    tmp = files.stage(tmp_path / "key", b"secret", 0o600, (4242, 4343))
    info = tmp.stat()
    assert (info.st_uid, info.st_gid) == (4242, 4343)


def test_replace_atomic_swaps_in_a_new_inode(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    path.chmod(0o644)
    before = path.stat().st_ino
    with path.open("rb") as reader:  # a running container holding the old file open
        files.replace_atomic(path, b"new", 0o600)
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o600
    assert path.stat().st_ino != before
    assert leftovers(tmp_path) == []


def test_replace_atomic_creates_an_absent_file(tmp_path: Path) -> None:
    files.replace_atomic(tmp_path / "new", b"content", 0o644)
    assert (tmp_path / "new").read_bytes() == b"content"
    assert mode(tmp_path / "new") == 0o644


def test_a_failed_commit_leaves_the_destination_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "inside").write_text("keep")
    staged = files.stage(target, b"data", 0o600)
    with pytest.raises(OSError):
        files.commit(staged, target)
    assert (target / "inside").read_text() == "keep"
    assert leftovers(tmp_path) == []


def test_commit_without_sync_leaves_the_flush_to_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(files, "fsync_dir", synced.append)
    files.commit(files.stage(tmp_path / "a", b"1", 0o600), tmp_path / "a", sync=False)
    assert synced == []
    files.commit(files.stage(tmp_path / "b", b"2", 0o600), tmp_path / "b")
    assert synced == [tmp_path]
    assert (tmp_path / "a").read_bytes() == b"1"


def test_fsync_dir_flushes_a_real_folder(tmp_path: Path) -> None:
    files.fsync_dir(tmp_path)  # no error is the whole contract


# --- exclusive create -------------------------------------------------------------------------------------------


def test_create_exclusive_makes_a_whole_file_with_mode(tmp_path: Path) -> None:
    files.create_exclusive(tmp_path / "token", b"value", 0o600)
    assert (tmp_path / "token").read_bytes() == b"value"
    assert mode(tmp_path / "token") == 0o600
    assert leftovers(tmp_path) == []


def test_create_exclusive_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "jwt_secret_key"
    path.write_text("old-value")
    with pytest.raises(BadInput, match="appeared while writing; it was left as it is"):
        files.create_exclusive(path, b"new-value", 0o600)
    assert path.read_text() == "old-value"
    assert [p.name for p in tmp_path.iterdir()] == ["jwt_secret_key"]


@as_root
def test_create_exclusive_gives_the_file_to_its_owner_as_root(tmp_path: Path) -> None:
    files.create_exclusive(tmp_path / "key", b"k", 0o600, (4242, 4242))
    assert (tmp_path / "key").stat().st_uid == 4242


# --- backups ----------------------------------------------------------------------------------------------------


def test_backup_copy_is_private_and_timestamped(tmp_path: Path) -> None:
    backups = tmp_path / "tls" / ".backup"
    saved = files.backup_copy(backups, "fullchain.pem", b"old chain")
    assert saved.parent == backups
    assert re.fullmatch(r"fullchain\.pem\.\d{8}T\d{6}Z", saved.name)
    assert saved.read_bytes() == b"old chain"
    assert mode(saved) == 0o600
    assert mode(backups) == 0o700
    assert [p.name for p in backups.iterdir()] == [saved.name]


def test_backup_copy_tightens_an_open_backup_folder(tmp_path: Path) -> None:
    backups = tmp_path / ".backup"
    backups.mkdir(mode=0o755)
    backups.chmod(0o755)
    files.backup_copy(backups, "x", b"1")
    assert mode(backups) == 0o700


def test_backups_in_one_second_are_all_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "datetime", FrozenDatetime)
    saved = [files.backup_copy(tmp_path, "key", str(n).encode()) for n in range(3)]
    assert [p.name for p in saved] == ["key.20260301T120000Z", "key.20260301T120000Z-2", "key.20260301T120000Z-3"]
    assert [p.read_bytes() for p in saved] == [b"0", b"1", b"2"]


def test_too_many_backups_in_one_second_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "datetime", FrozenDatetime)
    monkeypatch.setattr(files, "_MAX_BACKUPS_PER_SECOND", 2)
    files.backup_copy(tmp_path, "key", b"1")
    files.backup_copy(tmp_path, "key", b"2")
    with pytest.raises(OpsError, match=f"too many backups of key in one second in {tmp_path}"):
        files.backup_copy(tmp_path, "key", b"3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.20260301T120000Z", "key.20260301T120000Z-2"]


# --- folders and modes ------------------------------------------------------------------------------------------


def test_ensure_dir_creates_parents_and_tightens_an_existing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    files.ensure_dir(folder)
    assert mode(folder) == 0o700
    folder.chmod(0o755)
    files.ensure_dir(folder, 0o700)
    assert mode(folder) == 0o700


@as_root
def test_ensure_dir_and_fix_mode_give_owner_as_root(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    files.ensure_dir(folder, 0o700, (4242, 4343))
    assert (folder.stat().st_uid, folder.stat().st_gid) == (4242, 4343)
    path = folder / "cert"
    path.write_bytes(b"c")
    files.fix_mode(path, 0o644, (4242, 4343))
    assert (path.stat().st_uid, mode(path)) == (4242, 0o644)


def test_fix_mode_restores_a_mode_and_ignores_an_absent_file(tmp_path: Path) -> None:
    path = tmp_path / "privkey.pem"
    files.fix_mode(path, 0o600)
    assert not path.exists()
    path.write_bytes(b"k")
    path.chmod(0o644)
    files.fix_mode(path, 0o600)
    assert mode(path) == 0o600


def test_fix_mode_leaves_a_right_mode_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    path.chmod(0o600)
    monkeypatch.setattr(os, "chmod", lambda *args: pytest.fail("chmod of a file already 0600"))
    files.fix_mode(path, 0o600)


# --- reading ----------------------------------------------------------------------------------------------------


def test_read_bytes_returns_the_content(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"\x00data")
    assert files.read_bytes(tmp_path / "f") == b"\x00data"


def test_read_bytes_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^no certificate at here$"):
        files.read_bytes(tmp_path / "absent", missing="no certificate at here")
    with pytest.raises(BadInput, match=r"cannot read .*absent: No such file or directory"):
        files.read_bytes(tmp_path / "absent")


def test_read_bytes_refuses_a_folder_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"cannot read .*: Is a directory"):
        files.read_bytes(tmp_path, missing="not used: the folder exists")


# --- writable checks --------------------------------------------------------------------------------------------


def test_dir_writable_honours_access_and_the_owner_bits_for_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert files.dir_writable(tmp_path)
    tmp_path.chmod(0o500)
    try:
        monkeypatch.setattr(os, "access", lambda path, flags: True)  # what root sees
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        assert not files.dir_writable(tmp_path)
        monkeypatch.setattr(os, "geteuid", lambda: 1000)  # anyone else is judged by access() alone
        assert files.dir_writable(tmp_path)
        monkeypatch.setattr(os, "access", lambda path, flags: False)
        assert not files.dir_writable(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_check_writable_accepts_a_folder_to_be_made_in_a_writable_ancestor(tmp_path: Path) -> None:
    files.check_writable(tmp_path / "secrets" / "deeper", label="secrets folder", backup_dir=tmp_path / "x")
    files.check_writable(tmp_path, label="folder")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "secrets").symlink_to(tmp_path / "gone")
    with pytest.raises(BadInput, match="is a dangling symlink; remove it or point it at a folder"):
        files.check_writable(tmp_path / "secrets", label="secrets folder")


def test_check_writable_refuses_a_file_in_place_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "secrets").write_text("")
    with pytest.raises(BadInput, match="is not a folder; the secrets folder must be one"):
        files.check_writable(tmp_path / "secrets", label="secrets folder")


def test_check_writable_refuses_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(BadInput, match=r"^secrets folder .* is not writable; fix its permissions \(mode 0700"):
            files.check_writable(folder, label="secrets folder")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_check_writable_refuses_a_backup_folder_that_is_not_a_plain_folder(tmp_path: Path, kind: str) -> None:
    backups = tmp_path / ".backup"
    if kind == "symlink":
        (tmp_path / "elsewhere").mkdir()
        backups.symlink_to(tmp_path / "elsewhere")
    else:
        backups.write_text("")
    with pytest.raises(BadInput, match="must be a plain folder"):
        files.check_writable(tmp_path, label="secrets folder", backup_dir=backups)


def test_check_writable_refuses_a_read_only_backup_folder(tmp_path: Path) -> None:
    backups = tmp_path / ".backup"
    backups.mkdir()
    backups.chmod(0o500)
    try:
        with pytest.raises(BadInput, match=r"backup folder .* is not writable; fix its permissions \(mode 0700\)"):
            files.check_writable(tmp_path, label="secrets folder", backup_dir=backups)
    finally:
        backups.chmod(0o700)
