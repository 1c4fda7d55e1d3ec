"""The audit without Docker: hand-written compose, inspect and Dockerfile inputs, exceptions,
and the real compose files (through `docker-compose config`, which needs no daemon) and Dockerfiles."""

from __future__ import annotations

import copy
import json
import shutil
from typing import Any

import pytest
from invoke import Config, Context, Exit

from analyticbot_ops import audit, compose, model
from analyticbot_ops.cli import audit as audit_cli
from analyticbot_ops.config import DEFAULTS
from analyticbot_ops.errors import BadInput, DockerUnavailable
from analyticbot_ops.paths import REPO_ROOT

HARDENED: dict[str, Any] = {
    "image": "analyticbot/proxy:latest",
    "user": "10001:10001",
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "restart": "on-failure:5",
    "pids_limit": 256,
    "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
    "healthcheck": {"test": ["CMD", "wget", "-q", "http://127.0.0.1:8081/healthz"], "interval": "2s"},
    "deploy": {"resources": {"limits": {"cpus": 0.5, "memory": "128M"}}},
    "ports": ["127.0.0.1:8443:8443/tcp"],
    "volumes": ["/srv/tls:/etc/nginx/tls:ro", "acme:/var/www/acme:rw"],
    "networks": {"frontend": {}},
}

HARDENED_INSPECT: dict[str, Any] = {
    "Name": "/analyticbot-dev_proxy_1",
    "State": {"Running": True, "Health": {"Status": "healthy"}},
    "Config": {
        "User": "10001:10001",
        "Labels": {"com.docker.compose.service": "proxy"},
        "Healthcheck": {"Test": ["CMD", "wget", "-q", "http://127.0.0.1:8081/healthz"]},
    },
    "HostConfig": {
        "CapAdd": None,
        "CapDrop": ["ALL"],
        "Privileged": False,
        "PortBindings": {"8443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}]},
        "NetworkMode": "analyticbot-dev_frontend",
        "PidMode": "",
        "IpcMode": "private",
        "UTSMode": "",
        "UsernsMode": "",
        "Memory": 134217728,
        "NanoCpus": 500000000,
        "CpuShares": 0,
        "CpuQuota": 0,
        "ReadonlyRootfs": True,
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5},
        "SecurityOpt": ["no-new-privileges:true"],
        "CgroupParent": "",
        "PidsLimit": 256,
        "LogConfig": {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}},
    },
    "Mounts": [
        {"Type": "bind", "Source": "/srv/tls", "Destination": "/etc/nginx/tls", "RW": False},
        {"Type": "volume", "Source": "/var/lib/docker/volumes/acme/_data", "Destination": "/var/www/acme", "RW": True},
    ],
}

GOOD_DOCKERFILE = """\
# syntax is BuildKit's; a comment line
ARG BASE=analyticbot/python-runtime:bookworm
FROM analyticbot/python-build:bookworm AS build
RUN --mount=type=cache,target=/root/.cache/pip \\
    # a comment inside a continuation is skipped
    python3 -m pip install --target=/opt/app x
FROM ${BASE}
ENV PYTHONPATH=/opt/app \\
    DB_PASSWORD_FILE=/run/secrets/db_password
COPY --from=build /opt/app /opt/app
USER 10001:10001
HEALTHCHECK --interval=10s CMD ["python3", "-m", "probe"]
CMD ["python3", "-m", "app"]
"""


def failed(findings: list[audit.Finding]) -> set[str]:
    return {f.check for f in findings if not f.ok}


def service(name: str = "proxy", **changes: Any) -> list[audit.Finding]:
    svc = copy.deepcopy(HARDENED)
    for key, value in changes.items():
        if value is None:
            svc.pop(key, None)
        else:
            svc[key] = value
    return audit.audit_compose({"services": {name: svc}}, {})


def inspected(host: dict[str, Any] | None = None, **top: Any) -> list[audit.Finding]:
    info = copy.deepcopy(HARDENED_INSPECT)
    info["HostConfig"].update(host or {})
    for key, value in top.items():
        info[key] = value if not isinstance(value, dict) else {**info.get(key, {}), **value}
    return audit.audit_containers([info])


# --- container checks, from compose ----------------------------------------------------


def test_hardened_service_passes_every_check() -> None:
    findings = service()
    assert not failed(findings)
    assert {f.check for f in findings} == {c for c, _ in audit.CONTAINER_CHECKS} - {"AB-DBPORTS"}


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"privileged": True}, "5.5"),
        ({"cap_add": ["NET_ADMIN"]}, "5.4"),
        ({"cap_drop": ["NET_RAW"]}, "AB-CAPDROP"),
        ({"network_mode": "host"}, "5.10"),
        ({"pid": "host"}, "5.16"),
        ({"ipc": "host"}, "5.17"),
        ({"uts": "host"}, "5.21"),
        ({"userns_mode": "host"}, "5.31"),
        ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock:ro"]}, "5.32"),
        ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock:ro"]}, "5.6"),
        ({"volumes": ["/etc:/host/etc:ro"]}, "5.6"),
        ({"volumes": ["/srv/data:/data"]}, "5.6"),
        ({"volumes": [{"type": "bind", "source": "/srv/data", "target": "/data"}]}, "5.6"),
        ({"deploy": {"resources": {"limits": {"cpus": 0.5}}}}, "5.11"),
        ({"deploy": {"resources": {"limits": {"memory": "128M"}}}}, "5.12"),
        ({"read_only": None}, "5.13"),
        ({"ports": ["0.0.0.0:8443:8443/tcp"]}, "5.14"),
        ({"ports": ["8443:8443"]}, "5.14"),
        ({"ports": ["8443"]}, "5.14"),
        ({"ports": [{"target": 8443, "published": "8443", "host_ip": "0.0.0.0"}]}, "5.14"),
        ({"ports": ["127.0.0.1:443:8443"]}, "5.8"),
        ({"restart": "always"}, "5.15"),
        ({"restart": "unless-stopped"}, "5.15"),
        ({"restart": "on-failure"}, "5.15"),
        ({"restart": "on-failure:10"}, "5.15"),
        ({"restart": None}, "5.15"),
        ({"security_opt": ["no-new-privileges:true", "seccomp=unconfined"]}, "5.22"),
        ({"security_opt": ["no-new-privileges:true", "seccomp:unconfined"]}, "5.22"),
        ({"cgroup_parent": "/custom"}, "5.25"),
        ({"security_opt": None}, "5.26"),
        ({"healthcheck": None}, "5.27"),
        ({"healthcheck": {"disable": True}}, "5.27"),
        ({"healthcheck": {"test": ["NONE"]}}, "5.27"),
        ({"pids_limit": None}, "5.29"),
        ({"pids_limit": -1}, "5.29"),
        ({"user": "root"}, "AB-USER"),
        ({"user": "0:0"}, "AB-USER"),
        ({"user": None}, "AB-USER"),
        ({"logging": None}, "AB-LOGS"),
        ({"logging": {"driver": "json-file", "options": {"max-size": "10m"}}}, "AB-LOGS"),
    ],
)
def test_broken_service_fails_its_check(changes: dict[str, Any], check: str) -> None:
    assert check in failed(service(**changes))


def test_database_ports_are_never_published() -> None:
    assert "AB-DBPORTS" in failed(service("postgres"))
    assert "AB-DBPORTS" in failed(service("redis", ports=["127.0.0.1:6379:6379"]))
    assert not failed(service("postgres", ports=None))
    assert "AB-DBPORTS" not in {f.check for f in service("api")}  # only the databases


def test_fine_mounts_and_ports() -> None:
    assert not failed(service(volumes=["pgdata:/var/lib/postgresql/data:rw", "/srv/conf:/conf:ro", "/tmp-only"]))
    assert not failed(service(volumes=["/etcetera/conf:/conf:ro", "/usrdata:/data:ro"]))  # not beneath /etc, /usr
    assert not failed(service(ports=[{"target": 8443, "published": 8443, "host_ip": "127.0.0.1"}]))
    assert not failed(service(logging={"driver": "local"}))  # rotates by default


def test_user_and_healthcheck_may_come_from_a_known_image() -> None:
    svc = {k: v for k, v in HARDENED.items() if k not in ("user", "healthcheck")}
    known = {"analyticbot/proxy:latest": audit.ImageFacts("10001:10001", True)}
    assert not failed(audit.audit_compose({"services": {"proxy": svc}}, known))
    assert failed(audit.audit_compose({"services": {"proxy": svc}}, {})) == {"AB-USER", "5.27"}
    # A healthcheck that only tunes timings keeps the image's test.
    tuned = {**svc, "healthcheck": {"interval": "2s"}}
    assert "5.27" not in failed(audit.audit_compose({"services": {"proxy": tuned}}, known))


# --- container checks, from docker inspect ----------------------------------------------


def test_hardened_container_passes() -> None:
    assert not failed(inspected())


@pytest.mark.parametrize(
    ("host", "top", "check"),
    [
        ({"Privileged": True}, {}, "5.5"),
        ({"CapAdd": ["CAP_SYS_ADMIN"]}, {}, "5.4"),
        ({"CapDrop": None}, {}, "AB-CAPDROP"),
        ({"NetworkMode": "host"}, {}, "5.10"),
        ({"PidMode": "host"}, {}, "5.16"),
        ({"IpcMode": "host"}, {}, "5.17"),
        ({"UTSMode": "host"}, {}, "5.21"),
        ({"UsernsMode": "host"}, {}, "5.31"),
        ({}, {"Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "RW": False}]}, "5.32"),
        ({}, {"Mounts": [{"Type": "bind", "Source": "/srv/data", "RW": True}]}, "5.6"),
        ({"Memory": 0}, {}, "5.11"),
        ({"NanoCpus": 0}, {}, "5.12"),
        ({"CpuShares": 1024, "NanoCpus": 0}, {}, "5.12"),
        ({"ReadonlyRootfs": False}, {}, "5.13"),
        ({"PortBindings": {"8443/tcp": [{"HostIp": "", "HostPort": "8443"}]}}, {}, "5.14"),
        ({"PortBindings": {"8443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "443"}]}}, {}, "5.8"),
        ({"PublishAllPorts": True}, {}, "5.14"),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}, {}, "5.15"),
        ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 0}}, {}, "5.15"),
        ({"SecurityOpt": ["no-new-privileges:true", "seccomp=unconfined"]}, {}, "5.22"),
        ({"CgroupParent": "/x"}, {}, "5.25"),
        ({"SecurityOpt": None}, {}, "5.26"),
        ({"PidsLimit": None}, {}, "5.29"),
        ({"LogConfig": {"Type": "json-file", "Config": {}}}, {}, "AB-LOGS"),
        ({}, {"Config": {"User": ""}}, "AB-USER"),
        ({}, {"Config": {"Healthcheck": {"Test": ["NONE"]}}, "State": {"Health": None}}, "5.27"),
    ],
)
def test_broken_container_fails_its_check(host: dict[str, Any], top: dict[str, Any], check: str) -> None:
    assert check in failed(inspected(host, **top))


def test_running_database_with_a_port_binding_fails() -> None:
    labels = {"Labels": {"com.docker.compose.service": "postgres"}}
    assert "AB-DBPORTS" in failed(inspected(None, Config=labels))
    assert not failed(inspected({"PortBindings": {}}, Config=labels))


def test_binds_when_inspect_has_no_mount_list() -> None:
    info = copy.deepcopy(HARDENED_INSPECT)
    del info["Mounts"]
    info["HostConfig"]["Binds"] = ["/srv/tls:/etc/nginx/tls:ro", "/srv/data:/data:rw"]
    assert failed(audit.audit_containers([info])) == {"5.6"}


# --- Dockerfiles ------------------------------------------------------------------------


def test_parser_joins_continuations_and_skips_comments() -> None:
    instructions = audit.parse_dockerfile(GOOD_DOCKERFILE)
    run = next(i for i in instructions if i.keyword == "RUN")
    assert run.line == 4 and "--target=/opt/app" in run.args and "comment" not in run.args
    assert [i.keyword for i in instructions][:3] == ["ARG", "FROM", "RUN"]


def test_good_dockerfile_passes() -> None:
    assert not failed(audit.dockerfile_findings("Dockerfile", GOOD_DOCKERFILE))


@pytest.mark.parametrize(
    ("old", "new", "check"),
    [
        ("COPY --from=build", "ADD --from=build", "4.9"),
        ("ENV PYTHONPATH=/opt/app", "ENV DB_PASSWORD=hunter2 PYTHONPATH=/opt/app", "4.10"),
        ("    DB_PASSWORD_FILE=/run/secrets/db_password", "    BOT_TOKEN=123:abc", "4.10"),
        ("ENV PYTHONPATH=/opt/app \\", "ENV API_KEY sk-live-1 \\\nENV A=1 \\", "4.10"),
        ("ARG BASE=", "ARG STRIPE_SECRET=sk_live\nARG BASE=", "4.10"),
        ("AS build", "AS build\nFROM debian:latest AS extra", "AB-PIN"),
        ("AS build", "AS build\nFROM debian AS extra", "AB-PIN"),
        ("ARG BASE=analyticbot/python-runtime:bookworm", "ARG BASE=analyticbot/python-runtime:latest", "AB-PIN"),
        ("ARG BASE=analyticbot/python-runtime:bookworm", "ARG BASE", "AB-PIN"),
        ("USER 10001:10001\n", "", "4.1"),
        ("USER 10001:10001", "USER root", "4.1"),
        ('HEALTHCHECK --interval=10s CMD ["python3", "-m", "probe"]', "", "4.6"),
        ('HEALTHCHECK --interval=10s CMD ["python3", "-m", "probe"]', "HEALTHCHECK NONE", "4.6"),
    ],
)
def test_broken_dockerfile_fails_its_check(old: str, new: str, check: str) -> None:
    assert old in GOOD_DOCKERFILE
    assert check in failed(audit.dockerfile_findings("Dockerfile", GOOD_DOCKERFILE.replace(old, new)))


def test_pinned_bases() -> None:
    text = "FROM python:3.11-slim@sha256:abc AS a\nFROM a\nFROM scratch\nUSER 1\nHEALTHCHECK CMD true\n"
    assert not failed(audit.dockerfile_findings("Dockerfile", text))


def test_user_only_in_an_unrelated_stage_is_root() -> None:
    text = "FROM a:1 AS build\nUSER 10001\nFROM b:1\nHEALTHCHECK CMD true\n"
    assert failed(audit.dockerfile_findings("Dockerfile", text)) == {"4.1"}
    # ...but a final stage built FROM that stage inherits its USER.
    assert not failed(audit.dockerfile_findings("Dockerfile", text.replace("FROM b:1", "FROM build")))


@pytest.mark.parametrize("path", ["services/Dockerfile", "nginx/Dockerfile"])
def test_real_dockerfiles_pass(path: str) -> None:
    findings = audit.dockerfile_findings(path, (REPO_ROOT / path).read_text())
    assert not failed(findings), [f for f in findings if not f.ok]
    assert audit.image_facts((REPO_ROOT / path).read_text()) == audit.ImageFacts("10001:10001", True)


def test_setuid_hook() -> None:
    assert audit.setuid_finding("common.sh", audit_cli.SETUID_HOOK.read_text()).ok
    assert not audit.setuid_finding("common.sh", "find / -perm /6000 -type f\n").ok


def test_hadolint_output() -> None:
    missing = audit.hadolint_findings(None, ["Dockerfile"])
    assert [(f.check, f.ok, f.detail) for f in missing] == [("hadolint", False, "skipped: hadolint not installed")]
    output = json.dumps(
        [{"code": "DL3020", "file": "a/Dockerfile", "line": 3, "level": "error", "message": "Use COPY"}]
    )
    found = audit.hadolint_findings(output, ["a/Dockerfile", "b/Dockerfile"])
    assert [(f.check, f.target, f.ok) for f in found] == [
        ("hadolint", "b/Dockerfile", True),
        ("hadolint:DL3020", "a/Dockerfile", False),
    ]
    assert not audit.hadolint_findings('"Error parsing your config file"', ["a"])[0].ok
    assert not audit.hadolint_findings("not json", ["a"])[0].ok


def test_hadolint_passes_the_real_dockerfiles() -> None:
    paths = ["services/Dockerfile", "nginx/Dockerfile"]
    output = audit.run_hadolint(paths)
    if output is None:
        pytest.skip("hadolint is not installed")
    assert not failed(audit.hadolint_findings(output, paths)), output


# --- exceptions and reports ---------------------------------------------------------------

EXCEPTION = {"check": "5.8", "service": "proxy", "env": "prod", "reason": "the public entry point"}


def test_an_excepted_failure_does_not_fail_and_shows_its_reason() -> None:
    findings = service(ports=["127.0.0.1:443:8443"])
    exceptions = audit.parse_exceptions([EXCEPTION])
    report = audit.make_report("prod", findings, exceptions)
    assert not report.failed
    excepted = [f for f in report.findings if f.result == "excepted"]
    assert [(f.check, f.reason) for f in excepted] == [("5.8", "the public entry point")]
    assert report.summary() == f"prod: {len(findings) - 1} passed, 0 failed, 1 excepted"
    assert report.to_dict()["excepted"] == 1
    # Not in another environment, not for another service.
    assert audit.make_report("dev", findings, exceptions).failed
    assert audit.make_report("prod", service("api", ports=["127.0.0.1:443:8443"]), exceptions).failed


def test_image_findings_are_excepted_only_by_env_star() -> None:
    findings = audit.hadolint_findings(None, [])
    for env, result in (("prod", "FAIL"), ("*", "excepted")):
        exceptions = audit.parse_exceptions([{"check": "hadolint", "service": "*", "env": env, "reason": "offline"}])
        assert audit.make_report("images", findings, exceptions).findings[0].result == result


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reason": ""}, "no reason"),
        ({"reason": None}, "no reason"),
        ({"service": ""}, "needs `check` and `service`"),
        ({"env": "qa"}, "unknown env"),
        ({"check": "AB-DBPORTS"}, "can never be excepted"),
    ],
)
def test_bad_exceptions_are_bad_input(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        audit.parse_exceptions([{**EXCEPTION, **change}])


def test_exceptions_must_be_a_list() -> None:
    with pytest.raises(BadInput, match="must be a list"):
        audit.parse_exceptions({"check": "5.8"})


def test_configured_exceptions_are_valid() -> None:
    assert {(e.check, e.service, e.env) for e in audit.parse_exceptions(DEFAULTS["ops"]["audit_exceptions"])} == {
        ("5.8", "proxy", "prod"),
        ("5.14", "proxy", "prod"),
        ("5.27", "migrate", "*"),
        # What Swarm 20.10 cannot express, each with its reason (swarm/audit.py).
        ("5.26", "*", "swarm"),
        ("5.15", "*", "swarm"),
        ("5.27", "migrate", "swarm"),
        ("5.8", "proxy", "swarm"),
        ("5.14", "proxy", "swarm"),
    }


# --- the real compose files ----------------------------------------------------------------


@pytest.mark.parametrize("env", model.ENVIRONMENTS)
def test_real_compose_files_pass_their_own_audit(env: str) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed")
    try:
        config = compose.merged_config(compose.load_stack(env))
    except DockerUnavailable as exc:
        pytest.skip(str(exc))
    known = audit_cli.known_images(DEFAULTS["ops"]["namespace"])
    report = audit.make_report(
        env, audit.audit_compose(config, known), audit.parse_exceptions(DEFAULTS["ops"]["audit_exceptions"])
    )
    assert not report.failed, [f for f in report.findings if f.result == "FAIL"]
    assert {f.target for f in report.findings} == {*model.RUNNING, *model.JOBS}


# --- the task ----------------------------------------------------------------------------------


def run_task(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], exceptions: list[Any], *flags: str) -> None:
    monkeypatch.setattr(compose, "merged_config", lambda stack: config)
    monkeypatch.setattr(audit, "run_hadolint", lambda paths: "[]")
    settings = copy.deepcopy(DEFAULTS)
    settings["ops"]["audit_exceptions"] = exceptions
    audit_cli.run(Context(Config(overrides=settings)), env="dev", json="json" in flags)


def test_task_exits_1_on_a_failure_and_2_on_a_bad_exception(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    hardened = {"services": {"proxy": HARDENED}}
    run_task(monkeypatch, hardened, [], "json")
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and [r["name"] for r in data["reports"]] == ["dev", "images"]
    with pytest.raises(Exit) as failure:
        run_task(monkeypatch, {"services": {"proxy": {**HARDENED, "privileged": True}}}, [])
    assert failure.value.code == 1
    # 22 container checks, and the access rules that a proxy-only file can answer (Redis ACL, proxy config).
    assert "dev: 25 passed, 1 failed, 0 excepted" in capsys.readouterr().out
    with pytest.raises(Exit) as bad:
        run_task(monkeypatch, hardened, [{"check": "5.5", "service": "proxy", "env": "*"}])
    assert bad.value.code == 2


def test_an_image_built_from_a_stage_is_judged_by_that_stage() -> None:
    text = (REPO_ROOT / "services/Dockerfile").read_text()
    findings = audit.dockerfile_findings("services/Dockerfile", text, "certbot")
    assert not failed(findings), [f for f in findings if not f.ok]
    assert {f.target for f in findings} == {"services/Dockerfile:certbot"}
    assert audit.image_facts(text, "certbot") == audit.ImageFacts("10001:10001", True)
    # the pruning stage runs as root: judged as an image, it would fail 4.1
    assert audit.image_facts(text, "pruned").user == "0:0"
    with pytest.raises(BadInput, match="no stage named 'nope'"):
        audit.image_facts(text, "nope")


def test_every_built_image_is_audited_once() -> None:
    assert audit.built_images() == [
        ("nginx/Dockerfile", None),
        ("services/Dockerfile", None),
        ("services/Dockerfile", "certbot"),
    ]
