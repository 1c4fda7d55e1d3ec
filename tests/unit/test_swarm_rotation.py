"""Secret rotation on a swarm (swarm/rotation.py, SwarmStack) against a fake `docker` CLI and a fake swarm manager
(tests/unit/swarm_support.py): the task's node and container are found through the manager, SQL and Redis commands
go into that container on stdin (never a secret in argv), a "restart" is a redeploy, and the whole of
`secrets.rotate` runs through it, rollback included."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import compose, docker, secrets
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.secrets import folder as secrets_folder
from analyticbot_ops.swarm import deploy as swarm_deploy
from analyticbot_ops.swarm import lab as swarm_lab
from analyticbot_ops.swarm import rotation as swarm_rotation
from tests.unit import swarm_support as support
from tests.unit.secrets_support import populate
from tests.unit.swarm_support import Svc

LAB = support.three_nodes()
P = support.PROJECT
NODE1, NODE2 = "tcp://172.29.7.11:2375", "tcp://172.29.7.12:2375"
PSQL = ("psql", "-h", "/tmp", "-v", "ON_ERROR_STOP=1", "-U", "analyticbot", "-d", "analyticbot", "-q")
REDIS_CLI = ("redis-cli", "-h", "127.0.0.1")
NEW_PW = "Nw7#pQ2zLm9!vR4t"


def _label(service: str) -> str:
    return f"label=com.docker.swarm.service.name={P}_{service}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass
class World:
    """A stack on the fake swarm: the manager answers `service ...` (FakeSwarm), each node's engine lists the
    containers of the tasks it runs, postgres records the SQL it is fed, Redis keeps a live ACL (user -> sha256)
    and answers as redis-cli does when its commands come on stdin. A `--context NAME` prefix is taken off first."""

    swarm: support.FakeSwarm
    redis_users: dict[str, str] = dataclasses.field(default_factory=dict)
    sql: list[str] = dataclasses.field(default_factory=list)
    containers: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"postgres": "c0ffee01\n", "redis": "deadbe02\n"}
    )

    def __call__(self, ran: support.Ran) -> Any:
        if ran.args[:1] == ("--context",):
            ran = dataclasses.replace(ran, args=ran.args[2:])
        args = ran.args
        if args[:3] == ("ps", "-q", "--filter"):
            service = args[3].rsplit("_", 1)[1]
            return support.done(self.containers.get(service, ""))
        if args[:2] == ("exec", "-i") and args[3:4] == ("psql",):
            assert ran.stdin is not None
            self.sql.append(ran.stdin.decode())
            return support.done()
        if args[:2] == ("exec", "-i") and args[3:4] == ("redis-cli",):
            assert ran.stdin is not None
            return support.done(self.redis(ran.stdin.decode()))
        return self.swarm(ran)

    def redis(self, script: str) -> str:
        said, authed = [], False
        for line in script.splitlines():
            words = line.split()
            if words[0] == "AUTH":
                authed = self.redis_users.get(words[1]) == _sha(words[2])
                said.append("OK" if authed else "WRONGPASS invalid username-password pair or user is disabled.")
            elif words[:2] == ["ACL", "SETUSER"] and authed:
                self.redis_users[words[2]] = words[4].removeprefix("#")
                said.append("OK")
            else:
                said.append("NOAUTH Authentication required.")
        return "".join(s + "\n" for s in said)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> support.FakeDocker:
    """docker.docker answered by the fake; no real command or Engine API call can run."""
    fake = support.FakeDocker()
    monkeypatch.setattr(docker, "docker", fake)
    monkeypatch.setattr(docker, "inspect", lambda kind, name: pytest.fail(f"unexpected inspect {kind} {name}"))
    return fake


@pytest.fixture
def world(fake: support.FakeDocker) -> World:
    world = World(support.FakeSwarm([support.converged()]))
    fake.handler = world
    return world


@pytest.fixture
def stack(tmp_path: Path) -> compose.Stack:
    return compose.Stack("prod", P, support.settings(tmp_path))


@pytest.fixture
def sdir(stack: compose.Stack) -> Path:
    """The stack's secrets folder, filled as `secrets-init` would."""
    folder = Path(stack.settings["SECRETS_DIR"])
    populate(folder)
    return folder


def _control(stack: compose.Stack, lab: swarm_lab.Lab = LAB, said: list[str] | None = None) -> Any:
    return swarm_rotation.SwarmStack(stack, lab, said.append if said is not None else lambda _m: None)


def _execs(fake: support.FakeDocker) -> list[support.Ran]:
    return [c for c in fake.calls if "exec" in c.args]


def verifies(sql: str, role: str, password: str) -> bool:
    """Whether `sql` is ALTER ROLE of `role` with a SCRAM verifier of `password` (checked as the server does)."""
    match = re.fullmatch(
        rf"ALTER ROLE \"{role}\" WITH PASSWORD 'SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):[^']+';", sql.strip()
    )
    assert match, sql
    iterations, salt, stored_key = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest() == stored_key


# --- finding the task and running in it ---------------------------------------------------------------


def test_sql_goes_on_stdin_to_psql_over_the_tmp_socket_in_the_postgres_task_on_its_node(
    fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    said: list[str] = []
    _control(stack, said=said).exec_postgres_sql("ALTER ROLE x WITH PASSWORD 'SCRAM-SHA-256$s3cr3t';")

    # Where the task runs: asked of the manager.
    manager = [c for c in fake.calls if c.args[0] == "service"]
    assert manager and {c.env["DOCKER_HOST"] for c in manager if c.env} == {NODE1}
    assert manager[0].args == ("service", "ls", "--filter", f"label=com.docker.stack.namespace={P}", "-q")
    # Its container: asked of the node that runs it; then the exec there, the SQL on stdin only.
    ps, run = fake.calls[-2:]
    assert ps.args == ("ps", "-q", "--filter", _label("postgres")) and ps.env == {"DOCKER_HOST": NODE1}
    assert run.args == ("exec", "-i", "c0ffee01", *PSQL) and run.env == {"DOCKER_HOST": NODE1}
    assert run.stdin == b"ALTER ROLE x WITH PASSWORD 'SCRAM-SHA-256$s3cr3t';"
    assert run.check is False
    assert not any("s3cr3t" in " ".join(c.args) for c in fake.calls)
    assert world.sql == ["ALTER ROLE x WITH PASSWORD 'SCRAM-SHA-256$s3cr3t';"]
    assert said == ["  applying the change in PostgreSQL"]


def test_a_task_on_another_node_is_reached_on_that_node(
    fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    world.swarm.snapshots[0]["postgres"] = Svc(nodes=("node2",))
    world.containers["postgres"] = "aaaa1111\nbbbb2222\n"  # a second one (a task stopping): the first is used
    _control(stack).exec_postgres_sql("SELECT 1;")
    ps, run = fake.calls[-2:]
    assert ps.args[:2] == ("ps", "-q") and ps.env == {"DOCKER_HOST": NODE2}
    assert run.args == ("exec", "-i", "aaaa1111", *PSQL) and run.env == {"DOCKER_HOST": NODE2}


def test_a_task_on_a_node_the_lab_does_not_list_is_looked_for_on_the_manager(
    fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    world.swarm.snapshots[0]["postgres"] = Svc(nodes=("node7",))
    _control(stack).exec_postgres_sql("SELECT 1;")
    assert {c.env["DOCKER_HOST"] for c in fake.calls[-2:] if c.env} == {NODE1}


@pytest.mark.parametrize(
    "snapshot",
    [
        support.converged(postgres=Svc(running=0, nodes=())),  # no task running
        {k: v for k, v in support.converged().items() if k != "postgres"},  # no such service
        {},  # no stack at all
    ],
    ids=["no-task", "no-service", "no-stack"],
)
def test_a_service_not_running_is_an_error_and_nothing_is_run(
    fake: support.FakeDocker, world: World, stack: compose.Stack, snapshot: dict[str, Svc]
) -> None:
    world.swarm.snapshots = [snapshot]
    with pytest.raises(OpsError) as caught:
        _control(stack).exec_postgres_sql("SELECT 1;")
    assert str(caught.value) == f"postgres of {P} is not running on ablab"
    assert not [c for c in fake.calls if c.args[0] in ("ps", "exec")]


def test_a_task_without_a_container_on_its_node_is_an_error(
    fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    world.containers["postgres"] = "\n"
    with pytest.raises(OpsError) as caught:
        _control(stack).exec_postgres_sql("SELECT 1;")
    assert str(caught.value) == "postgres's task on node1 has no running container"
    assert _execs(fake) == []


def test_a_failed_psql_says_the_command_and_the_error(
    fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    fake.answer("exec", "-i", "c0ffee01", *PSQL, stderr='ERROR:  role "nobody" does not exist\n', returncode=3)
    with pytest.raises(OpsError) as caught:
        _control(stack).exec_postgres_sql("ALTER ROLE nobody WITH PASSWORD 'x';")
    assert str(caught.value) == 'psql in postgres failed: ERROR:  role "nobody" does not exist'


def test_a_failure_said_on_stdout_only_is_quoted_and_cut_to_200_characters(
    fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    fake.answer("exec", "-i", "c0ffee01", *PSQL, stdout="  " + "x" * 300 + "\n", returncode=1)
    with pytest.raises(OpsError) as caught:
        _control(stack).exec_postgres_sql("SELECT 1;")
    assert str(caught.value) == "psql in postgres failed: " + "x" * 200


# --- Redis ---------------------------------------------------------------------------------------------


def test_a_redis_password_is_set_as_a_hash_by_the_ops_user_with_everything_on_stdin(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path
) -> None:
    admin = secrets.read_secret("redis_admin_password", sdir)
    world.redis_users = {"ops": _sha(admin), "analyticbot": _sha("old")}
    said: list[str] = []
    _control(stack, said=said).redis_acl_setpass("analyticbot", NEW_PW)

    (run,) = _execs(fake)
    assert run.args == ("exec", "-i", "deadbe02", *REDIS_CLI) and run.env == {"DOCKER_HOST": NODE1}
    assert run.stdin == f"AUTH ops {admin}\nACL SETUSER analyticbot resetpass #{_sha(NEW_PW)}\n".encode()
    argv = " ".join(" ".join(c.args) for c in fake.calls)
    assert admin not in argv and NEW_PW not in argv and _sha(NEW_PW) not in argv
    assert ("ps", "-q", "--filter", _label("redis")) in fake.argvs
    assert world.redis_users["analyticbot"] == _sha(NEW_PW)
    assert said == ["  applying the change in Redis's live ACL (user analyticbot)"]


@pytest.mark.parametrize(
    "answer",
    [
        "WRONGPASS invalid username-password pair or user is disabled.\nNOAUTH Authentication required.\n",
        "OK\nERR Error in ACL SETUSER modifier 'resetpass'\n",
        "OK\n",
        "",
        "OK\nOK\nOK\n",
    ],
    ids=["wrong-admin", "acl-error", "one-ok", "nothing", "three-oks"],
)
def test_redis_answering_anything_but_two_oks_is_refused_without_a_value_in_the_message(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path, answer: str
) -> None:
    fake.answer("exec", "-i", "deadbe02", *REDIS_CLI, stdout=answer)
    with pytest.raises(OpsError) as caught:
        _control(stack).redis_acl_setpass("analyticbot", NEW_PW)
    # The reason is Redis's own answer (as on Compose); never a value.
    assert str(caught.value).startswith("Redis refused the ACL change (")
    assert NEW_PW not in str(caught.value)


def test_two_oks_with_windows_line_ends_are_accepted(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path
) -> None:
    fake.answer("exec", "-i", "deadbe02", *REDIS_CLI, stdout="OK\r\nOK\r\n")
    _control(stack).redis_acl_setpass("analyticbot", NEW_PW)


def test_a_failed_redis_cli_says_the_command_and_its_error(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path
) -> None:
    fake.answer(
        "exec", "-i", "deadbe02", *REDIS_CLI, stderr="Could not connect to Redis at 127.0.0.1:6379\n", returncode=1
    )
    with pytest.raises(OpsError) as caught:
        _control(stack).redis_acl_setpass("analyticbot", NEW_PW)
    assert str(caught.value) == "redis-cli in redis failed: Could not connect to Redis at 127.0.0.1:6379"


def test_a_missing_admin_password_stops_before_anything_runs(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path
) -> None:
    (sdir / "redis_admin_password").unlink()
    with pytest.raises(BadInput, match="secret redis_admin_password is missing"):
        _control(stack).redis_acl_setpass("analyticbot", NEW_PW)
    assert fake.calls == []


def test_after_changing_the_ops_password_the_next_change_authenticates_with_the_new_one(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path
) -> None:
    admin = secrets.read_secret("redis_admin_password", sdir)
    world.redis_users = {"ops": _sha(admin), "analyticbot": _sha("old")}
    control = _control(stack)
    control.redis_acl_setpass("ops", "Hq5$tW8xNc3!bK6m")
    control.redis_acl_setpass("analyticbot", NEW_PW)  # the file still holds the old ops password
    assert _execs(fake)[1].stdin.startswith(b"AUTH ops Hq5$tW8xNc3!bK6m\n")
    assert world.redis_users["analyticbot"] == _sha(NEW_PW)


# --- a swarm reached through a Docker context ---------------------------------------------------------------


def test_a_swarm_reached_through_a_context_is_reached_only_through_its_manager(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path
) -> None:
    lab = swarm_lab.Lab(
        "prod-swarm", "", "", (swarm_lab.Node("prod-swarm", "manager", "tcp://10.0.0.5:2376"),), "r:5000", "r:5000",
        context="prod-swarm",
    )  # fmt: skip
    world.swarm.snapshots[0]["postgres"] = Svc(nodes=("db-host-1",))  # a real swarm's own hostname
    admin = secrets.read_secret("redis_admin_password", sdir)
    world.redis_users = {"ops": _sha(admin)}
    control = _control(stack, lab)
    control.exec_postgres_sql("SELECT 1;")
    control.redis_acl_setpass("analyticbot", NEW_PW)

    assert all(c.args[:2] == ("--context", "prod-swarm") and c.env is None for c in fake.calls)
    psql, redis = _execs(fake)
    assert psql.args == ("--context", "prod-swarm", "exec", "-i", "c0ffee01", *PSQL)
    assert psql.stdin == b"SELECT 1;"
    assert redis.args == ("--context", "prod-swarm", "exec", "-i", "deadbe02", *REDIS_CLI)
    assert ("--context", "prod-swarm", "ps", "-q", "--filter", _label("postgres")) in fake.argvs
    assert world.redis_users["analyticbot"] == _sha(NEW_PW)


def test_through_a_context_a_task_the_manager_does_not_run_has_no_container(
    fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    lab = dataclasses.replace(LAB, nodes=(swarm_lab.Node("m", "manager", "10.0.0.5"),), context="far")
    world.swarm.snapshots[0]["postgres"] = Svc(nodes=("worker-2",))
    world.containers["postgres"] = ""  # the manager's engine runs no postgres container
    with pytest.raises(OpsError, match="postgres's task on manager has no running container"):
        _control(stack, lab).exec_postgres_sql("SELECT 1;")


# --- restart and wait ---------------------------------------------------------------------------------------


def test_restart_is_a_redeploy_of_the_stack_and_wait_is_wait_converged(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_deploy, "deploy", lambda *a, **k: calls.append(("deploy", a, k)) or 12.5)
    monkeypatch.setattr(swarm_deploy, "settle", lambda *a, **k: calls.append(("settle", a, k)) or 3.0)
    said: list[str] = []
    control = _control(stack, said=said)
    control.restart(["api", "bot"])
    control.wait_healthy(["api", "bot"], 42.0)
    # The redeploy only submits; the wait, with the rotation's own timeout, is the settle.
    assert calls == [
        ("deploy", (stack, LAB), {"progress": control.progress, "wait": False, "checked": True}),
        ("settle", (stack, LAB, 42.0, control.progress), {}),
    ]
    assert said == [f"  redeploying {P} with the new secret version (api, bot)"]


def test_wait_healthy_polls_the_manager_until_converged_or_times_out(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, world: World, stack: compose.Stack
) -> None:
    clock = support.FakeClock()
    monkeypatch.setattr(swarm_deploy, "time", clock)
    world.swarm.snapshots = [support.converged(api=Svc(running=1, desired=2)), support.converged()]
    _control(stack).wait_healthy(["api"], 30)
    assert world.swarm.polls == 2 and clock.slept == [1]
    world.swarm.snapshots, world.swarm.polls = [support.converged(api=Svc(running=1, desired=2))], 0
    with pytest.raises(OpsError, match=r"timed out after 5 s waiting for api"):
        _control(stack).wait_healthy(["api"], 5)


# --- secrets.rotate through SwarmStack ------------------------------------------------------------------------


@pytest.fixture
def redeploys(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, world: World, stack: compose.Stack, tmp_path: Path
) -> list[dict[str, str]]:
    """swarm.deploy.deploy runs for real against the fake manager; only what needs images and a real compose
    (preflight, push, the rendered file) is replaced. Each redeploy records the secret files it would version."""
    monkeypatch.setattr(swarm_deploy, "time", support.FakeClock())
    monkeypatch.setattr(swarm_deploy.preflight, "secrets_ready", lambda s: "ready")
    monkeypatch.setattr(swarm_deploy, "push_images", lambda s, lab, progress: dict(support.IMAGES))
    seen: list[dict[str, str]] = []
    path = tmp_path / "stack.yml"
    path.write_text("secrets: {}\n")

    def stack_file(
        s: compose.Stack, lab: swarm_lab.Lab, images: dict[str, str], first_start: dict[str, str] | None
    ) -> Path:
        folder = Path(s.settings["SECRETS_DIR"])
        seen.append({p.name: p.read_text() for p in folder.iterdir() if p.is_file()})
        return path

    monkeypatch.setattr(swarm_deploy, "stack_file", stack_file)
    return seen


def _stack_deploys(fake: support.FakeDocker) -> list[support.Ran]:
    return [c for c in fake.calls if c.args[:2] == ("stack", "deploy")]


def test_rotating_the_owner_password_alters_its_role_live_and_swaps_the_file(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path, redeploys: list[dict[str, str]]
) -> None:
    old = secrets.read_secret("postgres_password", sdir)
    result = secrets.rotate("postgres_password", sdir, _control(stack))
    new = secrets.read_secret("postgres_password", sdir)
    assert new != old
    (sql,) = world.sql
    assert verifies(sql, "analyticbot", new) and new not in sql
    (run,) = _execs(fake)
    assert run.args == ("exec", "-i", "c0ffee01", *PSQL) and not any(new in a or old in a for a in run.args)
    assert result.files == ("postgres_password",) and result.backups[0].read_text() == old
    # No running service reads the owner's password (the migrate job reads it at the next deploy): no redeploy.
    assert result.restarted == () and redeploys == [] and _stack_deploys(fake) == []


def test_rotating_a_service_password_alters_the_role_swaps_the_file_and_redeploys(
    monkeypatch: pytest.MonkeyPatch,
    fake: support.FakeDocker,
    world: World,
    stack: compose.Stack,
    sdir: Path,
    redeploys: list[dict[str, str]],
) -> None:
    waits: list[tuple[str, float]] = []
    real_wait = swarm_deploy.wait_converged
    monkeypatch.setattr(
        swarm_deploy,
        "wait_converged",
        lambda lab, project, timeout, progress, **k: (
            waits.append((project, timeout)) or real_wait(lab, project, timeout, progress, **k)
        ),
    )
    old = secrets.read_secret("postgres_api_password", sdir)
    result = secrets.rotate("postgres_api_password", sdir, _control(stack), timeout=77)
    new = secrets.read_secret("postgres_api_password", sdir)

    (sql,) = world.sql
    assert verifies(sql, "analyticbot_api", new)
    assert result.restarted == ("api",) and result.backups[0].read_text() == old
    # The redeploy came after the swap: it versions the new value, from the manager.
    assert [r["postgres_api_password"] for r in redeploys] == [new]
    (deployed,) = _stack_deploys(fake)
    assert deployed.args == (
        "stack",
        "deploy",
        "--prune",
        "--resolve-image",
        "never",
        "-c",
        str(sdir.parent / "stack.yml"),
        P,
    )
    assert deployed.env == {"DOCKER_HOST": NODE1}
    # The order: live change, redeploy (which waits itself), then the rotation's own wait with its timeout.
    order = [c.args[0] if c.args[0] == "exec" else " ".join(c.args[:2]) for c in fake.calls]
    assert order.index("exec") < order.index("stack deploy")
    assert waits[-1] == (P, 77)


def test_a_failing_redeploy_rolls_back_the_live_password_the_file_and_the_services(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path, redeploys: list[dict[str, str]]
) -> None:
    fake.answer_with(
        ("stack", "deploy", "--prune", "--resolve-image", "never", "-c", str(sdir.parent / "stack.yml"), P),
        support.done(stderr="failed to update service abswarm_api: secret not found", returncode=1),
        support.done(),
    )
    old = secrets.read_secret("postgres_api_password", sdir)
    with pytest.raises(OpsError) as caught:
        secrets.rotate("postgres_api_password", sdir, _control(stack))
    message = str(caught.value)
    assert message == (
        "rotation of postgres_api_password failed and was rolled back: "
        "docker stack failed: failed to update service abswarm_api: secret not found"
    )
    # The live password: set to the new value, then back to the old one.
    first, second = world.sql
    assert not verifies(first, "analyticbot_api", old) and verifies(second, "analyticbot_api", old)
    # The file holds the old value again, and the services were redeployed with it.
    assert secrets.read_secret("postgres_api_password", sdir) == old
    assert len(_stack_deploys(fake)) == 2
    assert redeploys[0]["postgres_api_password"] != old and redeploys[1]["postgres_api_password"] == old
    assert old not in message


def test_rotating_the_redis_password_sets_the_live_acl_swaps_both_files_and_redeploys(
    fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path, redeploys: list[dict[str, str]]
) -> None:
    admin = secrets.read_secret("redis_admin_password", sdir)
    old_acl = (sdir / "redis_acl").read_text()
    world.redis_users = {"ops": _sha(admin), "analyticbot": _sha(secrets.read_secret("redis_password", sdir))}
    result = secrets.rotate("redis_password", sdir, _control(stack))
    new = secrets.read_secret("redis_password", sdir)
    assert world.redis_users["analyticbot"] == _sha(new)
    assert result.files == ("redis_password", "redis_acl") and result.restarted == ("api",)
    assert (sdir / "redis_acl").read_text() != old_acl and _sha(new) in (sdir / "redis_acl").read_text()
    assert redeploys[0]["redis_password"] == new and len(_stack_deploys(fake)) == 1
    assert not any(new in " ".join(c.args) or admin in " ".join(c.args) for c in fake.calls)


def test_a_redis_admin_rotation_interrupted_before_the_swap_restores_the_live_ops_password(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, world: World, stack: compose.Stack, sdir: Path
) -> None:
    admin = secrets.read_secret("redis_admin_password", sdir)
    world.redis_users = {"ops": _sha(admin)}

    def backup(*_a: Any) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(secrets_folder, "backup", backup)
    with pytest.raises(OpsError) as caught:
        secrets.rotate("redis_admin_password", sdir, _control(stack))
    assert "rolled back" in str(caught.value) and "rollback incomplete" not in str(caught.value)
    assert world.redis_users["ops"] == _sha(admin)


def test_the_redeploy_waits_as_long_as_the_rotation_was_given(
    monkeypatch: pytest.MonkeyPatch,
    fake: support.FakeDocker,
    world: World,
    stack: compose.Stack,
    sdir: Path,
    redeploys: list[dict[str, str]],
) -> None:
    timeouts: list[float] = []
    monkeypatch.setattr(swarm_deploy, "wait_converged", lambda lab, project, timeout, *a, **k: timeouts.append(timeout))
    secrets.rotate("jwt_secret_key", sdir, _control(stack), timeout=900)
    assert timeouts == [900]  # the one wait after the redeploy, with the rotation's timeout
