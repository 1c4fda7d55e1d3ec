"""The `tls` tasks (cli/tls.py): dev and status for real in a tmp_path TLS_DIR; prod, renew and setup with
certbot's side (acme.obtain, acme.renew) replaced, so no Docker. What each prints, refuses and exits with."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from analyticbot_ops import acme, compose, tls
from analyticbot_ops.cli import tls as tls_cli
from analyticbot_ops.swarm import certificates as swarm_certificates
from tests.unit.cli_support import context, fails
from tests.unit.cli_support import no_docker as no_docker  # autouse: each test's tasks run isolated


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    return tmp_path / "tls"


# --- dev, status (no stack) --------------------------------------------------------------------------------


def test_dev_creates_a_ca_and_leaf_then_keeps_them(tls_dir: Path, capsys: Any) -> None:
    tls_cli.dev(context(), name=["api.local"], days="90")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"created: {tls_dir / 'fullchain.pem'} (the CA was (re)created)"
    assert lines[1].startswith("names: localhost, 127.0.0.1, ::1, api.local; valid until ")
    assert any("curl --cacert" in line and str(tls_dir / "ca.crt") in line for line in lines)
    assert (tls_dir / "privkey.pem").is_file()
    tls_cli.dev(context(), name=["api.local"], days="90")
    assert capsys.readouterr().out.startswith(f"kept: {tls_dir / 'fullchain.pem'} (kept: valid")


def test_dev_refuses_a_lifetime_out_of_range_or_not_a_number(tls_dir: Path) -> None:
    assert "--days must be between 31 and 366" in fails(2, tls_cli.dev, context(), days="400")
    assert "--days must be a whole number, got 'a year'" in fails(2, tls_cli.dev, context(), days="a year")
    assert not (tls_dir / "fullchain.pem").exists()


def test_status_of_the_dev_certificate_as_a_table_and_as_json(tls_dir: Path, capsys: Any) -> None:
    tls_cli.dev(context(), days="100")
    capsys.readouterr()
    tls_cli.status(context())
    text = capsys.readouterr().out
    assert str(tls_dir / "fullchain.pem") in text and "localhost, 127.0.0.1, ::1" in text
    assert " 99 " in text or " 100 " in text  # days left
    assert "key matches" in text and "chain verifies" in text and "NO" not in text
    tls_cli.status(context(), json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["sans"] == ["localhost", "127.0.0.1", "::1"] and data["key_matches"] and data["chain_ok"]


def test_status_exits_1_when_it_expires_within_warn_days(tls_dir: Path, capsys: Any) -> None:
    tls_cli.dev(context(), days="100")
    message = fails(1, tls_cli.status, context(), warn_days="200")
    assert message.startswith("error: expires in ") and message.endswith(" days (warning below 200)")
    assert "days left" in capsys.readouterr().out  # the table before the line


def test_status_of_a_mismatched_key_says_no(tls_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    bad = tls.CertStatus(
        tls_dir / "fullchain.pem",
        "CN=bot.example.com",
        "CN=R3",
        ("bot.example.com",),
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 4, 1, 12, 30, tzinfo=UTC),
        80,
        30,
        False,
        False,
        1,
        False,
        ("privkey.pem does not match the certificate", "fullchain.pem holds only the leaf"),
    )
    monkeypatch.setattr(tls_cli.tls, "certificate_status", lambda d, warn_days: bad)
    message = fails(1, tls_cli.status, context(), env="prod")
    assert message == "error: privkey.pem does not match the certificate; fullchain.pem holds only the leaf"
    text = capsys.readouterr().out
    assert "2030-04-01 12:30 UTC" in text and text.count("NO") == 2


def test_status_without_a_certificate_is_bad_input(tls_dir: Path) -> None:
    assert "no certificate at" in fails(2, tls_cli.status, context())


# --- prod, renew (certbot beside the proxy) ----------------------------------------------------------------

SERVED = SimpleNamespace(sans=("bot.example.com",), issuer="CN=R3,O=Let's Encrypt", days_left=89, key_matches=True)


@pytest.fixture
def obtained(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    monkeypatch.setattr("analyticbot_ops.releases.pinned_settings", lambda unnamed, state_dir=None: {})

    def obtain(stack: compose.Stack, request: acme.AcmeRequest, progress: Any) -> Any:
        seen.append((stack.env, stack.project, request, progress))
        return SERVED

    monkeypatch.setattr(tls_cli.acme, "obtain", obtain)
    return seen


def test_prod_obtains_through_the_stack_and_prints_what_is_served(
    obtained: list[Any], tmp_path: Path, capsys: Any
) -> None:
    bundle = tmp_path / "pebble.pem"
    tls_cli.prod(
        context(),
        "bot.example.com",
        email="ops@example.com",
        server="https://pebble:14000/dir",
        ca_bundle=str(bundle),
        allow_test_domain=True,
    )
    ((env, project, request, progress),) = obtained
    assert (env, project, progress) == ("prod", "analyticbot", tls_cli.progress)
    assert request == acme.AcmeRequest(
        "bot.example.com", "ops@example.com", False, "https://pebble:14000/dir", bundle, allow_test_domain=True
    )
    assert capsys.readouterr().out.strip() == (
        "serving bot.example.com issued by CN=R3,O=Let's Encrypt, 89 days left, key matches"
    )


def test_prod_on_staging_with_a_key_that_does_not_match(
    obtained: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(
        tls_cli.acme,
        "obtain",
        lambda stack, request, progress: SimpleNamespace(**{**vars(SERVED), "key_matches": False}),
    )
    tls_cli.prod(context(), "bot.example.com", env="staging", staging=True)
    assert "key DOES NOT match" in capsys.readouterr().out


def test_prod_refuses_dev_and_a_name_acme_cannot_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("analyticbot_ops.releases.pinned_settings", lambda unnamed, state_dir=None: {})
    message = fails(2, tls_cli.prod, context(), "bot.example.com", env="dev")
    assert message == "error: tls.prod is for staging and prod; dev uses the local CA (`invoke tls.dev`)"
    # The library's own checks (not replaced) refuse before the stack is asked anything.
    assert "is a localhost name" in fails(2, tls_cli.prod, context(), "localhost")
    assert "no CA bundle at /nonexistent/ca.pem" in fails(
        2, tls_cli.prod, context(), "bot.example.com", ca_bundle="/nonexistent/ca.pem"
    )


def test_renew_reports_what_was_renewed_and_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    seen: list[Any] = []
    report = acme.RenewReport(tls.RenewOutcome(("bot.example.com",), ("other.example.com",), ()), ("bot.example.com",))
    monkeypatch.setattr("analyticbot_ops.releases.pinned_settings", lambda unnamed, state_dir=None: {})
    monkeypatch.setattr(tls_cli.acme, "renew", lambda stack, **kw: seen.append((stack.project, kw)) or report)
    bundle = tmp_path / "ca.pem"
    tls_cli.renew(context(), force_renewal=True, server="https://acme.test/dir", ca_bundle=str(bundle), env="staging")
    assert seen == [
        (
            "analyticbot-staging",
            {"force": True, "server": "https://acme.test/dir", "ca_bundle": bundle, "progress": tls_cli.progress},
        )
    ]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "renewed: renewed ['bot.example.com'], not due ['other.example.com']",
        "installed and reloaded: bot.example.com",
    ]
    tls_cli.renew(context(), json=True)
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "result": "renewed",
        "renewed": ["bot.example.com"],
        "not_due": ["other.example.com"],
        "failed": [],
        "installed": ["bot.example.com"],
    }
    assert seen[-1] == (
        "analyticbot",
        {"force": False, "server": None, "ca_bundle": None, "progress": tls_cli.progress},
    )


def test_renew_with_nothing_due(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    report = acme.RenewReport(tls.RenewOutcome((), ("bot.example.com",), ()), ())
    monkeypatch.setattr("analyticbot_ops.releases.pinned_settings", lambda unnamed, state_dir=None: {})
    monkeypatch.setattr(tls_cli.acme, "renew", lambda stack, **kw: report)
    tls_cli.renew(context())
    assert capsys.readouterr().out == "nothing due: renewed [], not due ['bot.example.com']\n"
    tls_cli.renew(context(), json=True)
    assert json.loads(capsys.readouterr().out)["result"] == "nothing due"


def test_renew_refuses_a_missing_ca_bundle_before_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("analyticbot_ops.releases.pinned_settings", lambda unnamed, state_dir=None: {})
    assert fails(2, tls_cli.renew, context(), ca_bundle="/nonexistent/ca.pem") == (
        "error: no CA bundle at /nonexistent/ca.pem"
    )


# --- setup ------------------------------------------------------------------------------------------------


def test_setup_of_dev_makes_the_local_certificate(obtained: list[Any], tls_dir: Path, capsys: Any) -> None:
    tls_cli.setup(context())
    assert capsys.readouterr().out.startswith(f"created: {tls_dir / 'fullchain.pem'}")
    assert obtained == []


def test_setup_of_prod_uses_the_domain_and_email_settings(
    obtained: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("DOMAIN", "bot.example.com")
    monkeypatch.setenv("ACME_EMAIL", "ops@example.com")
    tls_cli.setup(context(), env="prod")
    tls_cli.setup(context(), env="staging", domain="stage.example.com", email="me@example.com")
    assert [(env, r.domain, r.email) for env, _, r, _ in obtained] == [
        ("prod", "bot.example.com", "ops@example.com"),
        ("staging", "stage.example.com", "me@example.com"),
    ]
    assert "serving bot.example.com" in capsys.readouterr().out


def test_setup_of_prod_without_a_domain_is_bad_input(obtained: list[Any]) -> None:
    message = fails(2, tls_cli.setup, context(), env="prod")
    assert message == "error: no domain for prod: pass --domain or set DOMAIN in .env.prod"
    assert "unknown environment 'live'" in fails(2, tls_cli.setup, context(), env="live")
    assert obtained == []


# --- on a swarm (--context) ------------------------------------------------------------------------------------


@pytest.fixture
def on_swarm(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The swarm's side replaced: the lab found by its context, obtain and renew recorded."""
    seen: list[Any] = []
    monkeypatch.setattr("analyticbot_ops.releases.pinned_settings", lambda unnamed, state_dir=None: {})
    monkeypatch.setattr(tls_cli.docker, "require_daemon", lambda: "20.10.24")
    monkeypatch.setattr(tls_cli.swarm_lab, "target", lambda context, registry: seen.append(("lab", context)) or "LAB")
    issued = swarm_certificates.Issued(SERVED, 21.5, {"node2": 7, "node3": 7})  # type: ignore[arg-type]

    def obtain(stack: compose.Stack, lab: Any, request: acme.AcmeRequest, progress: Any) -> Any:
        seen.append(("obtain", stack.env, lab, request.domain))
        return issued

    def renew(stack: compose.Stack, lab: Any, **options: Any) -> Any:
        seen.append(("renew", lab, options["force"]))
        return (
            swarm_certificates.Renewal("renewed", issued)
            if options["force"]
            else swarm_certificates.Renewal("nothing due")
        )

    monkeypatch.setattr(tls_cli.swarm_certificates, "obtain", obtain)
    monkeypatch.setattr(tls_cli.swarm_certificates, "renew", renew)
    return seen


def test_prod_on_a_swarm_says_which_edges_serve_it(on_swarm: list[Any], capsys: Any) -> None:
    tls_cli.prod(context(), "bot.example.com", context="analyticbot-lab")
    assert on_swarm == [("lab", "analyticbot-lab"), ("obtain", "prod", "LAB", "bot.example.com")]
    out = capsys.readouterr().out
    assert "served by every edge node: node2, node3 (rolled in 21.5 s)" in out


def test_prod_on_a_swarm_checks_the_request_before_looking_for_the_swarm(on_swarm: list[Any]) -> None:
    assert "'localhost' is a localhost name" in fails(2, tls_cli.prod, context(), "localhost", context="far")
    assert "is not an email address" in fails(2, tls_cli.prod, context(), "bot.example.com", email="x", context="far")
    assert on_swarm == []


def test_renew_on_a_swarm_says_nothing_due_or_what_it_renewed(on_swarm: list[Any], capsys: Any) -> None:
    tls_cli.renew(context(), context="analyticbot-lab")
    assert capsys.readouterr().out == "nothing due: the proxies were left as they are\n"
    tls_cli.renew(context(), context="analyticbot-lab", force_renewal=True, json=True)
    assert json.loads(capsys.readouterr().out) == {"result": "renewed", "installed": ["bot.example.com"]}
    assert [call[0::2] for call in on_swarm if call[0] == "renew"] == [("renew", False), ("renew", True)]
