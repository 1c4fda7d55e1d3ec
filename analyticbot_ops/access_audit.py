"""Audit rules for who may do what: the database role each service logs in as, the breadth of the API's Redis
user, which paths the proxy routes publicly, and how it treats names it does not serve.

Rules are data (an id, what it requires and why), checked over plain inputs: the merged compose file, the
proxy's nginx configuration text, the Redis ACL rules, and, for a running stack, the roles PostgreSQL reports.
Findings are `audit.Finding`s, so exceptions and reports work as for the CIS checks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import docker, model, secrets
from .audit import Finding
from .compose import Stack
from .model import Labels
from .paths import REPO_ROOT

NGINX_DIR = REPO_ROOT / "nginx"
# The services that log in to PostgreSQL at run time (the migrate job is the owner's, on purpose).
DATABASE_CLIENTS = model.DATABASE_CLIENTS


@dataclass(frozen=True)
class Rule:
    id: str
    requires: str
    reason: str


RULES: Mapping[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "AB-DBROLE",
            "each service logs in to PostgreSQL as its own role, not the owner, and that role is no superuser",
            "a service holding the owner's or a superuser's login can drop every table and read every file the "
            "server can; a compromised API must be able to do no more than the API does",
        ),
        Rule(
            "AB-REDISACL",
            "the API's Redis user may use only its own key patterns and commands, nothing @dangerous",
            "with ~* +@all a compromised API can CONFIG SET, FLUSHALL, SHUTDOWN or read every key",
        ),
        Rule(
            "AB-METRICS",
            "metrics and performance endpoints are not routed through the public proxy",
            "they disclose pool sizes, cache ratios and timings that help an attacker, and are for scraping "
            "from inside the stack",
        ),
        Rule(
            "AB-HOST",
            "the proxy answers only its own names and never builds a redirect from the Host header",
            "a reflected Host is an open redirect and cache-poisoning vector; a default server that serves any "
            "name or SNI invites host-header attacks",
        ),
    )
}


def _finding(rule_id: str, target: str, ok: bool, good: str, bad: str) -> Finding:
    return Finding(rule_id, target, ok, good if ok else f"{bad} ({RULES[rule_id].reason})")


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # Compose's list form, KEY=VALUE
        env = dict(item.split("=", 1) for item in env if "=" in item)
    return {str(k): str(v) for k, v in env.items()}


def _secrets(service: Mapping[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else str(s.get("source")) for s in service.get("secrets") or []}


def database_role_findings(config: Mapping[str, Any]) -> list[Finding]:
    """AB-DBROLE over a merged compose file: the clients' users and password secrets are not the owner's."""
    services = config.get("services") or {}
    owner = _environment(services.get("postgres") or {}).get("POSTGRES_USER", "postgres")
    findings = []
    for name in DATABASE_CLIENTS:
        if name not in services:
            continue
        user = _environment(services[name]).get("POSTGRES_USER", "")
        holds_owner_secret = "postgres_password" in _secrets(services[name])
        ok = bool(user) and user != owner and not holds_owner_secret
        bad = f"logs in as {user or 'an unset user'}" + (", holds the owner's password" if holds_owner_secret else "")
        findings.append(_finding("AB-DBROLE", name, ok, f"own role {user}", bad))
    return findings


def live_role_findings(roles: Mapping[str, tuple[str, bool]]) -> list[Finding]:
    """AB-DBROLE on a running stack: service -> (the role it logs in as, whether PostgreSQL says superuser)."""
    return [
        _finding("AB-DBROLE", service, not superuser, f"role {role}: not a superuser", f"role {role} is a superuser")
        for service, (role, superuser) in sorted(roles.items())
    ]


_TOO_BROAD = re.compile(r"(^|\s)(~\*|allkeys|\+@all|allcommands|\+@dangerous|\+@admin)(\s|$)")


def redis_acl_finding(rules: str) -> Finding:
    """AB-REDISACL over the API user's ACL rules (`ACL GETUSER`'s or the ones the toolkit writes)."""
    broad = _TOO_BROAD.search(rules)
    denies_dangerous = "-@dangerous" in rules or "-@all" in rules
    ok = broad is None and denies_dangerous
    bad = f"grants {broad.group(2)}" if broad else "does not deny @dangerous"
    return _finding("AB-REDISACL", "redis", ok, "only its keys and commands, -@dangerous", bad)


def _server_blocks(conf: str) -> list[str]:
    """The text of each top-level `server { ... }` block (brace-matched; comments dropped)."""
    text = re.sub(r"#[^\n]*", "", conf)
    blocks, position = [], 0
    while (start := text.find("server {", position)) >= 0:
        depth, end = 0, len(text) - 1
        for index in range(text.index("{", start), len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                end = index
                break
        blocks.append(text[start : end + 1])
        position = end + 1
    return blocks


def nginx_findings(conf: str, target: str = "proxy") -> list[Finding]:
    """AB-METRICS and AB-HOST over the proxy's server configuration text."""
    blocks = _server_blocks(conf)
    http, https = model.PROXY_HTTP_PORT, model.PROXY_HTTPS_PORT
    public = [b for b in blocks if re.search(rf"listen\s+{https}\b", b) and "ssl_reject_handshake" not in b]
    blocked = all(
        re.search(r"location\s+~\s+\^/\(api\|bot\|mtproto\)/\(metrics\|performance\)/\?\$\s*\{\s*return\s+404;", b)
        for b in public
    )
    findings = [
        _finding(
            "AB-METRICS", target, bool(public) and blocked, "metrics and performance answer 404", "metrics are routed"
        )
    ]
    reflects = re.search(r"return\s+30[1278][^;]*\$(host|http_host)\b", conf)
    http_default = any(re.search(rf"listen\s+{http}\s+default_server", b) and "return 444" in b for b in blocks)
    tls_default = any(
        re.search(rf"listen\s+{https}[^;]*default_server", b) and "ssl_reject_handshake on" in b for b in blocks
    )
    ok = not reflects and http_default and tls_default
    missing = [
        what
        for what, present in (
            ("redirects use the Host header", bool(reflects)),
            ("no port-80 default server returning 444", not http_default),
            ("no TLS default server rejecting unknown SNI", not tls_default),
        )
        if present
    ]
    findings.append(
        _finding("AB-HOST", target, ok, "only its names; redirects to the configured name", "; ".join(missing))
    )
    return findings


def proxy_configuration(directory: Path = NGINX_DIR) -> str:
    """The proxy's server blocks as the image ships them."""
    return "\n".join(p.read_text() for p in sorted((directory / "conf.d").glob("*.conf")))


def static_findings(config: Mapping[str, Any], redis_rules: str) -> list[Finding]:
    """The rules a merged compose file and the toolkit's own ACL rules can answer, before anything runs."""
    return [*database_role_findings(config), redis_acl_finding(redis_rules)]


def live_findings(stack: Stack, infos: list[dict[str, Any]]) -> list[Finding]:
    """AB-DBROLE and AB-REDISACL as the running stack answers them: the role each database client logs in
    as, and whether PostgreSQL calls it a superuser; the rules Redis holds for the API's user."""
    by_service = {i["Config"]["Labels"].get(Labels.SERVICE): i for i in infos}
    findings: list[Finding] = []
    postgres, redis = by_service.get("postgres"), by_service.get("redis")
    users = {
        service: dict(item.split("=", 1) for item in by_service[service]["Config"]["Env"]).get("POSTGRES_USER", "")
        for service in DATABASE_CLIENTS
        if service in by_service
    }
    if postgres is not None and users:
        # Role names only on this command line (they are not secrets); the query runs as the owner in the container.
        query = "SELECT rolname || '|' || rolsuper::text FROM pg_roles"
        psql = ["psql", "-U", model.DATABASE_OWNER, "-d", model.DATABASE, "-tA"]
        result = docker.docker(["exec", "-i", postgres["Name"].lstrip("/"), *psql], input_bytes=query.encode() + b";")
        superuser = dict(line.split("|") for line in result.stdout.split() if "|" in line)
        findings += live_role_findings(
            # A role PostgreSQL does not know counts as failing: nothing vouches for it.
            {service: (user, superuser.get(user, "true") != "false") for service, user in users.items()}
        )
    if redis is not None:
        # The ops user's password goes in on stdin, never on a command line.
        admin = secrets.read_secret("redis_admin_password", Path(stack.settings["SECRETS_DIR"]))
        result = docker.docker(
            ["exec", "-i", redis["Name"].lstrip("/"), "redis-cli", "-h", "127.0.0.1", "--no-auth-warning"],
            input_bytes=f"AUTH {model.REDIS_USERS['redis_admin_password']} {admin}\nACL LIST\n".encode(),
        )
        app_user = f"user {model.REDIS_USERS['redis_password']} "
        line = next((entry for entry in result.stdout.splitlines() if entry.startswith(app_user)), "")
        findings.append(redis_acl_finding(line))
    return findings
