"""ACME certificates: certbot in a one-off container beside the running proxy (obtain, renew), the issued pair
copied out of the letsencrypt volume and installed, and nginx tested then reloaded. No Docker: every command
goes to a FakeRunner, the engine reads are monkeypatched, the certificates are real (tls' dev CA)."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from analyticbot_ops import acme, compose, docker, model, runner, tls
from analyticbot_ops.errors import EXIT_BAD_INPUT, BadInput, OpsError

DOCKER = "/usr/bin/docker"
CERTBOT_IMAGE = "analyticbot/certbot:latest"
PROXY = "abtest-proxy-1"
DOMAIN = "bot.example.com"


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may reach a real daemon: a fixed client, no engine reads unless a test answers them."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient(DOCKER, "20.10.24", False))
    monkeypatch.setattr(docker, "inspect", lambda kind, name: None)


@pytest.fixture
def proxy_running(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The project's proxy runs; returns the projects whose states were asked for."""
    asked: list[str] = []

    def containers(project: str) -> list[dict[str, object]]:
        asked.append(project)
        return _containers({"proxy": compose.ServiceState("proxy", PROXY, "running", "healthy", 0, 0, "")})

    monkeypatch.setattr(compose, "project_containers", containers)
    return asked


def _containers(states: dict[str, compose.ServiceState]) -> list[dict[str, object]]:
    """The Engine API's view of services in these states (what compose.running_containers reads)."""
    return [
        {
            "Name": f"/{state.container}",
            "Created": "2026-12-01T00:00:00Z",
            "State": {"Running": state.status == "running", "Status": state.status},
            "Config": {"Labels": {model.Labels.SERVICE: service, model.Labels.PROJECT: "abtest"}},
        }
        for service, state in states.items()
    ]


@pytest.fixture
def stack(tmp_path: Path) -> compose.Stack:
    return compose.Stack("prod", "abtest", {"TLS_DIR": str(tmp_path / "tls"), "DOMAIN": DOMAIN}, [])


@pytest.fixture
def issued(tmp_path: Path) -> Path:
    """What certbot would leave in live/<name>/: a leaf for bot.example.com and its chain (a dev CA here)."""
    live = tmp_path / "live"
    tls.ensure_dev_certificates(live, [DOMAIN])
    return live


def copy_from(live: Path) -> Callable[[runner.Call], runner.Completed[Any]]:
    """A `docker cp -L container:/etc/letsencrypt/live/NAME/FILE target` that copies from `live`."""

    def cp(call: runner.Call) -> runner.Completed[Any]:
        source, target = call.argv[-2], call.argv[-1]
        shutil.copyfile(live / Path(source).name, target)
        return runner.Completed(list(call.argv), 0, "", "")

    return cp


def certbot_fake(
    live: Path, certbot: Callable[[runner.Call], runner.Completed[Any]] | None = None
) -> runner.FakeRunner:
    """A runner where certbot succeeds, `docker create` names a container and `docker cp` copies from `live`."""
    fake = runner.FakeRunner()
    fake.answer("docker", "run", stdout="Successfully received certificate.\n")
    if certbot is not None:
        fake.answers[("docker", "run")] = certbot
    fake.answer("docker", "create", stdout="c0ffee\n")
    fake.answers[("docker", "cp")] = copy_from(live)
    return fake


def leaf_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def self_signed_with_ocsp(path: Path, *, ocsp: bool) -> None:
    """A fullchain.pem whose leaf names an OCSP responder (or, without `ocsp`, only a CA issuers URL)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.now(UTC)
    method = AuthorityInformationAccessOID.OCSP if ocsp else AuthorityInformationAccessOID.CA_ISSUERS
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(method, x509.UniformResourceIdentifier("http://ocsp.example.com"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# --- the proxy must run --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "states",
    [{}, {"proxy": compose.ServiceState("proxy", PROXY, "exited", "none", 1, 0, "")}],
    ids=["absent", "exited"],
)
def test_a_stopped_or_absent_proxy_is_bad_input_naming_the_deploy(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack, states: dict[str, compose.ServiceState]
) -> None:
    monkeypatch.setattr(compose, "project_containers", lambda project: _containers(states))
    fake = runner.FakeRunner()
    with (
        runner.use(fake),
        pytest.raises(
            BadInput, match=r"abtest is not running, so nothing can serve the certificate.*invoke stack\.up --env prod"
        ) as e,
    ):
        acme.obtain(stack, acme.AcmeRequest(DOMAIN))
    assert e.value.code == EXIT_BAD_INPUT
    assert fake.calls == []  # certbot never started


# --- obtain --------------------------------------------------------------------------------------------------------


def test_obtain_runs_certbot_beside_the_proxy_then_installs_and_reloads(
    stack: compose.Stack, issued: Path, proxy_running: list[str]
) -> None:
    fake = certbot_fake(issued)
    messages: list[str] = []
    with runner.use(fake):
        status = acme.obtain(stack, acme.AcmeRequest("Bot.Example.com.", email="ops@example.com"), messages.append)

    assert proxy_running and set(proxy_running) == {"abtest"}
    commands = fake.commands()
    # certbot, then the pair copied out of the volume, the helper container removed, nginx tested and reloaded.
    assert [c.split()[1] for c in commands] == ["run", "create", "cp", "cp", "rm", "exec", "exec"]
    certbot = fake.calls[0].argv
    image_at = certbot.index(CERTBOT_IMAGE)
    options, args = certbot[:image_at], certbot[image_at + 1 :]
    assert options[:3] == (DOCKER, "run", "--rm")
    assert options[3:5] == ("--network", "abtest_frontend")
    assert "--read-only" in options and options[options.index("--cap-drop") :][:2] == ("--cap-drop", "ALL")
    assert "no-new-privileges:true" in options
    assert "abtest_acme-webroot:/var/www/acme" in options and "abtest_letsencrypt:/etc/letsencrypt" in options
    assert "REQUESTS_CA_BUNDLE=/run/acme-ca.pem" not in options  # Let's Encrypt needs no extra CA
    assert "--entrypoint" not in options
    assert args[:5] == ("certonly", "--webroot", "-w", "/var/www/acme", "-d")
    assert args[5] == DOMAIN  # validated: lower case, no trailing dot
    assert args[args.index("--email") :][:2] == ("--email", "ops@example.com")
    assert "--staging" not in args and "--server" not in args
    assert args[-2:] == ("--cert-name", DOMAIN)
    assert args[args.index("--config-dir") :][:2] == ("--config-dir", "/etc/letsencrypt")

    assert commands[1] == f"docker create -v abtest_letsencrypt:/etc/letsencrypt {CERTBOT_IMAGE}"
    assert commands[2].startswith(f"docker cp -L c0ffee:/etc/letsencrypt/live/{DOMAIN}/fullchain.pem ")
    assert commands[3].startswith(f"docker cp -L c0ffee:/etc/letsencrypt/live/{DOMAIN}/privkey.pem ")
    assert commands[4:] == [
        "docker rm -f -v c0ffee",
        f"docker exec {PROXY} nginx -t",
        f"docker exec {PROXY} nginx -s reload",
    ]

    tls_dir = Path(stack.settings["TLS_DIR"])
    assert (tls_dir / "fullchain.pem").read_bytes() == (issued / "fullchain.pem").read_bytes()
    assert (tls_dir / "privkey.pem").read_bytes() == (issued / "privkey.pem").read_bytes()
    assert not (tls_dir / "stapling.conf").exists()  # the dev CA names no OCSP responder
    assert status.ok and DOMAIN in status.sans
    assert messages == [
        f"requesting a certificate for {DOMAIN} from Let's Encrypt",
        "  certificate installed; reloading nginx (no restart)",
    ]


def test_obtain_from_a_test_server_trusts_its_ca_bundle(
    stack: compose.Stack, issued: Path, proxy_running: list[str], tmp_path: Path
) -> None:
    bundle = tmp_path / "pebble.minica.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    fake = certbot_fake(issued)
    messages: list[str] = []
    request = acme.AcmeRequest(
        "bot.test", server="https://pebble:14000/dir", staging=True, ca_bundle=bundle, allow_test_domain=True
    )
    with runner.use(fake):
        acme.obtain(stack, request, messages.append)
    certbot = fake.calls[0].argv
    image_at = certbot.index(CERTBOT_IMAGE)
    assert certbot[image_at - 4 : image_at] == (
        "-v",
        f"{bundle.resolve()}:/run/acme-ca.pem:ro",
        "-e",
        "REQUESTS_CA_BUNDLE=/run/acme-ca.pem",
    )
    args = certbot[image_at + 1 :]
    assert args[args.index("--server") :][:2] == ("--server", "https://pebble:14000/dir")
    assert "--staging" not in args  # an explicit server wins over --staging
    assert "--register-unsafely-without-email" in args
    assert messages[0] == "requesting a certificate for bot.test from https://pebble:14000/dir"
    # The pair is copied from the lineage certbot was asked for.
    assert "live/bot.test/fullchain.pem" in fake.commands()[2]


def test_obtain_from_staging_says_so_and_passes_staging(
    stack: compose.Stack, issued: Path, proxy_running: list[str]
) -> None:
    fake = certbot_fake(issued)
    messages: list[str] = []
    with runner.use(fake):
        acme.obtain(stack, acme.AcmeRequest(DOMAIN, staging=True), messages.append)
    assert "--staging" in fake.calls[0].argv
    assert messages[0] == f"requesting a certificate for {DOMAIN} from Let's Encrypt staging"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (acme.AcmeRequest("localhost"), "localhost name"),
        (acme.AcmeRequest("*.example.com"), "wildcard"),
        (acme.AcmeRequest("bot.test"), "reserved .test domain"),
        (acme.AcmeRequest(DOMAIN, email="not an address"), "is not an email address"),
        (acme.AcmeRequest(DOMAIN, ca_bundle=Path("/nonexistent/ca.pem")), "no CA bundle at /nonexistent/ca.pem"),
    ],
    ids=["localhost", "wildcard", "test-tld", "email", "ca-bundle"],
)
def test_obtain_checks_every_input_before_asking_the_stack(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack, request_: acme.AcmeRequest, message: str
) -> None:
    monkeypatch.setattr(compose, "project_containers", lambda project: pytest.fail("the stack was asked"))
    fake = runner.FakeRunner()
    with runner.use(fake), pytest.raises(BadInput, match=message):
        acme.obtain(stack, request_)
    assert fake.calls == []


def test_a_refused_order_is_one_line_with_certbots_reason_and_nothing_installed(
    stack: compose.Stack, issued: Path, proxy_running: list[str]
) -> None:
    output = (
        "Saving debug log to /tmp/certbot-logs/letsencrypt.log\n"
        "Certbot failed to authenticate some domains (authenticator: webroot).\n"
        "  Domain: bot.example.com\n"
        "  Type:   unauthorized\n"
        "  Detail: 203.0.113.9: Invalid response from http://bot.example.com/.well-known/acme-challenge/x: 404\n"
        "Ask for help or search for solutions at https://community.letsencrypt.org.\n"
    )
    fake = certbot_fake(issued)
    fake.answer("docker", "run", stdout="", stderr=output, returncode=1)
    with runner.use(fake), pytest.raises(OpsError) as e:
        acme.obtain(stack, acme.AcmeRequest(DOMAIN))
    assert str(e.value) == (
        f"certbot could not obtain a certificate for {DOMAIN}: Detail: 203.0.113.9: Invalid response from "
        "http://bot.example.com/.well-known/acme-challenge/x: 404"
    )
    assert [c.split()[1] for c in fake.commands()] == ["run"]
    assert not Path(stack.settings["TLS_DIR"]).exists()


def test_a_failed_copy_still_removes_the_helper_container(
    stack: compose.Stack, issued: Path, proxy_running: list[str]
) -> None:
    fake = certbot_fake(issued)
    fake.answer("docker", "cp", stderr="Error: No such container:path: c0ffee:/etc/letsencrypt/live/x", returncode=1)
    with runner.use(fake), pytest.raises(OpsError, match="docker cp failed: Error: No such container:path"):
        acme.obtain(stack, acme.AcmeRequest(DOMAIN))
    assert fake.commands()[-1] == "docker rm -f -v c0ffee"
    assert "exec" not in " ".join(fake.commands())  # nginx is not touched
    assert not Path(stack.settings["TLS_DIR"]).exists()


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("Saving debug log to /x\nAn unexpected error occurred:\nsome detail\n", "An unexpected error occurred:"),
        ("Error: first\n  Detail: the real reason\n", "Detail: the real reason"),
        ("Saving debug log to /var/log/error.log\nAsk for help, error\nAll failed here\n", "All failed here"),
        ("line one\n\nthe last words\n  \n", "the last words"),
        ("", "no output"),
        ("  \n\n", "no output"),
        ("Error " + "x" * 400, "Error " + "x" * 294),
    ],
    ids=["error", "detail-first", "skips-noise", "last-line", "empty", "blank", "truncated"],
)
def test_certbot_reason_is_its_own_explanation_in_one_line(output: str, reason: str) -> None:
    assert acme._reason(output) == reason


# --- OCSP stapling -------------------------------------------------------------------------------------------------


def test_stapling_is_on_only_where_the_certificate_names_a_responder(tmp_path: Path) -> None:
    self_signed_with_ocsp(tmp_path / "fullchain.pem", ocsp=True)
    acme._stapling(tmp_path)
    include = (tmp_path / "stapling.conf").read_text()
    assert "ssl_stapling on;" in include and "ssl_stapling_verify on;" in include
    assert "ssl_trusted_certificate /etc/nginx/tls/fullchain.pem;" in include

    self_signed_with_ocsp(tmp_path / "fullchain.pem", ocsp=False)  # an AIA without OCSP (Let's Encrypt today)
    acme._stapling(tmp_path)
    assert not (tmp_path / "stapling.conf").exists()


def test_stapling_is_off_without_an_authority_information_access(tmp_path: Path) -> None:
    tls.ensure_dev_certificates(tmp_path)
    (tmp_path / "stapling.conf").write_text("ssl_stapling on;\n")  # left from an earlier certificate
    acme._stapling(tmp_path)
    assert not (tmp_path / "stapling.conf").exists()
    acme._stapling(tmp_path)  # and again, with nothing to remove
    assert not (tmp_path / "stapling.conf").exists()


# --- reload --------------------------------------------------------------------------------------------------------


def test_reload_refuses_a_configuration_nginx_rejects(stack: compose.Stack, proxy_running: list[str]) -> None:
    fake = runner.FakeRunner()
    fake.answer(
        "docker",
        "exec",
        PROXY,
        "nginx",
        "-t",
        stderr='\nnginx: [emerg] cannot load certificate "/etc/nginx/tls/fullchain.pem"\nnginx: test failed\n',
        returncode=1,
    )
    with runner.use(fake), pytest.raises(OpsError) as e:
        acme.serve_installed_certificate(stack)
    assert str(e.value) == (
        'nginx -t refused the installed certificate: nginx: [emerg] cannot load certificate "/etc/nginx/tls/'
        'fullchain.pem"'
    )
    assert fake.commands() == [f"docker exec {PROXY} nginx -t"]  # never reloaded


def test_a_failed_reload_is_an_ops_error(stack: compose.Stack, proxy_running: list[str]) -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "exec", PROXY, "nginx", "-s", stderr="nginx: [error] invalid PID number", returncode=1)
    with runner.use(fake), pytest.raises(OpsError, match=r"docker exec failed: nginx: \[error\] invalid PID"):
        acme.serve_installed_certificate(stack)


def ports(*bindings: dict[str, str]) -> dict[str, Any]:
    return {
        "NetworkSettings": {
            "Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "1"}], "8443/tcp": list(bindings)}
        }
    }


@pytest.mark.parametrize(
    ("info", "port"),
    [
        (None, None),
        ({}, None),
        ({"NetworkSettings": {"Ports": None}}, None),
        ({"NetworkSettings": {"Ports": {"8443/tcp": None}}}, None),  # exposed, not published
        (ports({"HostIp": "203.0.113.5", "HostPort": "443"}), None),  # bound to a public address only
        (ports({"HostIp": "203.0.113.5", "HostPort": "443"}, {"HostIp": "127.0.0.1", "HostPort": "9443"}), 9443),
        (ports({"HostIp": "0.0.0.0", "HostPort": "443"}, {"HostIp": "::", "HostPort": "443"}), 443),
        (ports({"HostIp": "", "HostPort": "8443"}), 8443),
    ],
    ids=["no-container", "empty", "no-ports", "unpublished", "public-only", "loopback", "any", "blank-ip"],
)
def test_the_https_port_is_read_only_where_loopback_reaches_it(
    monkeypatch: pytest.MonkeyPatch, info: dict[str, Any] | None, port: int | None
) -> None:
    asked: list[tuple[str, str]] = []

    def inspect(kind: str, name: str) -> dict[str, Any] | None:
        asked.append((kind, name))
        return info

    monkeypatch.setattr(docker, "inspect", inspect)
    assert acme._loopback_https_port(PROXY) == port
    assert asked == [("container", PROXY)]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        docker,
        "inspect",
        lambda kind, name: ports({"HostIp": "127.0.0.1", "HostPort": "9443"}) if name == PROXY else None,
    )


def test_reload_waits_until_the_proxy_serves_the_installed_certificate(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack, proxy_running: list[str], published: None, tmp_path: Path
) -> None:
    tls_dir = Path(stack.settings["TLS_DIR"])
    tls.ensure_dev_certificates(tls_dir, [DOMAIN])
    tls.ensure_dev_certificates(tmp_path / "old", [DOMAIN])
    new = leaf_of(tls_dir / "fullchain.pem").public_bytes(serialization.Encoding.DER)
    old = leaf_of(tmp_path / "old" / "fullchain.pem").public_bytes(serialization.Encoding.DER)
    answers: list[Callable[[], bytes]] = [
        lambda: (_ for _ in ()).throw(ConnectionRefusedError(111, "refused")),  # new workers not listening yet
        lambda: b"not DER",  # a half-finished handshake
        lambda: old,  # an old worker
        lambda: new,
    ]
    asked: list[tuple[int, str]] = []

    def served(port: int, server_name: str, timeout: float = 2.0) -> bytes:
        asked.append((port, server_name))
        return answers[len(asked) - 1]()

    monkeypatch.setattr(acme, "served_certificate", served)
    fake = runner.FakeRunner()
    with runner.use(fake):
        acme.serve_installed_certificate(stack, timeout=10)
    assert asked == [(9443, DOMAIN)] * 4  # SNI: the stack's DOMAIN
    assert fake.commands() == [f"docker exec {PROXY} nginx -t", f"docker exec {PROXY} nginx -s reload"]


def test_reload_gives_up_when_the_old_certificate_is_still_served(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack, proxy_running: list[str], published: None, tmp_path: Path
) -> None:
    tls.ensure_dev_certificates(Path(stack.settings["TLS_DIR"]), [DOMAIN])
    tls.ensure_dev_certificates(tmp_path / "old", [DOMAIN])
    old = leaf_of(tmp_path / "old" / "fullchain.pem").public_bytes(serialization.Encoding.DER)
    names: set[str] = set()

    def served(port: int, server_name: str, timeout: float = 2.0) -> bytes:
        names.add(server_name)
        return old

    monkeypatch.setattr(acme, "served_certificate", served)
    del stack.settings["DOMAIN"]
    with runner.use(runner.FakeRunner()), pytest.raises(OpsError) as e:
        acme.serve_installed_certificate(stack, timeout=0.25)
    assert str(e.value) == "the proxy still serves the old certificate 0 s after the reload"
    assert names == {"localhost"}  # no DOMAIN: the dev name


# --- served_certificate against a real TLS server ------------------------------------------------------------------


def test_served_certificate_reads_the_leaf_with_sni(tmp_path: Path) -> None:
    tls.ensure_dev_certificates(tmp_path, [DOMAIN])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:
            connection, _ = server.accept()
            with connection, context.wrap_socket(connection, server_side=True):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        der = acme.served_certificate(port, DOMAIN, timeout=5)
        thread.join(5)
    assert der == leaf_of(tmp_path / "fullchain.pem").public_bytes(serialization.Encoding.DER)
    assert names == [DOMAIN]


def test_served_certificate_on_a_closed_port_is_an_os_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(OSError):
            acme.served_certificate(port, DOMAIN, timeout=2)


# --- renew ---------------------------------------------------------------------------------------------------------


def renew_fake(
    live: Path, renew_output: str, recorded: str, *, returncode: int = 0, read_error: str = ""
) -> tuple[runner.FakeRunner, list[runner.Call]]:
    """certbot renew printing `renew_output`; the python3 entrypoint printing the recorded lineages."""
    certbot_calls: list[runner.Call] = []

    def certbot(call: runner.Call) -> runner.Completed[Any]:
        certbot_calls.append(call)
        if "--entrypoint" in call.argv:
            return runner.Completed(list(call.argv), 125 if read_error else 0, recorded, read_error)
        return runner.Completed(list(call.argv), returncode, renew_output, "")

    return certbot_fake(live, certbot), certbot_calls


RENEWED = f"""Processing /etc/letsencrypt/renewal/{DOMAIN}.conf
Renewing an existing certificate for {DOMAIN}
Congratulations, all renewals succeeded:
  /etc/letsencrypt/live/{DOMAIN}/fullchain.pem (success)
  /etc/letsencrypt/live/other.example.org/fullchain.pem (success)
"""


def test_renew_installs_what_certbot_renewed_for_the_served_name_only(
    stack: compose.Stack, issued: Path, proxy_running: list[str]
) -> None:
    tls_dir = Path(stack.settings["TLS_DIR"])
    tls.ensure_dev_certificates(tls_dir, [DOMAIN])  # the certificate served now
    fake, certbot_calls = renew_fake(
        issued, RENEWED, f"/etc/letsencrypt/live/{DOMAIN}\n/etc/letsencrypt/live/other.example.org\n\n"
    )
    messages: list[str] = []
    with runner.use(fake):
        report = acme.renew(stack, force=True, server="https://acme.example/dir", progress=messages.append)

    assert report.outcome.renewed == (DOMAIN, "other.example.org")
    assert report.installed == (DOMAIN,)  # other.example.org is not what this proxy serves
    renew_args = certbot_calls[0].argv[certbot_calls[0].argv.index(CERTBOT_IMAGE) + 1 :]
    assert renew_args[:3] == ("renew", "--non-interactive", "--no-random-sleep-on-renew")
    assert "--force-renewal" in renew_args
    assert renew_args[renew_args.index("--server") :][:2] == ("--server", "https://acme.example/dir")
    assert renew_args[-2:] == ("--deploy-hook", acme.DEPLOY_HOOK)
    assert acme.RENEWED_FILE in acme.DEPLOY_HOOK and acme.DEPLOY_HOOK.startswith("sh -c ")

    # The record is read and cleared with the image's python3 (no shell tools), without the CA bundle mount.
    take = certbot_calls[1].argv
    assert take[take.index("--entrypoint") + 1] == "python3"
    assert take[take.index(CERTBOT_IMAGE) + 1] == "-c"
    script = take[-1]
    assert repr(acme.RENEWED_FILE) in script and "os.remove(p)" in script
    assert not any("/run/acme-ca.pem" in arg for arg in take)

    commands = fake.commands()
    assert [c.split()[1] for c in commands] == ["run", "run", "create", "cp", "cp", "rm", "exec", "exec"]
    assert f"live/{DOMAIN}/fullchain.pem" in commands[3]
    assert (tls_dir / "fullchain.pem").read_bytes() == (issued / "fullchain.pem").read_bytes()
    assert messages == ["  certificate installed; reloading nginx (no restart)"]


def test_renew_with_nothing_due_installs_nothing(stack: compose.Stack, issued: Path, proxy_running: list[str]) -> None:
    tls_dir = Path(stack.settings["TLS_DIR"])
    tls.ensure_dev_certificates(tls_dir, [DOMAIN])
    before = (tls_dir / "fullchain.pem").read_bytes()
    output = (
        "The following certificates are not due for renewal yet:\n"
        f"  /etc/letsencrypt/live/{DOMAIN}/fullchain.pem expires on 2026-06-01 (skipped)\n"
        "No renewals were attempted.\n"
    )
    fake, certbot_calls = renew_fake(issued, output, "")
    with runner.use(fake):
        report = acme.renew(stack)
    assert report == acme.RenewReport(tls.RenewOutcome((), (DOMAIN,), ()), ())
    renew_args = certbot_calls[0].argv
    assert "--force-renewal" not in renew_args and "--server" not in renew_args
    assert [c.split()[1] for c in fake.commands()] == ["run", "run"]
    assert (tls_dir / "fullchain.pem").read_bytes() == before


def test_renew_without_an_installed_certificate_installs_nothing(
    stack: compose.Stack, issued: Path, proxy_running: list[str]
) -> None:
    fake, _ = renew_fake(issued, RENEWED, f"/etc/letsencrypt/live/{DOMAIN}\n")
    with runner.use(fake):
        report = acme.renew(stack)
    assert report.installed == ()
    assert [c.split()[1] for c in fake.commands()] == ["run", "run"]


@pytest.mark.parametrize(
    ("output", "returncode", "reason"),
    [
        (
            f"Failed to renew certificate {DOMAIN} with error: urn:ietf:params:acme:error:rateLimited\n"
            "All renewals failed. The following certificates could not be renewed:\n"
            f"  /etc/letsencrypt/live/{DOMAIN}/fullchain.pem (failure)\n",
            1,
            f"Failed to renew certificate {DOMAIN} with error: urn:ietf:params:acme:error:rateLimited",
        ),
        (
            # certbot exits 0 when a renewal configuration is broken: the summary still says so.
            "0 renew failure(s), 1 parse failure(s)\n  /etc/letsencrypt/renewal/broken.conf (parsefail)\n",
            0,
            "/etc/letsencrypt/renewal/broken.conf (parsefail)",  # the last line names the broken file
        ),
    ],
    ids=["failure-exit", "parsefail-exit-0"],
)
def test_a_failed_renewal_is_one_line_and_installs_nothing(
    stack: compose.Stack, issued: Path, proxy_running: list[str], output: str, returncode: int, reason: str
) -> None:
    fake, certbot_calls = renew_fake(issued, output, f"/etc/letsencrypt/live/{DOMAIN}\n", returncode=returncode)
    with runner.use(fake), pytest.raises(OpsError) as e:
        acme.renew(stack)
    assert str(e.value) == f"certbot renew failed: {reason}"
    assert len(certbot_calls) == 1  # the record is left for the next, successful run


def test_renew_with_a_missing_ca_bundle_asks_nothing(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack, tmp_path: Path
) -> None:
    monkeypatch.setattr(compose, "project_containers", lambda project: pytest.fail("the stack was asked"))
    fake = runner.FakeRunner()
    with runner.use(fake), pytest.raises(BadInput, match=f"no CA bundle at {tmp_path / 'missing.pem'}"):
        acme.renew(stack, ca_bundle=tmp_path / "missing.pem")
    assert fake.calls == []


def test_renew_with_a_ca_bundle_mounts_it_for_certbot_only(
    stack: compose.Stack, issued: Path, proxy_running: list[str], tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    fake, certbot_calls = renew_fake(issued, "No renewals were attempted.\n", "")
    with runner.use(fake):
        acme.renew(stack, ca_bundle=bundle)
    assert f"{bundle.resolve()}:/run/acme-ca.pem:ro" in certbot_calls[0].argv
    assert f"{bundle.resolve()}:/run/acme-ca.pem:ro" not in certbot_calls[1].argv


def test_renew_needs_the_proxy_running(monkeypatch: pytest.MonkeyPatch, stack: compose.Stack) -> None:
    monkeypatch.setattr(compose, "project_containers", lambda project: [])
    fake = runner.FakeRunner()
    with runner.use(fake), pytest.raises(BadInput, match="not running"):
        acme.renew(stack)
    assert fake.calls == []


def test_a_failed_read_of_the_renewal_record_is_an_error(
    stack: compose.Stack, issued: Path, proxy_running: list[str]
) -> None:
    tls.ensure_dev_certificates(Path(stack.settings["TLS_DIR"]), [DOMAIN])
    fake, _ = renew_fake(
        issued, RENEWED, "", read_error="docker: Error response from daemon: failed to create task: no space left"
    )
    with runner.use(fake), pytest.raises(OpsError, match="no space left"):
        acme.renew(stack)
