"""The audit task's running mode (cli/audit.py, `invoke audit.run --running`): which containers it audits, how it
asks PostgreSQL and Redis about the roles and ACLs they hold (docker exec, replaced here: no Docker), and what
it prints and exits with. The static mode and the rules themselves are tested in test_audit.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from analyticbot_ops import access_audit, compose, model
from analyticbot_ops import audit as rules
from analyticbot_ops.cli import audit as audit_cli
from analyticbot_ops.config import DEFAULTS
from analyticbot_ops.errors import BadInput
from analyticbot_ops.model import Labels
from tests.unit.cli_support import context, fails, isolated_tasks

from .secrets_support import write_raw

ADMIN = "Ops4dmin-Pa55word-Kq8Wm3Rt6Yp1"
ACL_OK = "user analyticbot on sanitize-payload #abc ~analytics:* resetchannels -@all +@read +@write -@dangerous"
ACL_BROAD = "user analyticbot on sanitize-payload #abc ~* +@all"


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setattr(rules, "run_hadolint", lambda paths: "[]")
    write_raw(tmp_path / "secrets", "redis_admin_password", ADMIN)
    with isolated_tasks(monkeypatch, tmp_path):
        yield


def container(service: str, *, running: bool = True, oneoff: bool = False, **env: str) -> dict[str, Any]:
    labels = {Labels.SERVICE: service, **({Labels.ONEOFF: "True"} if oneoff else {})}
    return {
        "Name": f"/analyticbot-dev-{service}-{'run' if oneoff else '1'}",
        "State": {"Running": running},
        "Config": {"Labels": labels, "Env": [f"{k}={v}" for k, v in env.items()] + ["PATH=/usr/bin"]},
    }


POSTGRES = container("postgres", POSTGRES_USER="analyticbot")
API = container("api", POSTGRES_USER="analyticbot_api")
MTPROTO = container("mtproto", POSTGRES_USER="analyticbot_collector")
REDIS = container("redis")


class Docker:
    """docker.docker answering `docker exec` into postgres and redis; every call recorded."""

    def __init__(self, roles: str = "analyticbot|true\nanalyticbot_api|false\n", acl: str = ACL_OK) -> None:
        self.roles, self.acl = roles, acl
        self.calls: list[tuple[list[str], bytes | None]] = []

    def __call__(self, args: list[str], *, input_bytes: bytes | None = None, **kwargs: Any) -> Any:
        self.calls.append((args, input_bytes))
        answer = self.roles if "psql" in args else f"user default off\n{self.acl}\n"
        return SimpleNamespace(returncode=0, stdout=answer, stderr="")


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> Docker:
    fake = Docker()
    monkeypatch.setattr(access_audit.docker, "docker", fake)
    return fake


def by_check(findings: list[rules.Finding]) -> dict[tuple[str, str], bool]:
    return {(f.check, f.target): f.ok for f in findings}


# --- running_containers ------------------------------------------------------------------------------------


def test_running_containers_are_the_stack_s_running_services_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    stopped = container("bot", running=False)
    oneoff = container("api", oneoff=True)
    unlabelled = {
        "Name": "/x",
        "State": {"Running": True},
        "Config": {"Labels": {Labels.PROJECT: "analyticbot-staging"}},
    }
    infos = [REDIS, stopped, oneoff, API, POSTGRES, {"Name": "/y", "State": None, "Config": None}, unlabelled]
    monkeypatch.setattr(audit_cli.compose, "project_containers", lambda project: asked.append(project) or infos)
    found = audit_cli.running_containers("staging")
    assert asked == ["analyticbot-staging"]
    assert found == [unlabelled, API, POSTGRES, REDIS]


# --- live_access_findings -----------------------------------------------------------------------------------


def test_live_findings_ask_postgres_for_superusers_and_redis_for_the_api_acl(docker: Docker, tmp_path: Path) -> None:
    stack = compose.load_stack("dev")
    findings = access_audit.live_findings(stack, [POSTGRES, API, MTPROTO, REDIS])
    assert by_check(findings) == {
        ("AB-DBROLE", "api"): True,
        ("AB-DBROLE", "mtproto"): False,  # a role PostgreSQL does not list: nothing vouches for it
        ("AB-REDISACL", "redis"): True,
    }
    (psql, query), (redis_cli, commands) = docker.calls
    assert psql[:3] == ["exec", "-i", "analyticbot-dev-postgres-1"] and "psql" in psql
    assert query == b"SELECT rolname || '|' || rolsuper::text FROM pg_roles;"
    assert redis_cli[:3] == ["exec", "-i", "analyticbot-dev-redis-1"] and "redis-cli" in redis_cli
    # The admin password on stdin, never on the command line.
    assert commands == f"AUTH ops {ADMIN}\nACL LIST\n".encode()
    assert not any(ADMIN in arg for arg, _ in docker.calls for arg in arg)


def test_live_findings_fail_a_superuser_role_and_a_broad_acl(monkeypatch: pytest.MonkeyPatch) -> None:
    broad = Docker(roles="analyticbot_api|true\n", acl=ACL_BROAD)
    monkeypatch.setattr(access_audit.docker, "docker", broad)
    findings = access_audit.live_findings(compose.load_stack("dev"), [POSTGRES, API, REDIS])
    assert by_check(findings) == {("AB-DBROLE", "api"): False, ("AB-REDISACL", "redis"): False}
    detail = {f.check: f.detail for f in findings}
    assert "superuser" in detail["AB-DBROLE"] and "~*" in detail["AB-REDISACL"]


def test_live_findings_without_redis_acl_line_or_database_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    no_user = Docker(acl="user other on ~* +@all")
    monkeypatch.setattr(access_audit.docker, "docker", no_user)
    stack = compose.load_stack("dev")
    # No api or mtproto container: PostgreSQL is not asked; Redis's ACL without our user fails.
    findings = access_audit.live_findings(stack, [POSTGRES, REDIS])
    assert by_check(findings) == {("AB-REDISACL", "redis"): False}
    assert [args[3] for args, _ in no_user.calls] == ["redis-cli"]
    no_user.calls.clear()
    assert access_audit.live_findings(stack, [API]) == [] and no_user.calls == []


def test_live_findings_need_the_redis_admin_secret(docker: Docker, tmp_path: Path) -> None:
    (tmp_path / "secrets" / "redis_admin_password").unlink()
    with pytest.raises(BadInput, match="secret redis_admin_password is missing"):
        access_audit.live_findings(compose.load_stack("dev"), [REDIS])


# --- audit --running --------------------------------------------------------------------------------------------


class Stacks:
    """The running containers of each project (none by default), and what audit_containers was given."""

    def __init__(self) -> None:
        self.containers: dict[str, list[dict[str, Any]]] = {}
        self.audited: list[list[dict[str, Any]]] = []

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        return self.containers.get(project, [])

    def audit_containers(self, infos: list[dict[str, Any]]) -> list[rules.Finding]:
        self.audited.append(list(infos))
        return []


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, docker: Docker) -> Stacks:
    fake = Stacks()
    monkeypatch.setattr(audit_cli.compose, "project_containers", fake.project_containers)
    monkeypatch.setattr(rules, "audit_containers", fake.audit_containers)
    return fake


def test_running_audit_of_one_environment_without_containers_is_bad_input(running: Stacks) -> None:
    message = fails(2, audit_cli.run, context(), env="staging", running=True)
    assert message == (
        "error: no running containers for project analyticbot-staging; start it with `invoke stack.up --env staging`"
    )


def test_running_audit_with_nothing_running_anywhere(running: Stacks, capsys: Any) -> None:
    message = fails(2, audit_cli.run, context(), running=True)
    assert message == "error: no running containers for any environment; start one with `invoke stack.up --env dev`"
    err = capsys.readouterr().err
    for env, project in model.PROJECTS.items():
        assert f"{env}: no running containers of {project}, skipped" in err


def test_running_audit_skips_the_idle_environments_and_reports_the_running_one(
    running: Stacks, docker: Docker, capsys: Any
) -> None:
    running.containers["analyticbot-staging"] = [POSTGRES, API, REDIS]
    audit_cli.run(context(), running=True, json=True)
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["mode"] == "running" and data["ok"] is True
    assert [r["name"] for r in data["reports"]] == ["staging", "images"]
    staging = {(f["check"], f["target"]): f["result"] for f in data["reports"][0]["findings"]}
    assert staging[("AB-DBROLE", "api")] == staging[("AB-REDISACL", "redis")] == "pass"
    # 4.8 statically is about how bases are built: not part of a running audit.
    assert not any(f["target"].endswith("common.sh") for f in data["reports"][1]["findings"])
    assert running.audited == [[API, POSTGRES, REDIS]]
    assert "dev: no running containers of analyticbot-dev, skipped" in captured.err
    assert "staging" not in captured.err


def test_running_audit_exits_1_naming_the_failed_environment(
    running: Stacks, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    running.containers["analyticbot-dev"] = [POSTGRES, API, REDIS]
    monkeypatch.setattr(access_audit.docker, "docker", Docker(acl=ACL_BROAD))
    assert fails(1, audit_cli.run, context(), env="dev", running=True) == "error: the audit failed for dev"
    text = capsys.readouterr().out
    assert "dev: analyticbot-dev, running containers" in text
    assert "images: Dockerfiles and hadolint" in text
    line = next(line for line in text.splitlines() if "AB-REDISACL" in line)
    assert "FAIL" in line and "grants ~*" in line
    assert "dev: " in text and " 1 failed, 0 excepted" in text


def test_an_excepted_running_failure_shows_its_reason_and_passes(
    running: Stacks, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    running.containers["analyticbot-dev"] = [POSTGRES, API, REDIS]
    monkeypatch.setattr(access_audit.docker, "docker", Docker(roles="analyticbot_api|true\n"))
    reason = "the API migrates its own schema in dev"
    exceptions = [
        *DEFAULTS["ops"]["audit_exceptions"],
        {"check": "AB-DBROLE", "service": "api", "env": "dev", "reason": reason},
    ]
    audit_cli.run(context(audit_exceptions=exceptions), env="dev", running=True)
    text = capsys.readouterr().out
    line = next(line for line in text.splitlines() if "AB-DBROLE" in line)
    assert "excepted" in line and reason[:20] in text
    assert "1 excepted" in text


def test_a_bad_environment_is_refused_before_anything_is_asked(running: Stacks, docker: Docker) -> None:
    assert "unknown environment 'qa'" in fails(2, audit_cli.run, context(), env="qa", running=True)
    assert docker.calls == [] and running.audited == []


def test_an_image_named_outside_the_namespace_is_judged_by_its_recipe_not_called_root() -> None:
    config = {
        "services": {
            "api": {"image": "registry.example.org/other/api:1.4"},
            "postgres": {"image": "mirror.example.org/pg:15"},
            "unknown": {"image": "someone/else:1"},
        }
    }
    known = audit_cli.facts_by_service(config, "analyticbot")
    assert known["registry.example.org/other/api:1.4"] == known["analyticbot/api:latest"]
    assert known["registry.example.org/other/api:1.4"].user  # the Dockerfile's USER, not unset
    assert known["mirror.example.org/pg:15"] == known["analyticbot/postgres:bookworm"]
    assert "someone/else:1" not in known  # not a service of ours: no facts are made up
