"""The Swarm stack in the audit (swarm/audit.py): the prod stack rendered as `swarm.deploy` would render it, from
placeholder secret files and the settings' image tags, through the CIS container checks; and the checks only Swarm
needs: AB-SWARM-DNSRR, AB-SWARM-SECRETS, AB-SWARM-DATA. The merged compose config comes from
tests/unit/swarm_support.py: no Compose, no Docker."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import audit, compose, model
from analyticbot_ops.audit import Finding
from analyticbot_ops.cli import audit as audit_cli
from analyticbot_ops.config import DEFAULTS
from analyticbot_ops.errors import BadInput
from analyticbot_ops.paths import COMPOSE_DIR
from analyticbot_ops.swarm import audit as swarm_audit
from analyticbot_ops.swarm import render
from tests.unit import swarm_support as support
from tests.unit.cli_support import context, isolated_tasks

# The stack these tests render: the base files, without the monitoring and backup overlays (the backup overlay
# has its own tests below).
SWARM_SERVICES = model.services(monitoring=False, backup=False)

P = support.PROJECT
ALL_SECRETS = sorted({name for s in SWARM_SERVICES for name in support.swarm_secrets(s)})
UID = str(model.APP_UID)


@pytest.fixture
def stack(tmp_path: Path) -> compose.Stack:
    """prod's settings; the secrets and TLS folders they name do not exist: the audit must not need them."""
    settings = {**support.settings(tmp_path), "HTTP_PORT": "8080", "HTTPS_PORT": "8443"}
    return compose.Stack("prod", P, settings)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[compose.Stack]:
    """compose.merged_config answered from the real compose files, as `docker-compose config` prints them."""
    asked: list[compose.Stack] = []

    def merged(stack: compose.Stack) -> dict[str, Any]:
        asked.append(stack)
        return support.merged_config(stack.settings, stack.env, monitoring=stack.monitoring, backup=stack.backup)

    monkeypatch.setattr(compose, "merged_config", merged)
    return asked


@pytest.fixture
def rendered(stack: compose.Stack, asked: list[compose.Stack]) -> dict[str, Any]:
    return swarm_audit.rendered(stack)


# --- rendered -------------------------------------------------------------------------------------------


def test_the_rendered_stack_is_the_prod_config_with_the_settings_image_tags(
    stack: compose.Stack, asked: list[compose.Stack], rendered: dict[str, Any]
) -> None:
    assert asked == [stack]
    assert rendered["version"] == render.STACK_VERSION
    assert set(rendered["services"]) == {s.name for s in SWARM_SERVICES} | {render.EDGE_TLS}
    for name, service in rendered["services"].items():
        # The tags the settings name, not digests: the audit reads the images' own facts by tag.
        assert service["image"] == support.IMAGES[render.spec_of(name).image_variable], name
    assert [p["published"] for p in rendered["services"]["proxy"]["ports"]] == [8080, 8443]
    assert rendered["services"]["postgres"]["command"] == ["postgres", "-c", "unix_socket_directories=/tmp"]
    assert rendered["configs"]["redis_conf"]["file"] == str(COMPOSE_DIR / "redis" / "redis.conf")


def test_every_secret_is_a_placeholder_file_in_a_scratch_folder_gone_afterwards(
    stack: compose.Stack, rendered: dict[str, Any]
) -> None:
    declared = rendered["secrets"]
    # Every secret a service reads, present or not in the real folder, and the TLS pair.
    assert set(declared) == {*ALL_SECRETS, "tls_fullchain", "tls_privkey"}
    for name, secret in declared.items():
        assert secret["name"] == render.versioned(P, name, b"placeholder"), name
        assert not Path(secret["file"]).exists()  # the scratch folder is removed once rendered
    folders = {Path(s["file"]).parent for s in declared.values()}
    assert len(folders) == 1 and not str(folders.pop()).startswith(stack.settings["SECRETS_DIR"])
    assert Path(declared["tls_privkey"]["file"]).name == "privkey.pem"
    assert not Path(stack.settings["SECRETS_DIR"]).exists()  # the real folder was neither read nor made


def test_every_mounted_secret_is_its_services_alone(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        mounted = {s["source"] for s in service.get("secrets") or []}
        # The backup overlay's settings files are not among them: the overlay is off in this stack.
        # The TLS pair is edge-tls's to hand to the proxy (render.py): the proxy itself mounts none.
        reads = set(support.swarm_secrets(model.BY_NAME[name])) if name in model.BY_NAME else set()
        expected = {"tls_fullchain", "tls_privkey"} if name == render.EDGE_TLS else set() if name == "proxy" else reads
        assert mounted == expected, name
        assert all(s["mode"] == 0o400 and s["uid"] == UID for s in service.get("secrets") or []), name


def test_a_compose_error_is_the_audits_error(monkeypatch: pytest.MonkeyPatch, stack: compose.Stack) -> None:
    def refuse(s: compose.Stack) -> dict[str, Any]:
        raise BadInput("the prod compose files do not merge: services.api.image must be a string")

    monkeypatch.setattr(compose, "merged_config", refuse)
    with pytest.raises(BadInput, match="do not merge"):
        swarm_audit.rendered(stack)


def test_the_audit_task_renders_the_swarm_stack_with_the_overlays_ops_turns_on(
    monkeypatch: pytest.MonkeyPatch, asked: list[compose.Stack], tmp_path: Path, capsys: Any
) -> None:
    """The swarm report audits the stack swarm.deploy would run: with the backup overlay's services, as prod's
    own report has them (ops.backup and ops.monitoring are on by default); the defaults' exceptions excuse
    what Swarm cannot express, and nothing else fails."""
    monkeypatch.setattr(audit_cli, "image_report", lambda running, exceptions: audit.make_report("images", [], []))
    with isolated_tasks(monkeypatch, tmp_path):
        audit_cli.run(context(), env="prod", json=True)
    # prod's own report, the swarm stack and the k8s set each merge prod's files.
    assert [(s.env, s.monitoring, s.backup) for s in asked] == [("prod", True, True)] * 3
    reports = {r["name"]: r for r in json.loads(capsys.readouterr().out)["reports"]}
    services = {s.name for s in model.services(monitoring=True, backup=True)}
    swarm = reports["swarm"]
    assert {f["target"] for f in reports["prod"]["findings"]} == services
    assert {f["target"] for f in swarm["findings"]} == services | {render.EDGE_TLS}  # the proxy's part on Swarm
    assert swarm["failed"] == 0
    backup_checks = {(f["check"], f["target"]) for f in swarm["findings"] if f["target"] in model.BACKUPS}
    assert {("AB-SWARM-DNSRR", name) for name in model.BACKUPS} <= backup_checks
    assert {("AB-SWARM-SECRETS", name) for name in model.BACKUPS} <= backup_checks


def test_with_ops_backup_off_the_swarm_report_has_no_backup_service(
    monkeypatch: pytest.MonkeyPatch, asked: list[compose.Stack], tmp_path: Path, capsys: Any
) -> None:
    monkeypatch.setattr(audit_cli, "image_report", lambda running, exceptions: audit.make_report("images", [], []))
    with isolated_tasks(monkeypatch, tmp_path):
        audit_cli.run(context(backup=False), env="prod", json=True)
    assert [s.backup for s in asked] == [False, False, False]
    reports = {r["name"]: r for r in json.loads(capsys.readouterr().out)["reports"]}
    targets = {f["target"] for f in reports["swarm"]["findings"]}
    assert "postgres" in targets and not targets & set(model.BACKUPS)


# --- through the CIS container checks -------------------------------------------------------------------


def _report(rendered: dict[str, Any], exceptions: list[Any]) -> audit.Report:
    findings = audit.audit_compose(rendered, audit_cli.facts_by_service(rendered, support.NAMESPACE))
    findings += swarm_audit.swarm_findings(rendered)
    return audit.make_report(swarm_audit.ENV, findings, audit.parse_exceptions(exceptions))


@pytest.mark.parametrize(("http", "https"), [("80", "443"), ("8080", "8443")])
def test_what_swarm_cannot_express_fails_and_only_the_configured_exceptions_excuse_it(
    stack: compose.Stack, asked: list[compose.Stack], http: str, https: str
) -> None:
    stack.settings.update(HTTP_PORT=http, HTTPS_PORT=https)
    rendered = swarm_audit.rendered(stack)
    bare = _report(rendered, [])
    failed = {(f.check, f.target) for f in bare.findings if f.result == "FAIL"}
    services = {s.name for s in SWARM_SERVICES} | {render.EDGE_TLS}
    # no-new-privileges everywhere (security_opt ignored), no bounded restart count (the orchestrator replaces
    # tasks; the job retries 10 times), the migrate job's healthcheck, the proxy's host ports on every address
    # (and below 1024 when prod publishes 80 and 443).
    assert failed == {
        *(("5.26", name) for name in services),
        *(("5.15", name) for name in services),
        ("5.27", "migrate"),
        ("5.14", "proxy"),
        *([("5.8", "proxy")] if http == "80" else []),
    }

    excused = _report(rendered, DEFAULTS["ops"]["audit_exceptions"])
    assert not excused.failed
    assert {(f.check, f.target) for f in excused.findings if f.result == "excepted"} == failed
    assert {f.target for f in excused.findings} == services
    assert all(f.result == "pass" for f in excused.findings if f.check.startswith("AB-SWARM"))


# --- swarm_findings ---------------------------------------------------------------------------------------


def test_the_rendered_stack_passes_every_swarm_rule(rendered: dict[str, Any]) -> None:
    found = swarm_audit.swarm_findings(rendered)
    assert all(f.ok for f in found), [f for f in found if not f.ok]
    by_rule: dict[str, set[str]] = {}
    for f in found:
        by_rule.setdefault(f.check, set()).add(f.target)
    assert by_rule == {
        "AB-SWARM-DNSRR": {s.name for s in SWARM_SERVICES} | {render.EDGE_TLS},
        "AB-SWARM-SECRETS": {n for n, s in rendered["services"].items() if s.get("secrets")},
        "AB-SWARM-DATA": {"postgres", "redis"},
    }
    edge_tls = next(f for f in found if (f.check, f.target) == ("AB-SWARM-SECRETS", render.EDGE_TLS))
    assert edge_tls.detail == f"2 secrets 0400 uid {UID}"
    postgres = [f for f in found if f.target == "postgres"]
    assert [(f.check, f.detail) for f in postgres] == [
        ("AB-SWARM-DNSRR", "endpoint_mode dnsrr"),
        ("AB-SWARM-SECRETS", f"{len(rendered['services']['postgres']['secrets'])} secrets 0400 uid {UID}"),
        ("AB-SWARM-DATA", "on the data node"),
    ]


def test_a_vip_a_world_readable_secret_and_an_unpinned_database_each_fail_their_rule(
    rendered: dict[str, Any],
) -> None:
    broken = copy.deepcopy(rendered)
    broken["services"]["api"]["deploy"]["endpoint_mode"] = "vip"
    first = broken["services"]["redis"]["secrets"][0]
    first["mode"] = 0o444  # Swarm's default
    del broken["services"]["postgres"]["deploy"]["placement"]
    failed = [f for f in swarm_audit.swarm_findings(broken) if not f.ok]
    assert failed == [
        Finding("AB-SWARM-DATA", "postgres", False, "unpinned"),
        Finding("AB-SWARM-SECRETS", "redis", False, f"loose: {first['source']}"),
        Finding("AB-SWARM-DNSRR", "api", False, "endpoint_mode vip"),
    ]


def _one(name: str, **service: Any) -> list[Finding]:
    return swarm_audit.swarm_findings({"services": {name: service}})


def test_dnsrr_passes_only_for_dnsrr_and_no_endpoint_mode_is_swarms_vip() -> None:
    assert _one("bot", deploy={"endpoint_mode": "dnsrr"}) == [
        Finding("AB-SWARM-DNSRR", "bot", True, "endpoint_mode dnsrr")
    ]
    assert _one("bot", deploy={"endpoint_mode": "vip"}) == [
        Finding("AB-SWARM-DNSRR", "bot", False, "endpoint_mode vip")
    ]
    assert _one("bot") == _one("bot", deploy=None) == [Finding("AB-SWARM-DNSRR", "bot", False, "endpoint_mode vip")]


@pytest.mark.parametrize(
    ("secret", "ok"),
    [
        ({"source": "x", "mode": 0o400, "uid": UID, "gid": UID}, True),
        ({"source": "x", "mode": 0o444, "uid": UID}, False),  # readable by every user in the container
        ({"source": "x", "mode": 0o440, "uid": UID}, False),
        ({"source": "x", "uid": UID}, False),  # no mode: Swarm's 0444
        ({"source": "x", "mode": 0o400}, False),  # no uid: root's, unreadable by the service
        ({"source": "x", "mode": 0o400, "uid": "0"}, False),
    ],
    ids=["0400-uid", "0444", "0440", "no-mode", "no-uid", "root"],
)
def test_a_secret_passes_only_at_0400_owned_by_the_app_user(secret: dict[str, Any], ok: bool) -> None:
    found = _one("bot", deploy={"endpoint_mode": "dnsrr"}, secrets=[secret])
    assert found[1] == Finding("AB-SWARM-SECRETS", "bot", ok, f"1 secrets 0400 uid {UID}" if ok else "loose: x")


def test_only_the_loose_secrets_are_named_and_a_service_without_secrets_has_no_finding() -> None:
    good = {"source": "jwt_secret_key", "mode": 0o400, "uid": UID}
    found = _one(
        "api", deploy={"endpoint_mode": "dnsrr"}, secrets=[good, {"source": "a"}, {"source": "b", "mode": 0o444}]
    )
    assert found[1] == Finding("AB-SWARM-SECRETS", "api", False, "loose: a, b")
    assert [f.check for f in _one("api", deploy={"endpoint_mode": "dnsrr"}, secrets=[])] == ["AB-SWARM-DNSRR"]


@pytest.mark.parametrize(
    ("placement", "ok"),
    [
        ({"constraints": [render.DATA_CONSTRAINT]}, True),
        ({"constraints": ["node.role == manager", render.DATA_CONSTRAINT]}, True),
        ({"constraints": ["node.role == manager"]}, False),  # pinned, but not to the node with the volumes
        ({"constraints": ["node.labels.analyticbot.data==true"]}, False),  # not the constraint the lab labels
        ({"constraints": None}, False),
        ({}, False),
        (None, False),
    ],
)
def test_a_data_service_passes_only_with_the_data_node_constraint(placement: Any, ok: bool) -> None:
    for name in ("postgres", "redis"):
        found = _one(name, deploy={"endpoint_mode": "dnsrr", "placement": placement})
        assert found[-1] == Finding("AB-SWARM-DATA", name, ok, "on the data node" if ok else "unpinned")


def test_the_backup_agent_sits_with_the_data_and_the_repository_host_away_from_it() -> None:
    def data_finding(name: str, constraints: list[str]) -> Finding:
        return _one(name, deploy={"endpoint_mode": "dnsrr", "placement": {"constraints": constraints}})[-1]

    assert data_finding("backup-agent", [render.DATA_CONSTRAINT]).ok
    assert data_finding("backup-agent", []) == Finding("AB-SWARM-DATA", "backup-agent", False, "unpinned")
    assert data_finding("backup-repo", [render.OFF_DATA_CONSTRAINT]).ok
    # On the database's node, repository 2 would go with that node's disk.
    assert data_finding("backup-repo", [render.DATA_CONSTRAINT]) == Finding(
        "AB-SWARM-DATA", "backup-repo", False, "may share it"
    )


def test_services_that_keep_no_data_need_no_placement() -> None:
    for name in ("api", "bot", "mtproto", "proxy", "migrate"):
        assert [f.check for f in _one(name, deploy={"endpoint_mode": "dnsrr"})] == ["AB-SWARM-DNSRR"]


# --- the backup overlay ---------------------------------------------------------------------------------------

BACKED_SERVICES = model.services(monitoring=False, backup=True)


@pytest.fixture
def backed(stack: compose.Stack, asked: list[compose.Stack]) -> dict[str, Any]:
    """prod's stack with the backup overlay, rendered as the audit renders it (placeholder TLS files too)."""
    stack.backup = True
    return swarm_audit.rendered(stack)


def test_with_the_backup_overlay_its_services_and_tls_files_are_rendered_from_placeholders(
    stack: compose.Stack, backed: dict[str, Any]
) -> None:
    assert set(backed["services"]) == {s.name for s in BACKED_SERVICES} | {render.EDGE_TLS}
    tls = {name: secret for name, secret in backed["secrets"].items() if name.startswith("backup_tls_")}
    assert set(tls) == {
        "backup_tls_ca_crt",
        "backup_tls_backup_agent_crt",
        "backup_tls_backup_agent_key",
        "backup_tls_backup_repo_crt",
        "backup_tls_backup_repo_key",
    }
    for name, secret in tls.items():
        assert secret["name"] == render.versioned(P, name, b"placeholder"), name
        assert not Path(secret["file"]).exists()  # the scratch folder is gone once rendered
    assert {"pgbackrest_db_conf", "pgbackrest_repo_conf"} <= set(backed["secrets"])
    assert not Path(stack.settings["SECRETS_DIR"]).exists()  # the real folder was neither read nor made


def test_with_the_backup_overlay_the_rendered_stack_passes_every_swarm_rule(backed: dict[str, Any]) -> None:
    found = swarm_audit.swarm_findings(backed)
    assert all(f.ok for f in found), [f for f in found if not f.ok]
    by_rule: dict[str, set[str]] = {}
    for f in found:
        by_rule.setdefault(f.check, set()).add(f.target)
    assert by_rule == {
        "AB-SWARM-DNSRR": {s.name for s in BACKED_SERVICES} | {render.EDGE_TLS},
        "AB-SWARM-SECRETS": {n for n, s in backed["services"].items() if s.get("secrets")},
        "AB-SWARM-DATA": {"postgres", "redis", "backup-agent", "backup-repo"},
    }
    assert set(model.BACKUPS) <= by_rule["AB-SWARM-SECRETS"]
    # The database side mounts its password, its pgBackRest settings and its three TLS files; the agent and the
    # repository host their settings and their three.
    details = {f.target: f.detail for f in found if f.check == "AB-SWARM-SECRETS"}
    assert details["postgres"] == f"5 secrets 0400 uid {UID}"
    assert details["backup-agent"] == details["backup-repo"] == f"4 secrets 0400 uid {UID}"


def test_with_the_backup_overlay_only_the_configured_exceptions_excuse_what_fails(backed: dict[str, Any]) -> None:
    bare = _report(backed, [])
    failed = {(f.check, f.target) for f in bare.findings if f.result == "FAIL"}
    # The backup services fail what every service fails on Swarm, and nothing more.
    assert {(check, name) for check, name in failed if name in model.BACKUPS} == {
        (check, name) for check in ("5.15", "5.26") for name in model.BACKUPS
    }
    excused = _report(backed, DEFAULTS["ops"]["audit_exceptions"])
    assert not excused.failed
    assert {f.target for f in excused.findings} == {s.name for s in BACKED_SERVICES} | {render.EDGE_TLS}
