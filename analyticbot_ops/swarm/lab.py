"""A simulated Swarm cluster on this one host: N Docker Engines, each a container running Debian's
docker.io on a network of the lab's own, the first a manager, and the registry they pull from.

Never `docker swarm init` or `leave` on the host's own daemon: leaving a swarm there detached every
running Compose container from its networks. Each node is its own engine, so the host's is untouched.

This kernel shapes how a node runs: the host lacks CAP_SYS_RESOURCE, so `--privileged`
fails and every other capability is added instead; cgroup v1 is read-only in a container unless
/sys/fs/cgroup is mounted read-write, and each node puts its containers under its own cgroup parent
(removed on `down`); a node's images live on a volume, where its engine picks its storage driver as on a host
(overlay2 on this ext4, vfs only where the volume's filesystem allows no overlay). There is
no IPVS: the stack uses DNS round robin (`endpoint_mode: dnsrr`) and host-mode ports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import baseimages, deploy, docker, runner
from ..errors import BadInput, DockerUnavailable, OpsError
from ..paths import STATE_DIR
from . import render

Progress = Callable[[str], None]
DEFAULT_NAME = "analyticbot-lab"  # also the Docker context that reaches its manager
LABEL = "org.analyticbot.swarm-lab"
ENGINE_PORT = 2375  # each node's API, on the lab's network only (never published on the host)
REGISTRY_PORT = 5000
CGROUP_ROOT = Path("/sys/fs/cgroup")
# What lets dockerd run in a container here (see the module docstring).
NODE_OPTIONS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/var/run",
    # The node's images on a volume (a host filesystem), not on the node container's own overlay, where only
    # vfs would work: vfs copies every layer for each container, and three nodes doing that at once starved
    # the host's disk. On a volume the engine picks overlay2 itself where the filesystem allows it.
    "--mount", "type=volume,dst=/var/lib/docker",
)  # fmt: skip


@dataclass(frozen=True)
class Node:
    name: str  # its container on the host
    hostname: str  # its name in the swarm
    address: str  # on the lab's network

    @property
    def host(self) -> str:
        """DOCKER_HOST for this node's engine."""
        return f"tcp://{self.address}:{ENGINE_PORT}"


@dataclass(frozen=True)
class Lab:
    name: str
    network: str
    subnet: str
    nodes: tuple[Node, ...]
    registry: str  # host:port as the nodes reach it (lab network)
    registry_local: str  # host:port as this host pushes to it (loopback)
    context: str = ""  # a swarm outside the lab: the Docker context that reaches its manager

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def on(
        self, node: Node, args: list[str], *, check: bool = True, timeout: float = 120, stdin: bytes | None = None
    ) -> runner.Completed[str]:
        """`docker ARGS` against one node's engine (a secret goes on `stdin`, never in ARGS). A swarm reached
        through a Docker context is reached only through it (its manager), with the context's own TLS."""
        if self.context:
            return docker.docker(["--context", self.context, *args], check=check, timeout=timeout, input_bytes=stdin)
        return docker.docker(args, env={"DOCKER_HOST": node.host}, check=check, timeout=timeout, input_bytes=stdin)

    def manage(self, args: list[str], *, check: bool = True, timeout: float = 300) -> runner.Completed[str]:
        """`docker ARGS` against the swarm's manager."""
        if self.context:
            return docker.docker(["--context", self.context, *args], check=check, timeout=timeout)
        return self.on(self.manager, args, check=check, timeout=timeout)


def target(context: str, registry: str | None = None) -> Lab:
    """The swarm a task acts on: the lab of that name when this checkout started it, else any swarm manager
    the Docker context reaches, with the registry its nodes pull from (`--registry HOST:PORT`)."""
    if _state_file(context).is_file():
        return load(context)
    if not registry:
        raise BadInput(
            f"{context!r} is not a lab started here: name the registry its nodes pull from with --registry HOST:PORT"
        )
    said = docker.docker(["context", "inspect", context, "--format", "{{.Endpoints.docker.Host}}"], check=False)
    if said.returncode != 0:
        raise BadInput(f"no Docker context {context!r}; create it with `docker context create`")
    manager = Node(context, "manager", said.stdout.strip())
    return Lab(context, "", "", (manager,), registry, registry, context=context)


def _state_file(name: str) -> Path:
    return STATE_DIR / f"swarm-lab-{name}.json"


def load(name: str = DEFAULT_NAME) -> Lab:
    """The lab this checkout started, or BadInput saying how to start one."""
    path = _state_file(name)
    if not path.is_file():
        raise BadInput(f"no swarm lab {name!r} is up; start one with `invoke swarm.lab-up`")
    data = json.loads(path.read_text())
    return Lab(**{**data, "nodes": tuple(Node(**n) for n in data["nodes"])})


def _save(lab: Lab) -> None:
    STATE_DIR.mkdir(exist_ok=True)
    _state_file(lab.name).write_text(json.dumps(asdict(lab), indent=2))


def _wait_engine(lab: Lab, node: Node, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            said = lab.on(node, ["version", "--format", "{{.Server.Version}}"], check=False, timeout=10)
            if said.returncode == 0 and said.stdout.strip():
                return said.stdout.strip()
        except DockerUnavailable:  # not listening yet
            pass
        if time.monotonic() > deadline:
            logs = docker.docker(["logs", "--tail", "15", node.name], check=False)
            raise OpsError(
                f"the engine in {node.name} did not answer within {timeout:.0f} s; its last lines:\n"
                f"{(logs.stdout + logs.stderr).strip()}"
            )
        time.sleep(0.5)


def _check_nodes(nodes: int) -> int:
    if not 1 <= nodes <= 9:
        raise BadInput(f"--nodes must be between 1 and 9, got {nodes}")
    return nodes


def edge_count(nodes: int, edge: int | None) -> int:
    """How many nodes serve the edge: as asked (1 to all), else every worker (the one node of a 1-node lab)."""
    if edge is None:
        return max(1, nodes - 1)
    if not 1 <= edge <= nodes:
        raise BadInput(f"--edge must be between 1 and the number of nodes ({nodes}), got {edge}")
    return edge


def edge_nodes(members: tuple[Node, ...], count: int) -> tuple[Node, ...]:
    """The edge nodes: the workers first, from the last, and the manager only when every node is one. The
    manager keeps the data (postgres, redis) and the swarm's control: an edge, the node a client reaches, is
    the one most likely lost or replaced."""
    return tuple(reversed(members))[:count]


@dataclass(frozen=True)
class NodeInfo:
    """A node as the swarm sees it."""

    hostname: str
    manager: bool
    state: str  # ready, down, unknown
    availability: str  # active, pause, drain
    labels: dict[str, str]
    address: str = ""  # where the swarm reaches it (an edge's: where clients do)

    def labelled(self, label: str) -> bool:
        return self.labels.get(label) == "true"


def describe_nodes(lab: Lab) -> list[NodeInfo]:
    """Every node of the swarm, by hostname, with its role, state and labels (what `swarm.status` shows)."""
    ids = lab.manage(["node", "ls", "-q"]).stdout.split()
    if not ids:
        return []
    infos = json.loads(lab.manage(["node", "inspect", *ids]).stdout)
    found = [
        NodeInfo(
            hostname=info["Description"]["Hostname"],
            manager=info["Spec"].get("Role") == "manager",
            state=info["Status"].get("State", "unknown"),
            availability=info["Spec"].get("Availability", "active"),
            labels=dict(info["Spec"].get("Labels") or {}),
            address=info["Status"].get("Addr", ""),
        )
        for info in infos
    ]
    return sorted(found, key=lambda n: n.hostname)


def label_edges(lab: Lab, count: int, progress: Progress = lambda _m: None) -> tuple[Node, ...]:
    """Label `count` nodes as the edge (render.EDGE_LABEL), and no other: the same lab asked again with another
    count moves the label."""
    edges = edge_nodes(lab.nodes, count)
    for node in lab.nodes:
        if node in edges:
            lab.manage(["node", "update", "--label-add", f"{render.EDGE_LABEL}=true", node.hostname])
        else:  # refused when the label is not there: nothing to remove
            lab.manage(["node", "update", "--label-rm", render.EDGE_LABEL, node.hostname], check=False)
    progress(f"{lab.name}: edge nodes {' '.join(n.hostname for n in edges)} (label {render.EDGE_LABEL}=true)")
    return edges


def up(
    nodes: int = 3,
    name: str = DEFAULT_NAME,
    namespace: str = "analyticbot",
    progress: Progress = lambda _m: None,
    edge: int | None = None,
    subnet_pool: str = deploy.SUBNET_POOL,
) -> Lab:
    """Start the lab (or say it runs): build its images, start the registry and the nodes, form the swarm, label
    its data node and `edge` edge nodes (default: every worker). Its network takes a free /24 of `subnet_pool`."""
    _check_nodes(nodes)
    edges = edge_count(nodes, edge)
    docker.require_daemon()
    if _state_file(name).is_file():
        lab = load(name)
        infos = [docker.inspect("container", n.name) for n in lab.nodes]
        if len(lab.nodes) == nodes and all(infos):
            # Stopped (a host reboot: the nodes have no restart policy): start them again, swarm state kept.
            stopped = [
                n for n, info in zip(lab.nodes, infos, strict=True) if not (info or {}).get("State", {}).get("Running")
            ]
            if stopped:
                docker.docker(["start", f"{name}-registry", *(n.name for n in stopped)])
                for node in stopped:
                    progress(f"{node.hostname}: started again, engine {_wait_engine(lab, node)}")
            label_edges(lab, edges, progress)
            progress(f"{name} is up: {len(lab.nodes)} nodes, registry {lab.registry}")
            return lab
        raise BadInput(f"a different lab {name!r} is recorded here; `invoke swarm.lab-down` first")
    built = baseimages.build_base_images(["swarm-node", "registry"], namespace=namespace, progress=progress)
    images = baseimages.image_refs(built)
    subnet = deploy.free_subnets(1, pool=subnet_pool)[0]
    prefix = subnet.rsplit(".", 1)[0]
    network = f"{name}-net"
    progress(f"network {network} on {subnet}")
    docker.docker(["network", "create", "--subnet", subnet, "--label", f"{LABEL}={name}", network])
    registry_ip = f"{prefix}.2"
    docker.docker(
        [
            "run", "-d", "--name", f"{name}-registry", "--label", f"{LABEL}={name}", "--network", network,
            "--ip", registry_ip, "-p", f"127.0.0.1::{REGISTRY_PORT}", "--restart", "unless-stopped",
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "-v", f"{name}-registry:/var/lib/docker-registry", images["registry"],
        ]
    )  # fmt: skip
    published = docker.docker(["port", f"{name}-registry", f"{REGISTRY_PORT}/tcp"]).stdout.split()[0]
    members = tuple(Node(f"{name}-node{i}", f"node{i}", f"{prefix}.{10 + i}") for i in range(1, nodes + 1))
    for node in members:
        progress(f"starting {node.hostname} ({node.address})")
        docker.docker(
            [
                "run", "-d", "--name", node.name, "--hostname", node.hostname, "--label", f"{LABEL}={name}",
                "--network", network, "--ip", node.address, *NODE_OPTIONS, images["swarm-node"],
                "dockerd", f"--cgroup-parent=/{node.name}",
                "-H", "unix:///var/run/docker.sock", "-H", f"tcp://0.0.0.0:{ENGINE_PORT}",
                "--insecure-registry", subnet,
            ]
        )  # fmt: skip
    lab = Lab(name, network, subnet, members, f"{registry_ip}:{REGISTRY_PORT}", published)
    _save(lab)  # from here on, `lab-down` knows what to remove
    for node in members:
        progress(f"{node.hostname}: engine {_wait_engine(lab, node)}")
    lab.manage(["swarm", "init", "--advertise-addr", lab.manager.address])
    token = lab.manage(["swarm", "join-token", "-q", "worker"]).stdout.strip()
    for node in members[1:]:
        lab.on(node, ["swarm", "join", "--token", token, f"{lab.manager.address}:2377"])
    lab.manage(["node", "update", "--label-add", f"{render.DATA_LABEL}=true", lab.manager.hostname])
    label_edges(lab, edges, progress)
    _context(lab)
    progress(f"{name}: {nodes} nodes in the swarm, manager {lab.manager.address}, registry {lab.registry}")
    return lab


def _context(lab: Lab) -> None:
    """The Docker context named after the lab, so that `docker --context analyticbot-lab ...` reaches it."""
    docker.docker(["context", "rm", "-f", lab.name], check=False)
    docker.docker(["context", "create", lab.name, "--docker", f"host={lab.manager.host}"], check=False)


def down(name: str = DEFAULT_NAME, progress: Progress = lambda _m: None) -> list[str]:
    """Remove the lab: nodes, registry, its volume, network, context and the nodes' cgroups."""
    docker.require_daemon()
    listed = docker.docker(["ps", "-aq", "--filter", f"label={LABEL}={name}"]).stdout.split()
    removed = []
    if listed:
        docker.docker(["rm", "-f", "-v", *listed], timeout=300)
        removed.append(f"{len(listed)} containers")
    if docker.docker(["volume", "rm", f"{name}-registry"], check=False).returncode == 0:
        removed.append(f"volume {name}-registry")
    if docker.docker(["network", "rm", f"{name}-net"], check=False).returncode == 0:
        removed.append(f"network {name}-net")
    docker.docker(["context", "rm", "-f", name], check=False)
    removed += _remove_cgroups(name)
    _state_file(name).unlink(missing_ok=True)
    for line in removed:
        progress(f"removed {line}")
    return removed


def _remove_cgroups(name: str) -> list[str]:
    """The cgroup directories the nodes' engines made (`--cgroup-parent=/<node>`), deepest first."""
    gone = 0
    for parent in sorted(CGROUP_ROOT.glob(f"*/{name}-node*")):
        try:
            for directory in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                directory.rmdir()
            parent.rmdir()
            gone += 1
        except OSError:  # still in use (a process left behind): leave it, as the kernel would
            continue
    return [f"{gone} cgroup directories"] if gone else []
