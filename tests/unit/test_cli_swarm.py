"""The `swarm` tasks (cli/swarm.py): which library call each makes with which stack, project and cluster, what
it prints, and the exit code and one `error:` line of each failure. No Docker: every library call that would
reach the daemon is replaced, and a command that would still run fails the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from invoke import Exit

from analyticbot_ops import secrets as secrets_module
from analyticbot_ops.cli import swarm as swarm_cli
from analyticbot_ops.errors import DockerUnavailable, OpsError
from analyticbot_ops.swarm import lab as swarm_lab
from analyticbot_ops.swarm import rotation as swarm_rotation
from tests.unit import swarm_support as support
from tests.unit.cli_support import NAMESPACE, fails, isolated_tasks, record
from tests.unit.cli_support import namespaced_context as context
from tests.unit.cli_support import pins as pins  # a fixture the tests ask for by name

LAB = support.three_nodes("analyticbot-lab")


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setattr(swarm_lab, "STATE_DIR", tmp_path / ".state")
    with isolated_tasks(monkeypatch, tmp_path):
        yield


@pytest.fixture
def clusters(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The daemon check and the swarm a task targets: recorded, the lab answered."""
    asked: list[Any] = []
    monkeypatch.setattr(swarm_cli.docker, "require_daemon", lambda: asked.append("daemon") or "20.10.24")

    def target(context: str, registry: str | None = None) -> swarm_lab.Lab:
        asked.append((context, registry))
        return LAB

    monkeypatch.setattr(swarm_lab, "target", target)
    # The deploy's checks (swarm/deploy.py's own tests cover them): here only the swarm they find.
    monkeypatch.setattr(swarm_cli.swarm_deploy, "require", lambda stack, find, progress: find())
    return asked


def rows(text: str) -> list[list[str]]:
    """A rich table's header and rows, cell by cell."""
    return [
        [cell.strip() for cell in line.split(line[0])[1:-1]] for line in text.splitlines() if line and line[0] in "┃│"
    ]


ROWS = [
    {"name": "api", "running": 2, "desired": 2, "image": "172.29.7.2:5000/team/api@sha256:aaaa", "update": "completed",
     "errors": [], "nodes": ["node2", "node3"]},
    {"name": "postgres", "running": 0, "desired": 1, "image": "172.29.7.2:5000/team/postgres@sha256:bbbb",
     "update": "", "errors": ["no suitable node"], "nodes": []},
]  # fmt: skip


# --- deploy --------------------------------------------------------------------------------------------


def test_deploy_refuses_dev_before_touching_any_swarm(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], pins: list[set[str]]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "deploy", record(calls, 1.0))
    message = fails(2, swarm_cli.deploy, context(), env="dev")
    assert message == "error: the swarm stack is for staging and prod (dev runs on Compose: `invoke stack.up`)"
    assert calls == [] and clusters == [] and pins == []


def test_deploy_pushes_the_pinned_stack_to_the_named_swarm(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], pins: list[set[str]], capsys: Any
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "deploy", record(calls, 12.34))
    swarm_cli.deploy(context(), env="staging", context="prod-swarm", registry="registry.internal:5000", timeout="90")
    assert clusters == ["daemon", ("prod-swarm", "registry.internal:5000")]
    ((stack, cluster), kwargs), *_ = calls
    assert (stack.env, stack.project, cluster) == ("staging", "analyticbot-staging", LAB)
    # Both overlays as invoke.yaml says (each on by default), as on Compose.
    assert stack.monitoring and stack.backup and {"prometheus", "backup-agent", "backup-repo"} <= set(stack.running)
    # This checkout's build, pinned; the other images under invoke.yaml's namespace.
    assert stack.settings["API_IMAGE"] == f"{NAMESPACE}/api:build-1" and "API_IMAGE" in pins[0]
    assert stack.settings["BOT_IMAGE"] == f"{NAMESPACE}/bot:latest"
    # The checks ran before (the swarm found by them): the deploy does not run them again.
    assert kwargs == {"timeout": 90.0, "progress": swarm_cli.progress, "checked": True}
    assert capsys.readouterr().out == "analyticbot-staging converged on analyticbot-lab in 12.3 s\n"


def test_deploy_follows_ops_to_leave_an_overlay_out(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], pins: list[set[str]]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "deploy", record(calls, 1.0))
    swarm_cli.deploy(context(backup=False), env="staging")
    swarm_cli.deploy(context(monitoring=False), env="staging")
    (unbacked, _), (unmonitored, _) = (call[0] for call in calls)
    assert unbacked.monitoring and not unbacked.backup and "backup-agent" not in unbacked.running
    assert unmonitored.backup and not unmonitored.monitoring and "prometheus" not in unmonitored.running


def test_deploy_defaults_to_prod_on_the_lab(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], pins: list[set[str]]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "deploy", record(calls, 1.0))
    swarm_cli.deploy(context())
    assert clusters == ["daemon", ("analyticbot-lab", None)]
    assert calls[0][0][0].project == "analyticbot" and calls[0][1]["timeout"] == 300


def test_deploy_to_a_swarm_that_is_not_the_lab_needs_the_registry(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]]
) -> None:
    monkeypatch.setattr(swarm_cli.docker, "require_daemon", lambda: "20.10.24")
    monkeypatch.setattr(swarm_cli.swarm_deploy, "require", lambda stack, find, progress: find())
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "deploy", record(calls, 1.0))
    message = fails(2, swarm_cli.deploy, context(), context="prod-swarm")
    assert "'prod-swarm' is not a lab started here" in message and "--registry HOST:PORT" in message
    assert calls == []


def test_no_daemon_or_a_failed_deploy_is_one_line(monkeypatch: pytest.MonkeyPatch, pins: list[set[str]]) -> None:
    def no_daemon() -> str:
        raise DockerUnavailable("Docker daemon is not reachable at unix:///nonexistent/docker.sock")

    monkeypatch.setattr(swarm_cli.docker, "require_daemon", no_daemon)
    monkeypatch.setattr(swarm_cli.swarm_deploy, "require", lambda stack, find, progress: find())
    assert "not reachable" in fails(3, swarm_cli.deploy, context())
    assert "not reachable" in fails(3, swarm_cli.status, context())
    monkeypatch.setattr(swarm_cli.docker, "require_daemon", lambda: "20.10.24")
    monkeypatch.setattr(swarm_lab, "target", lambda context, registry: LAB)
    monkeypatch.setattr(
        swarm_cli.swarm_deploy, "deploy", record([], OpsError("Swarm rolled back api: boom; its\nlogs"))
    )
    with pytest.raises(Exit) as caught:
        swarm_cli.deploy(context())
    assert caught.value.code == 1 and str(caught.value.message).startswith("error: Swarm rolled back api: boom")
    assert fails(2, swarm_cli.deploy, context(), timeout="soon") == "error: --timeout must be a number, got 'soon'"


# --- status --------------------------------------------------------------------------------------------


PROXY_ROW = {"name": "proxy", "running": 1, "desired": 2, "image": "172.29.7.2:5000/team/proxy@sha256:cccc",
             "update": "", "errors": [], "nodes": ["node3"]}  # fmt: skip
NODES = [
    swarm_lab.NodeInfo("node1", True, "ready", "active", {"analyticbot.data": "true"}),
    swarm_lab.NodeInfo("node2", False, "down", "active", {"analyticbot.edge": "true"}),
    swarm_lab.NodeInfo("node3", False, "ready", "active", {"analyticbot.edge": "true"}),
]


def test_status_is_a_table_of_the_services_and_of_the_nodes_that_serve_the_edge(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], capsys: Any
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "status", record(calls, [*ROWS, PROXY_ROW]))
    monkeypatch.setattr(swarm_lab, "describe_nodes", lambda cluster: NODES if cluster == LAB else [])
    swarm_cli.status(context(), env="staging", context="analyticbot-lab")
    assert calls == [((LAB, "analyticbot-staging"), {})]
    assert clusters == ["daemon", ("analyticbot-lab", None)]
    text = capsys.readouterr().out
    assert text.splitlines()[0].strip() == "analyticbot-staging"
    # The image without its registry: the digest is what tells two releases apart.
    assert rows(text) == [
        ["service", "replicas", "nodes", "image", "update"],
        ["api", "2/2", "node2 node3", "api@sha256:aaaa", "completed"],
        ["postgres", "0/1", "", "postgres@sha256:bbbb", ""],
        ["proxy", "1/2", "node3", "proxy@sha256:cccc", ""],
        # Two edge nodes; one is down, and no proxy serves there.
        ["node", "role", "state", "data", "edge", "proxy"],
        ["node1", "manager", "ready", "yes", "", ""],
        ["node2", "worker", "down", "", "yes", "none"],
        ["node3", "worker", "ready", "", "yes", "serving"],
    ]


def test_status_as_json(monkeypatch: pytest.MonkeyPatch, clusters: list[Any], capsys: Any) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "status", record(calls, ROWS))
    swarm_cli.status(context(), json=True)
    assert json.loads(capsys.readouterr().out) == ROWS
    assert calls == [((LAB, "analyticbot"), {})]


# --- rollback, remove ----------------------------------------------------------------------------------


def test_rollback_says_what_it_rolled_back(monkeypatch: pytest.MonkeyPatch, clusters: list[Any], capsys: Any) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "rollback", record(calls, ["api", "bot"]))
    swarm_cli.rollback(context(), env="staging", timeout="45")
    assert calls == [((LAB, "analyticbot-staging"), {"timeout": 45.0, "progress": swarm_cli.progress})]
    assert capsys.readouterr().out == "analyticbot-staging: rolled back api, bot\n"
    monkeypatch.setattr(swarm_cli.swarm_deploy, "rollback", record([], []))
    swarm_cli.rollback(context())
    assert capsys.readouterr().out == "analyticbot: rolled back nothing (no service has a previous spec)\n"


def test_remove_keeps_the_volumes_unless_asked(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], capsys: Any
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_cli.swarm_deploy, "remove", record(calls))
    swarm_cli.remove(context())
    swarm_cli.remove(context(), env="staging", context="prod-swarm", registry="r:5000", volumes=True)
    assert calls == [
        ((LAB, "analyticbot"), {"volumes": False, "progress": swarm_cli.progress}),
        ((LAB, "analyticbot-staging"), {"volumes": True, "progress": swarm_cli.progress}),
    ]
    assert clusters == ["daemon", ("analyticbot-lab", None), "daemon", ("prod-swarm", "r:5000")]
    assert capsys.readouterr().out == "analyticbot: removed\nanalyticbot-staging: removed\n"


# --- rotate --------------------------------------------------------------------------------------------


def test_rotate_rotates_through_the_swarm_stack(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], pins: list[set[str]], tmp_path: Path, capsys: Any
) -> None:
    calls: list[Any] = []

    class Result:
        name = "jwt_secret_key"

    monkeypatch.setattr(secrets_module, "rotate", record(calls, Result()))
    swarm_cli.rotate(context(), "jwt_secret_key", env="staging", timeout="60")
    ((name, folder, control), kwargs), *_ = calls
    assert (name, folder, kwargs) == ("jwt_secret_key", tmp_path / "secrets", {"timeout": 60.0})
    assert isinstance(control, swarm_rotation.SwarmStack)
    assert control.lab is LAB and control.progress is swarm_cli.progress
    assert control.stack.project == "analyticbot-staging" and control.stack.settings["API_IMAGE"].endswith(":build-1")
    assert control.stack.backup and control.stack.monitoring  # the stack swarm.deploy renders, as ops says
    assert (
        capsys.readouterr().out
        == "rotated jwt_secret_key on analyticbot-lab; the old version is removed, backups kept\n"
    )


def test_rotate_refuses_an_unknown_secret(
    monkeypatch: pytest.MonkeyPatch, clusters: list[Any], pins: list[set[str]]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(secrets_module, "rotate", record(calls))
    assert "unknown secret 'jwt'" in fails(2, swarm_cli.rotate, context(), "jwt")
    assert calls == []


# --- lab-up, lab-down ----------------------------------------------------------------------------------


def test_lab_up_starts_the_lab_under_the_namespace_and_shows_its_nodes(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_lab, "up", record(calls, LAB))
    swarm_cli.lab_up(context(), nodes="3", name="analyticbot-lab")
    assert calls == [((3, "analyticbot-lab"), {"namespace": NAMESPACE, "progress": swarm_cli.progress, "edge": None})]
    text = capsys.readouterr().out
    title = " ".join(text.split("┏")[0].split())  # the title, however rich wraps it
    assert title == "analyticbot-lab: registry 172.29.7.2:5000 (local 127.0.0.1:49153)"
    assert rows(text) == [
        ["node", "address", "role", "edge"],
        ["node1", "172.29.7.11", "manager, data", ""],
        ["node2", "172.29.7.12", "worker", "yes"],
        ["node3", "172.29.7.13", "worker", "yes"],
    ]
    swarm_cli.lab_up(context(), nodes="3", edge="1")
    assert calls[-1][1]["edge"] == 1
    assert [row[3] for row in rows(capsys.readouterr().out)[1:]] == ["", "", "yes"]


def test_lab_up_refuses_a_node_count_that_is_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_lab, "up", record(calls, LAB))
    assert fails(2, swarm_cli.lab_up, context(), nodes="three") == "error: --nodes must be a whole number, got 'three'"
    assert calls == []


def test_lab_down_says_what_it_removed(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(swarm_lab, "down", record(calls, ["4 containers", "network analyticbot-lab-net"]))
    swarm_cli.lab_down(context())
    assert calls == [(("analyticbot-lab",), {"progress": swarm_cli.progress})]
    assert capsys.readouterr().out == "analyticbot-lab: 4 containers, network analyticbot-lab-net\n"
    monkeypatch.setattr(swarm_lab, "down", record([], []))
    swarm_cli.lab_down(context(), name="ablab")
    assert capsys.readouterr().out == "ablab: nothing was there\n"


# --- the namespace -------------------------------------------------------------------------------------


def test_the_namespace_and_its_flat_names() -> None:
    assert set(swarm_cli.ns.tasks) == {"deploy", "status", "rollback", "remove", "rotate", "lab-up", "lab-down"}
    assert swarm_cli.ns.default == "status"
    assert {name: legacy.target for name, legacy in swarm_cli.LEGACY.items()} == {
        f"swarm-{t}": f"swarm.{t}" for t in ("deploy", "status", "rollback", "remove", "rotate", "lab-up", "lab-down")
    }
