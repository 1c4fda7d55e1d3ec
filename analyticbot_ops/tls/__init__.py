"""TLS material for the nginx proxy: the development CA and leaf, the bootstrap certificate, certificate status,
domain validation for ACME, and the certbot argument lists and output parsing.

The package owns the TLS directory (default ``secrets/tls``) and its fixed file names. One module per concern:

- `layout`: the directory's file names, modes and owner, backups of replaced files, filesystem errors;
- `certs`: X.509 helpers, and reading and parsing certificates and keys;
- `dev`: the development CA and its leaf (`invoke tls.dev`);
- `status`: whether the served pair is fit to serve (`invoke tls.status`);
- `domains`: whether a public ACME CA could issue for a name;
- `certbot`: certbot's arguments and its renew summary;
- `install`: installing a checked pair, and the bootstrap certificate.

Every write goes through `analyticbot_ops.files` (atomic, final mode from the start) and every replaced file is
first copied to ``<tls_dir>/.backup/``, so a certificate is never silently lost. Certbot itself runs in a container
elsewhere; here are only its arguments and its output. Callers use the names re-exported here.
"""

from __future__ import annotations

from .certbot import RenewOutcome, certbot_certonly_args, certbot_renew_args, parse_renew_output
from .certs import (
    BACKDATE,
    chain_verifies,
    days_left,
    is_expired,
    issued_by,
    key_matches,
    lifetime,
    san_strings,
    utc_now,
)
from .dev import (
    CA_COMMON_NAME,
    CA_DAYS,
    DEFAULT_SANS,
    MAX_LEAF_DAYS,
    RENEW_WITHIN_DAYS,
    DevCertResult,
    ensure_dev_certificates,
    trust_instructions,
)
from .domains import TEST_TLDS, validate_domain
from .install import install_certificate, write_bootstrap_certificate
from .layout import (
    BACKUP_DIR,
    CA_CERT,
    CA_KEY,
    CERT_MODE,
    DEFAULT_TLS_DIR,
    DIR_MODE,
    FULLCHAIN,
    KEY_MODE,
    PRIVKEY,
    PROXY_GID,
    PROXY_UID,
)
from .status import RECOVERY_HINT, CertStatus, certificate_status, status_as_dict

__all__ = [
    "BACKDATE",
    "BACKUP_DIR",
    "CA_CERT",
    "CA_COMMON_NAME",
    "CA_DAYS",
    "CA_KEY",
    "CERT_MODE",
    "DEFAULT_SANS",
    "DEFAULT_TLS_DIR",
    "DIR_MODE",
    "FULLCHAIN",
    "KEY_MODE",
    "MAX_LEAF_DAYS",
    "PRIVKEY",
    "PROXY_GID",
    "PROXY_UID",
    "RECOVERY_HINT",
    "RENEW_WITHIN_DAYS",
    "TEST_TLDS",
    "CertStatus",
    "DevCertResult",
    "RenewOutcome",
    "certbot_certonly_args",
    "certbot_renew_args",
    "certificate_status",
    "chain_verifies",
    "days_left",
    "ensure_dev_certificates",
    "install_certificate",
    "is_expired",
    "issued_by",
    "key_matches",
    "lifetime",
    "parse_renew_output",
    "san_strings",
    "status_as_dict",
    "trust_instructions",
    "utc_now",
    "validate_domain",
    "write_bootstrap_certificate",
]
