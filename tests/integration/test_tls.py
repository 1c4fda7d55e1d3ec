"""TLS end to end on the prod-mode stack: the proxy passes Mozilla's intermediate
profile (sslyze) and an A+ header grade (httpobs) with the dev CA, and certbot gets
and renews a certificate from a real ACME server (pebble) through the proxy's
webroot, installed with a reload during which no connection is refused."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography import x509

from analyticbot_ops import acme, docker, tls
from analyticbot_ops.errors import BadInput, OpsError
from tests import sandbox
from tests.sandbox import PEBBLE_CONFIG, TEST_DOMAIN, RunningStack

MOZILLA_HSTS = 63072000


def _served_certificate(stack: RunningStack) -> x509.Certificate:
    # With the public name as SNI: the proxy refuses handshakes for names it does not serve.
    return x509.load_der_x509_certificate(acme.served_certificate(stack.https_port, TEST_DOMAIN))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# --- scans with the dev CA (these run first: the ACME tests replace the certificate) ---------


@pytest.fixture(scope="module")
def sslyze_report(prod_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    out = tmp_path_factory.mktemp("sslyze") / "scan.json"
    result = subprocess.run(
        [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", f"--certinfo_ca_file={prod_stack.ca_file}",
         f"--json_out={out}", f"localhost:{prod_stack.https_port}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return result.returncode, json.loads(out.read_text())


def test_proxy_is_mozilla_intermediate_compliant(sslyze_report: tuple[int, dict]) -> None:
    returncode, report = sslyze_report
    # sslyze's CLI exits 1 when the server is not compliant with the profile.
    assert returncode == 0, json.dumps(report.get("server_scan_results", [{}])[0].get("connectivity_error_trace"))


def test_tls_1_0_and_1_1_are_refused(sslyze_report: tuple[int, dict]) -> None:
    result = sslyze_report[1]["server_scan_results"][0]["scan_result"]
    for version in ("ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
        assert result[version]["result"]["accepted_cipher_suites"] == [], version
    assert result["tls_1_2_cipher_suites"]["result"]["accepted_cipher_suites"]
    assert result["tls_1_3_cipher_suites"]["result"]["accepted_cipher_suites"]


def test_hsts_max_age_is_two_years_on_every_location(prod_stack: RunningStack) -> None:
    context = ssl.create_default_context(cafile=prod_stack.ca_file)
    for path in ("/", "/static/status.js", "/api/health/live", "/bot/health/live", "/nope"):
        request = urllib.request.Request(f"{prod_stack.base_url}{path}")
        try:
            response = urllib.request.urlopen(request, context=context, timeout=5)
        except urllib.error.HTTPError as exc:
            response = exc
        hsts = response.headers["Strict-Transport-Security"]
        assert hsts and int(hsts.split("max-age=")[1].split(";")[0]) >= MOZILLA_HSTS, path
        assert response.headers["Content-Security-Policy"] and response.headers["X-Content-Type-Options"] == "nosniff"


def test_headers_are_graded_a_plus_by_the_observatory_scanner(prod_stack: RunningStack) -> None:
    code = (
        "import json, sys\n"
        "from httpobs.scanner.local import scan\n"
        "r = scan('localhost', http_port=int(sys.argv[1]), https_port=int(sys.argv[2]))\n"
        "print(json.dumps({'grade': r['scan']['grade'], 'score': r['scan']['score'],\n"
        "  'failed': [k for k, t in r['tests'].items() if not t['pass']]}))\n"
    )
    env = {**os.environ, "REQUESTS_CA_BUNDLE": prod_stack.ca_file}
    result = subprocess.run(
        [sys.executable, "-c", code, str(prod_stack.http_port), str(prod_stack.https_port)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    grade = json.loads(result.stdout.strip().splitlines()[-1])
    assert grade["grade"] == "A+" and grade["score"] >= 100, grade


# --- a real ACME server: pebble on the stack's frontend network ------------------------------


@dataclass
class Pebble:
    directory_url: str
    ca_bundle: Path
    container: str

    def root_certificate(self) -> x509.Certificate:
        """Pebble regenerates its issuing root at every start: ask its management port."""
        code = (
            "import ssl, urllib.request, sys\n"
            "ctx = ssl.create_default_context(cafile='/etc/pebble/tls/ca.crt')\n"
            "sys.stdout.write(urllib.request.urlopen('https://pebble:15000/roots/0', context=ctx).read().decode())\n"
        )
        # From inside the stack's network: the same path certbot's requests take.
        network = docker.inspect("container", self.container)["HostConfig"]["NetworkMode"]
        result = docker.docker(
            ["run", "--rm", "--network", network, "-v", f"{self.ca_bundle.parent}:/etc/pebble/tls:ro",
             "analyticbot/python-runtime:bookworm", "python3", "-c", code]
        )  # fmt: skip
        return x509.load_pem_x509_certificate(result.stdout.encode())


@pytest.fixture(scope="module")
def pebble(prod_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    directory = tmp_path_factory.mktemp("pebble")
    tls.ensure_dev_certificates(directory / "tls", ["pebble"])
    (directory / "pebble-config.json").write_text(json.dumps(PEBBLE_CONFIG))
    os.chmod(directory, 0o755)
    name = f"{prod_stack.project}-pebble"
    docker.docker(
        ["run", "-d", "--name", name, "--network", f"{prod_stack.project}_frontend", "--network-alias", "pebble",
         "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
         "-v", f"{directory}:/etc/pebble:ro", "analyticbot/pebble:bookworm"]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (
            "Listening on: 0.0.0.0:14000"
            not in docker.docker(["logs", name], check=False).stdout + docker.docker(["logs", name], check=False).stderr
        ):
            assert time.monotonic() < deadline, docker.docker(["logs", name], check=False).stderr
            time.sleep(0.3)
        yield Pebble("https://pebble:14000/dir", directory / "tls" / "ca.crt", name)
    finally:
        docker.docker(["rm", "-f", "-v", name], check=False)
        # Put the dev certificate back for anything that runs after this module.
        tls.ensure_dev_certificates(prod_stack.tls_dir)
        acme.serve_installed_certificate(prod_stack.stack)


def _readers(stack: RunningStack) -> sandbox.SteadyClients:
    """Both steady clients on the proxy's static page, reading without checking the certificate, which changes
    under them on purpose (each test checks the served one itself)."""
    return sandbox.SteadyClients(replace(stack, verify=False), channel="", path="/")


def test_ssl_prod_obtains_a_certificate_through_the_proxy_and_reloads_without_refusals(
    prod_stack: RunningStack, pebble: Pebble
) -> None:
    readers = _readers(prod_stack)
    readers.start()
    try:
        request = acme.AcmeRequest(
            TEST_DOMAIN, server=pebble.directory_url, ca_bundle=pebble.ca_bundle, allow_test_domain=True
        )
        status = acme.obtain(prod_stack.stack, request)
        time.sleep(1)
    finally:
        read = readers.finish()
    assert status.ok and TEST_DOMAIN in status.sans and status.key_matches
    served = _served_certificate(prod_stack)
    assert TEST_DOMAIN in tls.san_strings(served)
    assert "Pebble" in served.issuer.rfc4514_string()
    for mode, (ok, failures) in read.items():  # new connections, and one kept alive
        assert ok > 10 and failures == [], mode


def test_ssl_renew_without_force_reports_nothing_due(prod_stack: RunningStack, pebble: Pebble) -> None:
    report = acme.renew(prod_stack.stack, ca_bundle=pebble.ca_bundle)
    assert report.outcome.renewed == () and TEST_DOMAIN in report.outcome.not_due and report.installed == ()


def test_ssl_renew_force_renewal_installs_the_new_certificate_without_a_refusal(
    prod_stack: RunningStack, pebble: Pebble
) -> None:
    before = _served_certificate(prod_stack).serial_number
    readers = _readers(prod_stack)
    readers.start()
    try:
        report = acme.renew(prod_stack.stack, force=True, ca_bundle=pebble.ca_bundle)
        assert TEST_DOMAIN in report.outcome.renewed and report.installed == (TEST_DOMAIN,)
        # `nginx -s reload` returns before the new workers take over: allow it a moment.
        deadline = time.monotonic() + 5
        while _served_certificate(prod_stack).serial_number == before and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        read = readers.finish()
    assert _served_certificate(prod_stack).serial_number != before
    for mode, (ok, failures) in read.items():  # new connections, and one kept alive
        assert ok > 10 and failures == [], mode


# --- bad input: one clear error, certificates untouched --------------------------------------


@pytest.mark.parametrize("domain", ["localhost", "127.0.0.1", "not a domain", "single"])
def test_ssl_prod_refuses_a_bad_domain_and_changes_nothing(prod_stack: RunningStack, domain: str) -> None:
    before = _snapshot(prod_stack.tls_dir)
    with pytest.raises(BadInput):
        acme.obtain(prod_stack.stack, acme.AcmeRequest(domain))
    assert _snapshot(prod_stack.tls_dir) == before


def test_ssl_prod_against_an_unreachable_acme_server_changes_nothing(prod_stack: RunningStack, pebble: Pebble) -> None:
    before = _snapshot(prod_stack.tls_dir)
    request = acme.AcmeRequest(
        TEST_DOMAIN, server="https://127.0.0.1:9/dir", ca_bundle=pebble.ca_bundle, allow_test_domain=True
    )
    with pytest.raises(OpsError, match="could not obtain"):
        acme.obtain(prod_stack.stack, request)
    assert _snapshot(prod_stack.tls_dir) == before


def test_ssl_prod_without_a_running_proxy_says_so(prod_stack: RunningStack) -> None:
    from analyticbot_ops import compose

    absent = compose.load_stack(
        "prod", project=f"{prod_stack.project}-absent", overrides=dict(prod_stack.stack.settings), monitoring=False
    )
    with pytest.raises(BadInput, match=r"proxy .* is not running"):
        acme.obtain(absent, acme.AcmeRequest("example.org"))
