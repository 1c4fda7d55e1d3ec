"""LiveStack, the running stack as secret rotation drives it, over a faked docker: what runs in which
container, what goes on stdin (every secret) and never in argv, and which services roll or restart."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import compose, docker, engine, maintenance, rollout, runner, secrets
from analyticbot_ops.backups import DB_NAME, DB_USER
from analyticbot_ops.errors import OpsError
from analyticbot_ops.model import Labels
from analyticbot_ops.paths import REPO_ROOT

from .secrets_support import populate

PROJECT = "abmaint"


class World:
    """The containers the daemon lists, what redis-cli and psql answer, and the rolls asked for."""

    def __init__(self) -> None:
        self.containers: list[dict[str, Any]] = []
        self.redis_says = b"OK\nOK\n"
        self.psql: tuple[int, bytes] = (0, b"")
        self.rolled: list[str] = []
        self.waited: list[tuple[Any, ...]] = []

    def run(self, service: str, *, name: str | None = None, status: str = "running") -> None:
        self.containers.append(
            {
                "Name": f"/{name or f'{PROJECT}-{service}-1'}",
                "Created": f"2024-05-01T00:00:{len(self.containers):02d}Z",
                "RestartCount": 0,
                "Config": {"Labels": {Labels.PROJECT: PROJECT, Labels.SERVICE: service, Labels.ONEOFF: "False"}},
                "State": {"Status": status, "Running": status == "running", "Health": {"Status": "healthy"}},
            }
        )

    def by_label(self, label: str) -> list[dict[str, Any]]:
        assert label == f"{Labels.PROJECT}={PROJECT}"
        return list(self.containers)

    def redis_cli(self, call: runner.Call) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(call.argv, 0, self.redis_says, b"")

    def psql_answer(self, call: runner.Call) -> subprocess.CompletedProcess[bytes]:
        code, err = self.psql
        return subprocess.CompletedProcess(call.argv, code, b"", err)

    def roll(self, stack: compose.Stack, service: str, *, progress: Any = None, **_kw: Any) -> rollout.Outcome:
        self.rolled.append(service)
        return rollout.Outcome(service, "rolled", 1.0, "")

    def wait_healthy(self, stack: compose.Stack, services: list[str], timeout: float, progress: Any) -> float:
        self.waited.append((stack.project, tuple(services), timeout, progress))
        return 0.0


def _no_engine(*_a: Any, **_k: Any) -> Any:
    raise AssertionError("a unit test reached the Engine API")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    state = World()
    for service in ("postgres", "redis", "api", "bot", "mtproto", "proxy"):
        state.run(service)
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient("/usr/bin/docker", "20.10.24", False))
    monkeypatch.setattr(docker, "containers_by_label", state.by_label)
    monkeypatch.setattr(docker, "require_daemon", lambda: "20.10.24")
    for name in ("inspect", "containers", "logs", "server_version"):
        monkeypatch.setattr(engine, name, _no_engine)
    monkeypatch.setattr(compose, "compose_command", lambda: ["docker-compose"])
    monkeypatch.setattr(maintenance.rollout, "roll", state.roll)
    monkeypatch.setattr(maintenance, "wait_healthy", state.wait_healthy)
    return state


@pytest.fixture
def fake(world: World) -> Iterator[runner.FakeRunner]:
    fake = runner.FakeRunner()
    fake.answers[("docker", "exec", "-i", f"{PROJECT}-redis-1", "redis-cli")] = world.redis_cli
    fake.answers[("docker", "exec", "-i", f"{PROJECT}-postgres-1", "psql")] = world.psql_answer
    with runner.use(fake):
        yield fake


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    populate(tmp_path / "secrets", "dev")
    return tmp_path / "secrets"


def _live(sdir: Path, said: list[str] | None = None) -> maintenance.LiveStack:
    stack = compose.Stack("dev", PROJECT, {"SECRETS_DIR": str(sdir)}, [])
    return maintenance.LiveStack(stack, said.append if said is not None else lambda _m: None)


# --- PostgreSQL -------------------------------------------------------------------------------------------


def test_sql_goes_to_psql_in_the_postgres_container_on_stdin(world: World, fake: runner.FakeRunner, sdir: Path) -> None:
    said: list[str] = []
    sql = "ALTER ROLE analyticbot_api WITH PASSWORD 'SCRAM-SHA-256$4096:...';"
    _live(sdir, said).exec_postgres_sql(sql)
    assert [c.argv for c in fake.calls] == [
        (
            "/usr/bin/docker",
            "exec",
            "-i",
            f"{PROJECT}-postgres-1",
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            DB_USER,
            "-d",
            DB_NAME,
            "-q",
        )
    ]
    assert fake.calls[0].input == sql.encode()
    assert said == ["  applying the change in PostgreSQL"]


def test_sql_that_postgres_refuses_is_an_error_naming_the_container(
    world: World, fake: runner.FakeRunner, sdir: Path
) -> None:
    world.psql = (3, b'ERROR:  role "analyticbot_api" does not exist\n')
    with pytest.raises(OpsError) as caught:
        _live(sdir).exec_postgres_sql("ALTER ROLE analyticbot_api ...")
    assert str(caught.value) == f'psql in {PROJECT}-postgres-1 failed: ERROR:  role "analyticbot_api" does not exist'


def test_a_stopped_postgres_says_how_to_start_the_stack(world: World, fake: runner.FakeRunner, sdir: Path) -> None:
    world.containers[0]["State"].update(Status="exited", Running=False)
    with pytest.raises(OpsError) as caught:
        _live(sdir).exec_postgres_sql("SELECT 1")
    assert str(caught.value) == (
        f"postgres of {PROJECT} is not running; start the stack first (`invoke stack.up --env dev`)"
    )
    assert fake.calls == []


# --- Redis ---------------------------------------------------------------------------------------------


def test_a_redis_password_is_set_as_a_hash_by_the_ops_user_on_stdin(
    world: World, fake: runner.FakeRunner, sdir: Path
) -> None:
    said: list[str] = []
    admin = secrets.read_secret("redis_admin_password", sdir)
    _live(sdir, said).redis_acl_setpass("analyticbot", "Nw7#pQ2zLm9!vR4t")
    (call,) = fake.calls
    assert call.argv == ("/usr/bin/docker", "exec", "-i", f"{PROJECT}-redis-1", "redis-cli", "-h", "127.0.0.1")
    digest = hashlib.sha256(b"Nw7#pQ2zLm9!vR4t").hexdigest()
    assert call.input == f"AUTH ops {admin}\nACL SETUSER analyticbot resetpass #{digest}\n".encode()
    assert said == ["  applying the change in Redis's live ACL (user analyticbot)"]


def test_after_changing_the_ops_password_the_next_change_authenticates_with_the_new_one(
    world: World, fake: runner.FakeRunner, sdir: Path
) -> None:
    live = _live(sdir)
    old_admin = secrets.read_secret("redis_admin_password", sdir)
    live.redis_acl_setpass("ops", "Hq5$tW8xNc3!bK6m")
    live.redis_acl_setpass("analyticbot", "Nw7#pQ2zLm9!vR4t")  # the file still holds the old ops password
    first, second = (c.input for c in fake.calls)
    assert isinstance(first, bytes) and isinstance(second, bytes)
    assert first.startswith(f"AUTH ops {old_admin}\n".encode())
    assert second.startswith(b"AUTH ops Hq5$tW8xNc3!bK6m\n")


def test_a_refused_auth_is_an_error_and_changes_nothing_remembered(
    world: World, fake: runner.FakeRunner, sdir: Path
) -> None:
    world.redis_says = (
        b"WRONGPASS invalid username-password pair or user is disabled.\nNOAUTH Authentication required.\n"
    )
    live = _live(sdir)
    with pytest.raises(OpsError) as caught:
        live.redis_acl_setpass("ops", "Hq5$tW8xNc3!bK6m")
    assert str(caught.value) == (
        "Redis refused the ACL change (WRONGPASS invalid username-password pair or user is disabled.)"
    )
    assert "Hq5$tW8xNc3!bK6m" not in str(caught.value)
    world.redis_says = b"OK\nOK\n"
    live.redis_acl_setpass("analyticbot", "Nw7#pQ2zLm9!vR4t")
    admin = secrets.read_secret("redis_admin_password", sdir)
    assert fake.calls[-1].input.startswith(f"AUTH ops {admin}\n".encode())  # not the refused new one


def test_a_refused_acl_change_says_why(world: World, fake: runner.FakeRunner, sdir: Path) -> None:
    world.redis_says = b"OK\nERR Error in ACL SETUSER modifier 'resetpass'\n"
    with pytest.raises(OpsError, match=r"Redis refused the ACL change \(ERR Error in ACL SETUSER"):
        _live(sdir).redis_acl_setpass("analyticbot", "Nw7#pQ2zLm9!vR4t")


# --- restarts -----------------------------------------------------------------------------------------


def test_http_services_that_can_roll_roll_and_the_others_restart(
    world: World, fake: runner.FakeRunner, sdir: Path
) -> None:
    world.run("bot", name=f"{PROJECT}-bot-2")  # two bots at once: it cannot roll
    said: list[str] = []
    live = _live(sdir, said)
    live.restart(["api", "bot", "mtproto"])
    assert world.rolled == ["api"]
    assert fake.commands() == [f"docker-compose -p {PROJECT} restart bot mtproto"]
    assert fake.calls[0].env == live.stack.settings and fake.calls[0].cwd == REPO_ROOT
    assert said == ["  rolling api", "  restarting bot, mtproto"]


def test_a_service_the_stack_does_not_run_is_not_restarted(world: World, fake: runner.FakeRunner, sdir: Path) -> None:
    """With the monitoring overlay off, rotating an exporter's password restarts nothing that is not there: the
    exporter reads the new file when it starts."""
    live = _live(sdir)
    assert not live.stack.monitoring
    live.restart(["mtproto", "redis-exporter"])
    live.wait_healthy(["redis-exporter"], 1)
    assert fake.commands() == [f"docker-compose -p {PROJECT} restart mtproto"]
    live.stack.monitoring = True
    live.restart(["redis-exporter"])
    assert fake.commands()[-1] == f"docker-compose -p {PROJECT} restart redis-exporter"


def test_when_every_service_rolls_nothing_restarts(world: World, fake: runner.FakeRunner, sdir: Path) -> None:
    _live(sdir).restart(["api", "bot"])
    assert world.rolled == ["api", "bot"] and fake.calls == []


def test_without_the_proxy_http_services_restart_too(world: World, fake: runner.FakeRunner, sdir: Path) -> None:
    world.containers = [c for c in world.containers if c["Config"]["Labels"][Labels.SERVICE] != "proxy"]
    _live(sdir).restart(["api"])
    assert world.rolled == [] and fake.commands() == [f"docker-compose -p {PROJECT} restart api"]


def test_a_failed_restart_is_an_error(world: World, fake: runner.FakeRunner, sdir: Path) -> None:
    fake.answer("docker-compose", "-p", PROJECT, "restart", stderr="no such service: mtproto\n", returncode=1)
    with pytest.raises(OpsError, match=r"^compose restart failed: no such service: mtproto$"):
        _live(sdir).restart(["mtproto"])


def test_wait_healthy_waits_on_the_stack_with_the_live_progress(world: World, sdir: Path) -> None:
    said: list[str] = []
    live = _live(sdir, said)
    live.wait_healthy(["api", "bot"], 42.0)
    assert world.waited == [(PROJECT, ("api", "bot"), 42.0, said.append)]


# --- a whole rotation through LiveStack -------------------------------------------------------------


def test_rotating_the_redis_password_sets_it_live_swaps_the_files_and_rolls_its_readers(
    world: World, fake: runner.FakeRunner, sdir: Path
) -> None:
    old = secrets.read_secret("redis_password", sdir)
    result = secrets.rotate("redis_password", sdir, _live(sdir), timeout=30)
    new = secrets.read_secret("redis_password", sdir)
    assert new != old and result.files == ("redis_password", "redis_acl")
    (call,) = fake.calls
    digest = hashlib.sha256(new.encode()).hexdigest()
    assert call.input.endswith(f"ACL SETUSER analyticbot resetpass #{digest}\n".encode())
    assert not any(new in word or old in word for c in fake.calls for word in c.argv)
    assert world.rolled == list(result.restarted) and world.rolled  # api reads it; rolled, never restarted
    assert world.waited[0][1:3] == (tuple(result.restarted), 30)


def test_rotating_a_database_password_alters_the_role_through_psql_stdin(
    world: World, fake: runner.FakeRunner, sdir: Path
) -> None:
    old = secrets.read_secret("postgres_collector_password", sdir)
    result = secrets.rotate("postgres_collector_password", sdir, _live(sdir), timeout=30)
    call = fake.calls[0]
    assert call.argv[3:5] == (f"{PROJECT}-postgres-1", "psql")
    assert isinstance(call.input, bytes) and call.input.startswith(b"ALTER ROLE")
    assert b"analyticbot_collector" in call.input
    new = secrets.read_secret("postgres_collector_password", sdir)
    assert new != old and new.encode() not in call.input  # a SCRAM verifier, never the password itself
    assert fake.commands()[1:] == [f"docker-compose -p {PROJECT} restart {' '.join(result.restarted)}"]
    assert world.rolled == []  # the collector is a singleton
