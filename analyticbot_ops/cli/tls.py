"""Tasks for certificates that need no running stack: ssl-dev and ssl-status.
(ssl-prod, ssl-renew and ssl-setup drive certbot beside the running proxy.)"""

from __future__ import annotations

from typing import Any

from invoke import Collection, Exit
from rich.table import Table

from .. import tls
from ._task import ops_task, out, print_json


@ops_task(
    help={
        "name": "An extra DNS name or IP for the leaf (repeatable); localhost, 127.0.0.1 and ::1 are always in.",
        "days": "Leaf lifetime in days (31-366).",
    },
    iterable=["name"],
)
def ssl_dev(c: Any, name: list[str] | None = None, days: int = 365) -> None:
    """Make a local CA and a leaf certificate signed by it (idempotent); print how to trust it."""
    result = tls.ensure_dev_certificates(names=name or (), days=days)
    verb = "created" if result.changed else "kept"
    out.print(f"{verb}: {result.fullchain} ({result.reason})", markup=False)
    out.print(f"names: {', '.join(result.names)}; valid until {result.not_after:%Y-%m-%d}", markup=False)
    out.print(result.trust_instructions, markup=False)


@ops_task(
    help={
        "json": "Print the status as JSON.",
        "warn_days": "Exit non-zero when fewer days than this are left.",
    }
)
def ssl_status(c: Any, json: bool = False, warn_days: int = 30) -> None:
    """Show the served certificate: subject, SANs, issuer, days left, key and chain match."""
    status = tls.certificate_status(warn_days=warn_days)
    if json:
        print_json(tls.status_as_dict(status))
    else:
        table = Table("field", "value", show_header=False)
        for label, value in (
            ("certificate", str(status.path)),
            ("subject", status.subject),
            ("names", ", ".join(status.sans)),
            ("issuer", status.issuer),
            ("valid until", f"{status.not_after:%Y-%m-%d %H:%M} UTC"),
            ("days left", str(status.days_left)),
            ("key matches", "yes" if status.key_matches else "NO"),
            ("chain verifies", "yes" if status.chain_ok else "NO"),
        ):
            table.add_row(label, value)
        out.print(table)
    if not status.ok:
        raise Exit("error: " + "; ".join(status.problems), code=1)


ns = Collection(ssl_dev, ssl_status)
