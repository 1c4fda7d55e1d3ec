"""Certbot's argument lists (`certonly` over HTTP-01 webroot, `renew`) and the parsing of its renew summary.

Certbot itself runs in a container elsewhere (`analyticbot_ops.acme`); here are only its arguments and its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput

_RENEW_LINE = re.compile(r"^\s+(?P<path>\S.*?)(?: expires on \S+)? \((?P<kind>success|skipped|failure|parsefail)\)\s*$")


@dataclass(frozen=True)
class RenewOutcome:
    """Certificate names (directory names under live/) by what `certbot renew` did with them."""

    renewed: tuple[str, ...]
    not_due: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


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
