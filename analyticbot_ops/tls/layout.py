"""The TLS directory (default ``secrets/tls``): its fixed file names, their modes and owner, the backups of
replaced files, and the one-line error for a filesystem failure.

Every write goes through the toolkit's file-safety door (`analyticbot_ops.files`): atomic (temp file + rename),
with the final mode from the start, and every replaced file is first copied to ``<tls_dir>/.backup/``, so a
certificate is never silently lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import files, model, paths
from ..errors import OpsError

DEFAULT_TLS_DIR = paths.SECRETS_DIR / "tls"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
FULLCHAIN = "fullchain.pem"
PRIVKEY = "privkey.pem"
BACKUP_DIR = ".backup"

# The nginx proxy container runs as this user and reads the bind-mounted key (uid:gid N:N, as every container).
PROXY_UID = model.BY_NAME["proxy"].uid
PROXY_GID = PROXY_UID

DIR_MODE = 0o700
KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True)
class TlsFiles:
    """The fixed file names inside one TLS directory."""

    tls_dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / CA_KEY

    @property
    def fullchain(self) -> Path:
        return self.tls_dir / FULLCHAIN

    @property
    def privkey(self) -> Path:
        return self.tls_dir / PRIVKEY


@contextmanager
def os_errors(tls_dir: Path) -> Iterator[None]:
    """Turn a filesystem failure into one OpsError line naming the file or the TLS directory."""
    try:
        yield
    except PermissionError as exc:
        raise OpsError(f"permission denied on {exc.filename or tls_dir}; run the task with sudo") from exc
    except OSError as exc:
        raise OpsError(f"cannot write TLS files in {tls_dir}: {exc.strerror or exc}") from exc


def backup(path: Path, tls_dir: Path) -> Path | None:
    """Copy `path` to .backup/<name>.<UTC timestamp> (0600, folder 0700) if it exists; return where it went."""
    if not path.exists():
        return None
    return files.backup_copy(tls_dir / BACKUP_DIR, path.name, path.read_bytes())


def replace(path: Path, data: bytes, mode: int, owner: files.Owner | None, tls_dir: Path) -> list[Path]:
    """Back up `path` if it exists, then write data over it atomically; return the backups made."""
    saved = backup(path, tls_dir)
    files.replace_atomic(path, data, mode, owner)
    return [saved] if saved else []
