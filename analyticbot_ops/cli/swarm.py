"""The `swarm` namespace: the same stack on a Docker Swarm, and a simulated cluster to try it on.

`lab-up` starts N Docker Engines as containers (never touching the host's own engine's swarm state),
`deploy` pushes the images to the cluster's registry, pinned by digest, and waits until every service
has converged; `status`, `rollback` and `remove` act on what runs. `--context` names the swarm: the lab
(default) or any manager a Docker context reaches, with `--registry`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection
from rich.table import Table

from .. import compose, docker, secrets
from ..config import ops
from ..errors import BadInput
from ..swarm import deploy as swarm_deploy  # aliased: deploy, status, rollback, remove are this module's tasks
from ..swarm import lab, render, rotation
from ._task import ops_task, out, print_json, progress, stack_of
from .legacy import Legacy

CONTEXT = "The swarm: the lab of this name, or a Docker context reaching a manager (default: analyticbot-lab)."
REGISTRY = "HOST:PORT of the registry the nodes pull from (needed for a swarm that is not the lab)."
ENV = "Environment whose settings, secrets and certificate the stack uses: staging or prod."


def _cluster(context: str, registry: str | None) -> lab.Lab:
    docker.require_daemon()
    return lab.target(context, registry)


def _stack(c: Any, env: str, **kwargs: Any) -> compose.Stack:
    """The environment's stack as Swarm runs it (both overlays as invoke.yaml's ops section says)."""
    return stack_of(c, env, **kwargs)


def _project(c: Any, env: str) -> str:
    return _stack(c, env).project


@ops_task(
    help={
        "nodes": "How many nodes (1-9); the first is the manager and keeps the data.",
        "name": "The lab's name and context.",
        "edge": "How many nodes serve the edge (a proxy on each, ports 80/443 on its address); 0: every worker.",
    }
)
def lab_up(c: Any, nodes: int = 3, name: str = lab.DEFAULT_NAME, edge: int = 0) -> None:
    """Start a simulated Swarm: N Docker Engines in containers, their registry, and a Docker context."""
    cluster = lab.up(nodes, name, namespace=ops(c.config).namespace, progress=progress, edge=edge or None)
    edges = lab.edge_nodes(cluster.nodes, lab.edge_count(len(cluster.nodes), edge or None))
    title = f"{cluster.name}: registry {cluster.registry} (local {cluster.registry_local})"
    table = Table("node", "address", "role", "edge", title=title)
    for index, node in enumerate(cluster.nodes):
        role = "manager, data" if index == 0 else "worker"
        table.add_row(node.hostname, node.address, role, "yes" if node in edges else "")
    out.print(table)


@ops_task(help={"name": "The lab to remove."})
def lab_down(c: Any, name: str = lab.DEFAULT_NAME) -> None:
    """Remove the simulated Swarm: nodes, registry, network, context and the nodes' cgroups."""
    removed = lab.down(name, progress=progress)
    out.print(f"{name}: {', '.join(removed) or 'nothing was there'}")


@ops_task(help={"env": ENV, "context": CONTEXT, "registry": REGISTRY, "timeout": "Seconds to wait for convergence."})
def deploy(
    c: Any, env: str = "prod", context: str = lab.DEFAULT_NAME, registry: str | None = None, timeout: float = 300
) -> None:
    """Deploy the stack on a swarm (images pinned by digest, versioned secrets); wait until it converges."""
    if env == "dev":
        raise BadInput("the swarm stack is for staging and prod (dev runs on Compose: `invoke stack.up`)")
    stack = _stack(c, env, pinned=True)
    # The same checks as a Compose deploy's, the swarm last: a bad certificate is named before any swarm is asked.
    cluster = swarm_deploy.require(stack, lambda: _cluster(context, registry), progress)
    seconds = swarm_deploy.deploy(stack, cluster, timeout=timeout, progress=progress, checked=True)
    out.print(f"{stack.project} converged on {cluster.name} in {seconds:.1f} s")


@ops_task(help={"env": ENV, "context": CONTEXT, "registry": REGISTRY, "json": "Print the services as JSON."})
def status(
    c: Any, env: str = "prod", context: str = lab.DEFAULT_NAME, registry: str | None = None, json: bool = False
) -> None:
    """Each service on the swarm: replicas running/desired, the nodes, the image digest it runs; the edge nodes."""
    project = _project(c, env)
    cluster = _cluster(context, registry)
    rows = swarm_deploy.status(cluster, project)
    if json:
        print_json(rows)  # the proxy's row names the nodes that serve the edge
        return
    table = Table("service", "replicas", "nodes", "image", "update", title=project)
    for row in rows:
        image = row["image"].rsplit("/", 1)[-1]
        table.add_row(row["name"], f"{row['running']}/{row['desired']}", " ".join(row["nodes"]), image, row["update"])
    out.print(table)
    # Which nodes take the site's traffic: labelled as the edge, and whether a proxy serves there now.
    serving: list[str] = next((row["nodes"] for row in rows if row["name"] == "proxy"), [])
    nodes = Table("node", "role", "state", "data", "edge", "proxy", title=f"{cluster.name}: nodes")
    for node in lab.describe_nodes(cluster):
        edge = node.labelled(render.EDGE_LABEL)
        nodes.add_row(
            node.hostname,
            "manager" if node.manager else "worker",
            node.state if node.availability == "active" else f"{node.state}, {node.availability}",
            "yes" if node.labelled(render.DATA_LABEL) else "",
            "yes" if edge else "",
            "serving" if node.hostname in serving else ("none" if edge else ""),
        )
    out.print(nodes)


@ops_task(help={"env": ENV, "context": CONTEXT, "registry": REGISTRY, "timeout": "Seconds to wait for convergence."})
def rollback(
    c: Any, env: str = "prod", context: str = lab.DEFAULT_NAME, registry: str | None = None, timeout: float = 300
) -> None:
    """Roll every service that changed back to its previous spec, and wait until it converges."""
    cluster, project = _cluster(context, registry), _project(c, env)
    rolled = swarm_deploy.rollback(cluster, project, timeout=timeout, progress=progress)
    out.print(f"{project}: rolled back {', '.join(rolled) or 'nothing (no service has a previous spec)'}")


@ops_task(help={"env": ENV, "context": CONTEXT, "registry": REGISTRY, "volumes": "Also remove the data volumes."})
def remove(
    c: Any, env: str = "prod", context: str = lab.DEFAULT_NAME, registry: str | None = None, volumes: bool = False
) -> None:
    """Remove the stack from the swarm (its secrets and networks too; data volumes only with --volumes)."""
    project = _project(c, env)
    swarm_deploy.remove(_cluster(context, registry), project, volumes=volumes, progress=progress)
    out.print(f"{project}: removed")


@ops_task(
    help={
        "name": "The secret to rotate (a generated one).",
        "env": ENV,
        "context": CONTEXT,
        "registry": REGISTRY,
        "timeout": "Seconds to wait for convergence.",
    }
)
def rotate(
    c: Any,
    name: str,
    env: str = "prod",
    context: str = lab.DEFAULT_NAME,
    registry: str | None = None,
    timeout: float = 300,
) -> None:
    """Rotate a secret on the swarm: the live change, a new secret version, the services rolled to it."""
    cluster = _cluster(context, registry)
    stack = _stack(c, env, pinned=True)
    secrets.get_spec(name)
    control = rotation.SwarmStack(stack, cluster, progress)
    result = secrets.rotate(name, Path(stack.settings["SECRETS_DIR"]), control, timeout=timeout)
    out.print(f"rotated {result.name} on {cluster.name}; the old version is removed, backups kept")


ns = Collection("swarm")
for _task in (deploy, status, rollback, remove, rotate, lab_up, lab_down):
    ns.add_task(_task, default=_task is status)
# Each swarm task under a flat `swarm-NAME` too, like the first release's tasks (cli/legacy.py).
LEGACY = {
    f"swarm-{name}": Legacy(f"swarm.{name}")
    for name in ("deploy", "status", "rollback", "remove", "rotate", "lab-up", "lab-down")
}
