"""Deploy benchmarks: what each live operation costs a steady client, in one run on a throwaway prod-mode
stack (own project, ports, subnets), beside the baseline measured in the same run: a plain
`docker-compose up --force-recreate` of the api, which is what a deploy did before rolling updates.

For each action: the seconds it took end to end, and for each of two steady clients (about 25 requests/s each,
through the proxy) the requests answered and the ones that failed (any non-200 or connection error): one opens
a new connection for every request, the other keeps one connection alive, as browsers, the bot and most API
clients do (tests/sandbox.py SteadyClient). Targets: 0 failed requests in both modes for every action but the
baseline; a new api release deployed in <= 15 s; a rerun with nothing changed in <= 3 s. (A code-only rebuild
of the api image is `benchmarks/images.py`'s figure.)

    python benchmarks/deploy.py
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from analyticbot_ops import compose, deploy, docker, rollout
from analyticbot_ops.errors import OpsError
from tests import sandbox

console = Console(width=140)


def expecting_failure(action: Callable[[], object]) -> Callable[[], object]:
    """The action of a release meant to fail (and roll back): its OpsError is the expected outcome."""

    def run() -> None:
        with contextlib.suppress(OpsError):
            action()

    return run


def build(tag: str, recipe: str) -> None:
    subprocess.run([docker.buildkit_client().path, "build", "-q", "-t", tag, "-"], input=recipe, text=True, check=True)


def main(argv: list[str]) -> int:
    # No options; --help says what the run does instead of starting it.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="abbench-"))
    project = f"abdeploy-{int(time.time())}"
    stack = sandbox.make_stack(root, project)
    images = {"next": f"{project}/api:next", "broken": f"{project}/api:broken"}
    build(images["next"], f"FROM analyticbot/api:latest\nENV RELEASE_MARKER={project}\n")
    build(images["broken"], "FROM analyticbot/api:latest\nENV APP_MODULE=analyticbot_api.main:no_such_app\n")

    def with_api(image: str) -> compose.Stack:
        return stack.reloaded(API_IMAGE=image)

    Results = dict[str, tuple[int, list[str]]]
    rows: list[tuple[str, float, Results, float | None]] = []
    ok = True
    try:
        deploy.up(stack.stack, timeout=300)
        actions: list[tuple[str, Callable[[], object], float | None]] = [
            ("rerun, nothing changed", lambda: deploy.up(stack.stack, timeout=120), 3.0),
            ("restart --service api (rolled)", lambda: rollout.roll(stack.stack, "api", timeout=120), None),
            ("proxy reload", lambda: rollout.reload_proxy(stack.stack), None),
            ("new api release (rolled)", lambda: deploy.up(with_api(images["next"]), timeout=120), 15.0),
            (
                "broken release (rolled back)",
                expecting_failure(lambda: deploy.up(with_api(images["broken"]), timeout=60)),
                None,
            ),
            ("rollback to the first release (rolled)", lambda: deploy.up(stack.stack, timeout=120), 15.0),
        ]
        for name, action, target in actions:
            seconds, results = sandbox.under_clients(stack, action)
            rows.append((name, seconds, results, target))
            ok &= not any(failures for _n, failures in results.values()) and (target is None or seconds <= target)
        baseline = sandbox.under_clients(
            stack, lambda: stack.stack.compose("up", "-d", "--no-deps", "--no-build", "--force-recreate", "api")
        )
        compose.wait_healthy(stack.stack, ["api"], 60)
        rows.append(("baseline: compose up --force-recreate api", *baseline, None))
    finally:
        deploy.down(stack.stack, volumes=True)
        docker.docker(["rmi", "-f", *images.values()], check=False)

    modes = list(rows[0][2])
    table = Table("action", "seconds", title="Live operations under two steady clients")
    for mode in modes:
        table.add_column(f"{mode}: answered / failed")
    table.add_column("target")
    table.add_column("result")
    for name, seconds, results, target in rows:
        baseline_row = name.startswith("baseline")
        good = not any(failures for _n, failures in results.values()) and (target is None or seconds <= target)
        shown = "-" if baseline_row else ("0 failed" + (f", <= {target:.0f} s" if target else ""))
        table.add_row(
            name,
            f"{seconds:.1f}",
            *(f"{results[m][0]} / {len(results[m][1])}" for m in modes),
            shown,
            "-" if baseline_row else ("ok" if good else "MISS"),
        )
    console.print(table)
    for name, _seconds, results, _target in rows:
        for mode, (_answered, failures) in results.items():
            if failures:
                console.print(f"{name}, {mode}: first failure {failures[0]}")
    rolled = next(r for r in rows if r[0].startswith("new api release"))
    plain = rows[-1]
    failed = {label: sum(len(f) for _a, f in row[2].values()) for label, row in (("rolled", rolled), ("plain", plain))}
    console.print(
        f"failed requests (both clients), rolled release vs plain recreate: {failed['rolled']} vs {failed['plain']}; "
        f"seconds: {rolled[1]:.1f} vs {plain[1]:.1f}"
    )
    console.print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
