"""Swarm benchmarks, on a throwaway 3-node lab (Docker Engines in containers) and, side by side in the
same run, the same stack on Compose:

- deploy to converged (Swarm) against `up` to healthy (Compose), both from nothing, images built;
- a rolling update of the api under a steady client (about 25 requests/s through the proxy): Swarm's
  start-first update against the toolkit's Compose rollout; failed requests and seconds;
- node loss (Swarm only): a worker running an api replica is stopped; seconds until the api runs its two
  replicas elsewhere, and the requests the client lost meanwhile.

Targets (the Swarm issue): 0 failed requests during the rolling update; recovery from a node loss within
60 s, losing at most the requests in flight on that node.

    python benchmarks/swarm.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from analyticbot_ops import deploy, docker, rollout
from analyticbot_ops.swarm import deploy as swarm_deploy
from analyticbot_ops.swarm import lab as swarm_lab
from tests import sandbox

console = Console(width=140)


def swarm_side(root: Path) -> dict[str, tuple[float, int, list[str]]]:
    name = f"abbenchlab-{uuid.uuid4().hex[:6]}"
    results: dict[str, tuple[float, int, list[str]]] = {}
    lab = swarm_lab.up(3, name, progress=console.log)
    try:
        stack = sandbox.make_stack(root / "swarm", f"abbswarm-{uuid.uuid4().hex[:6]}")
        seconds = swarm_deploy.deploy(stack.stack, lab, timeout=300)
        results["deploy to converged / healthy"] = (seconds, 0, [])
        states = swarm_deploy.states(lab, stack.project)
        proxy_host = states["proxy"].nodes[0]
        stack.address = next(n.address for n in lab.nodes if n.hostname == proxy_host)

        def update() -> None:
            lab.manage(["service", "update", "--force", "--detach", f"{stack.project}_api"])
            time.sleep(3)
            swarm_deploy.wait_converged(lab, stack.project, 180, lambda _m: None)

        results["rolling update of the api"] = sandbox.under_client(stack, update)
        api_nodes = swarm_deploy.states(lab, stack.project)["api"].nodes
        # A worker that runs an api replica and not the proxy; else move a replica there first.
        workers = [n for n in lab.nodes[1:] if n.hostname != proxy_host]
        lost = next((n for n in workers if n.hostname in api_nodes), workers[0])
        if lost.hostname not in api_nodes:
            lab.manage(["service", "update", "--detach", "--constraint-add", f"node.hostname!={api_nodes[0]}",
                        f"{stack.project}_api"])  # fmt: skip
            swarm_deploy.wait_converged(lab, stack.project, 180, lambda _m: None)

        def lose_a_node() -> None:
            docker.docker(["stop", "-t", "0", lost.name])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                api = swarm_deploy.states(lab, stack.project)["api"]
                if api.running == 2 and lost.hostname not in api.nodes:
                    return
                time.sleep(0.5)

        results["node loss: api back to 2 replicas"] = sandbox.under_client(stack, lose_a_node)
        docker.docker(["start", lost.name])
    finally:
        swarm_lab.down(name)
    return results


def compose_side(root: Path) -> dict[str, tuple[float, int, list[str]]]:
    stack = sandbox.make_stack(root / "compose", f"abbcompose-{uuid.uuid4().hex[:6]}")
    results: dict[str, tuple[float, int, list[str]]] = {}
    try:
        started = time.monotonic()
        deploy.up(stack.stack, timeout=300)
        results["deploy to converged / healthy"] = (time.monotonic() - started, 0, [])
        results["rolling update of the api"] = sandbox.under_client(
            stack, lambda: rollout.roll(stack.stack, "api", timeout=120)
        )
    finally:
        deploy.down(stack.stack, volumes=True)
    return results


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="abbench-swarm-"))
    swarm = swarm_side(root)
    composed = compose_side(root)
    table = Table("measure", "swarm (3 nodes)", "compose (1 host)", "swarm / compose", title="Swarm against Compose")
    ok = True
    for measure, (seconds, answered, failures) in swarm.items():
        other = composed.get(measure)
        ratio = f"{seconds / other[0]:.2f}" if other and other[0] else "-"
        shown = f"{seconds:.1f} s" + (f", {len(failures)} of {answered + len(failures)} failed" if answered else "")
        other_shown = "-"
        if other:
            other_shown = f"{other[0]:.1f} s" + (
                f", {len(other[2])} of {other[1] + len(other[2])} failed" if other[1] else ""
            )
        table.add_row(measure, shown, other_shown, ratio)
        if measure.startswith("rolling"):
            ok &= not failures
        if measure.startswith("node loss"):
            ok &= seconds < 60 and len(failures) <= 3
    console.print(table)
    console.print(f"targets: {'MET' if ok else 'MISSED'} (0 failed in the rolling update; node loss < 60 s)")
    for measure, (_s, _a, failures) in swarm.items():
        for failure in failures[:3]:
            console.print(f"  {measure}: {failure}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
