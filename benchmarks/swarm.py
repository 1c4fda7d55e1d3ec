"""Swarm benchmarks, on a throwaway 3-node lab (Docker Engines in containers) and, side by side in the
same run, the same stack on Compose:

- the first deploy from nothing but secrets (no certificate: the deploy writes the bootstrap one) to converged
  (Swarm) against `up` to healthy (Compose), images built;
- a rolling update of the api under a steady client (about 25 requests/s through one edge's proxy): Swarm's
  start-first update against the toolkit's Compose rollout; failed requests and seconds;
- certificate issuance and roll (Swarm only): `tls.prod --context` against pebble in the lab, under a client of
  the site behind DNS round robin and one on each edge's own address;
- edge-node loss (Swarm only): an edge node (a worker, with the proxy and an api replica) is stopped, the
  client on the other edge's address; seconds until the api runs its two replicas elsewhere, and the requests
  that client lost meanwhile.

Targets (the Swarm issues): 0 failed requests during the rolling update and, for every client (the site's and
each edge's own), during the certificate roll; recovery from a node loss within 60 s, with 0 failed requests on
the surviving edge.

    python benchmarks/swarm.py
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from analyticbot_ops import deploy, docker, rollout
from analyticbot_ops.acme import AcmeRequest
from analyticbot_ops.swarm import certificates, render
from analyticbot_ops.swarm import deploy as swarm_deploy
from analyticbot_ops.swarm import lab as swarm_lab
from tests import sandbox

console = Console(width=140)


def swarm_side(root: Path) -> dict[str, tuple[float, int, list[str]]]:
    lab_name = f"abbenchlab-{uuid.uuid4().hex[:6]}"
    results: dict[str, tuple[float, int, list[str]]] = {}
    lab = swarm_lab.up(3, lab_name, progress=console.log)
    try:
        # Nothing but secrets: the deploy writes the bootstrap certificate, which the client pins.
        stack = sandbox.make_stack(root / "swarm", f"abbswarm-{uuid.uuid4().hex[:6]}", certificates=False)
        seconds = swarm_deploy.deploy(stack.stack, lab, timeout=300)
        results["deploy to converged / healthy"] = (seconds, 0, [])
        stack.trust_served = True
        edge_names = {n.hostname for n in swarm_lab.describe_nodes(lab) if n.labelled(render.EDGE_LABEL)}
        edges = [n for n in lab.nodes if n.hostname in edge_names]
        stack.address = edges[0].address

        def update() -> None:
            lab.manage(["service", "update", "--force", "--detach", f"{stack.project}_api"])
            time.sleep(3)
            swarm_deploy.wait_converged(lab, stack.project, 180, lambda _m: None)

        results["rolling update of the api"] = sandbox.under_client(stack, update)

        # A certificate from pebble through the edge, and the roll of the proxies to it: a client of the site
        # behind round robin, and one on each edge's own address (whose proxy stops before the new one starts).
        with sandbox.pebble_on_swarm(lab, stack, root / "pebble") as pebble:
            request = AcmeRequest(
                sandbox.TEST_DOMAIN, server=pebble.directory_url, ca_bundle=pebble.ca_bundle, allow_test_domain=True
            )
            reached = {n.hostname: dataclasses.replace(stack, address=n.address, verify=False) for n in edges}
            reached["round robin"] = dataclasses.replace(
                stack, verify=False, round_robin=tuple(n.address for n in edges)
            )
            seconds, clients = sandbox.under_each(reached, lambda: certificates.obtain(stack.stack, lab, request))
            for way_in, (answered, failures) in clients.items():
                results[f"certificate issuance and roll: client on {way_in}"] = (seconds, answered, failures)
        stack.trust_served = False
        stack.verify = False  # the certificate is pebble's now, whose root changes at each start
        api_nodes = swarm_deploy.states(lab, stack.project)["api"].nodes
        # An edge node that runs an api replica; else move a replica there first. The client reads through the
        # other edge.
        lost = next((n for n in edges if n.hostname in api_nodes), edges[-1])
        if lost.hostname not in api_nodes:
            lab.manage(["service", "update", "--detach", "--constraint-add", f"node.hostname!={api_nodes[0]}",
                        f"{stack.project}_api"])  # fmt: skip
            swarm_deploy.wait_converged(lab, stack.project, 180, lambda _m: None)
        stack.address = next(n for n in edges if n != lost).address

        def lose_a_node() -> None:
            docker.docker(["stop", "-t", "0", lost.name])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                api = swarm_deploy.states(lab, stack.project)["api"]
                if api.running == 2 and lost.hostname not in api.nodes:
                    return
                time.sleep(0.5)

        results["edge-node loss: api back to 2 replicas"] = sandbox.under_client(stack, lose_a_node)
        docker.docker(["start", lost.name])
    finally:
        swarm_lab.down(lab_name, progress=console.log)
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


def main(argv: list[str]) -> int:
    # No options; --help says what the run does instead of starting it.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
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
        if measure.startswith(("rolling", "certificate issuance and roll")):
            ok &= not failures
        if measure.startswith("edge-node loss"):
            ok &= seconds < 60 and not failures
    console.print(table)
    console.print(
        f"targets: {'MET' if ok else 'MISSED'} (0 failed in the rolling update and for every client during the "
        "certificate roll; edge-node loss < 60 s, 0 failed)"
    )
    for measure, (_s, _a, failures) in swarm.items():
        for failure in failures[:3]:
            console.print(f"  {measure}: {failure}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
