"""The private CA of the backup path and the two certificates it signs: pgBackRest's TLS server on the
database side (`backup-agent`) and on the repository host (`backup-repo`). Each also serves as its
holder's client certificate towards the other, and each server admits only the other's common name
(compose/pgbackrest/*.conf, `tls-server-auth`).

Made when absent, re-issued when expiring, not matching its key or not chaining to the CA, and kept
otherwise. Nothing outside this stack trusts this CA, and its key never leaves the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes

from .. import files, model
from .certs import (
    build_certificate,
    cert_pem,
    days_left,
    is_ca,
    issued_by,
    key_matches,
    key_pem,
    load_pair,
    utc_now,
)
from .layout import CERT_MODE, DIR_MODE, KEY_MODE, os_errors, replace

# The folder under SECRETS_DIR; the compose backup overlay mounts its files as Docker secrets.
FOLDER = "backup-tls"
CA_COMMON_NAME = "AnalyticBot Backup CA"
CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_WITHIN_DAYS = 30
# The pgBackRest TLS servers, by the service (and host) name the other side dials.
PEERS = ("backup-agent", "backup-repo")
# What the database side mounts as its TLS client (and the agent's server): the CA and its own pair.
CLIENT_FILES = ("ca.crt", "backup-agent.crt", "backup-agent.key")
# The containers read their keys as this uid (pgBackRest refuses a key readable by others).
OWNER_UID = model.APP_UID


@dataclass(frozen=True)
class BackupCertResult:
    directory: Path
    issued: tuple[str, ...]  # what was (re)made: "ca", "backup-agent", "backup-repo"


def files_of(directory: Path) -> dict[str, tuple[Path, Path]]:
    """Each certificate and key by name: the CA and each peer."""
    return {name: (directory / f"{name}.crt", directory / f"{name}.key") for name in ("ca", *PEERS)}


def ensure_backup_certificates(directory: Path, *, now: datetime | None = None) -> BackupCertResult:
    """Make sure the backup CA and both peers' certificates exist and are valid; (re)issue what is not."""
    moment = utc_now(now)
    owner = files.owner_if_root(OWNER_UID, OWNER_UID)
    paths = files_of(directory)
    issued: list[str] = []
    with os_errors(directory):
        files.ensure_dir(directory, DIR_MODE, None)
        ca_cert_path, ca_key_path = paths["ca"]
        ca = load_pair(ca_cert_path, ca_key_path)
        ca_key: PrivateKeyTypes  # made here (EC), or the one on disk (any kind cryptography loads)
        if ca is None or _ca_problem(*ca, moment):
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = _build(ca_key, None, None, CA_COMMON_NAME, moment, CA_DAYS)
            # The CA key stays with the invoking user: no container ever needs it.
            replace(ca_key_path, key_pem(ca_key), KEY_MODE, None, directory)
            replace(ca_cert_path, cert_pem(ca_cert), CERT_MODE, owner, directory)
            issued.append("ca")
        else:
            ca_cert, ca_key = ca
        for peer in PEERS:
            cert_path, key_path = paths[peer]
            pair = load_pair(cert_path, key_path)
            if "ca" in issued or pair is None or _leaf_problem(*pair, ca_cert, moment):
                key = ec.generate_private_key(ec.SECP256R1())
                cert = _build(key, ca_cert, ca_key, peer, moment, LEAF_DAYS)
                replace(key_path, key_pem(key), KEY_MODE, owner, directory)
                replace(cert_path, cert_pem(cert), CERT_MODE, owner, directory)
                issued.append(peer)
            files.fix_mode(key_path, KEY_MODE, owner)
            files.fix_mode(cert_path, CERT_MODE, owner)
        files.fix_mode(ca_cert_path, CERT_MODE, owner)
        files.fix_mode(ca_key_path, KEY_MODE, None)
    return BackupCertResult(directory, tuple(issued))


def _ca_problem(cert: x509.Certificate, key: PrivateKeyTypes, moment: datetime) -> bool:
    expiring = cert.not_valid_after_utc - moment <= timedelta(days=LEAF_DAYS)
    return not key_matches(cert, key) or not is_ca(cert) or not issued_by(cert, cert) or expiring


def _leaf_problem(cert: x509.Certificate, key: PrivateKeyTypes, ca: x509.Certificate, moment: datetime) -> bool:
    return not key_matches(cert, key) or not issued_by(cert, ca) or days_left(cert, moment) <= RENEW_WITHIN_DAYS


def _build(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate | None,
    ca_key: PrivateKeyTypes | None,
    name: str,
    moment: datetime,
    days: int,
) -> x509.Certificate:
    """The CA (no issuer given: self-signed) or a peer's certificate, for both TLS server and client use."""
    if ca_cert is None:
        return build_certificate(key, common=name, days=days, moment=moment, ca=True)
    issuer = (ca_cert, cast(CertificateIssuerPrivateKeyTypes, ca_key))
    sans = [x509.DNSName(name)]
    return build_certificate(key, common=name, days=days, moment=moment, issuer=issuer, sans=sans, client_auth=True)
