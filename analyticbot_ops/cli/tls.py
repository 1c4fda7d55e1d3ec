"""The `tls` namespace: dev and status need no stack; prod, renew and setup drive certbot beside the
running proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection
from rich.table import Table

from .. import acme, docker, stack_settings, tls
from ..errors import BadInput, CheckFailed
from ..swarm import certificates as swarm_certificates
from ..swarm import lab as swarm_lab
from ._task import ops_task, out, print_json, progress, stack_of
from .legacy import Legacy

ENV = "Environment whose proxy serves the certificate: staging or prod (dev uses tls.dev)."
SERVER = "ACME directory URL (default: Let's Encrypt; --staging for its staging server)."
CA_BUNDLE = "CA file to trust the ACME server with (a test server's own CA, e.g. pebble's)."
CONTEXT = "On a swarm instead: the lab of this name, or a Docker context reaching a manager (its edge answers ACME)."
REGISTRY = "With --context: HOST:PORT of the registry the nodes pull from (a swarm that is not the lab)."


@ops_task(
    help={
        "name": "An extra DNS name or IP for the leaf (repeatable); localhost, 127.0.0.1 and ::1 are always in.",
        "days": "Leaf lifetime in days (31-366).",
        "env": "Environment whose TLS_DIR receives the certificate (default dev).",
    },
    iterable=["name"],
)
def dev(c: Any, name: list[str] | None = None, days: int = 365, env: str = "dev") -> None:
    """Make a local CA and a leaf certificate signed by it (idempotent); print how to trust it."""
    result = tls.ensure_dev_certificates(stack_settings.tls_dir(env), names=name or (), days=days)
    verb = "created" if result.changed else "kept"
    out.print(f"{verb}: {result.fullchain} ({result.reason})", markup=False)
    out.print(f"names: {', '.join(result.names)}; valid until {result.not_after:%Y-%m-%d}", markup=False)
    out.print(result.trust_instructions, markup=False)


@ops_task(
    help={
        "json": "Print the status as JSON.",
        "warn_days": "Exit non-zero when fewer days than this are left.",
        "env": "Environment whose TLS_DIR to read (default dev).",
    }
)
def status(c: Any, json: bool = False, warn_days: int = 30, env: str = "dev") -> None:
    """Show the served certificate: subject, SANs, issuer, days left, key and chain match."""
    status = tls.certificate_status(stack_settings.tls_dir(env), warn_days=warn_days)
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
        raise CheckFailed("; ".join(status.problems))


def _print_status(status: tls.CertStatus) -> None:
    out.print(
        f"serving {', '.join(status.sans)} issued by {status.issuer}, {status.days_left} days left, "
        f"key {'matches' if status.key_matches else 'DOES NOT match'}",
        markup=False,
    )


@ops_task(
    help={
        "domain": "The public DNS name to certify (not localhost, not an IP).",
        "email": "Contact address for the ACME account (expiry notices).",
        "staging": "Use Let's Encrypt's staging server (untrusted certificates, generous limits).",
        "server": SERVER,
        "ca_bundle": CA_BUNDLE,
        "env": ENV,
        "allow_test_domain": "Accept .test/.example/.local names (only for a test ACME server such as pebble).",
        "context": CONTEXT,
        "registry": REGISTRY,
    }
)
def prod(
    c: Any,
    domain: str,
    email: str | None = None,
    staging: bool = False,
    server: str | None = None,
    ca_bundle: str | None = None,
    env: str = "prod",
    allow_test_domain: bool = False,
    context: str | None = None,
    registry: str | None = None,
) -> None:
    """Obtain a certificate with certbot through the running proxy's ACME webroot; install and reload."""
    if env == "dev":
        raise BadInput("tls.prod is for staging and prod; dev uses the local CA (`invoke tls.dev`)")
    request = acme.AcmeRequest(
        domain, email, staging, server, Path(ca_bundle) if ca_bundle else None, allow_test_domain=allow_test_domain
    )
    if context:
        stack = stack_of(c, env, pinned=True)
        swarm_certificates.checked_request(request)  # a bad domain or e-mail before any swarm is looked for
        issued = swarm_certificates.obtain(stack, _swarm(context, registry), request, progress=progress)
        _print_status(issued.status)
        out.print(
            f"served by every edge node: {', '.join(sorted(issued.served))} (rolled in {issued.roll_seconds:.1f} s)"
        )
        return
    _print_status(acme.obtain(stack_of(c, env), request, progress))


def _swarm(context: str, registry: str | None) -> swarm_lab.Lab:
    docker.require_daemon()
    return swarm_lab.target(context, registry)


@ops_task(
    help={
        "force_renewal": "Renew even when the certificate is not due.",
        "server": SERVER,
        "ca_bundle": CA_BUNDLE,
        "env": ENV,
        "json": "Print the outcome as JSON.",
        "context": CONTEXT,
        "registry": REGISTRY,
    }
)
def renew(
    c: Any,
    force_renewal: bool = False,
    server: str | None = None,
    ca_bundle: str | None = None,
    env: str = "prod",
    json: bool = False,
    context: str | None = None,
    registry: str | None = None,
) -> None:
    """Renew certificates that are due; reload the proxy only when one was renewed."""
    if context:
        renewal = swarm_certificates.renew(
            stack_of(c, env, pinned=True), _swarm(context, registry), force=force_renewal, server=server,
            ca_bundle=Path(ca_bundle) if ca_bundle else None, progress=progress,
        )  # fmt: skip
        installed = list(renewal.issued.status.sans) if renewal.issued else []
        if json:
            print_json({"result": renewal.verdict, "installed": installed})
        elif renewal.issued:
            out.print(f"renewed: {', '.join(installed)}, served by {', '.join(sorted(renewal.issued.served))}")
        else:
            out.print(f"{renewal.verdict}: the proxies were left as they are", markup=False)
        return
    report = acme.renew(
        stack_of(c, env), force=force_renewal, server=server, ca_bundle=Path(ca_bundle) if ca_bundle else None,
        progress=progress,
    )  # fmt: skip
    verdict = "renewed" if report.outcome.renewed else "nothing due"
    if json:
        print_json({"result": verdict, **report.outcome.__dict__, "installed": report.installed})
        return
    out.print(
        f"{verdict}: renewed {list(report.outcome.renewed)}, not due {list(report.outcome.not_due)}", markup=False
    )
    if report.installed:
        out.print(f"installed and reloaded: {', '.join(report.installed)}")


@ops_task(
    help={
        "env": "dev (a local CA) or staging/prod (ACME; needs DOMAIN in .env.ENV or --domain).",
        "domain": "The public name for staging/prod.",
        "email": "Contact address for the ACME account.",
    }
)
def setup(c: Any, env: str = "dev", domain: str | None = None, email: str | None = None) -> None:
    """Pick the certificate path by environment: tls.dev for dev, tls.prod for staging and prod."""
    stack = stack_of(c, env)
    if env == "dev":
        dev.body(c, env=env)
        return
    name = domain or stack.settings.get("DOMAIN")
    if not name:
        raise BadInput(f"no domain for {env}: pass --domain or set DOMAIN in .env.{env}")
    prod.body(c, domain=name, email=email or stack.settings.get("ACME_EMAIL"), env=env)


ns = Collection("tls")
ns.add_task(status, default=True)
ns.add_task(dev)
ns.add_task(prod)
ns.add_task(renew)
ns.add_task(setup)
LEGACY = {f"ssl-{name}": Legacy(f"tls.{name}") for name in ("status", "dev", "prod", "renew", "setup")}
