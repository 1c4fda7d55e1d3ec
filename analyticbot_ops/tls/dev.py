"""The development CA and the leaf it signs for the proxy: made when absent, re-issued when expiring, not
covering the names asked for, or not chaining to the CA, and kept otherwise (modes and owner restored).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes

from .. import files
from ..errors import BadInput
from .certs import (
    build_certificate,
    cert_pem,
    cert_sans,
    common_name,
    days_left,
    general_name_str,
    is_ca,
    issued_by,
    key_matches,
    key_pem,
    lifetime,
    load_leaf,
    load_pair,
    parse_ip,
    san_strings,
    utc_now,
)
from .layout import (
    CA_CERT,
    CERT_MODE,
    DEFAULT_TLS_DIR,
    DIR_MODE,
    KEY_MODE,
    PROXY_GID,
    PROXY_UID,
    TlsFiles,
    os_errors,
    replace,
)

CA_COMMON_NAME = "AnalyticBot Dev CA"
CA_DAYS = 3650
# Browsers (Apple, Chrome) reject server certificates valid for longer than about a year.
MAX_LEAF_DAYS = 366
# A dev leaf with 30 days or fewer left is re-issued; a lifetime at or under that would be re-issued on every run.
RENEW_WITHIN_DAYS = 30
DEFAULT_SANS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
# Dev names may be compose service names with underscores, or wildcards; public ACME names may not.
_DEV_LABEL = re.compile(r"^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")


@dataclass(frozen=True)
class DevCertResult:
    """What `ensure_dev_certificates` did and where the files are."""

    tls_dir: Path
    ca_cert: Path
    ca_key: Path
    fullchain: Path
    privkey: Path
    ca_created: bool
    leaf_created: bool
    reason: str
    names: tuple[str, ...]
    not_after: datetime
    backups: tuple[Path, ...]
    trust_instructions: str

    @property
    def changed(self) -> bool:
        return self.ca_created or self.leaf_created


def trust_instructions(ca_cert: Path | None = None) -> str:
    """How to make this machine, curl and browsers trust the development CA."""
    ca = ca_cert or DEFAULT_TLS_DIR / CA_CERT
    return "\n".join(
        [
            f"To trust the AnalyticBot development CA ({ca}):",
            "  Debian/Ubuntu system store:",
            f"    sudo cp {ca} /usr/local/share/ca-certificates/analyticbot-dev.crt",
            "    sudo update-ca-certificates",
            "  curl, one request at a time:",
            f"    curl --cacert {ca} https://localhost/",
            "  Browsers (Firefox and Chrome keep their own stores):",
            f"    Settings > Privacy/Security > Certificates > Authorities > Import {ca},",
            "    and tick 'Trust this CA to identify websites'.",
            "Keep ca.key private: whoever holds it can mint certificates your machine trusts.",
        ]
    )


def ensure_dev_certificates(
    tls_dir: Path = DEFAULT_TLS_DIR,
    names: Sequence[str] = (),
    *,
    days: int = 365,
    now: datetime | None = None,
    owner_uid: int = PROXY_UID,
    owner_gid: int = PROXY_GID,
) -> DevCertResult:
    """Make sure a development CA and a leaf it signed exist, are valid and cover `names`; re-issue what is not."""
    if not RENEW_WITHIN_DAYS < days <= MAX_LEAF_DAYS:
        raise BadInput(
            f"--days must be between {RENEW_WITHIN_DAYS + 1} and {MAX_LEAF_DAYS} "
            f"(a dev certificate is re-issued when {RENEW_WITHIN_DAYS} days are left), not {days}"
        )
    moment = utc_now(now)
    wanted = _dev_sans(names)
    tls_dir = Path(tls_dir)
    owner = files.owner_if_root(owner_uid, owner_gid)
    tls_files = TlsFiles(tls_dir)
    with os_errors(tls_dir):
        files.ensure_dir(tls_dir, DIR_MODE, owner)
        backups: list[Path] = []

        ca_pair = load_pair(tls_files.ca_cert, tls_files.ca_key)
        ca_created = ca_pair is None or _ca_problem(*ca_pair, moment, days) is not None
        ca_key: PrivateKeyTypes  # made here (EC), or the one on disk (any kind cryptography loads)
        if ca_created:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = _build_ca(ca_key, moment)
            # The CA key stays with the invoking user: the proxy never needs it, and whoever reads it can mint
            # certificates that developers' machines trust.
            backups += replace(tls_files.ca_key, key_pem(ca_key), KEY_MODE, None, tls_dir)
            backups += replace(tls_files.ca_cert, cert_pem(ca_cert), CERT_MODE, owner, tls_dir)
        else:
            assert ca_pair is not None
            ca_cert, ca_key = ca_pair

        leaf = load_leaf(tls_files.fullchain, tls_files.privkey)
        reason = "the CA was (re)created" if ca_created else _leaf_problem(leaf, ca_cert, wanted, moment) or ""
        leaf_created = bool(reason)
        if leaf_created:
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            leaf_cert = _build_leaf(leaf_key, ca_cert, ca_key, wanted, moment, days)
            backups += replace(tls_files.privkey, key_pem(leaf_key), KEY_MODE, owner, tls_dir)
            backups += replace(tls_files.fullchain, cert_pem(leaf_cert) + cert_pem(ca_cert), CERT_MODE, owner, tls_dir)
        else:
            assert leaf is not None
            leaf_cert = leaf[0][0]
            reason = "kept: valid, covers every name, chains to the CA"

        # Kept files get their modes and owner restored too: a copy or an editor may have changed them.
        files.fix_mode(tls_files.ca_key, KEY_MODE, None)
        files.fix_mode(tls_files.ca_cert, CERT_MODE, owner)
        files.fix_mode(tls_files.privkey, KEY_MODE, owner)
        files.fix_mode(tls_files.fullchain, CERT_MODE, owner)

    return DevCertResult(
        tls_dir=tls_dir,
        ca_cert=tls_files.ca_cert,
        ca_key=tls_files.ca_key,
        fullchain=tls_files.fullchain,
        privkey=tls_files.privkey,
        ca_created=ca_created,
        leaf_created=leaf_created,
        reason=reason,
        names=san_strings(leaf_cert),
        not_after=leaf_cert.not_valid_after_utc,
        backups=tuple(backups),
        trust_instructions=trust_instructions(tls_files.ca_cert),
    )


def _ca_problem(cert: x509.Certificate, key: PrivateKeyTypes, moment: datetime, leaf_days: int) -> str | None:
    if not key_matches(cert, key):
        return "ca.key does not match ca.crt"
    if not is_ca(cert) or not issued_by(cert, cert):
        return "ca.crt is not a self-signed CA certificate"
    # A leaf must not outlive the CA that signed it, so the CA needs at least one more leaf lifetime left.
    if cert.not_valid_before_utc > moment or cert.not_valid_after_utc - moment <= timedelta(days=leaf_days):
        return "the CA expires before a new leaf would"
    return None


def _leaf_problem(
    leaf: tuple[list[x509.Certificate], PrivateKeyTypes] | None,
    ca_cert: x509.Certificate,
    wanted: Sequence[x509.GeneralName],
    moment: datetime,
) -> str | None:
    if leaf is None:
        return "no readable leaf certificate and key"
    chain, key = leaf
    cert = chain[0]
    if not key_matches(cert, key):
        return "privkey.pem does not match the certificate"
    if len(chain) != 2 or chain[1] != ca_cert or not issued_by(cert, ca_cert):
        return "the certificate is not the dev CA's leaf followed by the CA"
    missing = [general_name_str(name) for name in wanted if name not in set(cert_sans(cert))]
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    if lifetime(cert) > timedelta(days=MAX_LEAF_DAYS):
        return f"the certificate is valid for more than {MAX_LEAF_DAYS} days"
    if cert.not_valid_before_utc > moment or days_left(cert, moment) <= RENEW_WITHIN_DAYS:
        return f"the certificate has {days_left(cert, moment)} days left"
    return None


def _build_ca(key: ec.EllipticCurvePrivateKey, moment: datetime) -> x509.Certificate:
    return build_certificate(key, common=CA_COMMON_NAME, days=CA_DAYS, moment=moment, ca=True)


def _build_leaf(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKeyTypes,
    sans: Sequence[x509.GeneralName],
    moment: datetime,
    days: int,
) -> x509.Certificate:
    issuer = (ca_cert, cast(CertificateIssuerPrivateKeyTypes, ca_key))
    cert = build_certificate(key, common=common_name(sans), days=days, moment=moment, issuer=issuer, sans=sans)
    assert lifetime(cert) <= timedelta(days=MAX_LEAF_DAYS), "leaf lifetime exceeds the browser limit"
    return cert


def _dev_sans(names: Sequence[str]) -> list[x509.GeneralName]:
    # A bare string is a Sequence[str] too; iterating it would make one SAN per character.
    requested = [names] if isinstance(names, str) else list(names)
    result: list[x509.GeneralName] = []
    for raw in [*DEFAULT_SANS, *requested]:
        name = dev_san(raw)
        if name not in result:
            result.append(name)
    return result


def dev_san(raw: str) -> x509.GeneralName:
    text = raw.strip().lower().removesuffix(".")
    ip = parse_ip(text)
    if ip is not None:
        return x509.IPAddress(ip)
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_DEV_LABEL.match(label) for label in labels) or "*" in labels[1:]:
        raise BadInput(f"{raw!r} is not a DNS name or IP address usable in a certificate")
    return x509.DNSName(text)
