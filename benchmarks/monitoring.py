"""What the monitoring overlay costs and how fast it tells, in one run on a throwaway prod-mode stack with the
overlay (own project, ports, subnets), each figure beside its target and a baseline from the same run:

- host CPU with the whole stack idle, against the same stack with only the overlay's containers paused: what
  the overlay adds (target <= 0.05 core);
- Prometheus's RSS after the idle window (target <= 150 MiB);
- the overlay's images against their budgets (ops.budgets_mb);
- quiet: over an idle window (default 300 s) and then a wrk load on the summary route, nothing but Watchdog
  fires (ALERTS over the window, read from Prometheus);
- fault to alert, in seconds: postgres killed -> PostgresDown firing (target <= 30) and at the bot's
  webhook (<= 45), resolved after postgres starts (<= 60); the api stopped -> ServiceDown firing (<= 30).

    python benchmarks/monitoring.py [--idle 300] [--load 60]
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console
from rich.table import Table
from stack import _cores_busy, _request, _rss_mb, _wrk, verdict

from analyticbot_ops import baseimages, compose, deploy, docker, model
from analyticbot_ops.config import DEFAULTS
from analyticbot_ops.monitoring import client
from tests import sandbox

console = Console(width=140)
IDLE_CPU_TARGET = 0.05
PROMETHEUS_RSS_TARGET_MIB = 150.0
TARGETS_S = {"PostgresDown firing": 30.0, "PostgresDown at the bot": 45.0, "PostgresDown resolved": 60.0,
             "ServiceDown firing": 30.0}  # fmt: skip


def _until(predicate: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    return float("inf")


def _firing(monitoring: client.Monitoring, name: str) -> bool:
    return any(a.name == name and a.state == "firing" for a in monitoring.alerts())


def _containers(stack: sandbox.RunningStack, services: tuple[str, ...]) -> list[str]:
    states = compose.service_states(stack.project)
    return [states[s].container for s in services if s in states]


def bench_idle_cpu(stack: sandbox.RunningStack, seconds: float = 30.0) -> dict[str, float]:
    everything = _cores_busy(seconds)
    overlay = _containers(stack, model.MONITORS)
    docker.docker(["pause", *overlay])
    try:
        without = _cores_busy(seconds)
    finally:
        docker.docker(["unpause", *overlay])
    return {"stack with the overlay": everything, "overlay paused (baseline)": without}


def prometheus_rss_mib(stack: sandbox.RunningStack) -> float:
    (container,) = _containers(stack, ("prometheus",))
    pid = int((docker.inspect("container", container) or {})["State"]["Pid"])
    return _rss_mb(pid)


def quiet_windows(stack: sandbox.RunningStack, idle: int, load: int) -> dict[str, list[str]]:
    """The alerts other than Watchdog that fired at any moment of each window (ALERTS, read after it)."""
    monitoring = client.for_stack(stack.stack)

    def fired(window: int) -> list[str]:
        query = f'max_over_time(ALERTS{{alertstate="firing",alertname!="Watchdog"}}[{window}s])'
        found = monitoring.prometheus.request(f"/api/v1/query?query={quote(query, safe='')}")["data"]["result"]
        return sorted({r["metric"]["alertname"] for r in found})

    time.sleep(idle)
    result = {f"idle {idle} s": fired(idle)}
    context = ssl.create_default_context(cafile=stack.ca_file)
    token = stack.token("write")
    _request(f"{stack.base_url}/api/channels", context, "POST", {"username": "bench", "title": "bench"}, token)
    started = time.monotonic()
    _wrk(f"{stack.base_url}/api/channels/bench/summary", token, load, 64)
    result[f"wrk {load} s, 64 connections"] = fired(int(time.monotonic() - started) + 30)
    return result


def faults(stack: sandbox.RunningStack) -> dict[str, float]:
    monitoring = client.for_stack(stack.stack)
    figures: dict[str, float] = {}
    (postgres,) = _containers(stack, ("postgres",))
    killed = time.time()
    docker.docker(["kill", postgres])
    figures["PostgresDown firing"] = _until(lambda: _firing(monitoring, "PostgresDown"), 60)

    def at_bot() -> bool:
        (bot,) = _containers(stack, ("bot",))
        logs = docker.docker(["logs", "--since", str(int(killed) - 1), bot], check=False)
        return "alert: FIRING critical PostgresDown" in logs.stdout + logs.stderr

    _until(at_bot, 60)
    figures["PostgresDown at the bot"] = time.time() - killed
    docker.docker(["start", postgres])
    figures["PostgresDown resolved"] = _until(lambda: not _firing(monitoring, "PostgresDown"), 120)
    compose.wait_healthy(stack.stack, stack.stack.running, 120, fail_fast=False)
    (api,) = _containers(stack, ("api",))
    docker.docker(["stop", "--time", "5", api])
    figures["ServiceDown firing"] = _until(lambda: _firing(monitoring, "ServiceDown"), 60)
    docker.docker(["start", api])
    compose.wait_healthy(stack.stack, stack.stack.running, 120, fail_fast=False)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=300, help="seconds of the idle window")
    parser.add_argument("--load", type=int, default=60, help="seconds of wrk load")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="abbench-"))
    stack = sandbox.make_stack(root, f"abbenchmon-{int(time.time())}", monitoring=True)
    ok = True
    try:
        deploy.up(stack.stack, timeout=240)
        monitoring = client.for_stack(stack.stack)
        up = _until(lambda: {t.health for t in monitoring.targets()} == {"up"}, 120)
        console.print(f"every target up {up:.1f} s after the deploy (target <= 60): {verdict(up <= 60)}")
        ok &= up <= 60

        budgets = DEFAULTS["ops"]["budgets_mb"]
        table = Table("image", "MB", "budget MB", "result", title="The overlay's images")
        for name in model.MONITORS:
            size = docker.image_size(baseimages.recipe(name).tag()) / 1e6
            table.add_row(name, f"{size:.1f}", str(budgets[name]), verdict(size <= budgets[name]))
            ok &= size <= budgets[name]
        console.print(table)

        quiet = quiet_windows(stack, args.idle, args.load)
        table = Table("window", "alerts other than Watchdog that fired", "result", title="Quiet at rest and under load")
        for window, fired in quiet.items():
            table.add_row(window, ", ".join(fired) or "none", verdict(not fired))
            ok &= not fired
        console.print(table)

        idle = bench_idle_cpu(stack)
        added = idle["stack with the overlay"] - idle["overlay paused (baseline)"]
        table = Table("host CPU over 30 s", "cores busy", title="What the overlay adds at rest")
        for state, cores in idle.items():
            table.add_row(state, f"{cores:.3f}")
        table.add_row("the overlay", f"{added:.3f} (target <= {IDLE_CPU_TARGET}): {verdict(added <= IDLE_CPU_TARGET)}")
        console.print(table)
        ok &= added <= IDLE_CPU_TARGET

        rss = prometheus_rss_mib(stack)
        good = rss <= PROMETHEUS_RSS_TARGET_MIB
        console.print(f"Prometheus RSS {rss:.1f} MiB (target <= {PROMETHEUS_RSS_TARGET_MIB:.0f}): {verdict(good)}")
        ok &= good

        table = Table("fault", "seconds", "target", "result", title="Fault to alert")
        for name, seconds in faults(stack).items():
            table.add_row(name, f"{seconds:.1f}", f"<= {TARGETS_S[name]:.0f}", verdict(seconds <= TARGETS_S[name]))
            ok &= seconds <= TARGETS_S[name]
        console.print(table)
    finally:
        deploy.down(stack.stack, volumes=True)
        shutil.rmtree(root, ignore_errors=True)
    console.print("all targets met" if ok else "some targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
