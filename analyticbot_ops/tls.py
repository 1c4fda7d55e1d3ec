"""TLS material for the nginx proxy: the development CA and leaf, the bootstrap certificate, certificate status,
domain validation for ACME, and the certbot argument lists and output parsing.

This module owns the TLS directory (default ``secrets/tls``) and its fixed file names. Every write is atomic
(temp file + ``os.replace``) and every replaced file is first copied to ``<tls_dir>/.backup/``, so a certificate
is never silently lost. Certbot itself runs in a container elsewhere; here are only its arguments and its output.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import paths
from .errors import BadInput, OpsError
from .files import fsync_dir

DEFAULT_TLS_DIR = paths.SECRETS_DIR / "tls"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
FULLCHAIN = "fullchain.pem"
PRIVKEY = "privkey.pem"
BACKUP_DIR = ".backup"

# The nginx proxy container runs as this user and reads the bind-mounted key.
PROXY_UID = 10001
PROXY_GID = 10001

DIR_MODE = 0o700
KEY_MODE = 0o600
CERT_MODE = 0o644

CA_COMMON_NAME = "AnalyticBot Dev CA"
CA_DAYS = 3650
# Browsers (Apple, Chrome) reject server certificates valid for longer than about a year.
MAX_LEAF_DAYS = 366
# A dev leaf with 30 days or fewer left is re-issued; a lifetime at or under that would be re-issued on every run.
RENEW_WITHIN_DAYS = 30
# Backdating absorbs small clock differences between the host and the containers that check the certificate.
BACKDATE = timedelta(minutes=5)
DEFAULT_SANS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
# Special-use names (RFC 2606, RFC 6761, RFC 6762, ICANN's .internal) that no public ACME CA will issue for.
TEST_TLDS = frozenset({"local", "internal", "test", "example", "invalid"})
RECOVERY_HINT = "run `invoke ssl-dev` or `invoke ssl-prod`"

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Dev names may be compose service names with underscores, or wildcards; public ACME names may not.
_DEV_LABEL = re.compile(r"^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")
_RENEW_LINE = re.compile(r"^\s+(?P<path>\S.*?)(?: expires on \S+)? \((?P<kind>success|skipped|failure|parsefail)\)\s*$")


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


@dataclass(frozen=True)
class CertStatus:
    """The served certificate (first in fullchain.pem) and whether it is fit to serve."""

    path: Path
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    days_left: int
    warn_days: int
    key_matches: bool
    chain_ok: bool
    chain_length: int
    self_signed: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RenewOutcome:
    """Certificate names (directory names under live/) by what `certbot renew` did with them."""

    renewed: tuple[str, ...]
    not_due: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


# --- small helpers -------------------------------------------------------------------------------------------------


def utc_now(now: datetime | None = None) -> datetime:
    """The given moment (or the current one) as a timezone-aware UTC datetime."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def days_left(cert: x509.Certificate, now: datetime | None = None) -> int:
    """Whole days until the certificate expires; negative once it has expired."""
    remaining = cert.not_valid_after_utc - utc_now(now)
    return int(remaining.total_seconds() // 86400)


def is_expired(cert: x509.Certificate, now: datetime | None = None) -> bool:
    """True when the certificate is outside its validity window (expired or not yet valid)."""
    moment = utc_now(now)
    return not cert.not_valid_before_utc <= moment < cert.not_valid_after_utc


def lifetime(cert: x509.Certificate) -> timedelta:
    """How long the certificate is valid for, from not_before to not_after."""
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def key_matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """True when the private key belongs to the certificate's public key."""
    return _spki(cert.public_key()) == _spki(key.public_key())


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer` signed `cert` (names match and the signature verifies)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def chain_verifies(chain: Sequence[x509.Certificate]) -> bool:
    """True when each certificate is signed by the next one; a lone certificate must be self-signed."""
    if not chain:
        return False
    if len(chain) == 1:
        return issued_by(chain[0], chain[0])
    return all(issued_by(cert, nxt) for cert, nxt in pairwise(chain))


def san_strings(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's subject alternative names as plain strings (DNS names and IP addresses)."""
    return tuple(_general_name_str(name) for name in _sans(cert))


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


# --- development certificates --------------------------------------------------------------------------------------


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
    owner = _owner(owner_uid, owner_gid)
    files = _Files(tls_dir)
    with _os_errors(tls_dir):
        _ensure_dir(tls_dir, owner)
        backups: list[Path] = []

        ca_pair = _load_pair(files.ca_cert, files.ca_key)
        ca_created = ca_pair is None or _ca_problem(*ca_pair, moment, days) is not None
        if ca_created:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = _build_ca(ca_key, moment)
            # The CA key stays with the invoking user: the proxy never needs it, and whoever reads it can mint
            # certificates that developers' machines trust.
            backups += _replace(files.ca_key, _key_pem(ca_key), KEY_MODE, None, tls_dir)
            backups += _replace(files.ca_cert, _cert_pem(ca_cert), CERT_MODE, owner, tls_dir)
        else:
            assert ca_pair is not None
            ca_cert, ca_key = ca_pair

        leaf = _load_leaf(files)
        reason = "the CA was (re)created" if ca_created else _leaf_problem(leaf, ca_cert, wanted, moment) or ""
        leaf_created = bool(reason)
        if leaf_created:
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            leaf_cert = _build_leaf(leaf_key, ca_cert, ca_key, wanted, moment, days)
            backups += _replace(files.privkey, _key_pem(leaf_key), KEY_MODE, owner, tls_dir)
            backups += _replace(files.fullchain, _cert_pem(leaf_cert) + _cert_pem(ca_cert), CERT_MODE, owner, tls_dir)
        else:
            assert leaf is not None
            leaf_cert = leaf[0][0]
            reason = "kept: valid, covers every name, chains to the CA"

        # Kept files get their modes and owner restored too: a copy or an editor may have changed them.
        _fix_mode(files.ca_key, KEY_MODE, None)
        _fix_mode(files.ca_cert, CERT_MODE, owner)
        _fix_mode(files.privkey, KEY_MODE, owner)
        _fix_mode(files.fullchain, CERT_MODE, owner)

    return DevCertResult(
        tls_dir=tls_dir,
        ca_cert=files.ca_cert,
        ca_key=files.ca_key,
        fullchain=files.fullchain,
        privkey=files.privkey,
        ca_created=ca_created,
        leaf_created=leaf_created,
        reason=reason,
        names=san_strings(leaf_cert),
        not_after=leaf_cert.not_valid_after_utc,
        backups=tuple(backups),
        trust_instructions=trust_instructions(files.ca_cert),
    )


def _ca_problem(cert: x509.Certificate, key: PrivateKeyTypes, moment: datetime, leaf_days: int) -> str | None:
    if not key_matches(cert, key):
        return "ca.key does not match ca.crt"
    if not _is_ca(cert) or not issued_by(cert, cert):
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
    missing = [_general_name_str(name) for name in wanted if name not in set(_sans(cert))]
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    if lifetime(cert) > timedelta(days=MAX_LEAF_DAYS):
        return f"the certificate is valid for more than {MAX_LEAF_DAYS} days"
    if cert.not_valid_before_utc > moment or days_left(cert, moment) <= RENEW_WITHIN_DAYS:
        return f"the certificate has {days_left(cert, moment)} days left"
    return None


def _build_ca(key: ec.EllipticCurvePrivateKey, moment: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    start = _start(moment)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=CA_DAYS))
        # pathlen 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _build_leaf(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKeyTypes,
    sans: Sequence[x509.GeneralName],
    moment: datetime,
    days: int,
) -> x509.Certificate:
    start = _start(moment)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(sans))]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    cert = builder.sign(cast(CertificateIssuerPrivateKeyTypes, ca_key), hashes.SHA256())
    assert lifetime(cert) <= timedelta(days=MAX_LEAF_DAYS), "leaf lifetime exceeds the browser limit"
    return cert


def _dev_sans(names: Sequence[str]) -> list[x509.GeneralName]:
    # A bare string is a Sequence[str] too; iterating it would make one SAN per character.
    requested = [names] if isinstance(names, str) else list(names)
    result: list[x509.GeneralName] = []
    for raw in [*DEFAULT_SANS, *requested]:
        name = _dev_san(raw)
        if name not in result:
            result.append(name)
    return result


def _dev_san(raw: str) -> x509.GeneralName:
    text = raw.strip().lower().removesuffix(".")
    ip = _parse_ip(text)
    if ip is not None:
        return x509.IPAddress(ip)
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_DEV_LABEL.match(label) for label in labels) or "*" in labels[1:]:
        raise BadInput(f"{raw!r} is not a DNS name or IP address usable in a certificate")
    return x509.DNSName(text)


# --- status --------------------------------------------------------------------------------------------------------


def certificate_status(
    tls_dir: Path = DEFAULT_TLS_DIR, *, warn_days: int = RENEW_WITHIN_DAYS, now: datetime | None = None
) -> CertStatus:
    """Read fullchain.pem and privkey.pem and say whether they are fit to serve."""
    moment = utc_now(now)
    files = _Files(Path(tls_dir))
    chain = _read_chain(files.fullchain, missing=f"no certificate at {files.fullchain}; {RECOVERY_HINT}")
    key = _read_key(files.privkey, missing=f"no private key at {files.privkey}; {RECOVERY_HINT}")
    leaf = chain[0]
    matches = key_matches(leaf, key)
    self_signed = issued_by(leaf, leaf)
    chain_ok = chain_verifies(chain)
    left = days_left(leaf, moment)

    problems: list[str] = []
    if moment < leaf.not_valid_before_utc:
        problems.append(f"not valid until {leaf.not_valid_before_utc.isoformat()}")
    elif is_expired(leaf, moment):
        problems.append(f"expired on {leaf.not_valid_after_utc.isoformat()}")
    elif left < warn_days:
        problems.append(f"expires in {left} days (warning below {warn_days})")
    if not matches:
        problems.append("privkey.pem does not match the certificate")
    if not chain_ok:
        if len(chain) == 1:
            problems.append("fullchain.pem holds only the leaf; the intermediate certificate is missing")
        else:
            problems.append("the chain in fullchain.pem does not verify (each certificate must be signed by the next)")

    return CertStatus(
        path=files.fullchain,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        sans=san_strings(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        days_left=left,
        warn_days=warn_days,
        key_matches=matches,
        chain_ok=chain_ok,
        chain_length=len(chain),
        self_signed=self_signed,
        problems=tuple(problems),
    )


def status_as_dict(status: CertStatus) -> dict[str, Any]:
    """The status as JSON-ready data (ISO 8601 dates, lists instead of tuples)."""
    return {
        "path": str(status.path),
        "subject": status.subject,
        "issuer": status.issuer,
        "sans": list(status.sans),
        "not_before": status.not_before.isoformat(),
        "not_after": status.not_after.isoformat(),
        "days_left": status.days_left,
        "warn_days": status.warn_days,
        "key_matches": status.key_matches,
        "chain_ok": status.chain_ok,
        "chain_length": status.chain_length,
        "self_signed": status.self_signed,
        "ok": status.ok,
        "problems": list(status.problems),
    }


# --- public domains ------------------------------------------------------------------------------------------------


def validate_domain(domain: str, *, allow_test_tlds: bool = False) -> str:
    """Return the domain lower-cased if a public ACME CA could issue for it; BadInput saying why not otherwise."""
    name = domain.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise BadInput("the domain is empty; pass the public DNS name the proxy serves, e.g. bot.example.com")
    if name.startswith("*."):
        raise BadInput(f"{domain!r} is a wildcard; HTTP-01 validation cannot issue wildcards, name one host")
    if any(character.isspace() for character in name):
        raise BadInput(f"{domain!r} contains white space; a DNS name is letters, digits, hyphens and dots")
    if _parse_ip(name) is not None:
        raise BadInput(f"{domain!r} is an IP address; ACME needs a DNS name (use `invoke ssl-dev` for local use)")
    if name == "localhost" or name.endswith(".localhost"):
        raise BadInput(f"{domain!r} is a localhost name; use `invoke ssl-dev` for local certificates")
    if len(name) > 253:
        raise BadInput(f"the domain {name[:40]}... is {len(name)} characters, longer than 253")
    labels = name.split(".")
    if len(labels) < 2:
        raise BadInput(f"{domain!r} is a single-label name; ACME needs a fully qualified name like bot.example.com")
    for label in labels:
        if len(label) > 63:
            raise BadInput(f"{domain!r} has a label longer than 63 characters: {label[:20]}...")
        if not _LABEL.match(label):
            raise BadInput(
                f"{domain!r} has an invalid label {label!r}: use letters, digits and inner hyphens "
                "(internationalised names in their xn-- form)"
            )
    if labels[-1].isdigit():
        raise BadInput(f"{domain!r} ends in an all-numeric label; that is no DNS top-level domain")
    if labels[-1] in TEST_TLDS and not allow_test_tlds:
        raise BadInput(f"{domain!r} is under the reserved .{labels[-1]} domain; no public CA issues for it")
    return name


# --- bootstrap -----------------------------------------------------------------------------------------------------


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
    files = _Files(tls_dir)
    present = [path for path in (files.fullchain, files.privkey) if path.exists()]
    if len(present) == 2:
        return False
    if present:
        # Writing the missing half would pair it with a file it does not match; this needs a person.
        raise OpsError(f"only {present[0]} exists in {tls_dir}; restore its partner from {BACKUP_DIR}/ or remove it")
    san = _dev_san(domain)
    moment = utc_now(now)
    owner = _owner(owner_uid, owner_gid)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_self_signed(key, san, moment, days)
    with _os_errors(tls_dir):
        _ensure_dir(tls_dir, owner)
        _write_atomic(files.privkey, _key_pem(key), KEY_MODE, owner)
        _write_atomic(files.fullchain, _cert_pem(cert), CERT_MODE, owner)
    return True


def _build_self_signed(
    key: ec.EllipticCurvePrivateKey, san: x509.GeneralName, moment: datetime, days: int
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name([san]))])
    start = _start(moment)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


# --- certbot -------------------------------------------------------------------------------------------------------


def certbot_certonly_args(
    domain: str,
    *,
    email: str | None,
    webroot: str,
    staging: bool,
    server: str | None,
    config_dir: str | Path,
    work_dir: str | Path,
    logs_dir: str | Path,
) -> list[str]:
    """Arguments for `certbot certonly` over HTTP-01 webroot, without the program name (the image's entrypoint)."""
    args = ["certonly", "--webroot", "-w", webroot, "-d", domain, "--non-interactive", "--agree-tos"]
    if email:
        if "@" not in email or any(ch.isspace() for ch in email):
            raise BadInput(f"{email!r} is not an email address")
        args += ["--email", email]
    else:
        args.append("--register-unsafely-without-email")
    if server:
        args += ["--server", server]
    elif staging:
        # --staging is only a shortcut for --server <staging URL>; an explicit server wins.
        args.append("--staging")
    args += _certbot_dirs(config_dir, work_dir, logs_dir)
    args += ["--key-type", "ecdsa", "--elliptic-curve", "secp256r1", "--cert-name", domain]
    return args


def certbot_renew_args(
    *,
    force: bool,
    server: str | None,
    config_dir: str | Path,
    work_dir: str | Path,
    logs_dir: str | Path,
    deploy_hook: str | None,
) -> list[str]:
    """Arguments for `certbot renew`, without the program name (the image's entrypoint)."""
    # Without a TTY certbot sleeps up to eight minutes before renewing; a person running the task would see a hang.
    args = ["renew", "--non-interactive", "--no-random-sleep-on-renew"]
    if force:
        args.append("--force-renewal")
    if server:
        args += ["--server", server]
    args += _certbot_dirs(config_dir, work_dir, logs_dir)
    if deploy_hook:
        args += ["--deploy-hook", deploy_hook]
    return args


def parse_renew_output(text: str) -> RenewOutcome:
    """Sort certbot renew's summary lines into renewed, not due and failed (it exits 0 for the first two)."""
    buckets: dict[str, list[str]] = {"success": [], "skipped": [], "failure": [], "parsefail": []}
    for line in text.splitlines():
        match = _RENEW_LINE.match(line)
        if not match:
            continue
        name = _cert_name(match["path"])
        bucket = buckets[match["kind"]]
        if name not in bucket:
            bucket.append(name)
    failed = [*buckets["failure"], *(n for n in buckets["parsefail"] if n not in buckets["failure"])]
    return RenewOutcome(renewed=tuple(buckets["success"]), not_due=tuple(buckets["skipped"]), failed=tuple(failed))


def _certbot_dirs(config_dir: str | Path, work_dir: str | Path, logs_dir: str | Path) -> list[str]:
    return ["--config-dir", str(config_dir), "--work-dir", str(work_dir), "--logs-dir", str(logs_dir)]


def _cert_name(path: str) -> str:
    # Results name live/<name>/fullchain.pem; unparsable configurations name renewal/<name>.conf.
    p = Path(path.strip())
    return p.stem if p.suffix == ".conf" else p.parent.name


# --- installing a certificate --------------------------------------------------------------------------------------


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
    chain_pem = _read_bytes(Path(src_fullchain), missing=f"no certificate at {src_fullchain}")
    key_pem = _read_bytes(Path(src_privkey), missing=f"no private key at {src_privkey}")
    chain = _parse_chain(chain_pem, Path(src_fullchain))
    key = _parse_key(key_pem, Path(src_privkey))
    leaf = chain[0]
    # All checks come before the first write, so a bad source leaves the served pair untouched.
    if not key_matches(leaf, key):
        raise BadInput(f"{src_privkey} does not match the certificate in {src_fullchain}; nothing was changed")
    if is_expired(leaf, moment):
        raise BadInput(f"the certificate in {src_fullchain} is not valid now; nothing was changed")
    if not chain_verifies(chain):
        raise BadInput(f"the chain in {src_fullchain} does not verify (leaf then intermediates); nothing was changed")

    tls_dir = Path(tls_dir)
    files = _Files(tls_dir)
    owner = _owner(owner_uid, owner_gid)
    with _os_errors(tls_dir):
        _ensure_dir(tls_dir, owner)
        backups = {path: _backup(path, tls_dir) for path in (files.privkey, files.fullchain)}
        staged: list[Path] = []
        try:
            staged.append(_stage(files.privkey, key_pem, KEY_MODE, owner))
            staged.append(_stage(files.fullchain, chain_pem, CERT_MODE, owner))
            os.replace(staged[0], files.privkey)
        except BaseException:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
            raise
        try:
            os.replace(staged[1], files.fullchain)
        except OSError as exc:
            # Put the old key back so the served pair still matches.
            staged[1].unlink(missing_ok=True)
            _restore(files.privkey, backups[files.privkey], owner)
            raise OpsError(f"could not replace {files.fullchain} ({exc.strerror}); the previous pair was kept") from exc
        fsync_dir(tls_dir)


def _restore(path: Path, backup: Path | None, owner: tuple[int, int] | None) -> None:
    if backup is None:
        path.unlink(missing_ok=True)
    else:
        _write_atomic(path, backup.read_bytes(), KEY_MODE, owner)


# --- files ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Files:
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
def _os_errors(tls_dir: Path) -> Iterator[None]:
    """Turn a filesystem failure into one OpsError line naming the file or the TLS directory."""
    try:
        yield
    except PermissionError as exc:
        raise OpsError(f"permission denied on {exc.filename or tls_dir}; run the task with sudo") from exc
    except OSError as exc:
        raise OpsError(f"cannot write TLS files in {tls_dir}: {exc.strerror or exc}") from exc


def _owner(uid: int, gid: int) -> tuple[int, int] | None:
    # Only root can give files away; anyone else keeps them, which is fine when the proxy runs as that user anyway.
    return (uid, gid) if os.geteuid() == 0 else None


def _ensure_dir(path: Path, owner: tuple[int, int] | None) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _fix_mode(path, DIR_MODE, owner)


def _fix_mode(path: Path, mode: int, owner: tuple[int, int] | None) -> None:
    if not path.exists():
        return
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, *owner)


def _stage(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> Path:
    """Write data to a temp file beside `path` with its final mode and owner; the caller renames it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # The mode is set at creation so a private key is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed the creation mode
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _write_atomic(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    tmp = _stage(path, data, mode, owner)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _backup(path: Path, tls_dir: Path) -> Path | None:
    """Copy `path` to .backup/<name>.<UTC timestamp> (same mode, owner kept private) if it exists."""
    if not path.exists():
        return None
    backup_dir = tls_dir / BACKUP_DIR
    backup_dir.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chmod(backup_dir, DIR_MODE)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = backup_dir / f"{path.name}.{stamp}"
    counter = 1
    # Two replacements within one second must not overwrite the first backup.
    while target.exists():
        target = backup_dir / f"{path.name}.{stamp}.{counter}"
        counter += 1
    _write_atomic(target, path.read_bytes(), path.stat().st_mode & 0o777, None)
    return target


def _replace(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None, tls_dir: Path) -> list[Path]:
    """Back up `path` if it exists, then write data over it atomically; return the backups made."""
    backup = _backup(path, tls_dir)
    _write_atomic(path, data, mode, owner)
    return [backup] if backup else []


# --- reading -------------------------------------------------------------------------------------------------------


def _read_bytes(path: Path, *, missing: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInput(missing) from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None


def _parse_chain(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise BadInput(f"{path} holds no PEM certificate") from None


def _parse_key(data: bytes, path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BadInput(f"{path} is encrypted; nginx needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput(f"{path} holds no readable PEM private key") from None


def _read_chain(path: Path, *, missing: str) -> list[x509.Certificate]:
    return _parse_chain(_read_bytes(path, missing=missing), path)


def _read_key(path: Path, *, missing: str) -> PrivateKeyTypes:
    return _parse_key(_read_bytes(path, missing=missing), path)


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, PrivateKeyTypes] | None:
    """The certificate and key if both exist and parse; None means "issue anew" (after a backup)."""
    try:
        chain = _read_chain(cert_path, missing="")
        key = _read_key(key_path, missing="")
    except BadInput:
        return None
    return chain[0], key


def _load_leaf(files: _Files) -> tuple[list[x509.Certificate], PrivateKeyTypes] | None:
    try:
        chain = _read_chain(files.fullchain, missing="")
        key = _read_key(files.privkey, missing="")
    except BadInput:
        return None
    return chain, key


# --- certificate details -------------------------------------------------------------------------------------------


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[x509.GeneralName] = []
    for name in ext.value:
        # Compare DNS names case-insensitively: a CA may have kept the requester's capitals.
        names.append(x509.DNSName(name.value.lower()) if isinstance(name, x509.DNSName) else name)
    return names


def _general_name_str(name: x509.GeneralName) -> str:
    return str(name.value)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _common_name(sans: Sequence[x509.GeneralName]) -> str:
    # The CN field holds at most 64 characters; clients read the SANs anyway, so the CN is only a label for people.
    candidates = [str(name.value) for name in sans if len(str(name.value)) <= 64]
    preferred = [c for c in candidates if c != "localhost" and _parse_ip(c) is None]
    return (preferred or candidates or ["localhost"])[0]


def _start(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) - BACKDATE


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
