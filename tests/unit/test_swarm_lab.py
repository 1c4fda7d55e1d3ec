"""The simulated swarm (swarm/lab.py) against a fake `docker` CLI: the command lines `up` runs (network, registry,
nodes, swarm, context) and in what order, that it is idempotent, what it refuses, waiting for each engine,
what `down` removes (cgroups in a fake tree), and which swarm `target` picks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import baseimages, deploy, docker
from analyticbot_ops.errors import BadInput, DockerUnavailable, OpsError
from analyticbot_ops.swarm import lab as swarm_lab
from tests.unit import swarm_support as support

NAME = "ablab"
SUBNET = "172.29.7.0/24"
LABEL = f"org.analyticbot.swarm-lab={NAME}"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> support.FakeDocker:
    fake = support.FakeDocker()
    monkeypatch.setattr(docker, "docker", fake)
    monkeypatch.setattr(docker, "inspect", lambda kind, name: pytest.fail(f"unexpected inspect {kind} {name}"))
    monkeypatch.setattr(
        docker, "require_daemon", lambda: fake.calls.append(support.Ran(("<daemon>",), None, True, None, None))
    )
    monkeypatch.setattr(swarm_lab, "STATE_DIR", tmp_path / ".state")
    monkeypatch.setattr(swarm_lab, "CGROUP_ROOT", tmp_path / "cgroup")
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> support.FakeClock:
    clock = support.FakeClock()
    monkeypatch.setattr(swarm_lab, "time", clock)
    return clock


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The base images build and the free subnet: recorded, answered."""
    asked: list[Any] = []

    def build(names: list[str], *, namespace: str, progress: Any) -> list[baseimages.BaseBuild]:
        asked.append(("build", list(names), namespace))
        return [baseimages.BaseBuild(n, f"{namespace}/{n}:bookworm", "kept") for n in names]

    def free(count: int, pool: str = "unset", seed: Any = "unset") -> list[str]:
        asked.append(("subnets", count, pool))
        return [SUBNET]

    monkeypatch.setattr(baseimages, "build_base_images", build)
    monkeypatch.setattr(deploy, "free_subnets", free)
    return asked


def _answer_up(fake: support.FakeDocker) -> None:
    fake.answer("port", f"{NAME}-registry", "5000/tcp", stdout="127.0.0.1:49153\n")
    fake.answer("version", "--format", "{{.Server.Version}}", stdout="20.10.24+dfsg1\n")
    fake.answer("swarm", "join-token", "-q", "worker", stdout="SWMTKN-1-abc\n")


def _on(node: int) -> dict[str, str]:
    return {"DOCKER_HOST": f"tcp://172.29.7.{10 + node}:2375"}


# --- up ------------------------------------------------------------------------------------------------


def test_up_starts_the_registry_and_the_nodes_and_forms_the_swarm(
    fake: support.FakeDocker, built: list[Any], clock: support.FakeClock, tmp_path: Path
) -> None:
    _answer_up(fake)
    saved_before_waiting: list[bool] = []
    fake.on_call = lambda ran: (
        ran.args[0] == "version"
        and saved_before_waiting.append((tmp_path / ".state" / f"swarm-lab-{NAME}.json").is_file())
    )
    said: list[str] = []

    lab = swarm_lab.up(3, NAME, namespace="acme", progress=said.append)

    assert built == [("build", ["swarm-node", "registry"], "acme"), ("subnets", 1, deploy.SUBNET_POOL)]
    assert lab == support.three_nodes(NAME)
    node_run = [
        *swarm_lab.NODE_OPTIONS, "acme/swarm-node:bookworm", "dockerd",
    ]  # fmt: skip
    expected = [
        ("<daemon>",),
        ("network", "create", "--subnet", SUBNET, "--label", LABEL, f"{NAME}-net"),
        (
            "run", "-d", "--name", f"{NAME}-registry", "--label", LABEL, "--network", f"{NAME}-net",
            "--ip", "172.29.7.2", "-p", "127.0.0.1::5000", "--restart", "unless-stopped",
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "-v", f"{NAME}-registry:/var/lib/docker-registry", "acme/registry:bookworm",
        ),
        ("port", f"{NAME}-registry", "5000/tcp"),
        *[
            (
                "run", "-d", "--name", f"{NAME}-node{i}", "--hostname", f"node{i}", "--label", LABEL,
                "--network", f"{NAME}-net", "--ip", f"172.29.7.{10 + i}", *node_run,
                f"--cgroup-parent=/{NAME}-node{i}", "-H", "unix:///var/run/docker.sock", "-H", "tcp://0.0.0.0:2375",
                "--insecure-registry", SUBNET,
            )
            for i in (1, 2, 3)
        ],
        *[("version", "--format", "{{.Server.Version}}")] * 3,
        ("swarm", "init", "--advertise-addr", "172.29.7.11"),
        ("swarm", "join-token", "-q", "worker"),
        ("swarm", "join", "--token", "SWMTKN-1-abc", "172.29.7.11:2377"),
        ("swarm", "join", "--token", "SWMTKN-1-abc", "172.29.7.11:2377"),
        ("node", "update", "--label-add", "analyticbot.data=true", "node1"),
        # Every worker serves the edge by default; the data node does not.
        ("node", "update", "--label-rm", "analyticbot.edge", "node1"),
        ("node", "update", "--label-add", "analyticbot.edge=true", "node2"),
        ("node", "update", "--label-add", "analyticbot.edge=true", "node3"),
        ("context", "rm", "-f", NAME),
        ("context", "create", NAME, "--docker", "host=tcp://172.29.7.11:2375"),
    ]  # fmt: skip
    assert fake.argvs == expected
    # The host's own engine runs the containers; each node's engine answers for itself, the manager forms the swarm.
    assert [c.env for c in fake.calls[:7]] == [None] * 7
    assert [c.env for c in fake.made("version")] == [_on(1), _on(2), _on(3)]
    assert [c.env for c in fake.made("swarm")] == [_on(1), _on(1), _on(2), _on(3)]
    assert [c.env for c in fake.made("node", "update")] == [_on(1)] * 4  # labels are the manager's to set
    assert [c.check for c in fake.made("node", "update")] == [True, False, True, True]  # absent: nothing to remove
    assert {c.env for c in fake.made("context")} == {None} and {c.check for c in fake.made("context")} == {False}
    assert saved_before_waiting == [True, True, True]  # from then on, lab-down knows what to remove
    assert swarm_lab.load(NAME) == lab
    assert said[-1] == f"{NAME}: 3 nodes in the swarm, manager 172.29.7.11, registry 172.29.7.2:5000"
    assert "starting node2 (172.29.7.12)" in said and "node3: engine 20.10.24+dfsg1" in said


def test_the_node_options_give_dockerd_what_it_needs_in_a_container() -> None:
    options = swarm_lab.NODE_OPTIONS
    assert options[:4] == ("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE") and "--privileged" not in options
    assert "/sys/fs/cgroup:/sys/fs/cgroup:rw" in options
    assert "seccomp=unconfined" in options and "apparmor=unconfined" in options
    assert "type=volume,dst=/var/lib/docker" in options
    assert "-p" not in options and "--publish" not in options  # the engines' API is on the lab network only


def test_a_one_node_lab_has_no_worker_to_join(
    fake: support.FakeDocker, built: list[Any], clock: support.FakeClock
) -> None:
    _answer_up(fake)
    lab = swarm_lab.up(1, NAME)
    assert len(lab.nodes) == 1 and lab.manager.hostname == "node1"
    assert fake.made("swarm", "join") == [] and fake.made("swarm", "join-token") != []
    assert built[0] == ("build", ["swarm-node", "registry"], "analyticbot")


def test_up_again_says_it_runs_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, built: list[Any], clock: support.FakeClock
) -> None:
    _answer_up(fake)
    lab = swarm_lab.up(3, NAME)
    fake.calls.clear()
    built.clear()
    inspected: list[str] = []
    running = {"State": {"Running": True}}
    monkeypatch.setattr(docker, "inspect", lambda kind, name: inspected.append(f"{kind} {name}") or running)
    said: list[str] = []
    assert swarm_lab.up(3, NAME, progress=said.append) == lab
    assert inspected == [f"container {NAME}-node{i}" for i in (1, 2, 3)]
    # Only the edge labels are set again (the same ones: asked with another --edge, they move).
    assert [a for a in fake.argvs if a[:2] != ("node", "update")] == [("<daemon>",)] and built == []
    assert said == [
        f"{NAME}: edge nodes node3 node2 (label analyticbot.edge=true)",
        f"{NAME} is up: 3 nodes, registry 172.29.7.2:5000",
    ]


@pytest.mark.parametrize("nodes", [3, 2])
def test_a_different_or_broken_lab_recorded_here_is_refused(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, built: list[Any], clock: support.FakeClock, nodes: int
) -> None:
    _answer_up(fake)
    swarm_lab.up(3, NAME)
    fake.calls.clear()
    # Three nodes recorded: asked for two, or asked for three with one container gone.
    monkeypatch.setattr(docker, "inspect", lambda kind, name: None if name.endswith("node2") else {"Id": name})
    with pytest.raises(BadInput, match=f"a different lab '{NAME}' is recorded here; `invoke swarm.lab-down` first"):
        swarm_lab.up(nodes, NAME)
    assert fake.argvs == [("<daemon>",)]


@pytest.mark.parametrize("nodes", [0, -1, 10])
def test_the_node_count_must_be_1_to_9(fake: support.FakeDocker, nodes: int) -> None:
    with pytest.raises(BadInput, match=f"--nodes must be between 1 and 9, got {nodes}"):
        swarm_lab.up(nodes, NAME)
    assert fake.calls == []  # refused before asking the daemon anything


def test_up_does_not_say_a_stopped_lab_is_up(
    monkeypatch: pytest.MonkeyPatch, fake: support.FakeDocker, built: list[Any], clock: support.FakeClock
) -> None:
    _answer_up(fake)
    swarm_lab.up(3, NAME)
    # After a reboot: the containers exist (the nodes have no restart policy) but none runs.
    stopped = {"State": {"Status": "exited", "Running": False}}
    monkeypatch.setattr(docker, "inspect", lambda kind, name: stopped)
    said: list[str] = []
    fake.calls.clear()
    swarm_lab.up(3, NAME, progress=said.append)
    # It is started again (the swarm's state is on the nodes' volumes) before it is said to be up.
    assert ("start", f"{NAME}-registry", *(f"{NAME}-node{i}" for i in (1, 2, 3))) in fake.argvs
    assert said[-1] == f"{NAME} is up: 3 nodes, registry 172.29.7.2:5000"
    assert [line.split(":")[0] for line in said[:-2]] == ["node1", "node2", "node3"]


def test_the_edge_is_the_workers_from_the_last_and_the_manager_only_when_all_are(
    fake: support.FakeDocker, built: list[Any], clock: support.FakeClock
) -> None:
    nodes = support.three_nodes(NAME).nodes
    assert [swarm_lab.edge_count(n, None) for n in (1, 2, 3)] == [1, 1, 2]
    assert [n.hostname for n in swarm_lab.edge_nodes(nodes, 1)] == ["node3"]
    assert [n.hostname for n in swarm_lab.edge_nodes(nodes, 3)] == ["node3", "node2", "node1"]
    for wrong in (0, 4):
        with pytest.raises(BadInput, match=f"--edge must be between 1 and the number of nodes \\(3\\), got {wrong}"):
            swarm_lab.up(3, NAME, edge=wrong)
    assert fake.calls == []  # refused before anything ran


def test_the_nodes_as_the_swarm_sees_them(fake: support.FakeDocker) -> None:
    fake.answer("node", "ls", "-q", stdout="id1\nid2\n")
    fake.answer(
        "node", "inspect", "id1", "id2",
        stdout=json.dumps([
            {"Description": {"Hostname": "node2"}, "Spec": {"Role": "worker", "Availability": "active",
             "Labels": {"analyticbot.edge": "true"}}, "Status": {"State": "down"}},
            {"Description": {"Hostname": "node1"}, "Spec": {"Role": "manager", "Availability": "drain",
             "Labels": {"analyticbot.data": "true"}}, "Status": {"State": "ready"}},
        ]),
    )  # fmt: skip
    found = swarm_lab.describe_nodes(support.three_nodes(NAME))
    assert [(n.hostname, n.manager, n.state, n.availability) for n in found] == [
        ("node1", True, "ready", "drain"),
        ("node2", False, "down", "active"),
    ]
    assert [n.labelled("analyticbot.edge") for n in found] == [False, True]


# --- _wait_engine --------------------------------------------------------------------------------------


def test_waiting_for_an_engine_retries_until_it_answers(fake: support.FakeDocker, clock: support.FakeClock) -> None:
    lab = support.three_nodes(NAME)
    version = ("version", "--format", "{{.Server.Version}}")
    fake.answer_with(
        version,
        DockerUnavailable("Cannot connect to the Docker daemon"),
        support.done(returncode=1, stderr="connection refused"),
        support.done(stdout="\n"),
        support.done(stdout="20.10.24\n"),
    )
    assert swarm_lab._wait_engine(lab, lab.nodes[1]) == "20.10.24"
    assert clock.slept == [0.5, 0.5, 0.5]
    assert {(c.env["DOCKER_HOST"], c.check, c.timeout) for c in fake.calls} == {("tcp://172.29.7.12:2375", False, 10)}


def test_an_engine_that_never_answers_fails_with_its_last_lines(
    fake: support.FakeDocker, clock: support.FakeClock
) -> None:
    lab = support.three_nodes(NAME)
    fake.answer_with(("version", "--format", "{{.Server.Version}}"), DockerUnavailable("not listening"))
    fake.answer("logs", "--tail", "15", f"{NAME}-node2", stdout="level=info msg=starting\n", stderr="failed to mount\n")
    with pytest.raises(OpsError) as caught:
        swarm_lab._wait_engine(lab, lab.nodes[1], timeout=5)
    assert str(caught.value) == (
        f"the engine in {NAME}-node2 did not answer within 5 s; its last lines:\n"
        "level=info msg=starting\nfailed to mount"
    )
    assert sum(clock.slept) == pytest.approx(5.5)
    (logs,) = fake.made("logs")
    assert logs.env is None and logs.check is False  # the node's container, from the host's engine


# --- down ----------------------------------------------------------------------------------------------


def _cgroups(root: Path) -> None:
    for path in (
        f"memory/{NAME}-node1/docker/abc123",
        f"memory/{NAME}-node2",
        f"cpu,cpuacct/{NAME}-node1/docker",
        f"pids/{NAME}-node3/docker/busy",
        "memory/otherlab-node1",
        f"memory/{NAME}x-node1",
        "memory/docker/abc",
    ):
        (root / path).mkdir(parents=True)
    (root / "pids" / f"{NAME}-node3" / "docker" / "busy" / "cgroup.procs").write_text("4242")  # still in use


def test_down_removes_the_lab_and_only_the_lab(
    fake: support.FakeDocker, built: list[Any], clock: support.FakeClock, tmp_path: Path
) -> None:
    _answer_up(fake)
    swarm_lab.up(3, NAME)
    fake.calls.clear()
    _cgroups(tmp_path / "cgroup")
    fake.answer("ps", "-aq", "--filter", f"label={LABEL}", stdout="c1\nc2\nc3\nc4\n")
    said: list[str] = []

    removed = swarm_lab.down(NAME, progress=said.append)

    assert removed == ["4 containers", f"volume {NAME}-registry", f"network {NAME}-net", "3 cgroup directories"]
    assert fake.argvs == [
        ("<daemon>",),
        ("ps", "-aq", "--filter", f"label={LABEL}"),
        ("rm", "-f", "-v", "c1", "c2", "c3", "c4"),
        ("volume", "rm", f"{NAME}-registry"),
        ("network", "rm", f"{NAME}-net"),
        ("context", "rm", "-f", NAME),
    ]
    assert fake.made("rm")[0].timeout == 300
    remaining = sorted(str(p.relative_to(tmp_path / "cgroup")) for p in (tmp_path / "cgroup").glob("*/*"))
    # Another lab's, a look-alike name's, the host's own and one still in use are left.
    assert remaining == ["memory/ablabx-node1", "memory/docker", "memory/otherlab-node1", f"pids/{NAME}-node3"]
    assert not (tmp_path / ".state" / f"swarm-lab-{NAME}.json").exists()
    assert said == [f"removed {line}" for line in removed]
    with pytest.raises(BadInput, match=f"no swarm lab '{NAME}' is up"):
        swarm_lab.load(NAME)


def test_down_with_nothing_there_removes_nothing(fake: support.FakeDocker, tmp_path: Path) -> None:
    fake.answer("volume", "rm", f"{NAME}-registry", returncode=1, stderr="no such volume")
    fake.answer("network", "rm", f"{NAME}-net", returncode=1, stderr="no such network")
    said: list[str] = []
    assert swarm_lab.down(NAME, progress=said.append) == []
    assert fake.made("rm") == [] and said == []
    assert [c.check for c in fake.calls[2:]] == [False, False, False]


# --- load, target --------------------------------------------------------------------------------------


def test_load_without_a_lab_says_how_to_start_one(fake: support.FakeDocker) -> None:
    with pytest.raises(BadInput, match=r"no swarm lab 'analyticbot-lab' is up; start one with `invoke swarm.lab-up`"):
        swarm_lab.load()


def test_the_state_file_holds_addresses_and_names_only(
    fake: support.FakeDocker, built: list[Any], clock: support.FakeClock, tmp_path: Path
) -> None:
    _answer_up(fake)
    swarm_lab.up(2, NAME)
    saved = json.loads((tmp_path / ".state" / f"swarm-lab-{NAME}.json").read_text())
    assert saved == {
        "name": NAME, "network": f"{NAME}-net", "subnet": SUBNET,
        "nodes": [
            {"name": f"{NAME}-node1", "hostname": "node1", "address": "172.29.7.11"},
            {"name": f"{NAME}-node2", "hostname": "node2", "address": "172.29.7.12"},
        ],
        "registry": "172.29.7.2:5000", "registry_local": "127.0.0.1:49153", "context": "",
    }  # fmt: skip


def test_target_is_the_lab_started_here(fake: support.FakeDocker, built: list[Any], clock: support.FakeClock) -> None:
    _answer_up(fake)
    lab = swarm_lab.up(3, NAME)
    fake.calls.clear()
    assert swarm_lab.target(NAME) == lab
    assert swarm_lab.target(NAME, "ignored:5000") == lab
    assert fake.calls == []


def test_target_of_another_swarm_needs_its_registry(fake: support.FakeDocker) -> None:
    with pytest.raises(BadInput, match=r"'prod-swarm' is not a lab started here: .* --registry HOST:PORT"):
        swarm_lab.target("prod-swarm")
    assert fake.calls == []


def test_target_of_an_unknown_context_is_refused(fake: support.FakeDocker) -> None:
    fake.answer(
        "context", "inspect", "nope", "--format", "{{.Endpoints.docker.Host}}", returncode=1, stderr="not found"
    )
    with pytest.raises(BadInput, match=r"no Docker context 'nope'; create it with `docker context create`"):
        swarm_lab.target("nope", "registry.internal:5000")


def test_a_context_target_manages_through_the_context(fake: support.FakeDocker) -> None:
    fake.answer(
        "context", "inspect", "prod-swarm", "--format", "{{.Endpoints.docker.Host}}", stdout="tcp://10.0.0.5:2376\n"
    )
    cluster = swarm_lab.target("prod-swarm", "registry.internal:5000")
    assert cluster.context == "prod-swarm" and cluster.name == "prod-swarm"
    assert cluster.registry == cluster.registry_local == "registry.internal:5000"
    assert cluster.nodes == (swarm_lab.Node("prod-swarm", "manager", "tcp://10.0.0.5:2376"),)
    fake.calls.clear()
    fake.answer("--context", "prod-swarm", "node", "ls", stdout="node-a\n")
    assert cluster.manage(["node", "ls"], check=False, timeout=12).stdout == "node-a\n"
    (call,) = fake.calls
    assert call == support.Ran(("--context", "prod-swarm", "node", "ls"), None, False, 12, None)


def test_a_lab_node_is_reached_on_its_own_engine_with_stdin(fake: support.FakeDocker) -> None:
    lab = support.three_nodes(NAME)
    assert lab.manager == lab.nodes[0] and lab.nodes[2].host == "tcp://172.29.7.13:2375"
    lab.on(lab.nodes[2], ["exec", "-i", "c1", "cat"], stdin=b"secret")
    lab.manage(["node", "ls"])
    assert fake.calls == [
        support.Ran(("exec", "-i", "c1", "cat"), _on(3), True, 120, b"secret"),
        support.Ran(("node", "ls"), _on(1), True, 300, None),
    ]
