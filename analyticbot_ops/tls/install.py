"""Putting a certificate in place for the proxy: installing a checked pair (e.g. from certbot's live/) over the
served one, and the short-lived bootstrap certificate that lets nginx start before the first real one exists.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .. import files
from ..errors import BadInput, OpsError
from .certs import (
    build_certificate,
    cert_pem,
    chain_verifies,
    common_name,
    is_expired,
    key_matches,
    key_pem,
    parse_chain,
    parse_key,
    utc_now,
)
from .dev import MAX_LEAF_DAYS, dev_san
from .layout import (
    BACKUP_DIR,
    CERT_MODE,
    DEFAULT_TLS_DIR,
    DIR_MODE,
    KEY_MODE,
    PROXY_GID,
    PROXY_UID,
    TlsFiles,
    backup,
    os_errors,
)


def install_certificate(
    src_fullchain: Path,
    src_privkey: Path,
    tls_dir: Path = DEFAULT_TLS_DIR,
    *,
    now: datetime | None = None,
    owner_uid: int = PROXY_UID,
    owner_gid: int = PROXY_GID,
) -> None:
    """Replace the served pair with a checked one (e.g. from certbot's live/), backing up the current pair first."""
    moment = utc_now(now)
    # Read each file once: the bytes that pass the checks are the bytes installed.
    chain_bytes = files.read_bytes(Path(src_fullchain), missing=f"no certificate at {src_fullchain}")
    key_bytes = files.read_bytes(Path(src_privkey), missing=f"no private key at {src_privkey}")
    chain = parse_chain(chain_bytes, Path(src_fullchain))
    key = parse_key(key_bytes, Path(src_privkey))
    leaf = chain[0]
    # All checks come before the first write, so a bad source leaves the served pair untouched.
    if not key_matches(leaf, key):
        raise BadInput(f"{src_privkey} does not match the certificate in {src_fullchain}; nothing was changed")
    if is_expired(leaf, moment):
        raise BadInput(f"the certificate in {src_fullchain} is not valid now; nothing was changed")
    if not chain_verifies(chain):
        raise BadInput(f"the chain in {src_fullchain} does not verify (leaf then intermediates); nothing was changed")

    tls_dir = Path(tls_dir)
    tls_files = TlsFiles(tls_dir)
    owner = files.owner_if_root(owner_uid, owner_gid)
    with os_errors(tls_dir):
        files.ensure_dir(tls_dir, DIR_MODE, owner)
        backups = {path: backup(path, tls_dir) for path in (tls_files.privkey, tls_files.fullchain)}
        staged: list[Path] = []
        try:
            staged.append(files.stage(tls_files.privkey, key_bytes, KEY_MODE, owner))
            staged.append(files.stage(tls_files.fullchain, chain_bytes, CERT_MODE, owner))
            files.commit(staged[0], tls_files.privkey, sync=False)
        except BaseException:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
            raise
        try:
            files.commit(staged[1], tls_files.fullchain, sync=False)
        except OSError as exc:
            # Put the old key back so the served pair still matches.
            _restore(tls_files.privkey, backups[tls_files.privkey], owner)
            message = f"could not replace {tls_files.fullchain} ({exc.strerror}); the previous pair was kept"
            raise OpsError(message) from exc
        files.fsync_dir(tls_dir)


def _restore(path: Path, saved: Path | None, owner: files.Owner | None) -> None:
    if saved is None:
        path.unlink(missing_ok=True)
    else:
        files.replace_atomic(path, saved.read_bytes(), KEY_MODE, owner)


def write_bootstrap_certificate(
    tls_dir: Path,
    domain: str,
    *,
    days: int = 1,
    now: datetime | None = None,
    owner_uid: int = PROXY_UID,
    owner_gid: int = PROXY_GID,
) -> bool:
    """Write a short-lived self-signed pair so nginx can start, only when none exists; return whether it wrote."""
    if not 1 <= days <= MAX_LEAF_DAYS:
        raise BadInput(f"bootstrap certificate days must be between 1 and {MAX_LEAF_DAYS}, not {days}")
    tls_dir = Path(tls_dir)
    tls_files = TlsFiles(tls_dir)
    present = [path for path in (tls_files.fullchain, tls_files.privkey) if path.exists()]
    if len(present) == 2:
        return False
    if present:
        # Writing the missing half would pair it with a file it does not match; this needs a person.
        raise OpsError(f"only {present[0]} exists in {tls_dir}; restore its partner from {BACKUP_DIR}/ or remove it")
    san = dev_san(domain)
    moment = utc_now(now)
    owner = files.owner_if_root(owner_uid, owner_gid)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_self_signed(key, san, moment, days)
    with os_errors(tls_dir):
        files.ensure_dir(tls_dir, DIR_MODE, owner)
        files.replace_atomic(tls_files.privkey, key_pem(key), KEY_MODE, owner)
        files.replace_atomic(tls_files.fullchain, cert_pem(cert), CERT_MODE, owner)
    return True


def _build_self_signed(
    key: ec.EllipticCurvePrivateKey, san: x509.GeneralName, moment: datetime, days: int
) -> x509.Certificate:
    return build_certificate(key, common=common_name([san]), days=days, moment=moment, sans=[san])
