"""Deploy benchmarks: what each live operation costs a steady client, in one run on a throwaway prod-mode
stack (own project, ports, subnets), beside the baseline measured in the same run: a plain
`docker-compose up --force-recreate` of the api, which is what a deploy did before rolling updates.

For each action: the seconds it took end to end, the requests the client got answered and the ones that
failed (any non-200 or connection error, through the proxy, about 25 requests/s). Targets: 0 failed
requests for every action but the baseline; a new api release deployed in <= 15 s; a rerun with nothing
changed in <= 3 s. (A code-only rebuild of the api image is `benchmarks/images.py`'s figure.)

    python benchmarks/deploy.py
"""

from __future__ import annotations

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


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="abbench-"))
    project = f"abdeploy-{int(time.time())}"
    stack = sandbox.make_stack(root, project)
    images = {"next": f"{project}/api:next", "broken": f"{project}/api:broken"}
    build(images["next"], f"FROM analyticbot/api:latest\nENV RELEASE_MARKER={project}\n")
    build(images["broken"], "FROM analyticbot/api:latest\nENV APP_MODULE=analyticbot_api.main:no_such_app\n")

    def with_api(image: str) -> compose.Stack:
        return stack.reloaded(API_IMAGE=image)

    rows: list[tuple[str, float, int, list[str], float | None]] = []
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
            seconds, answered, failures = sandbox.under_client(stack, action)
            rows.append((name, seconds, answered, failures, target))
            ok &= not failures and (target is None or seconds <= target)
        baseline = sandbox.under_client(
            stack, lambda: stack.stack.compose("up", "-d", "--no-deps", "--no-build", "--force-recreate", "api")
        )
        compose.wait_healthy(stack.stack, ["api"], 60)
        rows.append(("baseline: compose up --force-recreate api", *baseline, None))
    finally:
        deploy.down(stack.stack, volumes=True)
        docker.docker(["rmi", "-f", *images.values()], check=False)

    table = Table(
        "action", "seconds", "answered", "failed", "target", "result", title="Live operations under a steady client"
    )
    for name, seconds, answered, failures, target in rows:
        baseline_row = name.startswith("baseline")
        good = not failures and (target is None or seconds <= target)
        shown = "-" if baseline_row else ("0 failed" + (f", <= {target:.0f} s" if target else ""))
        table.add_row(
            name,
            f"{seconds:.1f}",
            str(answered),
            str(len(failures)),
            shown,
            "-" if baseline_row else ("ok" if good else "MISS"),
        )
    console.print(table)
    baseline_failures = rows[-1][3]
    if baseline_failures:
        console.print(f"baseline failures, first: {baseline_failures[0]}")
    rolled = next(r for r in rows if r[0].startswith("new api release"))
    console.print(
        f"failed requests, rolled release vs plain recreate: {len(rolled[3])} vs {len(baseline_failures)}; "
        f"seconds: {rolled[1]:.1f} vs {rows[-1][1]:.1f}"
    )
    console.print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
