"""X.509 helpers: validity, key and chain checks, subject alternative names, PEM encoding, and reading
and parsing certificates and keys from files (BadInput saying what is wrong with a file, never a traceback).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

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

from .. import files
from ..errors import BadInput

# Backdating absorbs small clock differences between the host and the containers that check the certificate.
BACKDATE = timedelta(minutes=5)


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
    return tuple(general_name_str(name) for name in cert_sans(cert))


# --- reading ----------------------------------------------------------------------------------------------------------


def parse_chain(data: bytes, path: Path) -> list[x509.Certificate]:
    """The PEM certificates in `data` (read from `path`), leaf first; BadInput when there is none."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise BadInput(f"{path} holds no PEM certificate") from None


def parse_key(data: bytes, path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in `data` (read from `path`); BadInput saying why it is unusable."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BadInput(f"{path} is encrypted; nginx needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput(f"{path} holds no readable PEM private key") from None


def read_chain(path: Path, *, missing: str) -> list[x509.Certificate]:
    """Read and parse a chain file; `missing` is the message when the file is absent."""
    return parse_chain(files.read_bytes(path, missing=missing), path)


def read_key(path: Path, *, missing: str) -> PrivateKeyTypes:
    """Read and parse a key file; `missing` is the message when the file is absent."""
    return parse_key(files.read_bytes(path, missing=missing), path)


def load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, PrivateKeyTypes] | None:
    """The certificate and key if both exist and parse; None means "issue anew" (after a backup)."""
    try:
        chain = read_chain(cert_path, missing="")
        key = read_key(key_path, missing="")
    except BadInput:
        return None
    return chain[0], key


def load_leaf(fullchain: Path, privkey: Path) -> tuple[list[x509.Certificate], PrivateKeyTypes] | None:
    """The whole chain and the key if both exist and parse; None means "issue anew" (after a backup)."""
    try:
        chain = read_chain(fullchain, missing="")
        key = read_key(privkey, missing="")
    except BadInput:
        return None
    return chain, key


# --- certificate details ----------------------------------------------------------------------------------------------


def key_pem(key: PrivateKeyTypes) -> bytes:
    """The key as unencrypted PKCS#8 PEM, as nginx reads it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    """The subject alternative names, DNS names lower-cased; empty when the certificate has none."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[x509.GeneralName] = []
    for name in ext.value:
        # Compare DNS names case-insensitively: a CA may have kept the requester's capitals.
        names.append(x509.DNSName(name.value.lower()) if isinstance(name, x509.DNSName) else name)
    return names


def general_name_str(name: x509.GeneralName) -> str:
    """A DNS name or IP address as plain text."""
    return str(name.value)


def is_ca(cert: x509.Certificate) -> bool:
    """True when the certificate says it is a CA (basic constraints)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """Key usage of a CA (signs certificates and CRLs) or of a server leaf (digital signature only)."""
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


def common_name(sans: Sequence[x509.GeneralName]) -> str:
    """The CN for a certificate covering `sans`: the first DNS name other than localhost that fits."""
    # The CN field holds at most 64 characters; clients read the SANs anyway, so the CN is only a label for people.
    candidates = [str(name.value) for name in sans if len(str(name.value)) <= 64]
    preferred = [c for c in candidates if c != "localhost" and parse_ip(c) is None]
    return (preferred or candidates or ["localhost"])[0]


def build_certificate(
    key: ec.EllipticCurvePrivateKey,
    *,
    common: str,
    days: int,
    moment: datetime,
    issuer: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None = None,
    ca: bool = False,
    sans: Sequence[x509.GeneralName] = (),
    client_auth: bool = False,
) -> x509.Certificate:
    """The one certificate builder: a CA (`ca`: signs leaves only, pathlen 0) or a server leaf (for `sans`; a client
    too with `client_auth`), issued by `issuer` (its certificate and key) or self-signed, valid `days` from a
    backdated `moment`, with subject and authority key identifiers."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])
    start = backdated_start(moment)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    signer: CertificateIssuerPrivateKeyTypes = key
    if issuer is None:
        issuer_name, issuer_ski = subject, ski
    else:
        issuer_cert, signer = issuer
        issuer_name = issuer_cert.subject
        issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(key_usage(cert_sign=ca), critical=True)
    )
    if not ca:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    builder = builder.add_extension(ski, critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
    )
    return builder.sign(signer, hashes.SHA256())


def backdated_start(moment: datetime) -> datetime:
    """The not_before of a certificate issued at `moment`: whole seconds, BACKDATE earlier."""
    return moment.replace(microsecond=0) - BACKDATE


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `text` names (brackets allowed around IPv6), or None when it is no IP address."""
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
