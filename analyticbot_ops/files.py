"""The one door for permission-sensitive file operations: secrets, keys, certificates, database dumps and the
backups of all of them.

This module owns every write that must never be half-done or readable by the wrong user: files appear whole or
not at all, with their final mode (and owner, when we run as root) from before they carry a name. No other module
of the toolkit calls os.chmod, os.chown, os.replace, os.fsync or os.open with O_CREAT; they call these instead.

- `stage` writes a temporary file beside its destination, named `.NAME.<random>.tmp`, flushed to disk;
  `commit` renames it over the destination, `create_exclusive` links it to a name that must be free.
- `replace_atomic` = stage + commit: a reader sees the old file or the new one, never a mix; a running container
  that holds the old file open keeps reading the old value until it reopens it.
- `backup_copy` keeps an old value as `BACKUPS/NAME.<UTC time>` (0600, folder 0700) and never replaces an
  earlier backup, even two in one second.
- Every rename or link is followed by an fsync of the folder, so that it survives a crash.
"""

from __future__ import annotations

import os
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .errors import BadInput, OpsError

Owner = tuple[int, int]  # (uid, gid)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_STAMP = "%Y%m%dT%H%M%SZ"
_MAX_BACKUPS_PER_SECOND = 999


def owner_if_root(uid: int, gid: int | None = None) -> Owner | None:
    """Return (uid, gid) to give files to (gid defaults to uid), or None when we are not root.

    Only root can give a file away; anyone else keeps it, which is fine when the containers run as that user."""
    if os.geteuid() != 0:
        return None
    return uid, uid if gid is None else gid


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries, so a rename or create survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(path: Path, data: bytes, mode: int, owner: Owner | None = None) -> Path:
    """Write `data` to a new temporary file beside `path`, with its final mode and owner, flushed to disk.

    The caller gives it its name with `commit` or `create_exclusive`. The file is created 0600 (mkstemp), so a
    private key is never readable by others, not even for a moment; the final mode is set on the open file, so
    the umask cannot change it."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if owner is not None:
            os.chown(tmp, *owner)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit(staged: Path, path: Path, *, sync: bool = True) -> None:
    """Rename a staged file over `path` in one step; the staged file is removed if that fails.

    `sync=False` leaves the fsync of the folder to the caller, who renames several files as one change (a key and
    its certificate) and must tell a failed rename from a failed flush."""
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def replace_atomic(path: Path, data: bytes, mode: int, owner: Owner | None = None) -> None:
    """Replace (or create) `path` with `data` in one step: readers see the old file or the new one, never a mix."""
    commit(stage(path, data, mode, owner), path)


def create_exclusive(path: Path, data: bytes, mode: int, owner: Owner | None = None) -> None:
    """Create `path` with `data` only if nothing is there: the file appears complete or not at all.

    Like O_EXCL, but for a finished file: a hard link of the staged file fails if anything appeared at `path`
    meanwhile, and then that is left as it is (BadInput)."""
    tmp = stage(path, data, mode, owner)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise BadInput(f"{path} appeared while writing; it was left as it is") from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def backup_copy(backup_dir: Path, name: str, data: bytes) -> Path:
    """Keep `data` as `backup_dir/NAME.<UTC time>` (0600, folder 0700) and return where it went.

    An earlier backup is never replaced: a second one within the same second is NAME.<time>-2, and so on."""
    ensure_dir(backup_dir, PRIVATE_DIR)
    stamp = datetime.now(UTC).strftime(_STAMP)
    tmp = stage(backup_dir / name, data, PRIVATE_FILE)
    try:
        for attempt in range(1, _MAX_BACKUPS_PER_SECOND + 1):
            candidate = backup_dir / (f"{name}.{stamp}" if attempt == 1 else f"{name}.{stamp}-{attempt}")
            try:
                os.link(tmp, candidate)
            except FileExistsError:
                continue  # two backups in one second: keep both
            fsync_dir(backup_dir)
            return candidate
    finally:
        tmp.unlink(missing_ok=True)
    raise OpsError(f"too many backups of {name} in one second in {backup_dir}")


def ensure_dir(path: Path, mode: int = PRIVATE_DIR, owner: Owner | None = None) -> None:
    """Create a folder (and its parents) if absent, then give it `mode` (and `owner`) even if it existed.

    An existing folder is tightened on purpose: nobody but its owner has business in a folder of secrets."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    fix_mode(path, mode, owner)


def fix_mode(path: Path, mode: int, owner: Owner | None = None) -> None:
    """Restore the mode (and owner, when given) of an existing file or folder; nothing when it is absent.

    A copy, an editor or a restore from elsewhere may have changed them."""
    if not path.exists():
        return
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)
    if owner is not None:
        os.chown(path, *owner)


def read_bytes(path: Path, *, missing: str | None = None) -> bytes:
    """Return a file's content; BadInput naming the file when it cannot be read (`missing` when it is absent)."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        if missing is not None:
            raise BadInput(missing) from None
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None


def dir_writable(directory: Path) -> bool:
    """Tell whether we may create files in `directory`, honouring its mode even when we are root."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    if os.geteuid() == 0:
        # Root passes os.access whatever the mode says: honour an owner who made the folder read-only on purpose.
        owner_rwx = stat.S_IWUSR | stat.S_IXUSR
        return stat.S_IMODE(directory.stat().st_mode) & owner_rwx == owner_rwx
    return True


def check_writable(directory: Path, *, label: str, backup_dir: Path | None = None) -> None:
    """Refuse, before anything is written, a folder (and its backup folder) that cannot be written.

    A missing folder is judged by its nearest existing ancestor, where it would be created. `label` names the
    folder in messages ("secrets folder")."""
    target = directory
    while not target.exists():
        if target.is_symlink():
            raise BadInput(f"{target} is a dangling symlink; remove it or point it at a folder")
        target = target.parent
    if not target.is_dir():
        raise BadInput(f"{target} is not a folder; the {label} must be one")
    if not dir_writable(target):
        raise BadInput(f"{label} {target} is not writable; fix its permissions (mode 0700, owned by you)")
    if backup_dir is None:
        return
    if backup_dir.is_symlink() or (backup_dir.exists() and not backup_dir.is_dir()):
        raise BadInput(f"{backup_dir} must be a plain folder (not a symlink or a file); move it away")
    if backup_dir.is_dir() and not dir_writable(backup_dir):
        raise BadInput(f"backup folder {backup_dir} is not writable; fix its permissions (mode 0700)")
