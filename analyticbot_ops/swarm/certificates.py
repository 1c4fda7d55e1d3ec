"""Certificates on a swarm, through its edge: what `tls.prod --context C` and `tls.renew --context C` do.

The edge nodes share no folder, so certbot's webroot cannot work there. Instead:
- the private key and a certificate request (CSR) are made on this host; the key never leaves it except as the
  stack's TLS secret (what every deploy already sends);
- certbot runs `--standalone --csr` as a one-shot service (a replicated job) on the stack's frontend overlay,
  under the name ACME_SOLVER names; every edge proxy passes `/.well-known/acme-challenge/` that is not in its
  webroot to that name, resolved per request (nginx/entrypoint.sh), so the ACME server may validate through any
  edge;
- the job prints the issued chain (public) between two markers on its output, which the manager's service logs
  carry back; the job and its configs are removed, failed or not;
- the pair is checked and installed into the environment's TLS folder (the old one backed up), and the stack is
  deployed again: the TLS secrets get their new versions, which only edge-tls mounts; Swarm rolls it one edge
  node at a time, start-first (it holds no port), each new task hands the pair to its node's proxy, and the
  proxy reloads nginx (render.py, nginx/edge-tls.sh): no proxy restarts, no connection is refused. Each edge is
  then asked which certificate it serves.

What a renewal needs to know (domain, e-mail, server) is kept beside the rendered stack, in .state/swarm/."""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .. import build, compose, docker, registry, tls
from ..acme import AcmeRequest
from ..errors import BadInput, OpsError
from . import deploy, render
from .lab import Lab, describe_nodes

Progress = Callable[[str], None]
SOLVER, SOLVER_PORT = render.ACME_SOLVER.split(":")  # the job's name on the frontend overlay, and its port
BEGIN, END = "-----ISSUED CHAIN BEGIN-----", "-----ISSUED CHAIN END-----"
RENEW_DAYS = 30  # certbot's own rule: a certificate is due when it has fewer days left
JOB_TIMEOUT = 240.0
LABEL = "org.analyticbot.acme"
# The job's program: certbot with the arguments it is given, then the issued chain (public) on its output.
_JOB = (
    "import subprocess, sys\n"
    "code = subprocess.run(['certbot', *sys.argv[1:]]).returncode\n"
    "if code:\n    sys.exit(code)\n"
    f"sys.stdout.write({BEGIN!r} + '\\n' + open('/tmp/acme/fullchain.pem').read() + {END!r} + '\\n')\n"
)


@dataclass(frozen=True)
class Issued:
    """What one issuance gave: the certificate's status after it was installed, the seconds the roll took, and
    the edges' answers (node: serial it serves)."""

    status: tls.CertStatus
    roll_seconds: float
    served: dict[str, int]


def _record(project: str) -> Path:
    return deploy.STACK_FILES / f"{project}-acme.json"


def remembered(project: str) -> AcmeRequest | None:
    """The request the last issuance on this project made (what a renewal repeats), if any."""
    path = _record(project)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return AcmeRequest(**{**data, "ca_bundle": Path(data["ca_bundle"]) if data.get("ca_bundle") else None})


def _remember(project: str, request: AcmeRequest) -> None:
    deploy.STACK_FILES.mkdir(parents=True, exist_ok=True)
    data = asdict(request) | {"ca_bundle": str(request.ca_bundle) if request.ca_bundle else None}
    _record(project).write_text(json.dumps(data, indent=2) + "\n")


def key_and_request(domain: str) -> tuple[bytes, bytes]:
    """A new P-256 key (PEM) and a CSR for `domain` signed by it (PEM): the key stays on this host."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_bytes, csr.public_bytes(serialization.Encoding.PEM)


def job_arguments(domain: str, request: AcmeRequest) -> list[str]:
    """certbot's arguments in the job: standalone on SOLVER_PORT, the CSR made here, every file in the job's /tmp."""
    args = tls.certbot_certonly_args(
        domain,
        email=request.email,
        webroot="-",
        staging=request.staging,
        server=request.server,
        config_dir="/tmp/acme/config",
        work_dir="/tmp/acme/work",
        logs_dir="/tmp/acme/logs",
    )
    # From the webroot form: the same account, server and folder options; the authenticator and key differ.
    webroot = args.index("--webroot")
    del args[webroot : webroot + 3]  # --webroot -w -
    key_options = args.index("--key-type")
    del args[key_options:]  # the key is the CSR's
    return [
        *args[:1], "--standalone", "--http-01-port", SOLVER_PORT, "--csr", "/run/acme/request.csr",
        "--cert-path", "/tmp/acme/cert.pem", "--chain-path", "/tmp/acme/chain.pem",
        "--fullchain-path", "/tmp/acme/fullchain.pem", *args[1:],
    ]  # fmt: skip


def issued_chain(logs: str) -> bytes:
    """The chain the job printed between the markers (the last pair: a retried job prints again)."""
    if BEGIN not in logs or END not in logs:
        raise OpsError("certbot's job ended without printing the issued certificate")
    body = logs.rsplit(BEGIN, 1)[1].split(END, 1)[0].strip()
    return (body + "\n").encode()


def _config(lab: Lab, project: str, name: str, content: bytes) -> str:
    full = f"{project}_acme_{name}_{uuid.uuid4().hex[:8]}"
    lab.on(lab.manager, ["config", "create", "--label", f"{LABEL}={project}", full, "-"], stdin=content)
    return full


def _run_job(lab: Lab, stack: compose.Stack, image: str, args: list[str], configs: dict[str, str]) -> str:
    """The one-shot certbot on the frontend overlay; its output once it ended. Removed either way."""
    name = f"{stack.project}_acme-{uuid.uuid4().hex[:6]}"
    options = [
        "service", "create", "--detach", "--name", name, "--label", f"{LABEL}={stack.project}",
        "--mode", "replicated-job", "--restart-condition", "none",
        # No IPVS on this kernel: the name resolves to the task itself.
        "--endpoint-mode", "dnsrr", "--network", f"name={stack.project}_frontend,alias={SOLVER}",
        # Swarm puts a task in DNS once it runs, which with the image's healthcheck (certbot --version, every 30 s)
        # would be half a minute after it starts: the ACME server would find no one behind the name meanwhile.
        "--no-healthcheck",
        "--read-only", "--mount", "type=tmpfs,target=/tmp", "--cap-drop", "ALL", "--user", "10001:10001",
        "--entrypoint", "python3",
    ]  # fmt: skip
    for target, config in configs.items():
        options += ["--config", f"source={config},target=/run/acme/{target},uid=10001,gid=10001,mode=0444"]
    if "ca.pem" in configs:  # a test ACME server's own CA (pebble); Let's Encrypt needs nothing
        options += ["--env", "REQUESTS_CA_BUNDLE=/run/acme/ca.pem"]
    lab.manage([*options, image, "-c", _JOB, *args])
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            said = lab.manage(["service", "ps", name, "--format", "{{.CurrentState}}|{{.Error}}"], check=False)
            states = [line.split("|", 1) for line in said.stdout.splitlines() if "|" in line]
            if states and states[0][0].startswith(("Complete", "Failed", "Rejected")):
                break
            if time.monotonic() > deadline:
                raise OpsError(f"certbot's job did not end within {JOB_TIMEOUT:.0f} s ({said.stdout.strip()})")
            time.sleep(1)
        logs = lab.manage(["service", "logs", "--raw", name], check=False, timeout=60)
        output = logs.stdout + logs.stderr
        if not states[0][0].startswith("Complete"):
            raise OpsError(f"certbot could not obtain a certificate: {_reason(output, states[0][1])}")
        return output
    finally:
        lab.manage(["service", "rm", name], check=False)


def _reason(output: str, error: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for marker in ("Detail:", "Error", "error", "Failed", "failed"):
        for line in lines:
            if marker in line and "Saving debug log" not in line and "Ask for help" not in line:
                return line[:300]
    return error.strip() or (lines[-1][:300] if lines else "no output")


def served_serial(address: str, port: int, name: str, timeout: float = 3.0) -> int | None:
    """The serial of the leaf an edge serves for `name` (None: it does not answer)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate, not trusting it
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name) as wrapped,
        ):
            der = wrapped.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der).serial_number if der else None


def edge_serials(lab: Lab, stack: compose.Stack, name: str) -> dict[str, int | None]:
    """What each edge node serves on the stack's HTTPS port, by hostname."""
    port = int(stack.settings["HTTPS_PORT"])
    return {
        node.hostname: served_serial(node.address, port, name) if node.address else None
        for node in describe_nodes(lab)
        if node.labelled(render.EDGE_LABEL)
    }


def checked_request(request: AcmeRequest) -> tuple[str, list[str]]:
    """The domain and certbot's arguments, every input checked (the e-mail too) before any swarm is asked."""
    domain = tls.validate_domain(request.domain, allow_test_tlds=request.allow_test_domain)
    if request.ca_bundle is not None and not request.ca_bundle.is_file():
        raise BadInput(f"no CA bundle at {request.ca_bundle}")
    return domain, job_arguments(domain, request)


def obtain(
    stack: compose.Stack,
    lab: Lab,
    request: AcmeRequest,
    *,
    timeout: float = 300,
    progress: Progress = lambda _m: None,
) -> Issued:
    """Obtain a certificate for the domain through the swarm's edge, install it, roll the proxies to it."""
    domain, args = checked_request(request)
    # Not the installed certificate: it is what this replaces (an expired bootstrap pair, a renewal that failed).
    deploy.require(stack, lambda: lab, progress, replacing_certificate=True)
    if docker.inspect("image", build.service_tag("certbot")) is None:
        raise OpsError(f"image {build.service_tag('certbot')} is missing; run `invoke images.build`")
    key, csr = key_and_request(domain)
    image = registry.push_one(build.service_tag("certbot"), lab.registry_local, lab.registry)
    authority = request.server or ("Let's Encrypt staging" if request.staging else "Let's Encrypt")
    progress(f"requesting a certificate for {domain} from {authority}, through the edge of {lab.name}")
    configs = {"request.csr": _config(lab, stack.project, "csr", csr)}
    if request.ca_bundle is not None:
        configs["ca.pem"] = _config(lab, stack.project, "ca", request.ca_bundle.read_bytes())
    try:
        chain = issued_chain(_run_job(lab, stack, image, args, configs))
    finally:
        for config in configs.values():
            lab.manage(["config", "rm", config], check=False)
    issued = _install(stack, lab, chain, key, domain, timeout, progress)
    _remember(stack.project, request)
    return issued


def _install(
    stack: compose.Stack, lab: Lab, chain: bytes, key: bytes, domain: str, timeout: float, progress: Progress
) -> Issued:
    tls_dir = Path(stack.settings["TLS_DIR"])
    scratch = deploy.STACK_FILES / f".{stack.project}-acme-{uuid.uuid4().hex[:6]}"
    scratch.mkdir(parents=True, mode=0o700)
    try:
        (scratch / "fullchain.pem").write_bytes(chain)
        key_file = scratch / "privkey.pem"
        key_file.touch(mode=0o600)
        key_file.write_bytes(key)
        tls.install_certificate(scratch / "fullchain.pem", key_file, tls_dir)
    finally:
        for path in scratch.glob("*"):
            path.unlink()
        scratch.rmdir()
    wanted = x509.load_pem_x509_certificates(chain)[0].serial_number
    progress("  installed; handing it to every edge proxy (edge-tls rolls, one edge node at a time; nginx reloads)")
    seconds = deploy.deploy(stack, lab, timeout=timeout, progress=progress, checked=True)
    served = _wait_served(lab, stack, domain, wanted)
    progress(f"  every edge serves it: {', '.join(sorted(served))}")
    return Issued(tls.certificate_status(tls_dir), seconds, served)


def _wait_served(lab: Lab, stack: compose.Stack, domain: str, wanted: int, timeout: float = 30) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        served = edge_serials(lab, stack, domain)
        if served and all(serial == wanted for serial in served.values()):
            return {node: wanted for node in served}
        if time.monotonic() > deadline:
            behind = sorted(node for node, serial in served.items() if serial != wanted)
            raise OpsError(f"edge nodes {', '.join(behind)} still serve another certificate after the roll")
        time.sleep(1)


def due(stack: compose.Stack, days: int = RENEW_DAYS) -> bool:
    """Whether the installed certificate has fewer than `days` left (or cannot be read: it must be replaced)."""
    try:
        status = tls.certificate_status(Path(stack.settings["TLS_DIR"]), warn_days=0)
    except BadInput:
        return True
    return status.days_left < days


@dataclass(frozen=True)
class Renewal:
    verdict: str  # renewed, nothing due, never issued
    issued: Issued | None = None


def renew(
    stack: compose.Stack,
    lab: Lab,
    *,
    force: bool = False,
    server: str | None = None,
    ca_bundle: Path | None = None,
    timeout: float = 300,
    progress: Progress = lambda _m: None,
) -> Renewal:
    """Obtain again what the last issuance obtained, when due (or forced); else change nothing."""
    if ca_bundle is not None and not ca_bundle.is_file():
        raise BadInput(f"no CA bundle at {ca_bundle}")
    last = remembered(stack.project)
    if last is None:
        return Renewal("never issued")  # a bootstrap certificate: tls.prod comes first (a schedule waits for it)
    if not force and not due(stack):
        return Renewal("nothing due")
    again = AcmeRequest(
        last.domain,
        last.email,
        last.staging,
        server or last.server,
        ca_bundle or last.ca_bundle,
        allow_test_domain=last.allow_test_domain,
    )
    return Renewal("renewed", obtain(stack, lab, again, timeout=timeout, progress=progress))
