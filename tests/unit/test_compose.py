"""The stack as Compose runs it: settings and their sources, the compose command, service states, exec in a
container and the wait for health, with the runner and the Engine API faked."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from analyticbot_ops import compose, docker, engine, model, releases, runner, stack_settings
from analyticbot_ops.compose import ServiceState, Stack
from analyticbot_ops.errors import EXIT_BAD_INPUT, BadInput, OpsError
from analyticbot_ops.paths import COMPOSE_DIR, REPO_ROOT, SECRETS_DIR

CLIENT = docker.DockerClient("/opt/bin/docker", "28.2.2", has_buildx=True)


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """No .env file and an empty process environment unless a test writes them; no real daemon or client."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    process: dict[str, str] = {}
    monkeypatch.setattr(stack_settings, "_process_env", lambda: dict(process))
    monkeypatch.setattr(stack_settings, "env_file", lambda env: tmp_path / f".env.{stack_settings.check_env(env)}")
    monkeypatch.setattr(docker, "_candidate_paths", lambda: [CLIENT.path])
    monkeypatch.setattr(docker, "_probe", lambda _path: CLIENT)
    docker.client.cache_clear()
    docker.require_daemon.cache_clear()
    yield process
    docker.client.cache_clear()
    docker.require_daemon.cache_clear()


# --- settings -----------------------------------------------------------------------------


def test_settings_come_from_defaults_then_env_file_then_process_then_overrides(
    hermetic: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / ".env.dev").write_text(
        "HTTP_PORT=1111\nHTTPS_PORT=2222\nDOMAIN=file.example\nNOT_A_SETTING=x\nSECRETS_DIR=/srv/secrets\n"
    )
    hermetic.update({"HTTPS_PORT": "3333", "DOMAIN": "env.example", "PATH": "/usr/bin"})
    settings = stack_settings.settings_with_sources("dev", overrides={"DOMAIN": "override.example"})
    assert settings["PROXY_BIND"] == ("127.0.0.1", "default")
    assert settings["HTTP_PORT"] == ("1111", ".env.dev")
    assert settings["SECRETS_DIR"] == ("/srv/secrets", ".env.dev")
    assert settings["HTTPS_PORT"] == ("3333", "environment")
    assert settings["DOMAIN"] == ("override.example", "override")
    assert settings["API_IMAGE"] == ("analyticbot/api:latest", stack_settings.NAMESPACE_SOURCE)
    assert settings["PROXY_FRONTEND_IP"] == ("172.20.0.254", "derived from FRONTEND_SUBNET")
    assert "NOT_A_SETTING" not in settings and "PATH" not in settings


def test_each_environment_has_its_own_defaults_and_namespace_names_the_images() -> None:
    staging = stack_settings.settings_with_sources("staging", namespace="acme")
    assert staging["HTTP_PORT"] == ("9080", "default")
    assert staging["FRONTEND_SUBNET"] == ("172.23.0.0/24", "default")
    assert staging["PROXY_FRONTEND_IP"][0] == "172.23.0.254"
    assert staging["BOT_IMAGE"] == ("acme/bot:latest", "ops.namespace")
    prod = stack_settings.settings_with_sources("prod")
    assert (prod["PROXY_BIND"][0], prod["HTTPS_PORT"][0], prod["FRONTEND_SUBNET"][0]) == (
        "0.0.0.0",
        "443",
        "172.20.0.0/24",
    )
    assert "EXTRA_SERVER_NAMES" not in prod


def test_a_bad_value_in_the_env_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env.prod").write_text("HTTPS_PORT=44three\n")
    with pytest.raises(BadInput, match=r"^\.env\.prod: HTTPS_PORT must be a port number, got '44three'$") as raised:
        stack_settings.settings_with_sources("prod")
    assert raised.value.code == EXIT_BAD_INPUT


def test_a_bad_value_from_the_environment_or_overrides_is_refused(hermetic: dict[str, str]) -> None:
    with pytest.raises(BadInput, match=r"^settings: PROXY_BIND must be an IP address, got 'localhost'$"):
        stack_settings.settings_with_sources("dev", overrides={"PROXY_BIND": "localhost"})
    hermetic["FRONTEND_SUBNET"] = "10.1.0.0/29"  # a valid subnet, too small for the proxy's fixed address
    with pytest.raises(BadInput, match="/28 or larger"):
        stack_settings.settings_with_sources("dev")


def test_secrets_and_tls_dirs(hermetic: dict[str, str]) -> None:
    assert stack_settings.secrets_dir("dev") == SECRETS_DIR.resolve()
    assert stack_settings.tls_dir("dev") == (SECRETS_DIR / "tls").resolve()
    hermetic.update({"SECRETS_DIR": "/srv/s", "TLS_DIR": "certs"})
    assert stack_settings.secrets_dir("prod") == Path("/srv/s")
    assert stack_settings.tls_dir("prod") == REPO_ROOT / "certs"


def test_unknown_environment_and_services_are_bad_input() -> None:
    with pytest.raises(BadInput, match=r"^unknown environment 'production'; use one of: dev, staging, prod$"):
        stack_settings.settings_with_sources("production")
    with pytest.raises(BadInput, match=r"^unknown service 'web'; known: postgres, "):
        compose.check_services(["api", "web", "www"])
    assert compose.check_services(("api", "proxy")) == ["api", "proxy"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"HTTP_PORT": "0"}, "HTTP_PORT must be a port number"),
        ({"HTTPS_PORT": "65536"}, "HTTPS_PORT must be a port number"),
        ({"HTTPS_PORT": "123456"}, "HTTPS_PORT must be a port number"),
        ({"HTTP_PORT": "\u0668\u0660"}, "HTTP_PORT must be a port number"),  # Arabic-Indic 80: isdigit(), not ASCII
        ({"HTTP_PORT": " 80"}, "HTTP_PORT must be a port number"),
        ({"FRONTEND_SUBNET": "172.20.0.1/24"}, "FRONTEND_SUBNET must be a subnet"),  # host bits set
        ({"DATABASE_SUBNET": "db"}, "DATABASE_SUBNET must be a subnet"),
        ({"EXTRA_SERVER_NAMES": "localhost bad_name"}, "EXTRA_SERVER_NAMES holds 'bad_name'"),
        ({"RATE_LIMIT_EXEMPT": "172.30.0.1 all"}, "RATE_LIMIT_EXEMPT holds 'all', which is not an IPv4 address"),
        ({"RATE_LIMIT_EXEMPT": "10.0.0.1/8"}, "RATE_LIMIT_EXEMPT holds '10.0.0.1/8'"),  # host bits set
        ({"EXTRA_SERVER_NAMES": "-leading.example"}, "EXTRA_SERVER_NAMES holds '-leading.example'"),
        (
            {"EXTRA_SERVER_NAMES": "ex\u00e4mple.com"},
            "EXTRA_SERVER_NAMES holds 'ex\u00e4mple.com', which is not a host",
        ),
        ({"PROXY_BIND": "0.0.0.0:80"}, "PROXY_BIND must be an IP address"),
        ({"API_WORKERS": "two"}, "API_WORKERS must be a number of processes"),
        ({"API_WORKERS": "-1"}, "API_WORKERS must be a number of processes"),
        ({"BACKUP_SUBNET": "backup"}, "BACKUP_SUBNET must be a subnet"),
        ({"BACKUP_SUBNET": "172.26.1.1/24"}, "BACKUP_SUBNET must be a subnet"),  # host bits set
        # PostgreSQL's archive_timeout: seconds only (it refuses 5m), and 0 would turn it off.
        ({"ARCHIVE_TIMEOUT": "5m"}, "ARCHIVE_TIMEOUT must be seconds like 5s, got '5m'"),
        ({"ARCHIVE_TIMEOUT": "1min"}, "ARCHIVE_TIMEOUT must be seconds like 5s"),
        ({"ARCHIVE_TIMEOUT": "0"}, "ARCHIVE_TIMEOUT must be seconds like 5s"),
        ({"ARCHIVE_TIMEOUT": "0s"}, "ARCHIVE_TIMEOUT must be seconds like 5s"),
        ({"ARCHIVE_TIMEOUT": "-5s"}, "ARCHIVE_TIMEOUT must be seconds like 5s"),
        ({"ARCHIVE_TIMEOUT": ""}, "ARCHIVE_TIMEOUT must be seconds like 5s"),
        # What the schedule's shell arithmetic reads: digits and one unit of s, m, h or d.
        ({"BACKUP_FULL_EVERY": "1w"}, "BACKUP_FULL_EVERY must be a duration like 90s, 15m, 6h or 7d, got '1w'"),
        ({"BACKUP_FULL_EVERY": "7 d"}, "BACKUP_FULL_EVERY must be a duration like"),
        ({"BACKUP_DIFF_EVERY": "1d12h"}, "BACKUP_DIFF_EVERY must be a duration like"),
        ({"BACKUP_DIFF_EVERY": "d"}, "BACKUP_DIFF_EVERY must be a duration like"),
        ({"BACKUP_DIFF_EVERY": "1.5h"}, "BACKUP_DIFF_EVERY must be a duration like"),
        ({"BACKUP_SCHEDULE_TICK": "\u0666\u0660s"}, "BACKUP_SCHEDULE_TICK must be a duration like"),  # not ASCII
        ({"BACKUP_SCHEDULE_TICK": "1234567s"}, "BACKUP_SCHEDULE_TICK must be a duration like"),
        # A tick of 0 would be a busy loop.
        ({"BACKUP_SCHEDULE_TICK": "0"}, "BACKUP_SCHEDULE_TICK must be at least 1s, got '0'"),
        ({"BACKUP_SCHEDULE_TICK": "0m"}, "BACKUP_SCHEDULE_TICK must be at least 1s, got '0m'"),
        ({"BACKUP_RETENTION_FULL": "0"}, "BACKUP_RETENTION_FULL must be a number of backups of at least 1, got '0'"),
        ({"BACKUP_RETENTION_FULL": "two"}, "BACKUP_RETENTION_FULL must be a number of backups of at least 1"),
        ({"BACKUP_RETENTION_DIFF": "-1"}, "BACKUP_RETENTION_DIFF must be a number of backups of at least 1"),
        ({"BACKUP_RETENTION_DIFF": "00"}, "BACKUP_RETENTION_DIFF must be a number of backups of at least 1"),
    ],
)
def test_validate_settings_refuses(values: dict[str, str], message: str) -> None:
    with pytest.raises(BadInput, match=f"^where: {message}"):
        stack_settings.validate_settings(values, "where")


def test_validate_settings_accepts() -> None:
    stack_settings.validate_settings(
        {
            "HTTP_PORT": "1",
            "HTTPS_PORT": "65535",
            "BACKEND_SUBNET": "10.0.0.0/8",
            "EXTRA_SERVER_NAMES": "  localhost 127.0.0.1  a-b.example.org ",
            "PROXY_BIND": "::",
            "DOMAIN": "anything goes here",
        },
        "where",
    )
    stack_settings.validate_settings({}, "where")


@pytest.mark.parametrize(
    "values",
    [
        {"ARCHIVE_TIMEOUT": "5s"},
        {"ARCHIVE_TIMEOUT": "60"},
        {"ARCHIVE_TIMEOUT": "99999s"},
        {"BACKUP_SUBNET": "10.9.0.0/24"},
        # 0 turns a kind of scheduled backup off.
        {"BACKUP_FULL_EVERY": "0", "BACKUP_DIFF_EVERY": "0"},
        {"BACKUP_FULL_EVERY": "7d", "BACKUP_DIFF_EVERY": "6h", "BACKUP_SCHEDULE_TICK": "90s"},
        {"BACKUP_FULL_EVERY": "86400", "BACKUP_DIFF_EVERY": "15m", "BACKUP_SCHEDULE_TICK": "1"},
        {"BACKUP_RETENTION_FULL": "1", "BACKUP_RETENTION_DIFF": "9999"},
    ],
)
def test_validate_settings_accepts_the_backup_settings(values: dict[str, str]) -> None:
    stack_settings.validate_settings(values, "where")


def test_the_backup_settings_are_settings_and_a_bad_one_names_its_source(tmp_path: Path) -> None:
    for key in ("BACKUP_SUBNET", "ARCHIVE_TIMEOUT", "BACKUP_FULL_EVERY", "BACKUP_DIFF_EVERY", "BACKUP_SCHEDULE_TICK"):
        assert key in stack_settings.SETTINGS, key
    assert stack_settings.settings_with_sources("dev")["BACKUP_SUBNET"] == ("172.26.1.0/24", "default")
    assert stack_settings.settings_with_sources("prod")["BACKUP_SUBNET"] == ("172.26.1.0/24", "default")
    assert stack_settings.settings_with_sources("staging")["BACKUP_SUBNET"] == ("172.27.1.0/24", "default")  # its own
    (tmp_path / ".env.prod").write_text("ARCHIVE_TIMEOUT=1m\n")
    with pytest.raises(BadInput, match=r"^\.env\.prod: ARCHIVE_TIMEOUT must be seconds like 5s, got '1m'$"):
        stack_settings.settings_with_sources("prod")


@pytest.mark.parametrize(
    ("subnet", "address"),
    [("172.20.0.0/24", "172.20.0.254"), ("10.0.0.0/28", "10.0.0.14"), ("10.8.0.0/16", "10.8.255.254")],
)
def test_the_proxy_takes_the_last_host_of_the_frontend_subnet(subnet: str, address: str) -> None:
    assert stack_settings.proxy_address(subnet) == address


@pytest.mark.parametrize("subnet", ["10.0.0.0/29", "10.0.0.0/32", "fd00::/64"])
def test_a_subnet_without_room_or_not_ipv4_is_refused(subnet: str) -> None:
    with pytest.raises(BadInput, match=f"got '{subnet}'"):
        stack_settings.proxy_address(subnet)


# --- load_stack ---------------------------------------------------------------------------


def test_load_stack_uses_the_environments_files_and_project(hermetic: dict[str, str]) -> None:
    dev = compose.load_stack("dev")
    assert (dev.env, dev.project) == ("dev", "analyticbot-dev")
    assert dev.files == [
        COMPOSE_DIR / n
        for n in (*compose.BASE_FILES, "docker-compose.dev.yml", compose.MONITORING_FILE, compose.BACKUP_FILE)
    ]
    assert dev.monitoring and "prometheus" in dev.running and "monitoring" in dev.networks
    assert dev.backup and "backup-agent" in dev.running and dev.networks["backup"] == "BACKUP_SUBNET"
    assert dev.published["PROMETHEUS_PORT"] == ("127.0.0.1", 9090)
    without = compose.load_stack("dev", monitoring=False)
    assert without.files == [*dev.files[:-2], dev.files[-1]] and "prometheus" not in without.running
    assert "monitoring" not in without.networks and "PROMETHEUS_PORT" not in without.published
    unbacked = compose.load_stack("dev", backup=False)
    assert unbacked.files == dev.files[:-1] and not unbacked.backup
    assert not set(model.BACKUPS) & set(unbacked.running) and "backup" not in unbacked.networks
    assert "monitoring" in unbacked.networks  # each overlay on its own
    # The proxy's stub_status answers the exporter's address, and nobody without the overlay.
    assert dev.settings["NGINX_EXPORTER_IP"] == "172.20.0.253" and "NGINX_EXPORTER_IP" not in without.settings
    assert dev.settings["HTTP_PORT"] == "8080" and dev.settings["PROXY_FRONTEND_IP"] == "172.20.0.254"
    staging = compose.load_stack("staging")
    assert (staging.project, staging.files[-3].name) == ("analyticbot-staging", "docker-compose.prod.yml")
    hermetic["COMPOSE_PROJECT_NAME"] = "preview-7"
    assert compose.load_stack("prod").project == "preview-7"
    named = compose.load_stack("prod", project="explicit")
    assert named.project == "explicit" and "COMPOSE_PROJECT_NAME" not in named.settings


def test_load_stack_refuses_a_missing_compose_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*compose.BASE_FILES, "docker-compose.dev.yml", compose.MONITORING_FILE):
        (tmp_path / name).write_text("services: {}\n")
    monkeypatch.setattr(compose, "COMPOSE_DIR", tmp_path)
    with pytest.raises(BadInput, match=f"^compose file {tmp_path / compose.BACKUP_FILE} is missing$"):
        compose.load_stack("dev")
    assert compose.load_stack("dev", backup=False).files[0] == tmp_path / "docker-compose.yml"
    (tmp_path / compose.BACKUP_FILE).write_text("services: {}\n")
    assert compose.load_stack("dev").files[-1] == tmp_path / compose.BACKUP_FILE
    with pytest.raises(BadInput, match=f"^compose file {tmp_path / 'docker-compose.prod.yml'} is missing$"):
        compose.load_stack("prod")


def test_a_pinned_stack_pins_only_images_nothing_names(
    monkeypatch: pytest.MonkeyPatch, hermetic: dict[str, str]
) -> None:
    asked: list[set[str]] = []

    def pinned(unnamed: set[str], _state_dir: object = None) -> dict[str, str]:
        asked.append(set(unnamed))
        return {"API_IMAGE": "analyticbot/api:b-1234"}

    monkeypatch.setattr(releases, "pinned_settings", pinned)
    hermetic["BOT_IMAGE"] = "mine/bot:7"
    stack = releases.pin(compose.load_stack("dev"))
    assert "API_IMAGE" in asked[0] and "BOT_IMAGE" not in asked[0] and "HTTP_PORT" not in asked[0]
    assert stack.settings["API_IMAGE"] == "analyticbot/api:b-1234"
    assert stack.settings["BOT_IMAGE"] == "mine/bot:7"
    assert compose.load_stack("dev").settings["API_IMAGE"] == "analyticbot/api:latest"
    assert len(asked) == 1  # not pinned: not asked


# --- the compose command ------------------------------------------------------------------

STACK = Stack("dev", "proj", {"HTTP_PORT": "8080"})


def _compose_v2(**answers: tuple[str, str, int]) -> runner.FakeRunner:
    fake = runner.FakeRunner()
    fake.answer("docker", "compose", "version", stdout="Docker Compose version v2.33.1")
    for words, (stdout, stderr, code) in answers.items():
        fake.answer("docker", "compose", "-p", "proj", *words.split("_"), stdout=stdout, stderr=stderr, returncode=code)
    return fake


def test_compose_v2_is_the_docker_plugin() -> None:
    with runner.use(_compose_v2()) as fake:
        assert compose.compose_command() == ["/opt/bin/docker", "compose"]
    assert fake.commands() == ["docker compose version"]


def test_compose_v1_when_the_plugin_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "compose", stderr="docker: 'compose' is not a docker command.", returncode=1)
    looked_for: list[str] = []
    monkeypatch.setattr(compose.shutil, "which", lambda name: looked_for.append(name) or "/usr/bin/docker-compose")
    with runner.use(fake):
        assert compose.compose_command() == ["docker-compose"]
    assert looked_for == ["docker-compose"]


def test_no_compose_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "compose", returncode=1)
    monkeypatch.setattr(compose.shutil, "which", lambda _name: None)
    with (
        runner.use(fake),
        pytest.raises(OpsError, match=r"^neither `docker compose` nor `docker-compose` is installed$"),
    ):
        compose.compose_command()


def test_a_stacks_command_names_its_project_and_files_in_order() -> None:
    stack = Stack("prod", "p1", {}, [Path("/c/base.yml"), Path("/c/prod.yml")])
    with runner.use(_compose_v2()):
        assert stack.command("up", "-d", "api") == [
            *("/opt/bin/docker", "compose", "-p", "p1", "-f", "/c/base.yml", "-f", "/c/prod.yml"),
            *("up", "-d", "api"),
        ]


def test_stack_compose_runs_with_its_settings_from_the_repository() -> None:
    fake = _compose_v2(ps=("api\n", "", 0), up=("", '\nservice "api" refers to undefined network x\n', 1))
    with runner.use(fake):
        assert STACK.compose("ps").stdout == "api\n"
        with pytest.raises(OpsError, match=r'^compose up failed: service "api" refers to undefined network x$'):
            STACK.compose("up", "-d")
        assert STACK.compose("up", check=False).returncode == 1
    ps = fake.calls[1]
    assert (ps.env, ps.cwd) == ({"HTTP_PORT": "8080"}, REPO_ROOT)
    assert fake.commands()[1] == "docker compose -p proj ps"


def test_config_hashes_reads_one_service_and_hash_per_line() -> None:
    hashes = "api sha256:1a2b\nproxy 9f8e\n\nWARN something odd here\nlonely\n"
    with runner.use(_compose_v2(config=(hashes, "", 0))) as fake:
        assert compose.config_hashes(STACK) == {"api": "sha256:1a2b", "proxy": "9f8e"}
    assert fake.commands()[-1] == "docker compose -p proj config --hash *"


def test_config_that_does_not_merge_is_bad_input() -> None:
    broken = ("", "\nservices.api.ports must be a list\n", 15)
    with runner.use(_compose_v2(config=broken)):
        with pytest.raises(
            BadInput, match=r"^the dev compose files do not merge: services\.api\.ports must be a list$"
        ):
            compose.config_hashes(STACK)
        with pytest.raises(BadInput, match="do not merge"):
            compose.merged_config(STACK)


def test_merged_config_is_the_parsed_yaml() -> None:
    merged = "name: proj\nservices:\n  api:\n    image: analyticbot/api:latest\n    ports: ['8080:80']\n"
    with runner.use(_compose_v2(config=(merged, "", 0))) as fake:
        config = compose.merged_config(STACK)
    assert config == {"name": "proj", "services": {"api": {"image": "analyticbot/api:latest", "ports": ["8080:80"]}}}
    assert fake.commands()[-1] == "docker compose -p proj config"


def test_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert compose.port_in_use("127.0.0.1", port)
    assert not compose.port_in_use("127.0.0.1", port)


# --- service states -----------------------------------------------------------------------


def _container(
    service: str,
    status: str = "running",
    health: str | None = "healthy",
    created: str = "2025-01-01T00:00:00Z",
    *,
    oneoff: bool = False,
    exit_code: int = 0,
    restarts: int = 0,
    name: str | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "ExitCode": exit_code, "StartedAt": created}
    if health is not None:
        state["Health"] = {"Status": health}
    labels = {
        "com.docker.compose.project": "proj",
        "com.docker.compose.service": service,
        "com.docker.compose.oneoff": "True" if oneoff else "False",
    }
    return {
        "Id": f"id-{name or service}-{created}",
        "Name": f"/{name or f'proj-{service}-1'}",
        "Created": created,
        "Config": {"Labels": labels},
        "State": state,
        "RestartCount": restarts,
    }


class FakeEngine:
    def __init__(self, containers: list[dict[str, Any]], logs: dict[str, bytes] | None = None) -> None:
        self.listed = containers
        self.logged = logs or {}
        self.asked: list[Any] = []

    def containers(self, all: bool, filters: dict[str, str]) -> list[dict[str, str]]:
        self.asked.append(("containers", all, filters))
        return [{"Id": c["Id"]} for c in self.listed]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return next(c for c in self.listed if c["Id"] == container_id)

    def logs(self, container: str, stdout: bool, stderr: bool, tail: int) -> bytes:
        self.asked.append(("logs", container, tail))
        return self.logged.get(container, b"")

    def version(self) -> dict[str, str]:
        return {"Version": "28.2.2"}


def _engine(monkeypatch: pytest.MonkeyPatch, *containers: dict[str, Any], **logs: bytes) -> FakeEngine:
    fake = FakeEngine(list(containers), {k.replace("_", "-"): v for k, v in logs.items()})
    monkeypatch.setattr(engine, "api", lambda: fake)
    return fake


def test_service_states_of_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _engine(
        monkeypatch,
        _container("api", "exited", None, "2025-01-01T10:00:00Z", name="abc_proj-api-1", exit_code=137),  # replaced
        _container("api", "running", "starting", "2025-01-02T10:00:00Z", restarts=2),
        _container("bot", "running", None, "2025-01-03T10:00:00Z", oneoff=True, name="proj-bot-run-1"),
        _container("proxy", "running", None),
        _container("migrate", "exited", None, exit_code=0),
    )
    states = compose.service_states("proj")
    assert fake.asked == [("containers", True, {"label": "com.docker.compose.project=proj"})]
    assert set(states) == {"api", "proxy", "migrate"}  # a `compose run` one-off is not the service
    assert states["api"] == ServiceState("api", "proj-api-1", "running", "starting", 0, 2, "2025-01-02T10:00:00Z")
    assert (states["proxy"].health, states["proxy"].container) == ("none", "proj-proxy-1")
    assert (states["migrate"].status, states["migrate"].exit_code) == ("exited", 0)


def test_service_states_of_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _engine(monkeypatch)
    assert compose.service_states("proj") == {}


@pytest.mark.parametrize(
    ("status", "health", "restarts", "before", "failed"),
    [
        ("running", "healthy", 0, 0, False),
        ("running", "starting", 0, 0, False),
        ("running", "unhealthy", 0, 0, True),
        ("exited", "none", 0, 0, True),
        ("dead", "none", 0, 0, True),
        ("restarting", "none", 3, 3, False),
        ("running", "healthy", 3, 2, True),
    ],
)
def test_what_counts_as_failed(status: str, health: str, restarts: int, before: int, failed: bool) -> None:
    assert ServiceState("s", "c", status, health, 0, restarts, "").failed(before) is failed


def test_service_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _engine(monkeypatch, _container("api"), proj_api_1=b"\nline 1\nline 2\n\n")
    assert compose.service_logs("proj", "api", tail=5) == "line 1\nline 2"
    assert ("logs", "proj-api-1", 5) in fake.asked
    assert compose.service_logs("proj", "bot") == "(no container)"


# --- commands in a container --------------------------------------------------------------


def _exec(stdout: bytes, stderr: bytes = b"", code: int = 0) -> runner.FakeRunner:
    return runner.FakeRunner(answers={("docker", "exec"): lambda _call: runner.Completed([], code, stdout, stderr)})


def test_in_container_runs_docker_exec_with_the_secret_on_stdin() -> None:
    with runner.use(_exec(b"COPY 3\n")) as fake:
        out = compose.InContainer("proj-postgres-1", timeout=30).run(["psql", "-c", "select 1"], stdin=b"s3cret")
    assert out == b"COPY 3\n"
    call = fake.calls[0]
    assert call.argv == ("/opt/bin/docker", "exec", "-i", "proj-postgres-1", "psql", "-c", "select 1")
    assert (call.input, call.timeout) == (b"s3cret", 30)


def test_in_container_without_stdin_sends_an_empty_one() -> None:
    with runner.use(_exec(b"ok")) as fake:
        assert compose.InContainer("c").run(["true"]) == b"ok"
    assert (fake.calls[0].input, fake.calls[0].timeout) == (b"", 600.0)


def test_in_container_failure_is_one_line() -> None:
    failing = _exec(b"", b'\npsql: error: FATAL:  role "x" does not exist\nmore\n', 2)
    with runner.use(failing), pytest.raises(OpsError, match=r'^psql in c failed: psql: error: FATAL:  role "x" does'):
        compose.InContainer("c").run(["psql"])


def test_in_service_finds_the_running_container(monkeypatch: pytest.MonkeyPatch) -> None:
    _engine(monkeypatch, _container("postgres", name="proj-postgres-1"), _container("redis", "exited", None))
    assert compose.in_service(STACK, "postgres") == compose.InContainer("proj-postgres-1")
    for service in ("redis", "bot"):  # stopped, and never created
        with pytest.raises(OpsError, match=rf"^{service} of proj is not running; .*`invoke stack\.up --env dev`"):
            compose.in_service(STACK, service)


# --- waiting for health -------------------------------------------------------------------


class Clock:
    """Stands in for the time module in compose: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _state(service: str, status: str = "running", health: str = "healthy", exit_code: int = 0, restarts: int = 0):
    return ServiceState(service, f"proj-{service}-1", status, health, exit_code, restarts, "")


def _states(*services: ServiceState) -> dict[str, ServiceState]:
    return {s.service: s for s in services}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(compose, "time", fake)
    monkeypatch.setattr(engine, "logs", lambda container, tail=40: f"logs of {container}\n")
    return fake


def _polls(monkeypatch: pytest.MonkeyPatch, *sequence: dict[str, ServiceState]) -> list[str]:
    """service_states answers each of `sequence` in turn (the first is the baseline), then the last forever."""
    remaining = list(sequence)
    asked: list[str] = []

    def states(project: str) -> dict[str, ServiceState]:
        asked.append(project)
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    monkeypatch.setattr(compose, "service_states", states)
    return asked


def test_healthy_at_once_returns_without_sleeping(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    asked = _polls(monkeypatch, _states(_state("api"), _state("bot")))
    shown: list[str] = []
    assert compose.wait_healthy(STACK, ["api", "bot"], timeout=60, progress=shown.append) == 0
    assert clock.sleeps == [] and asked == ["proj", "proj"]
    assert [line.split()[-2:] for line in shown] == [["api:", "running/healthy"], ["bot:", "running/healthy"]]


def test_waits_until_healthy_and_shows_each_change_once(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    _polls(
        monkeypatch,
        {},
        {},
        _states(_state("api", health="starting")),
        _states(_state("api", health="starting")),
        _states(_state("api")),
    )
    shown: list[str] = []
    assert compose.wait_healthy(STACK, ["api"], timeout=60, progress=shown.append) == 0.75
    assert clock.sleeps == [0.25, 0.25, 0.25]
    assert shown == ["    0.0s  api: absent", "    0.2s  api: running/starting", "    0.8s  api: running/healthy"]


@pytest.mark.parametrize(
    "broken",
    [_state("api", "exited", "none", exit_code=1), _state("api", health="unhealthy"), _state("api", restarts=1)],
)
def test_a_service_that_fails_fails_the_wait_with_its_logs(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, broken: ServiceState
) -> None:
    _polls(monkeypatch, _states(_state("api", health="starting")), _states(broken))
    with pytest.raises(OpsError) as raised:
        compose.wait_healthy(STACK, ["api"], timeout=60)
    message = str(raised.value)
    assert message.startswith(
        f"api did not become healthy ({broken.status}, health {broken.health}, exit code {broken.exit_code}, "
        f"restarts {broken.restarts}); its last log lines:\n"
    )
    assert message.endswith("logs of proj-api-1")
    assert clock.sleeps == []


def test_restarts_before_the_wait_are_not_held_against_a_service(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    _polls(
        monkeypatch,
        _states(_state("api", health="starting", restarts=4)),
        _states(_state("api", health="starting", restarts=4)),
        _states(_state("api", restarts=4)),
    )
    assert compose.wait_healthy(STACK, ["api"], timeout=60) == 0.25


def test_after_a_fault_only_the_timeout_counts(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    _polls(monkeypatch, _states(_state("api", "exited", "none", exit_code=1)), _states(_state("api", "exited", "none")),
           _states(_state("api", health="unhealthy")), _states(_state("api")))  # fmt: skip
    assert compose.wait_healthy(STACK, ["api"], timeout=60, fail_fast=False) == 0.5


def test_timeout_names_what_is_not_healthy_with_logs(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    _polls(monkeypatch, _states(_state("api"), _state("bot", health="starting")))
    with pytest.raises(OpsError) as raised:
        compose.wait_healthy(STACK, ["api", "bot", "mtproto"], timeout=5)
    assert str(raised.value) == (
        "timed out after 5 s waiting for bot, mtproto; last log lines of bot:\nlogs of proj-bot-1"
    )
    assert 5 < sum(clock.sleeps) <= 5.25 and max(clock.sleeps) < 1


class Compose:
    """A compose process: running for `polls` polls, then exited with `code`."""

    def __init__(self, polls: int, code: int, stderr: str = "") -> None:
        self.polls, self.code = polls, code
        self.stderr = io.StringIO(stderr)

    def poll(self) -> int | None:
        self.polls -= 1
        return None if self.polls >= 0 else self.code


def test_while_compose_still_runs_nothing_is_judged(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    # What runs while compose works may be the containers it is about to replace: failed or healthy, wait.
    _polls(monkeypatch, {}, _states(_state("api", "exited", "none", exit_code=1)), _states(_state("api")))
    process = Compose(polls=4, code=0)  # two polls per round while it runs
    waited = compose.wait_healthy(STACK, ["api"], timeout=60, compose_process=process)  # type: ignore[arg-type]
    assert waited == 0.5 and clock.sleeps == [0.25, 0.25]


def test_compose_giving_up_fails_the_wait(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    _polls(monkeypatch, {}, _states(_state("migrate", "exited", "none", exit_code=3)))
    process = Compose(polls=0, code=1, stderr="Container proj-migrate-1 Error\nservice migrate didn't complete\n")
    with pytest.raises(OpsError, match=r"^the migrate job failed \(exit code 3\)"):
        compose.wait_healthy(STACK, ["api"], timeout=60, compose_process=process)  # type: ignore[arg-type]


def _compose_failure(
    monkeypatch: pytest.MonkeyPatch,
    states: dict[str, ServiceState],
    stderr: str = "",
    services: tuple[str, ...] = ("api", "bot"),
) -> str:
    monkeypatch.setattr(compose, "service_states", lambda _project: states)
    with pytest.raises(OpsError) as raised:
        compose._compose_failed(STACK, services, states, SimpleNamespace(stderr=io.StringIO(stderr)))  # type: ignore[arg-type]
    return str(raised.value)


@pytest.mark.usefixtures("clock")
def test_compose_failed_names_a_failed_job_first(monkeypatch: pytest.MonkeyPatch) -> None:
    states = _states(_state("migrate", "exited", "none", exit_code=2), _state("api", health="unhealthy"))
    message = _compose_failure(monkeypatch, states, "Container proj-migrate-1 Exited\ndependency failed to start\n")
    assert message == (
        "the migrate job failed (exit code 2), so nothing that needs it was started; compose said: dependency "
        "failed to start; its last log lines:\nlogs of proj-migrate-1"
    )


@pytest.mark.usefixtures("clock")
def test_compose_failed_names_a_failed_service(monkeypatch: pytest.MonkeyPatch) -> None:
    states = _states(_state("migrate", "exited", "none", exit_code=0), _state("bot"), _state("api", health="unhealthy"))
    message = _compose_failure(monkeypatch, states, "\ncontainer proj-api-1 is unhealthy\n")
    assert message == (
        "api did not become healthy (running, health unhealthy, exit code 0); compose said: container proj-api-1 "
        "is unhealthy; its last log lines:\nlogs of proj-api-1"
    )


@pytest.mark.usefixtures("clock")
def test_compose_failed_without_a_culprit_says_what_was_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _compose_failure(monkeypatch, _states(_state("api", health="starting")))
    assert message == "compose up failed: no output; not started: ['bot']"
    no_stderr = SimpleNamespace(stderr=None)
    with pytest.raises(OpsError, match=r"^compose up failed: no output; not started: \['api'\]$"):
        compose._compose_failed(STACK, ["api"], {}, no_stderr)  # type: ignore[arg-type]


def test_the_proxy_reuses_time_wait_ports_for_its_upstream_connections() -> None:
    """One connection per proxied request (the upstream is resolved per request): without port reuse,
    ports held in TIME_WAIT capped the proxy at ~470 requests/s to one upstream (benchmarks/stack.py)."""
    proxy = yaml.safe_load((COMPOSE_DIR / "docker-compose.proxy.yml").read_text())["services"]["proxy"]
    assert proxy["sysctls"]["net.ipv4.tcp_tw_reuse"] == 1
    low, high = map(int, proxy["sysctls"]["net.ipv4.ip_local_port_range"].split())
    assert 8443 < low < high <= 65535  # above the ports nginx listens on


# --- the toolkit's own run of a healthcheck, before Docker's first (10 s after start) -----------------------------


def _checked(health: str = "starting", status: str = "running", test: tuple[str, ...] = ("CMD", "probe", "-q")):
    return ServiceState("redis", "proj-redis-1", status, health, 0, 0, "", test)


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """engine.exec_exit_code recorded; it answers 0 (passed) unless the container is in FAILING."""
    ran: list[tuple[str, list[str]]] = []

    def exec_exit_code(container: str, argv: list[str]) -> int | None:
        ran.append((container, argv))
        return 1 if container in FAILING else 0

    monkeypatch.setattr(engine, "exec_exit_code", exec_exit_code)
    FAILING.clear()
    return ran


FAILING: set[str] = set()


def test_a_starting_service_runs_its_own_healthcheck_command_now(execs: list[tuple[str, list[str]]]) -> None:
    assert compose.probe_ready(_checked())
    assert compose.probe_ready(_checked(test=("CMD-SHELL", "[ -f /tmp/ready ]")))
    assert execs == [("proj-redis-1", ["probe", "-q"]), ("proj-redis-1", ["/bin/sh", "-c", "[ -f /tmp/ready ]"])]
    FAILING.add("proj-redis-1")
    assert not compose.probe_ready(_checked())


def test_dockers_own_verdict_or_no_healthcheck_needs_no_exec(execs: list[tuple[str, list[str]]]) -> None:
    assert compose.probe_ready(_checked("healthy"))
    assert compose.probe_ready(_checked("none", test=()))
    assert not compose.probe_ready(_checked(status="exited"))
    assert not compose.probe_ready(_checked("starting", test=("NONE",)))  # disabled, yet Docker says starting
    assert execs == []


def test_the_wait_takes_a_passed_check_before_dockers_first(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, execs: list[tuple[str, list[str]]]
) -> None:
    starting = ServiceState("api", "proj-api-1", "running", "starting", 0, 0, "", ("CMD", "probe"))
    _polls(monkeypatch, _states(starting))
    said: list[str] = []
    assert compose.wait_healthy(STACK, ["api"], timeout=60, progress=said.append) == 0.0
    assert said == ["    0.0s  api: running/ready (probed)"]
    assert execs == [("proj-api-1", ["probe"])]


def test_a_failing_check_is_run_again_at_most_every_half_second(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, execs: list[tuple[str, list[str]]]
) -> None:
    starting = ServiceState("api", "proj-api-1", "running", "starting", 0, 0, "", ("CMD", "probe"))
    _polls(monkeypatch, _states(starting))
    FAILING.add("proj-api-1")
    with pytest.raises(OpsError, match="timed out after 3 s waiting for api"):
        compose.wait_healthy(STACK, ["api"], timeout=3)
    # 3 s of 0.25 s polls: one exec every other poll, never more.
    assert 6 <= len(execs) <= 8
    assert len(clock.sleeps) >= 12


def test_a_container_that_answered_then_was_replaced_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, execs: list[tuple[str, list[str]]]
) -> None:
    first = ServiceState("api", "proj-api-1", "running", "starting", 0, 0, "", ("CMD", "probe"))
    second = ServiceState("api", "proj-api-2", "running", "starting", 0, 0, "", ("CMD", "probe"))
    FAILING.add("proj-api-2")
    _polls(monkeypatch, _states(first), _states(second))  # the baseline, then the new container each poll
    with pytest.raises(OpsError, match="timed out"):
        compose.wait_healthy(STACK, ["api"], timeout=1, fail_fast=False)
    assert {container for container, _argv in execs} == {"proj-api-2"}


# --- Compose's config hashes, kept while their inputs are unchanged ------------------------------------------------


def test_config_hashes_are_kept_until_a_compose_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "base.yml"
    base.write_text("services: {}\n")
    stack = Stack("dev", "proj", {"HTTP_PORT": "8080"}, files=[base])
    with runner.use(runner.FakeRunner()) as fake:
        fake.answer("docker", "compose", "version", stdout="Docker Compose version v2.33.1")
        hash_command = ("docker", *stack.command("config", "--hash", "*")[1:])
        fake.answer(*hash_command, stdout="api 1\n")
        assert compose.config_hashes(stack) == {"api": "1"}
        assert compose.config_hashes(stack) == {"api": "1"}
        asked = [c for c in fake.commands() if c.endswith("config --hash *")]
        assert len(asked) == 1  # the second answer came from the record
        base.write_text("services: {api: {}}\n")
        fake.answer(*hash_command, stdout="api 2\n")
        assert compose.config_hashes(stack) == {"api": "2"}
        assert len([c for c in fake.commands() if c.endswith("config --hash *")]) == 2


@pytest.mark.parametrize(
    "change",
    [
        lambda stack, ids: stack.settings.update({"HTTP_PORT": "9090"}),
        lambda stack, ids: ids.update({"ns/api:1": "sha256:new"}),  # a rebuilt image: its ID is in the hash
        lambda stack, ids: os.environ.update({"COMPOSE_PROFILES": "x"}),
        lambda stack, ids: os.environ.update({"DOMAIN_FROM_ENV": "x.test"}),  # a variable the file interpolates
    ],
    ids=["a setting", "an image ID", "Compose's own environment", "a variable of this process it reads"],
)
def test_config_hashes_are_asked_again_when_what_they_hash_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    monkeypatch.delenv("DOMAIN_FROM_ENV", raising=False)
    ids = {"ns/api:1": "sha256:old"}
    monkeypatch.setattr(docker, "inspect", lambda kind, name: {"Id": ids[name]})
    base = tmp_path / "base.yml"
    base.write_text("services: {proxy: {environment: {PUBLIC_NAME: '${DOMAIN_FROM_ENV:-localhost}'}}}\n")
    stack = Stack("dev", "proj", {"HTTP_PORT": "8080", "API_IMAGE": "ns/api:1"}, files=[base])
    with runner.use(_compose_v2()) as fake:
        fake.answer("docker", *stack.command("config", "--hash", "*")[1:], stdout="api 1\n")
        compose.config_hashes(stack)
        compose.config_hashes(stack)
        change(stack, ids)
        compose.config_hashes(stack)
    assert len([c for c in fake.commands() if c.endswith("config --hash *")]) == 2
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    monkeypatch.delenv("DOMAIN_FROM_ENV", raising=False)


def test_a_container_paused_or_gone_at_the_exec_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(container: str, argv: list[str]) -> int:
        raise OpsError("Docker API: Container proj-redis-1 is paused, unpause the container before exec")

    monkeypatch.setattr(engine, "exec_exit_code", refused)
    assert not compose.probe_ready(_checked())


def test_unhealthy_until_dockers_next_check_does_not_fail_a_service_whose_check_passes_now(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, execs: list[tuple[str, list[str]]]
) -> None:
    """After a dependency's outage Docker says "unhealthy" until its next check, up to 10 s later."""
    recovering = ServiceState("api", "proj-api-1", "running", "unhealthy", 0, 0, "", ("CMD", "probe"))
    _polls(monkeypatch, _states(recovering))
    assert compose.wait_healthy(STACK, ["api"], timeout=60) == 0.0
    FAILING.add("proj-api-1")
    with pytest.raises(OpsError, match="api did not become healthy"):
        compose.wait_healthy(STACK, ["api"], timeout=60)


def test_a_service_restarted_by_its_policy_fails_the_wait_whatever_its_check_says_now(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, execs: list[tuple[str, list[str]]]
) -> None:
    before = ServiceState("api", "proj-api-1", "running", "starting", 0, 0, "", ("CMD", "probe"))
    restarted = ServiceState("api", "proj-api-1", "running", "unhealthy", 0, 1, "", ("CMD", "probe"))
    _polls(monkeypatch, _states(before), _states(restarted))
    with pytest.raises(
        OpsError, match=r"api did not become healthy \(running, health unhealthy, exit code 0, restarts 1\)"
    ):
        compose.wait_healthy(STACK, ["api"], timeout=60)
