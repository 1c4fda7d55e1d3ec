"""Certificates from an ACME server (Let's Encrypt, or any `--server`): certbot in its
own one-off container beside the running proxy, sharing its webroot and the
letsencrypt volume; the result installed into the proxy's TLS directory and nginx
reloaded, never restarted."""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from . import build, docker, model, rollout, runner, tls
from .compose import Stack, running_proxy
from .errors import BadInput, OpsError

WEBROOT = "/var/www/acme"
CONFIG_DIR = "/etc/letsencrypt"
RENEWED_FILE = f"{CONFIG_DIR}/renewed-lineages"
# Runs inside the certbot container, through its /bin/sh: the container cannot
# reach nginx (no Docker socket anywhere), so the hook records what it renewed
# and the task reloads the proxy from the host.
# certbot checks that a hook's first word is a program on PATH; echo is only a
# builtin of the image's dash, so the hook starts with sh.
DEPLOY_HOOK = f"sh -c 'echo \"$RENEWED_LINEAGE\" >> {RENEWED_FILE}'"
Progress = Callable[[str], None]


def _proxy(stack: Stack) -> str:
    return running_proxy(stack, "serve the certificate")


def _certbot(
    stack: Stack, args: Sequence[str], ca_bundle: Path | None, entrypoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        docker.client().path, "run", "--rm", "--network", f"{stack.project}_frontend",
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "-v", f"{stack.project}_acme-webroot:{WEBROOT}", "-v", f"{stack.project}_letsencrypt:{CONFIG_DIR}",
    ]  # fmt: skip
    if ca_bundle is not None:
        # Trust a test ACME server's own CA (pebble); Let's Encrypt needs nothing.
        command += ["-v", f"{ca_bundle.resolve()}:/run/acme-ca.pem:ro", "-e", "REQUESTS_CA_BUNDLE=/run/acme-ca.pem"]
    if entrypoint:
        command += ["--entrypoint", entrypoint]
    return runner.run([*command, build.service_tag("certbot"), *args], check=False, what="certbot")


def _dirs() -> dict[str, str]:
    return {"config_dir": CONFIG_DIR, "work_dir": "/tmp/certbot-work", "logs_dir": "/tmp/certbot-logs"}


def _reason(output: str) -> str:
    """certbot's own explanation of a failure, one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for marker in ("Detail:", "Error", "error", "Failed", "failed"):
        for line in lines:
            if marker in line and "Saving debug log" not in line and "Ask for help" not in line:
                return line[:300]
    return lines[-1][:300] if lines else "no output"


def _copy_out(stack: Stack, cert_name: str, destination: Path) -> tuple[Path, Path]:
    """The issued pair out of the letsencrypt volume (live/ holds symlinks: -L follows them)."""
    created = docker.docker(["create", "-v", f"{stack.project}_letsencrypt:{CONFIG_DIR}", build.service_tag("certbot")])
    container = created.stdout.strip()
    try:
        pair = []
        for name in ("fullchain.pem", "privkey.pem"):
            target = destination / name
            docker.docker(["cp", "-L", f"{container}:{CONFIG_DIR}/live/{cert_name}/{name}", str(target)])
            pair.append(target)
    finally:
        docker.docker(["rm", "-f", "-v", container], check=False)
    return pair[0], pair[1]


def _stapling(tls_dir: Path) -> None:
    """Staple OCSP only where the certificate names a responder (Let's Encrypt no longer does)."""
    leaf = x509.load_pem_x509_certificates((tls_dir / tls.FULLCHAIN).read_bytes())[0]
    try:
        access = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        has_ocsp = any(d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP for d in access)
    except x509.ExtensionNotFound:
        has_ocsp = False
    include = tls_dir / "stapling.conf"
    if has_ocsp:
        include.write_text(
            "ssl_stapling on;\nssl_stapling_verify on;\nssl_trusted_certificate /etc/nginx/tls/fullchain.pem;\n"
        )
    else:
        include.unlink(missing_ok=True)


def served_certificate(port: int, server_name: str, timeout: float = 2.0) -> bytes:
    """The leaf (DER) the proxy on 127.0.0.1:port serves for `server_name`. SNI matters: the proxy refuses
    the handshake for a name it does not serve, and a bare address sends no SNI at all."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate, not trusting it
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls_socket,
    ):
        return tls_socket.getpeercert(binary_form=True) or b""


def serve_installed_certificate(stack: Stack, timeout: float = 10.0) -> None:
    """Test the new configuration, then reload: workers finish their requests, nothing is refused.

    `nginx -s reload` returns before the new workers answer, so where the proxy
    publishes HTTPS on this machine, wait until it serves the installed certificate."""
    proxy = _proxy(stack)
    rollout.test_and_reload(proxy, "the installed certificate")
    port = _loopback_https_port(proxy)
    if port is None:
        return
    wanted = x509.load_pem_x509_certificates((Path(stack.settings["TLS_DIR"]) / tls.FULLCHAIN).read_bytes())[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            served = x509.load_der_x509_certificate(
                served_certificate(port, stack.settings.get("DOMAIN") or "localhost")
            )
            if served.serial_number == wanted.serial_number:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise OpsError(f"the proxy still serves the old certificate {timeout:.0f} s after the reload")


def _loopback_https_port(proxy: str) -> int | None:
    """The host port publishing the proxy's HTTPS, where it is reachable on 127.0.0.1."""
    info = docker.inspect("container", proxy) or {}
    for binding in ((info.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{model.PROXY_HTTPS_PORT}/tcp") or []:
        if binding.get("HostIp") in ("127.0.0.1", "0.0.0.0", ""):
            return int(binding["HostPort"])
    return None


def install_and_reload(stack: Stack, cert_name: str, progress: Progress) -> tls.CertStatus:
    tls_dir = Path(stack.settings["TLS_DIR"])
    with tempfile.TemporaryDirectory() as scratch:
        fullchain, privkey = _copy_out(stack, cert_name, Path(scratch))
        tls.install_certificate(fullchain, privkey, tls_dir)
    _stapling(tls_dir)
    progress("  certificate installed; reloading nginx (no restart)")
    serve_installed_certificate(stack)
    return tls.certificate_status(tls_dir)


@dataclass(frozen=True)
class AcmeRequest:
    domain: str
    email: str | None = None
    staging: bool = False
    server: str | None = None
    ca_bundle: Path | None = None
    allow_test_domain: bool = False


def obtain(stack: Stack, request: AcmeRequest, progress: Progress = lambda _m: None) -> tls.CertStatus:
    """certonly --webroot through the running proxy, then install and reload."""
    domain = tls.validate_domain(request.domain, allow_test_tlds=request.allow_test_domain)
    if request.ca_bundle is not None and not request.ca_bundle.is_file():
        raise BadInput(f"no CA bundle at {request.ca_bundle}")
    # Every input is checked (the e-mail too) before the stack is asked anything.
    args = tls.certbot_certonly_args(
        domain, email=request.email, webroot=WEBROOT, staging=request.staging, server=request.server, **_dirs()
    )
    _proxy(stack)
    authority = request.server or ("Let's Encrypt staging" if request.staging else "Let's Encrypt")
    progress(f"requesting a certificate for {domain} from {authority}")
    result = _certbot(stack, args, request.ca_bundle)
    if result.returncode != 0:
        raise OpsError(f"certbot could not obtain a certificate for {domain}: {_reason(result.stdout + result.stderr)}")
    return install_and_reload(stack, domain, progress)


@dataclass(frozen=True)
class RenewReport:
    outcome: tls.RenewOutcome
    installed: tuple[str, ...]


def renew(
    stack: Stack,
    *,
    force: bool = False,
    server: str | None = None,
    ca_bundle: Path | None = None,
    progress: Progress = lambda _m: None,
) -> RenewReport:
    """certbot renew; tells "renewed" from "nothing due" (certbot exits 0 for both)."""
    if ca_bundle is not None and not ca_bundle.is_file():
        # Docker would create a directory at a missing bind-mount source.
        raise BadInput(f"no CA bundle at {ca_bundle}")
    _proxy(stack)
    args = tls.certbot_renew_args(force=force, server=server, deploy_hook=DEPLOY_HOOK, **_dirs())
    result = _certbot(stack, args, ca_bundle)
    output = result.stdout + result.stderr
    outcome = tls.parse_renew_output(output)
    if result.returncode != 0 or outcome.failed:
        raise OpsError(f"certbot renew failed: {_reason(output)}")
    # The image's only shell is dash, with no cat or rm: read and clear the record with Python.
    take = (
        f"import os, sys\np = {RENEWED_FILE!r}\n"
        "if os.path.exists(p):\n    sys.stdout.write(open(p).read())\n    os.remove(p)\n"
    )
    recorded = _certbot(stack, ["-c", take], None, entrypoint="python3")
    if recorded.returncode != 0:
        # Renewed but unread: say so, or the proxy would keep serving the old certificate while we said "renewed".
        raise OpsError(
            f"certificates were renewed, but their record could not be read: {_reason(recorded.stderr)}; "
            "run `invoke tls.renew --force-renewal` once the certbot volume is readable"
        )
    lineages = {Path(line.strip()).name for line in recorded.stdout.splitlines() if line.strip()}
    installed = []
    current = _installed_names(Path(stack.settings["TLS_DIR"]))
    for name in sorted(lineages):
        if name in current:
            install_and_reload(stack, name, progress)
            installed.append(name)
    return RenewReport(outcome, tuple(installed))


def _installed_names(tls_dir: Path) -> set[str]:
    try:
        return set(tls.certificate_status(tls_dir, warn_days=0).sans)
    except BadInput:
        return set()
