"""Certificates on a swarm (swarm/certificates.py): certbot's arguments in the one-shot job, the chain read back
from its output, the key that stays here, and when a renewal does anything. The issuance itself, through the
lab's edge against pebble, is an integration test (tests/integration/test_swarm.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from analyticbot_ops import compose, docker, tls
from analyticbot_ops.acme import AcmeRequest
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.swarm import certificates, deploy, render
from analyticbot_ops.swarm import lab as swarm_lab
from tests.unit import swarm_support as support

LAB = support.three_nodes()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> compose.Stack:
    monkeypatch.setattr(deploy, "STACK_FILES", tmp_path / "state")
    return compose.Stack("prod", support.PROJECT, support.settings(tmp_path))


def test_the_job_runs_certbot_standalone_on_the_solvers_port_with_the_csr_made_here() -> None:
    request = AcmeRequest("analytics.example.org", "ops@example.org", server="https://acme.example/dir")
    args = certificates.job_arguments("analytics.example.org", request)
    assert args[:6] == ["certonly", "--standalone", "--http-01-port", "8402", "--csr", "/run/acme/request.csr"]
    assert f"{certificates.SOLVER}:8402" == render.ACME_SOLVER  # where every edge proxy sends the challenge
    assert "--webroot" not in args and "--key-type" not in args  # the key is the CSR's, made on this host
    joined = " ".join(args)
    assert "-d analytics.example.org" in joined and "--email ops@example.org" in joined
    assert "--server https://acme.example/dir" in joined and "--fullchain-path /tmp/acme/fullchain.pem" in joined
    assert all(a.startswith("/tmp/acme") for a in args if a.startswith("/tmp"))  # only the job's tmpfs


def test_a_bad_email_is_refused_before_anything_runs() -> None:
    with pytest.raises(BadInput, match="is not an email address"):
        certificates.job_arguments("analytics.example.org", AcmeRequest("analytics.example.org", "not an address"))


def test_the_key_stays_here_and_the_request_names_the_domain() -> None:
    key, csr = certificates.key_and_request("analytics.example.org")
    request = x509.load_pem_x509_csr(csr)
    assert request.is_signature_valid
    assert request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["analytics.example.org"]
    private = serialization.load_pem_private_key(key, None)
    assert private.public_key().public_numbers() == request.public_key().public_numbers()  # type: ignore[union-attr]
    assert b"PRIVATE KEY" not in csr


def test_the_issued_chain_is_read_between_the_markers_the_last_time() -> None:
    logs = (
        "Requesting a certificate\n-----ISSUED CHAIN BEGIN-----\nold\n-----ISSUED CHAIN END-----\n"
        "retried\n-----ISSUED CHAIN BEGIN-----\n-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"
        "-----ISSUED CHAIN END-----\n"
    )
    assert certificates.issued_chain(logs) == b"-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"
    with pytest.raises(OpsError, match="without printing the issued certificate"):
        certificates.issued_chain("certbot: an error\n")


def test_renew_before_any_issuance_does_nothing(stack: compose.Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certificates, "obtain", lambda *a, **k: pytest.fail("obtained"))
    assert certificates.renew(stack, LAB) == certificates.Renewal("never issued")
    assert certificates.renew(stack, LAB, force=True) == certificates.Renewal("never issued")


def _issued_days_ago(stack: compose.Stack, days_left: int) -> None:
    """A pair in the TLS folder whose certificate has `days_left` days left."""
    tls_dir = Path(stack.settings["TLS_DIR"])
    lifetime = 90
    tls.write_bootstrap_certificate(
        tls_dir, "analytics.example.org", days=lifetime, now=datetime.now(UTC) - timedelta(days=lifetime - days_left)
    )


def test_renew_repeats_the_last_request_only_when_due_or_forced(
    stack: compose.Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("CA")
    first = AcmeRequest("analytics.example.org", "ops@example.org", server="https://acme/dir", ca_bundle=bundle)
    certificates._remember(stack.project, first)
    assert certificates.remembered(stack.project) == first
    asked: list[Any] = []
    monkeypatch.setattr(certificates, "obtain", lambda s, lab, request, **k: asked.append(request) or "issued")
    _issued_days_ago(stack, 60)
    assert certificates.renew(stack, LAB).verdict == "nothing due" and asked == []
    assert certificates.renew(stack, LAB, force=True).verdict == "renewed" and asked == [first]
    tls_dir = Path(stack.settings["TLS_DIR"])
    for name in ("fullchain.pem", "privkey.pem"):
        (tls_dir / name).unlink()
    _issued_days_ago(stack, 20)  # fewer than 30 days left: due
    renewal = certificates.renew(stack, LAB, server="https://other/dir")
    assert renewal == certificates.Renewal("renewed", "issued")  # type: ignore[arg-type]
    assert asked[-1] == AcmeRequest(
        "analytics.example.org", "ops@example.org", server="https://other/dir", ca_bundle=bundle
    )


def test_renew_refuses_a_missing_ca_bundle(stack: compose.Stack, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no CA bundle at"):
        certificates.renew(stack, LAB, ca_bundle=tmp_path / "missing.pem")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> support.FakeDocker:
    fake = support.FakeDocker()
    monkeypatch.setattr(docker, "docker", fake)
    monkeypatch.setattr(certificates.time, "sleep", lambda s: None)
    return fake


def _job_answers(fake: support.FakeDocker, name: str, state: str, logs: str) -> None:
    fake.answer("service", "ps", name, "--format", "{{.CurrentState}}|{{.Error}}", stdout=f"{state}|\n")
    fake.answer("service", "logs", "--raw", name, stdout=logs)


def test_the_job_is_a_one_shot_certbot_on_the_frontend_under_the_solvers_name_and_is_removed(
    fake: support.FakeDocker, stack: compose.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certificates.uuid, "uuid4", lambda: type("U", (), {"hex": "abcdef123456"})())
    name = f"{support.PROJECT}_acme-abcdef"
    _job_answers(
        fake, name, "Complete 2 seconds ago", "-----ISSUED CHAIN BEGIN-----\nPEM\n-----ISSUED CHAIN END-----\n"
    )
    output = certificates._run_job(LAB, stack, "reg/certbot@sha256:1", ["certonly"], {"request.csr": "cfg-csr"})
    assert certificates.issued_chain(output) == b"PEM\n"
    (created,) = fake.made("service", "create")
    args = " ".join(created.args)
    assert f"--name {name}" in args and "--mode replicated-job --restart-condition none" in args
    assert f"--network name={support.PROJECT}_frontend,alias=acme-solver" in args
    assert "--endpoint-mode dnsrr" in args and "--read-only" in args and "--cap-drop ALL" in args
    assert "--no-healthcheck" in args  # in DNS as soon as it runs
    assert "--config source=cfg-csr,target=/run/acme/request.csr" in args and "REQUESTS_CA_BUNDLE" not in args
    assert created.args[-4:-2] == ("reg/certbot@sha256:1", "-c") and created.args[-1] == "certonly"
    assert fake.made("service", "rm")[0].args == ("service", "rm", name)


def test_a_failed_job_says_certbots_reason_and_is_removed_too(
    fake: support.FakeDocker, stack: compose.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certificates.uuid, "uuid4", lambda: type("U", (), {"hex": "abcdef123456"})())
    name = f"{support.PROJECT}_acme-abcdef"
    logs = "Requesting a certificate\nDetail: Invalid response from http://x/.well-known/acme-challenge/y: 404\n"
    _job_answers(fake, name, "Failed 1 second ago", logs)
    with pytest.raises(OpsError, match=r"could not obtain a certificate: Detail: Invalid response from .*: 404"):
        certificates._run_job(LAB, stack, "reg/certbot@sha256:1", [], {"request.csr": "c", "ca.pem": "ca"})
    assert "REQUESTS_CA_BUNDLE=/run/acme/ca.pem" in fake.made("service", "create")[0].args
    assert fake.made("service", "rm")[0].args == ("service", "rm", name)


def test_the_edges_are_asked_what_they_serve_on_their_own_addresses(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack
) -> None:
    nodes = [
        swarm_lab.NodeInfo("node1", True, "ready", "active", {"analyticbot.data": "true"}, "10.0.0.1"),
        swarm_lab.NodeInfo("node2", False, "ready", "active", {"analyticbot.edge": "true"}, "10.0.0.2"),
        swarm_lab.NodeInfo("node3", False, "down", "active", {"analyticbot.edge": "true"}, "10.0.0.3"),
    ]
    monkeypatch.setattr(certificates, "describe_nodes", lambda lab: nodes)
    asked: list[Any] = []
    answers = {"10.0.0.2": 7, "10.0.0.3": None}
    monkeypatch.setattr(
        certificates,
        "served_serial",
        lambda address, port, name: asked.append((address, port, name)) or answers[address],
    )
    assert certificates.edge_serials(LAB, stack, "analytics.example.org") == {"node2": 7, "node3": None}
    assert asked == [("10.0.0.2", 443, "analytics.example.org"), ("10.0.0.3", 443, "analytics.example.org")]
