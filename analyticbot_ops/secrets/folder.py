"""The secrets folder on disk: where each secret's file is, who owns it, and how it is read, created, replaced
and backed up, through the toolkit's one file-safety door (`analyticbot_ops.files`).

The files are Docker Compose *file* secrets: compose bind-mounts `secrets/NAME` at `/run/secrets/NAME`. A bind
mount keeps the host's owner and mode, so each file is 0600 and, when we run as root, owned by the uid of the
containers that read it (`registry.SERVICE_UIDS`). The folder is 0700 because containers reach a file through its
mount, never through the folder. Nothing is ever overwritten silently: new files appear only if absent, and a
replaced value is first copied to `secrets/.backup/NAME.<UTC time>`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import files
from ..errors import BadInput
from .registry import SecretSpec, consumer_uid
from .values import decode

FILE_MODE = files.PRIVATE_FILE
DIR_MODE = files.PRIVATE_DIR
BACKUP_DIR_NAME = ".backup"
# Files in the secrets folder that belong to the repository, not to the registry.
REPO_FILES = frozenset({"README.md", ".gitignore"})


def secret_path(secrets_dir: Path, name: str) -> Path | None:
    """Return the path of an existing secret file, None when absent; refuse anything that is not a safe file."""
    path = secrets_dir / name
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        target = path.resolve()
        root = secrets_dir.resolve()
        if not target.is_relative_to(root):
            raise BadInput(f"{path} is a symlink to {target}, outside {root}; refusing to use it")
        if not target.exists():
            raise BadInput(f"{path} is a dangling symlink; remove it")
    if path.is_dir():
        raise BadInput(f"{path} is a directory, not a secret file; remove it")
    if not path.is_file():
        raise BadInput(f"{path} is not a regular file; remove it")
    return path


def read_value(name: str, path: Path) -> str:
    """Return the value stored in a secret file (BadInput when it cannot be read or is not text)."""
    return decode(name, files.read_bytes(path))


def owner(spec: SecretSpec) -> files.Owner | None:
    """Return the uid:gid to give a secret file to, or None when we are not root and so cannot give files away."""
    uid = consumer_uid(spec)
    return files.owner_if_root(uid, uid)


def check_writable(secrets_dir: Path) -> None:
    """Refuse, before anything is written, a secrets folder (or backup folder) that cannot be written."""
    files.check_writable(secrets_dir, label="secrets folder", backup_dir=secrets_dir / BACKUP_DIR_NAME)


def prepare(secrets_dir: Path) -> None:
    """Create the secrets folder if absent, and tighten it to 0700."""
    files.ensure_dir(secrets_dir, DIR_MODE)


def create(secrets_dir: Path, spec: SecretSpec, content: bytes) -> None:
    """Create a secret's file, 0600 and owned for its consumers, only if nothing is there."""
    files.create_exclusive(secrets_dir / spec.name, content, FILE_MODE, owner(spec))


def replace(secrets_dir: Path, spec: SecretSpec, content: bytes) -> None:
    """Swap in a new value as a new inode: a running container keeps reading the old one until it restarts."""
    files.replace_atomic(secrets_dir / spec.name, content, FILE_MODE, owner(spec))


def backup(secrets_dir: Path, name: str, content: bytes) -> Path:
    """Copy an old value to `.backup/NAME.<UTC time>` (0600, folder 0700) and return where it went."""
    return files.backup_copy(secrets_dir / BACKUP_DIR_NAME, name, content)


def age_days(mtime: float) -> int:
    """Whole days since `mtime`."""
    return max(0, int((time.time() - mtime) // 86400))
