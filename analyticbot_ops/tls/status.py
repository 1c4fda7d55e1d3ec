"""Whether the served certificate (first in fullchain.pem) and its key are fit to serve: `invoke tls.status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .certs import (
    chain_verifies,
    days_left,
    is_expired,
    issued_by,
    key_matches,
    read_chain,
    read_key,
    san_strings,
    utc_now,
)
from .dev import RENEW_WITHIN_DAYS
from .layout import DEFAULT_TLS_DIR, TlsFiles

RECOVERY_HINT = "run `invoke tls.dev` or `invoke tls.prod`"


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


def certificate_status(
    tls_dir: Path = DEFAULT_TLS_DIR, *, warn_days: int = RENEW_WITHIN_DAYS, now: datetime | None = None
) -> CertStatus:
    """Read fullchain.pem and privkey.pem and say whether they are fit to serve."""
    moment = utc_now(now)
    tls_files = TlsFiles(Path(tls_dir))
    chain = read_chain(tls_files.fullchain, missing=f"no certificate at {tls_files.fullchain}; {RECOVERY_HINT}")
    key = read_key(tls_files.privkey, missing=f"no private key at {tls_files.privkey}; {RECOVERY_HINT}")
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
        path=tls_files.fullchain,
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
