"""The access rules of the audit, each against a bad and a good input, and against the real files."""

from __future__ import annotations

from analyticbot_ops import access_audit, secrets

GOOD_CONF = """
server { listen 8080 default_server; server_name _; return 444; }
server { listen 8443 ssl http2 default_server; server_name _; ssl_reject_handshake on; return 444; }
server { listen 8080; include names.inc; location / { return 301 https://$public_name$request_uri; } }
server {
    listen 8443 ssl http2;
    location ~ ^/(api|bot|mtproto)/(metrics|performance)/?$ {
        return 404;
    }
    location /api/ { proxy_pass http://api:8000; }
}
"""


def _config(api_user: str = "analyticbot_api", api_secrets: tuple[str, ...] = ("postgres_api_password",)) -> dict:
    return {
        "services": {
            "postgres": {"environment": {"POSTGRES_USER": "analyticbot"}},
            "api": {"environment": {"POSTGRES_USER": api_user}, "secrets": [{"source": s} for s in api_secrets]},
            "mtproto": {"environment": ["POSTGRES_USER=analyticbot_collector"], "secrets": ["telegram_session"]},
        }
    }


def _results(findings: list) -> dict[tuple[str, str], bool]:
    return {(f.check, f.target): f.ok for f in findings}


def test_a_service_logging_in_as_the_owner_or_holding_its_password_fails() -> None:
    assert all(f.ok for f in access_audit.database_role_findings(_config()))
    as_owner = _results(access_audit.database_role_findings(_config(api_user="analyticbot")))
    assert as_owner == {("AB-DBROLE", "api"): False, ("AB-DBROLE", "mtproto"): True}
    holding = access_audit.database_role_findings(_config(api_secrets=("postgres_password",)))
    assert not holding[0].ok and "holds the owner's password" in holding[0].detail
    assert "can drop every table" in holding[0].detail  # the rule's reason travels with the finding


def test_a_superuser_runtime_role_fails_on_a_running_stack() -> None:
    findings = access_audit.live_role_findings({"api": ("analyticbot", True), "mtproto": ("collector", False)})
    assert _results(findings) == {("AB-DBROLE", "api"): False, ("AB-DBROLE", "mtproto"): True}


def test_a_broad_redis_acl_fails_and_the_toolkits_own_passes() -> None:
    assert access_audit.redis_acl_finding(secrets.REDIS_APP_RULES).ok
    for broad in (
        "on #abc ~* &* +@all",
        "on #abc ~summary:* +@all",
        "on #abc allkeys -@all +get",
        "on #abc ~* -@all +get",
    ):
        assert not access_audit.redis_acl_finding(broad).ok, broad
    assert access_audit.redis_acl_finding("on #abc ~summary:* -@all +get").ok
    assert not access_audit.redis_acl_finding("on #abc ~summary:* +get +set").ok  # nothing denied


def test_routed_metrics_and_host_reflection_fail() -> None:
    assert all(f.ok for f in access_audit.nginx_findings(GOOD_CONF))
    routed = GOOD_CONF.replace("(metrics|performance)", "(status)")
    assert _results(access_audit.nginx_findings(routed))[("AB-METRICS", "proxy")] is False
    reflected = GOOD_CONF.replace("$public_name", "$host")
    host = {f.check: f for f in access_audit.nginx_findings(reflected)}["AB-HOST"]
    assert not host.ok and "redirects use the Host header" in host.detail
    open_default = GOOD_CONF.replace("ssl_reject_handshake on;", "")
    assert not {f.check: f for f in access_audit.nginx_findings(open_default)}["AB-HOST"].ok


def test_the_shipped_proxy_configuration_passes() -> None:
    assert all(f.ok for f in access_audit.nginx_findings(access_audit.proxy_configuration()))
