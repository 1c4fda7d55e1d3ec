"""Deploying on a swarm (swarm/deploy.py) against a fake `docker` CLI and a fake swarm manager
(tests/unit/swarm_support.py): images pushed once and pinned by digest, the stack file, the services' states,
waiting until converged (a rollback or a timeout says why), and the order of a deploy, rollback and remove."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from analyticbot_ops import compose, docker, model, preflight, tls
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.swarm import deploy as swarm_deploy
from analyticbot_ops.swarm import lab as swarm_lab
from analyticbot_ops.swarm import render
from tests.unit import swarm_support as support
from tests.unit.swarm_support import Svc

# The stack these tests render: the base files, without the monitoring and backup overlays (a stack file with the
# backup overlay has its own test).
SWARM_SERVICES = model.services(monitoring=False, backup=False)

LAB = support.three_nodes()
P = support.PROJECT


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> support.FakeDocker:
    """docker.docker answered by the fake; no real command or Engine API call can run."""
    fake = support.FakeDocker()
    monkeypatch.setattr(docker, "docker", fake)
    monkeypatch.setattr(docker, "inspect", lambda kind, name: pytest.fail(f"unexpected inspect {kind} {name}"))
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> support.FakeClock:
    clock = support.FakeClock()
    monkeypatch.setattr(swarm_deploy, "time", clock)
    return clock


@pytest.fixture
def stack(tmp_path: Path) -> compose.Stack:
    return compose.Stack("prod", P, support.settings(tmp_path))


def _swarm(fake: support.FakeDocker, *snapshots: dict[str, Svc]) -> support.FakeSwarm:
    swarm = support.FakeSwarm(list(snapshots))
    fake.handler = swarm
    return swarm


def _image_id(tag: str) -> str:
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


def _digest(local: str) -> str:
    return "sha256:" + hashlib.sha256(b"pushed " + local.encode()).hexdigest()


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any] | None]:
    """docker.inspect of images: each setting's tag exists; what was tagged for the lab's registry has the
    registry's digest (beside one from another registry)."""
    known: dict[str, dict[str, Any] | None] = {}

    def inspect(kind: str, name: str) -> dict[str, Any] | None:
        assert kind == "image"
        if name in known:
            return known[name]
        if name in support.IMAGES.values():
            return {"Id": _image_id(name)}
        if name.startswith(LAB.registry_local + "/"):
            repository = name.rsplit(":", 1)[0]
            return {"RepoDigests": [f"docker.io/ns/x@sha256:{'0' * 64}", f"{repository}@{_digest(name)}"]}
        return None

    monkeypatch.setattr(docker, "inspect", inspect)
    return known


# --- push_images ---------------------------------------------------------------------------------------


def test_each_image_is_tagged_and_pushed_once_and_pinned_by_the_registrys_digest(
    fake: support.FakeDocker, registry: Any, stack: compose.Stack
) -> None:
    said: list[str] = []
    refs = swarm_deploy.push_images(stack, LAB, said.append)
    variables = list(dict.fromkeys(s.image_variable for s in SWARM_SERVICES))
    assert list(refs) == variables  # API_IMAGE once, though migrate and api both run it
    expected_calls = []
    for variable in variables:
        tag = support.IMAGES[variable]
        repository = tag.rsplit(":", 1)[0]
        local = f"127.0.0.1:49153/{repository}:{_image_id(tag).removeprefix('sha256:')[:12]}"
        # The push tag is removed once pushed: the daemon's image list does not grow with each deploy.
        expected_calls += [("tag", tag, local), ("push", local), ("rmi", local)]
        # The nodes pull from the registry's address on the lab's network, by the digest it gave.
        assert refs[variable] == f"172.29.7.2:5000/{repository}@{_digest(local)}"
    assert fake.argvs == expected_calls
    assert {c.timeout for c in fake.made("push")} == {600}
    assert said == [f"  {variable}: {refs[variable]}" for variable in variables]


def test_a_tag_pinned_by_digest_is_pushed_under_its_repository(
    fake: support.FakeDocker, registry: Any, stack: compose.Stack
) -> None:
    stack.settings["API_IMAGE"] = f"ns/api@sha256:{'c' * 64}"
    registry[stack.settings["API_IMAGE"]] = {"Id": "sha256:" + "e" * 64}
    refs = swarm_deploy.push_images(stack, LAB, lambda _m: None)
    assert ("push", f"127.0.0.1:49153/ns/api:{'e' * 12}") in fake.argvs
    assert refs["API_IMAGE"].startswith("172.29.7.2:5000/ns/api@sha256:")


def test_a_missing_image_stops_the_push_with_how_to_build_it(
    fake: support.FakeDocker, registry: Any, stack: compose.Stack
) -> None:
    registry[support.IMAGES["REDIS_IMAGE"]] = None
    with pytest.raises(OpsError, match=r"image ns/redis:bookworm is missing; run `invoke images.base images.build`"):
        swarm_deploy.push_images(stack, LAB, lambda _m: None)
    assert not any("redis" in " ".join(argv) for argv in fake.argvs)


def test_a_push_without_a_digest_from_the_lab_registry_fails(
    fake: support.FakeDocker, registry: Any, stack: compose.Stack
) -> None:
    local = f"127.0.0.1:49153/ns/postgres:{_image_id(support.IMAGES['POSTGRES_IMAGE'])[7:19]}"
    registry[local] = {"RepoDigests": [f"docker.io/ns/postgres@sha256:{'1' * 64}"]}  # another registry's only
    with pytest.raises(OpsError, match=rf"the registry gave no digest for {local}$"):
        swarm_deploy.push_images(stack, LAB, lambda _m: None)
    registry[local] = None  # gone after the push: no digest either
    with pytest.raises(OpsError, match="the registry gave no digest"):
        swarm_deploy.push_images(stack, LAB, lambda _m: None)


def test_an_image_from_a_registry_with_a_port_is_pushed_under_a_valid_reference(
    fake: support.FakeDocker, registry: Any, stack: compose.Stack
) -> None:
    # .env may name an image in a private registry (API_IMAGE=registry.internal:5000/ab/api:1.4); the repository
    # kept under the lab's registry must not carry that port: `a:5000/b:5000/c` is not a reference Docker takes.
    stack.settings["API_IMAGE"] = "registry.internal:5000/ab/api:1.4"
    registry["registry.internal:5000/ab/api:1.4"] = {"Id": "sha256:" + "f" * 64}
    swarm_deploy.push_images(stack, LAB, lambda _m: None)
    (tagged,) = [argv[2] for argv in fake.argvs if argv[0] == "tag" and "api" in argv[1]]
    path = tagged.removeprefix(LAB.registry_local + "/").rsplit(":", 1)[0]
    assert ":" not in path, tagged


# --- stack_file ----------------------------------------------------------------------------------------


def _secrets_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name in (
        "postgres_password",
        "postgres_api_password",
        "postgres_collector_password",
        "redis_password",
        "redis_acl",
        "jwt_secret_key",
        "api_read_token",
        "telegram_webhook_secret",
        "telegram_api_id",
        "pgbackrest_db_conf",
    ):
        (folder / name).write_text(f"s3cr3t-{name}-value")  # fmt: skip
    (folder / "stripe_secret_key").write_text("")  # an optional one left empty
    (folder / "README.md").write_text("what these files are")
    (folder / ".gitignore").write_text("*")
    (folder / ".backup").mkdir()
    (folder / ".backup" / "jwt_secret_key.2026").write_text("old")
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "fullchain.pem").write_text("CHAIN")
    (tls / "privkey.pem").write_text("KEY")
    return folder


def test_the_stack_file_mounts_the_non_empty_secrets_and_holds_no_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stack: compose.Stack
) -> None:
    folder = _secrets_folder(tmp_path)
    monkeypatch.setattr(swarm_deploy, "STACK_FILES", tmp_path / "state" / "swarm")
    merged = support.merged_config(stack.settings)
    asked: list[compose.Stack] = []
    monkeypatch.setattr(compose, "merged_config", lambda s: asked.append(s) or merged)
    images = {variable: f"172.29.7.2:5000/{tag}" for variable, tag in support.IMAGES.items()}

    path = swarm_deploy.stack_file(stack, LAB, images)

    assert path == tmp_path / "state" / "swarm" / f"{P}.yml" and asked == [stack]
    text = path.read_text()
    assert "s3cr3t" not in text  # file paths and names only
    written = yaml.safe_load(text)
    declared = set(written["secrets"])
    assert {"jwt_secret_key", "telegram_api_id", "tls_fullchain", "tls_privkey"} <= declared
    # Empty ones (the one left empty, and the placeholders made for absent optional ones) are not mounted.
    assert not declared & {"stripe_secret_key", "bot_token", "openai_api_key", "telegram_api_hash", "telegram_session"}
    assert not declared & {"README.md", ".gitignore", ".backup"}
    # The backup overlay is off in this stack: its settings file is neither declared nor mounted, no certificate made.
    assert "pgbackrest_db_conf" not in declared
    assert [s["source"] for s in written["services"]["postgres"]["secrets"]] == ["postgres_password"]
    assert not (folder / "backup-tls").exists()
    assert (folder / "openai_api_key").read_bytes() == b""  # the placeholder Compose would have needed
    assert written["secrets"]["jwt_secret_key"]["file"] == str(folder / "jwt_secret_key")
    assert written["services"]["api"]["image"] == images["API_IMAGE"]
    assert written["services"]["proxy"]["ports"][1]["published"] == 443
    assert written["configs"]["redis_conf"]["name"].startswith(f"{P}_redis_conf_")


def test_with_the_backup_overlay_the_stack_file_mounts_the_backup_certificates_it_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = _secrets_folder(tmp_path)
    (folder / "pgbackrest_repo_conf").write_text("s3cr3t-pgbackrest_repo_conf-value")
    stack = compose.Stack("prod", P, support.settings(tmp_path), backup=True)
    monkeypatch.setattr(swarm_deploy, "STACK_FILES", tmp_path / "state" / "swarm")
    monkeypatch.setattr(compose, "merged_config", lambda s: support.merged_config(s.settings, backup=s.backup))
    images = {variable: f"172.29.7.2:5000/{tag}" for variable, tag in support.IMAGES.items()}

    path = swarm_deploy.stack_file(stack, LAB, images)

    text = path.read_text()
    assert "s3cr3t" not in text and "BEGIN" not in text  # file paths and names only, never a key or certificate
    written = yaml.safe_load(text)
    assert set(model.BACKUPS) <= set(written["services"])
    tls = folder / "backup-tls"
    # The certificates, made where Compose mounts them from (tls/backup.py), are the stack's secrets; the CA's
    # key stays on this host.
    assert {n: s["file"] for n, s in written["secrets"].items() if n.startswith("backup_tls_")} == {
        "backup_tls_ca_crt": str(tls / "ca.crt"),
        "backup_tls_backup_agent_crt": str(tls / "backup-agent.crt"),
        "backup_tls_backup_agent_key": str(tls / "backup-agent.key"),
        "backup_tls_backup_repo_crt": str(tls / "backup-repo.crt"),
        "backup_tls_backup_repo_key": str(tls / "backup-repo.key"),
    }
    assert (tls / "ca.key").is_file() and b"BEGIN CERTIFICATE" in (tls / "backup-repo.crt").read_bytes()
    assert {"pgbackrest_db_conf", "pgbackrest_repo_conf"} <= set(written["secrets"])
    # A second render keeps the certificates, so the secrets' versions (and the running tasks) stay.
    again = yaml.safe_load(swarm_deploy.stack_file(stack, LAB, images).read_text())
    assert again["secrets"] == written["secrets"]


# --- states --------------------------------------------------------------------------------------------


def test_states_read_replicas_image_update_errors_and_nodes(fake: support.FakeDocker) -> None:
    swarm = _swarm(fake, support.converged())
    swarm.snapshots[0]["api"] = Svc(
        running=1,
        desired=2,
        update="updating",
        errors=("task: non-zero exit (1)",),
        nodes=("node2",),
        image="reg/api@x",
    )
    found = swarm_deploy.states(LAB, P)
    assert list(found) == ["postgres", "redis", "migrate", "api", "bot", "mtproto", "proxy"]
    api = found["api"]
    assert (api.running, api.desired, api.image, api.update) == (1, 2, "reg/api@x", "updating")
    assert api.errors == ["task: non-zero exit (1)"] and api.nodes == ["node2"]
    assert not api.converged
    assert found["redis"] == swarm_deploy.ServiceState(
        "redis", 1, 1, "172.29.7.2:5000/ns/redis@sha256:redis", "", [], ["node1"]
    )
    assert found["redis"].converged and found["api"].name == "api"
    # Every question went to the manager's engine, and the service list was the stack's only.
    assert {c.env["DOCKER_HOST"] for c in fake.calls if c.env} == {"tcp://172.29.7.11:2375"}
    assert fake.calls[0].args == ("service", "ls", "--filter", f"label=com.docker.stack.namespace={P}", "-q")
    assert (
        "service",
        "ps",
        "id-api",
        "--no-trunc",
        "--format",
        "{{json .}}",
        "--filter",
        "desired-state=running",
    ) in fake.argvs


def test_a_service_state_from_the_raw_json(fake: support.FakeDocker) -> None:
    fake.answer("service", "ls", "--filter", f"label=com.docker.stack.namespace={P}", "-q", stdout="x1\n")
    info = {"Spec": {"Name": f"{P}_proxy", "TaskTemplate": {"ContainerSpec": {"Image": "img"}}}, "UpdateStatus": None}
    fake.answer("service", "inspect", "x1", stdout=json.dumps([info]))
    rows = [
        {"CurrentState": "Running 2 minutes ago", "Node": "node2", "Error": ""},
        {"CurrentState": "Running 1 minute ago", "Node": "node2"},
        {"CurrentState": "Preparing 1 second ago", "Node": "node3", "Error": "no suitable node"},
    ]
    ps = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    fake.answer(
        "service", "ps", "x1", "--no-trunc", "--format", "{{json .}}", "--filter", "desired-state=running", stdout=ps
    )
    state = swarm_deploy.states(LAB, P)["proxy"]
    # No Mode (a global service, or one Swarm reports without replicas): one is desired.
    assert (state.running, state.desired, state.update) == (2, 1, "")
    assert state.nodes == ["node2"] and state.errors == ["no suitable node"]
    assert not state.converged  # 2 running of 1: the old one has not stopped yet


def test_a_global_service_wants_one_task_on_each_node_it_may_run_on(fake: support.FakeDocker) -> None:
    _swarm(fake, support.converged(proxy=Svc(running=1, desired=2, nodes=("node3",), global_mode=True)))
    proxy = swarm_deploy.states(LAB, P)["proxy"]
    assert (proxy.running, proxy.desired, proxy.nodes, proxy.converged) == (1, 2, ["node3"], False)


def test_converged_means_replicas_met_and_no_update_under_way() -> None:
    state = swarm_deploy.ServiceState("api", 2, 2, "img")
    assert state.converged
    for update in ("updating", "rollback_started"):
        assert not swarm_deploy.ServiceState("api", 2, 2, "img", update).converged
    for update in ("completed", "rollback_completed", "paused"):
        assert swarm_deploy.ServiceState("api", 2, 2, "img", update).converged


def test_status_is_each_service_as_a_row_sorted_by_name(fake: support.FakeDocker) -> None:
    _swarm(fake, support.converged())
    rows = swarm_deploy.status(LAB, P)
    assert [r["name"] for r in rows] == sorted(s.name for s in SWARM_SERVICES)
    api = next(r for r in rows if r["name"] == "api")
    assert api == {
        "name": "api", "running": 2, "desired": 2, "image": "172.29.7.2:5000/ns/api@sha256:api",
        "update": "completed", "errors": [], "nodes": ["node2", "node3"],
    }  # fmt: skip
    json.dumps(rows)  # what `swarm.status --json` prints


# --- wait_converged ------------------------------------------------------------------------------------


def test_a_converged_stack_returns_at_once(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    _swarm(fake, support.converged())
    said: list[str] = []
    assert swarm_deploy.wait_converged(LAB, P, 60, said.append) == 0
    assert clock.slept == []
    assert said == ["    0.0s  api 2/2, bot 1/1, migrate 0/1, mtproto 1/1, postgres 1/1, proxy 1/1, redis 1/1"]
    assert ("service", "ps", f"{P}_migrate", "--format", "{{.Name}}|{{.CurrentState}}") in fake.argvs


def test_it_waits_for_the_replicas_and_the_job_and_says_each_change_once(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    migrating = Svc(running=1, states=("Running 1 second ago",))
    _swarm(
        fake,
        support.converged(api=Svc(running=1, desired=2, update="updating"), migrate=migrating),
        support.converged(api=Svc(running=1, desired=2, update="updating"), migrate=migrating),
        support.converged(api=Svc(running=2, desired=2, update="updating")),  # replicas met, update not done
        support.converged(),
    )
    said: list[str] = []
    assert swarm_deploy.wait_converged(LAB, P, 60, said.append) == 3
    assert clock.slept == [1, 1, 1]
    assert said == [
        "    0.0s  api 1/2, bot 1/1, migrate 1/1, mtproto 1/1, postgres 1/1, proxy 1/1, redis 1/1",
        "    2.0s  api 2/2, bot 1/1, migrate 0/1, mtproto 1/1, postgres 1/1, proxy 1/1, redis 1/1",
    ]


def test_a_job_that_has_not_completed_holds_the_wait(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    _swarm(
        fake,
        support.converged(migrate=Svc(running=0, states=("Failed 1 second ago", "Failed 4 seconds ago"))),
        support.converged(migrate=Svc(running=0, states=("Complete 1 second ago", "Failed 4 seconds ago"))),
    )
    assert swarm_deploy.wait_converged(LAB, P, 60, lambda _m: None) == 1


def test_a_job_whose_first_attempt_failed_is_done_once_its_retry_completed(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    """Its failed attempt is still listed under the same slot name, after the current task (a first deploy's
    migrate, started before postgres answered): only the current one counts."""
    _swarm(fake, support.converged(migrate=Svc(running=0, states=("Complete 1 second ago", "Failed 9 seconds ago"))))
    assert swarm_deploy.wait_converged(LAB, P, 60, lambda _m: None) == 0


def test_a_completed_run_of_an_earlier_deploy_does_not_end_the_wait(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    _swarm(
        fake,
        support.converged(migrate=Svc(running=1, states=("Running 1 second ago", "Complete 3 minutes ago"))),
        support.converged(migrate=Svc(running=0, states=("Complete 1 second ago", "Complete 3 minutes ago"))),
    )
    assert swarm_deploy.wait_converged(LAB, P, 60, lambda _m: None) == 1


def test_a_rollback_by_swarm_fails_the_wait_with_the_task_error_and_the_logs(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    rolling = Svc(running=2, desired=2, update="rollback_started", errors=("task: non-zero exit (1)",))
    rolled = Svc(
        running=2, desired=2, update="rollback_completed", errors=("task: non-zero exit (1)",),
        logs="this release cannot start\n",
    )  # fmt: skip
    _swarm(fake, support.converged(api=rolling), support.converged(api=rolled))
    with pytest.raises(OpsError) as caught:
        swarm_deploy.wait_converged(LAB, P, 60, lambda _m: None)
    assert str(caught.value) == (
        "Swarm rolled back api: task: non-zero exit (1); its last log lines:\nthis release cannot start"
    )
    assert clock.slept == [1]  # not while the rollback was still running
    (logs,) = fake.made("service", "logs")
    assert logs.args == ("service", "logs", "--tail", "10", "--raw", f"{P}_api") and logs.check is False
    assert logs.timeout == 30


def test_a_rollback_that_was_asked_for_is_a_success(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    _swarm(fake, support.converged(api=Svc(running=2, desired=2, update="rollback_completed")))
    assert swarm_deploy.wait_converged(LAB, P, 60, lambda _m: None, rolled_back_ok=True) == 0


def test_a_timeout_names_what_it_waited_for_and_why(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    stuck = Svc(running=0, desired=1, errors=("no suitable node (scheduling constraints)",), logs="")
    _swarm(fake, support.converged(postgres=stuck))
    with pytest.raises(OpsError) as caught:
        swarm_deploy.wait_converged(LAB, P, 5, lambda _m: None)
    assert str(caught.value) == (
        "timed out after 5 s waiting for postgres: no suitable node (scheduling constraints); "
        "its last log lines:\n(none)"
    )
    assert clock.slept == [1] * 6


def test_a_timeout_falls_back_to_the_states_errors(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    swarm = _swarm(fake, support.converged(bot=Svc(running=0, errors=("starting",))))
    swarm.snapshots[0]["bot"].logs = "bot: waiting for the api\n"
    fake.answer("service", "ps", f"{P}_bot", "--no-trunc", "--format", "{{.Error}}", stdout="\n")
    with pytest.raises(OpsError, match=r"waiting for bot: starting; its last log lines:\nbot: waiting for the api$"):
        swarm_deploy.wait_converged(LAB, P, 2, lambda _m: None)


def test_a_stack_with_no_service_times_out_saying_so(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    _swarm(fake, {})
    fake.answer("service", "ps", f"{P}_(no service)", "--no-trunc", "--format", "{{.Error}}", returncode=1)
    fake.answer("service", "logs", "--tail", "10", "--raw", f"{P}_(no service)", stderr="no such service", returncode=1)
    with pytest.raises(OpsError) as caught:
        swarm_deploy.wait_converged(LAB, P, 3, lambda _m: None)
    assert str(caught.value) == (
        "timed out after 3 s waiting for (no service): no task error; its last log lines:\nno such service"
    )


def test_a_redeployed_job_is_waited_for_though_an_older_task_completed(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    # `service ps` without a filter lists the task history, newest first: the previous deploy's migrate
    # completed; the one this deploy started is still running (or failing). The deploy must wait for it.
    history = ("Running 1 second ago", "Complete 10 minutes ago")
    _swarm(fake, support.converged(migrate=Svc(running=1, states=history)))
    with pytest.raises(OpsError, match="timed out after 3 s waiting for migrate"):
        swarm_deploy.wait_converged(LAB, P, 3, lambda _m: None)


# --- deploy --------------------------------------------------------------------------------------------


def test_a_deploy_checks_pushes_deploys_waits_and_removes_old_secret_versions(
    monkeypatch: pytest.MonkeyPatch,
    fake: support.FakeDocker,
    registry: Any,
    clock: support.FakeClock,
    stack: compose.Stack,
    tmp_path: Path,
) -> None:
    _secrets_folder(tmp_path)
    monkeypatch.setattr(swarm_deploy, "STACK_FILES", tmp_path / "state")
    monkeypatch.setattr(compose, "merged_config", lambda s: support.merged_config(s.settings))
    events: list[str] = []
    monkeypatch.setattr(swarm_deploy, "require", lambda s, find, progress: events.append(f"preflight {s.env}"))
    fake.on_call = lambda ran: events.append(" ".join(ran.args[:2]))
    # First what runs before (the snapshot of each update's start), then the deploy converging.
    _swarm(
        fake,
        support.converged(),
        support.converged(api=Svc(running=1, desired=2, update="updating")),
        support.converged(),
    )
    jwt = render.versioned(P, "jwt_secret_key", b"s3cr3t-jwt_secret_key-value")
    listed = [jwt, f"{P}_jwt_secret_key_0123456789ab", f"{P}_redis_acl_ba9876543210", "other_jwt_secret_key_1"]
    fake.answer("secret", "ls", "--format", "{{.Name}}", stdout="\n".join(listed) + "\n")
    fake.answer("secret", "rm", f"{P}_redis_acl_ba9876543210", returncode=1, stderr="secret is in use")
    said: list[str] = []

    seconds = swarm_deploy.deploy(stack, LAB, timeout=60, progress=said.append)

    assert seconds == 1
    path = tmp_path / "state" / f"{P}.yml"
    (deployed,) = fake.made("stack", "deploy")
    assert deployed.args == ("stack", "deploy", "--prune", "--resolve-image", "never", "-c", str(path), P)
    assert deployed.env == {"DOCKER_HOST": "tcp://172.29.7.11:2375"}  # on the manager
    # The pinned references are what the stack file names.
    assert yaml.safe_load(path.read_text())["services"]["api"]["image"].startswith("172.29.7.2:5000/ns/api@sha256:")

    def first(event: str) -> int:
        return next(i for i, e in enumerate(events) if e.startswith(event))

    def last(event: str) -> int:
        return max(i for i, e in enumerate(events) if e.startswith(event))

    assert events[0] == "preflight prod"
    # The services' update starts are read before the deploy, so that only a rollback it caused fails it.
    assert first("tag") > 0 and last("push") < first("service ls") < first("stack deploy") < last("service ls")
    assert last("service ls") < first("secret ls") < first("secret rm")
    # Only this project's versions no service uses any more; one still held by a task is kept (not an error).
    removed = fake.made("secret", "rm")
    assert [c.args[2] for c in removed] == [f"{P}_jwt_secret_key_0123456789ab", f"{P}_redis_acl_ba9876543210"]
    assert all(c.check is False for c in removed)
    assert said[0] == "pushing images to 172.29.7.2:5000 (pinned by digest)"
    assert f"deploying {P} on ablab (3 nodes) from {P}.yml" in said


def test_a_failed_check_stops_the_deploy_before_anything_runs_or_is_written(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, stack: compose.Stack, tmp_path: Path
) -> None:
    def refuse(s: compose.Stack) -> str:
        raise BadInput("secrets not ready for prod: jwt_secret_key")

    monkeypatch.setattr(preflight, "CHECKS", (("secrets", refuse),))
    with pytest.raises(BadInput, match="jwt_secret_key"):
        swarm_deploy.deploy(stack, LAB)
    assert fake.calls == []
    assert not (tmp_path / "tls").exists()  # no bootstrap certificate either


def _passing(names: list[str]) -> tuple[tuple[str, Any], ...]:
    """Stand-ins for the Compose preflight's checks, each recording its name when it runs."""
    return tuple((name, lambda s, name=name: names.append(name) or f"{name} ok") for name in PREFLIGHT)


PREFLIGHT = ("docker daemon", "compose", "images", "secrets", "certificate", "file owners")


def test_the_swarm_preflight_is_the_compose_one_but_file_owners_then_the_swarm_last(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack
) -> None:
    # The real table: a check added to the Compose preflight is one a swarm deploy runs too.
    assert [name for name, _ in preflight.CHECKS] == list(PREFLIGHT)
    ran: list[str] = []
    monkeypatch.setattr(preflight, "CHECKS", _passing(ran))
    monkeypatch.setattr(swarm_deploy, "manager", lambda lab: ran.append("swarm") or f"{lab.name} ok")
    said: list[str] = []
    assert swarm_deploy.require(stack, lambda: LAB, said.append) is LAB
    assert ran == ["docker daemon", "compose", "images", "secrets", "certificate", "swarm"]
    assert said == ["preflight ok: images, secrets (prod), certificate (certificate ok), ablab ok"]


def test_a_bad_certificate_is_named_before_any_swarm_is_looked_for(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack
) -> None:
    def mismatched(s: compose.Stack) -> str:
        raise BadInput("the proxy's certificate is unusable: privkey.pem does not match the certificate")

    ran: list[str] = []
    monkeypatch.setattr(preflight, "CHECKS", (*_passing(ran)[:4], ("certificate", mismatched)))
    with pytest.raises(BadInput, match=r"privkey\.pem does not match"):
        swarm_deploy.require(stack, lambda: pytest.fail("the swarm was looked for"))


def test_preflight_rows_show_every_check_and_a_missing_swarm_as_a_row(
    monkeypatch: pytest.MonkeyPatch, stack: compose.Stack
) -> None:
    monkeypatch.setattr(preflight, "CHECKS", _passing([]))

    def unknown() -> swarm_lab.Lab:
        raise BadInput("no Docker context 'abnowhere'; create it with `docker context create`")

    rows = swarm_deploy.preflight_rows(stack, unknown)
    assert [(r.name, r.ok) for r in rows] == [
        ("docker daemon", True), ("compose", True), ("images", True), ("secrets", True), ("certificate", True),
        ("swarm", False),
    ]  # fmt: skip
    assert rows[-1].detail == "no Docker context 'abnowhere'; create it with `docker context create`"


def _nodes(*labels: dict[str, str]) -> list[swarm_lab.NodeInfo]:
    return [swarm_lab.NodeInfo(f"node{i}", i == 1, "ready", "active", dict(each)) for i, each in enumerate(labels, 1)]


DATA, EDGE = {"analyticbot.data": "true"}, {"analyticbot.edge": "true"}


def test_the_swarm_check_wants_an_active_manager_one_data_node_and_an_edge(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker
) -> None:
    info = ("info", "--format", "{{json .Swarm}}")
    fake.answer(*info, stdout=json.dumps({"LocalNodeState": "active", "ControlAvailable": True, "Nodes": 3}))
    layouts = [
        _nodes(DATA, EDGE, EDGE),
        _nodes({}, EDGE, EDGE),
        _nodes(DATA, DATA | EDGE, {}),
        _nodes(DATA, {"analyticbot.edge": "false"}, {}),
    ]
    monkeypatch.setattr(swarm_deploy, "describe_nodes", lambda lab: layouts.pop(0))
    assert swarm_deploy.manager(LAB) == "ablab: 3 nodes, data on node1, edge node2 node3"
    with pytest.raises(BadInput, match=r"^no node of ablab is labelled analyticbot.data=true; the data lives on one: "):
        swarm_deploy.manager(LAB)
    with pytest.raises(BadInput, match=r"^2 nodes \(node1 node2\) of ablab are labelled analyticbot.data=true"):
        swarm_deploy.manager(LAB)
    with pytest.raises(BadInput, match=r"`docker node update --label-add analyticbot.edge=true NODE`$"):
        swarm_deploy.manager(LAB)


def test_the_swarm_check_fails_on_no_manager(fake: support.FakeDocker) -> None:
    info = ("info", "--format", "{{json .Swarm}}")
    fake.answer(*info, stdout=json.dumps({"LocalNodeState": "inactive", "ControlAvailable": False}))
    fake.answer(*info, returncode=1, stderr="Cannot connect to the Docker daemon at tcp://172.29.7.11:2375.\n")
    with pytest.raises(BadInput, match="ablab reaches an engine that is not a swarm manager \\(state: inactive\\)"):
        swarm_deploy.manager(LAB)
    with pytest.raises(OpsError, match=r"manager \(tcp://172.29.7.11:2375\) does not answer: Cannot connect"):
        swarm_deploy.manager(LAB)


def _submitted_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every step after the checks replaced: what a deploy writes before it pushes is what is left to see."""
    monkeypatch.setattr(swarm_deploy, "push_images", lambda s, lab, progress: {})
    monkeypatch.setattr(swarm_deploy, "stack_file", lambda s, lab, images, first_start: tmp_path / "x.yml")
    monkeypatch.setattr(swarm_deploy, "updates", lambda lab, project: {})
    said: list[str] = []
    return said


def test_a_first_deploy_writes_the_bootstrap_certificate_after_the_checks(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, stack: compose.Stack, tmp_path: Path
) -> None:
    said = _submitted_only(monkeypatch, tmp_path)
    order: list[str] = []
    monkeypatch.setattr(
        swarm_deploy, "require", lambda s, find, progress: order.append(f"checked, tls: {(tmp_path / 'tls').exists()}")
    )
    stack.settings["DOMAIN"] = "analytics.example.org"
    swarm_deploy.deploy(stack, LAB, progress=said.append, wait=False)
    assert order == ["checked, tls: False"]
    status = tls.certificate_status(tmp_path / "tls", warn_days=0)
    assert status.ok and status.days_left <= 1 and "analytics.example.org" in status.subject
    assert said[0] == f"wrote a 1-day bootstrap certificate in {tmp_path / 'tls'}; run `invoke tls.prod` for a real one"
    # A certificate that exists is never replaced.
    written = (tmp_path / "tls" / "fullchain.pem").read_bytes()
    said.clear()
    swarm_deploy.deploy(stack, LAB, progress=said.append, wait=False)
    assert (tmp_path / "tls" / "fullchain.pem").read_bytes() == written
    assert not any("bootstrap" in line for line in said)


def test_a_failed_wait_keeps_every_secret_version(
    monkeypatch: pytest.MonkeyPatch,
    fake: support.FakeDocker,
    clock: support.FakeClock,
    stack: compose.Stack,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(swarm_deploy, "require", lambda s, find, progress: None)
    monkeypatch.setattr(swarm_deploy, "push_images", lambda s, lab, progress: {})
    monkeypatch.setattr(swarm_deploy, "stack_file", lambda s, lab, images, first_start: tmp_path / "x.yml")
    _swarm(fake, support.converged(api=Svc(running=2, desired=2, update="rollback_completed", errors=("boom",))))
    with pytest.raises(OpsError, match="Swarm rolled back api: boom"):
        swarm_deploy.deploy(stack, LAB)
    assert fake.made("secret") == []


# --- rollback, remove ----------------------------------------------------------------------------------


def test_rollback_rolls_only_services_with_a_previous_spec_and_waits(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    before = support.converged(
        api=Svc(running=2, desired=2, previous=True), bot=Svc(previous=True), postgres=Svc(previous=False)
    )
    after = support.converged(api=Svc(running=2, desired=2, update="rollback_completed", previous=True))
    _swarm(fake, before, after)
    said: list[str] = []
    assert swarm_deploy.rollback(LAB, P, timeout=30, progress=said.append) == ["api", "bot"]
    assert [c.args for c in fake.made("service", "rollback")] == [
        ("service", "rollback", "--detach", f"{P}_api"),
        ("service", "rollback", "--detach", f"{P}_bot"),
    ]
    assert said[:2] == ["  rolling api back", "  rolling bot back"]
    assert len(fake.made("service", "ls")) == 2  # the states, then the wait (a rollback it asked for: no error)


def test_rollback_with_no_previous_spec_does_nothing(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    _swarm(fake, support.converged())
    assert swarm_deploy.rollback(LAB, P) == []
    assert fake.made("service", "rollback") == [] and len(fake.made("service", "ls")) == 1


def test_remove_waits_until_the_networks_are_gone_and_keeps_the_volumes(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    networks = ("network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={P}")
    fake.answer(*networks, stdout="n1\nn2\n")
    fake.answer(*networks, stdout="n2\n")
    fake.answer(*networks, stdout="")
    swarm_deploy.remove(LAB, P)
    assert fake.argvs == [("stack", "rm", P), networks, networks, networks]
    assert clock.slept == [1, 1]


def test_remove_gives_up_waiting_for_networks_after_two_minutes(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    fake.answer("network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={P}", stdout="n1\n")
    swarm_deploy.remove(LAB, P)
    assert sum(clock.slept) == 120


def test_remove_with_volumes_removes_them_on_every_node(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    volumes = ("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={P}")
    data = ("volume", "rm", f"{P}_pgdata", f"{P}_redisdata")
    in_use = [1, 0]  # still held by a task's container the first time

    def by_node(ran: support.Ran) -> Any:
        on_node1 = ran.env == {"DOCKER_HOST": "tcp://172.29.7.11:2375"}
        if ran.args == volumes and on_node1:  # where the data lives
            return support.done(f"{P}_pgdata\n{P}_redisdata\n")
        if ran.args == data and on_node1:
            return support.done(stderr="volume is in use", returncode=in_use.pop(0))
        return None

    fake.handler = by_node
    said: list[str] = []
    swarm_deploy.remove(LAB, P, volumes=True, progress=said.append)
    assert [(c.env, c.check) for c in fake.made(*data)] == [({"DOCKER_HOST": "tcp://172.29.7.11:2375"}, False)] * 2
    assert {c.env["DOCKER_HOST"] for c in fake.made(*volumes)} == {f"tcp://172.29.7.1{i}:2375" for i in (1, 2, 3)}
    assert clock.slept == [1]
    assert said == ["  node1: data volumes removed", "  node2: data volumes removed", "  node3: data volumes removed"]


def test_remove_does_not_claim_volumes_it_could_not_remove(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    volumes = ("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={P}")
    fake.answer(*volumes, stdout=f"{P}_pgdata\n")
    fake.answer("volume", "rm", f"{P}_pgdata", returncode=1, stderr="volume is in use")
    said: list[str] = []
    with contextlib.suppress(OpsError):  # failing, saying so, would be as good
        swarm_deploy.remove(LAB, P, volumes=True, progress=said.append)
    assert not any("data volumes removed" in line for line in said), said


def test_remove_with_volumes_on_a_swarm_reached_by_a_context_uses_that_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    monkeypatch.setattr(swarm_lab, "STATE_DIR", tmp_path)
    fake.answer(
        "context", "inspect", "prod-swarm", "--format", "{{.Endpoints.docker.Host}}", stdout="tcp://10.0.0.5:2376\n"
    )
    cluster = swarm_lab.target("prod-swarm", "registry.internal:5000")
    swarm_deploy.remove(cluster, P, volumes=True)
    (listed,) = fake.made("volume", "ls") or fake.made("--context", "prod-swarm", "volume", "ls")
    # Through the context (its endpoint and TLS), never DOCKER_HOST=tcp://tcp://10.0.0.5:2376:2375.
    assert listed.args[:2] == ("--context", "prod-swarm") or listed.env == {"DOCKER_HOST": "tcp://10.0.0.5:2376"}


class _Manager:
    """A swarm manager that answers `service inspect` only: the running stack's postgres, or none."""

    def __init__(self, mounts: list[dict[str, Any]] | None) -> None:
        self.mounts = mounts

    def manage(self, args: list[str], *, check: bool = True, timeout: float = 300) -> Any:
        assert args[:2] == ["service", "inspect"] and not check
        if self.mounts is None:
            return support.done(stderr="Error: no such service: abswarm_postgres", returncode=1)
        spec = {"Spec": {"TaskTemplate": {"ContainerSpec": {"Secrets": self.mounts}}}}
        return support.done(json.dumps([spec]))


def test_the_password_version_postgres_runs_with_is_found_by_its_target() -> None:
    mounts = [
        {"File": {"Name": "pgbackrest_db_conf"}, "SecretName": "abswarm_pgbackrest_db_conf_aaaaaaaaaaaa"},
        {"File": {"Name": "postgres_password"}, "SecretName": "abswarm_postgres_password_bbbbbbbbbbbb"},
    ]
    found = swarm_deploy.first_start_versions(_Manager(mounts), P)  # type: ignore[arg-type]
    assert found == {"postgres_password": "abswarm_postgres_password_bbbbbbbbbbbb"}
    assert swarm_deploy.first_start_versions(_Manager(None), P) == {}  # type: ignore[arg-type]  # a first deploy
