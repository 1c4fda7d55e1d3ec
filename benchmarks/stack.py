"""Stack benchmarks, in one run on a throwaway prod-mode stack (own project, ports,
subnets), each figure beside its target and a baseline measured in the same run:

- `up` to all-healthy, images built: cold (first initdb) and warm (after `down`
  without -v), against the 30 s the old scripts slept; target <= 5 s warm;
- how long an api that is no longer ready stays healthy in Docker's eyes (its 10 s checks, 2 retries): target
  <= 30 s;
- the health sweep over a healthy stack (target <= 0.3 s) and with Redis paused
  (target <= the API's 1 s probe timeout + 0.3 s), against probing one service
  after another;
- what the idle stack costs the host, in cores (its healthchecks, each an exec into a container, run every
  10 s; at 1 s they cost 0.55-0.65 cores), against the same host with the stack paused; target <= 0.10;
- idle RSS of each service's largest process, and how many it runs (API target <= 60 MB a
  process, bot <= 120 MiB);
- each Python image against what its running service loads (the lower bound, read
  inside the container by analyticbot_common.footprint): target image / bound <= 1.4;
- load through the proxy on 127.0.0.1: wrk, N s a route in rounds (interleaved), 64 connections, on a read that
  touches PostgreSQL and Redis (the channel summary), on /health/live (the cheapest route through the same
  proxy and app) and on the proxy's own static status page (nginx alone: the floor on this host, which nothing
  behind it can beat); then the summary and /health/live sent straight to the api (no proxy, no TLS). Each
  figure is judged against another from the same run, never an absolute: summary p99 / static-page p99
  (target <= 2.0) and summary requests/s / /health/live requests/s through the proxy (target >= 0.5), and the
  same two straight to the api, to tell the proxy's share from the app's. The load generator's address is
  exempt from the per-client read limit (RATE_LIMIT_EXEMPT), so 429s cap nothing; any that come are counted
  apart. Then a burst of writes past the write limit (which stays), which must get 429 while the proxy stays up.

    python benchmarks/stack.py [--duration 60] [--rounds 3] [--connections 64]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from analyticbot_ops import compose, deploy, docker, health
from tests import sandbox

console = Console(width=140)
OLD_SLEEP = 30.0  # the old deploy scripts' `sleep 30`
RSS_TARGETS_MB = {"api": 60.0, "bot": 120.0}
FOOTPRINT_TARGET = 1.4  # image size / what the running service loads
P99_RATIO_TARGET = 2.0  # summary p99 / static page p99, same run
THROUGHPUT_TARGET = 0.5  # summary requests/s / health/live requests/s, same run, no read limit
# Counts 5xx and 4xx per wrk thread and adds them up at the end: wrk's own
# "Non-2xx or 3xx" figure would lump a 429 together with a 502.
WRK_SCRIPT = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) fivexx = 0; fourxx = 0 end
response = function(status, headers, body)
  if status >= 500 then fivexx = fivexx + 1 elseif status >= 400 then fourxx = fourxx + 1 end
end
done = function(summary, latency, requests)
  local f, q = 0, 0
  for _, t in ipairs(threads) do f = f + t:get("fivexx"); q = q + t:get("fourxx") end
  io.write(string.format("status5xx %d\\nstatus4xx %d\\n", f, q))
end
"""


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def bench_up(stack: sandbox.RunningStack) -> dict[str, float]:
    cold = deploy.up(stack.stack, timeout=300)
    deploy.down(stack.stack)
    warm = deploy.up(stack.stack, timeout=300)
    return {"cold": cold, "warm": warm}


def sequential_sweep(project: str) -> float:
    """The baseline: the same probes, one service after another."""
    started = time.monotonic()
    for service in ("api", "bot", "mtproto", "postgres", "redis", "proxy"):
        health.sweep(project, (service,))
    return time.monotonic() - started


def bench_sweep(stack: sandbox.RunningStack) -> dict[str, float]:
    health.sweep(stack.project)  # warm the network cache
    healthy = statistics.median(health.sweep(stack.project).seconds for _ in range(10))
    baseline = statistics.median(sequential_sweep(stack.project) for _ in range(3))
    redis = compose.service_states(stack.project)["redis"].container
    docker.docker(["pause", redis])
    try:
        time.sleep(1.2)  # past the services' health cache
        paused = health.sweep(stack.project).seconds
    finally:
        docker.docker(["unpause", redis])
    return {"healthy": healthy, "sequential baseline": baseline, "redis paused": paused}


def bench_detection(stack: sandbox.RunningStack, timeout: float = 90.0) -> dict[str, float]:
    """How long an api that stops being ready (PostgreSQL stopped: its /health/ready answers 503, which its
    healthcheck probes) stays "healthy" in Docker's eyes, with the 10 s checks and 2 retries. (An api process that
    exits is seen at once: the restart policy acts on the exit.)"""
    api = compose.service_states(stack.project)["api"].container
    postgres = compose.service_states(stack.project)["postgres"].container

    def health() -> str:
        state = (docker.inspect("container", api) or {}).get("State") or {}
        return str((state.get("Health") or {}).get("Status"))

    deadline = time.monotonic() + timeout
    while health() != "healthy" and time.monotonic() < deadline:  # Docker's own verdict, not the toolkit's probe
        time.sleep(0.5)
    docker.docker(["stop", postgres])
    started = time.monotonic()
    try:
        while health() != "unhealthy" and time.monotonic() - started < timeout:
            time.sleep(0.2)
        unready = time.monotonic() - started
    finally:
        docker.docker(["start", postgres])
    compose.wait_healthy(stack.stack, ["postgres", "api"], 120, fail_fast=False)
    return {"api not ready: until Docker says unhealthy": unready}


def _busy_jiffies() -> int:
    """CPU time the host has spent busy (user, nice, system, irq, softirq), in clock ticks, all cores."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return user + nice + system + irq + softirq


def _cores_busy(seconds: float) -> float:
    """Host CPU in use over `seconds`, in cores (1.0 = one core the whole time)."""
    ticks = os.sysconf("SC_CLK_TCK")
    before = _busy_jiffies()
    time.sleep(seconds)
    return (_busy_jiffies() - before) / ticks / seconds


def bench_idle_cpu(stack: sandbox.RunningStack, seconds: float = 20.0) -> dict[str, float]:
    """What the idle stack costs the host: CPU in cores while it runs with nothing to do (its healthchecks
    run: each is an exec into the container), against the same host with the stack's containers paused."""
    containers = [s.container for s in compose.service_states(stack.project).values() if s.status == "running"]
    running = _cores_busy(seconds)
    docker.docker(["pause", *containers])
    try:
        paused = _cores_busy(seconds)
    finally:
        docker.docker(["unpause", *containers])
    return {"idle stack": running, "stack paused (baseline)": paused}


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def bench_rss(stack: sandbox.RunningStack) -> dict[str, tuple[float, int]]:
    """Each service's largest idle server process (RSS, MB) and how many it runs: with several workers
    (the API in production) the supervisor and each worker are one process each."""
    time.sleep(5)  # idle
    rss = {}
    for service, state in sorted(compose.service_states(stack.project).items()):
        if state.status != "running":  # the migrate job has done its work and exited
            continue
        main = docker.inspect("container", state.container)["State"]["Pid"]
        children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        pids = [main, *(int(child) for child in children)]
        rss[service] = (max(_rss_mb(pid) for pid in pids), len(pids))
    return rss


@dataclass
class Footprint:
    image: int  # bytes of the image
    loaded: int  # bytes of the files its running service loads
    by_kind: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.image / self.loaded

    def kinds(self) -> str:
        return ", ".join(f"{kind} {size / 1e6:.1f}" for kind, size in self.by_kind.items())


def bench_footprint(stack: sandbox.RunningStack) -> dict[str, Footprint]:
    """Each Python image's size against the bytes its running service loads (read inside the container)."""
    figures = {}
    for service, state in sorted(compose.service_states(stack.project).items()):
        if service not in ("api", "bot", "mtproto") or state.status != "running":
            continue
        out = docker.docker(["exec", state.container, "python3", "-m", "analyticbot_common.footprint"]).stdout
        loaded = json.loads(out)
        image = docker.image_size(docker.inspect("container", state.container)["Image"])
        figures[service] = Footprint(image, loaded["bytes"], loaded["by_kind"])
    return figures


def _ms(text: str) -> float:
    """wrk's latency ('12.34ms', '1.20s', '850.00us') in milliseconds."""
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _request(
    url: str, context: ssl.SSLContext, method: str = "GET", body: dict | None = None, token: str | None = None
) -> int:
    data = json.dumps(body).encode() if body else None
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wrk(url: str, token: str, duration: int, connections: int) -> dict[str, object]:
    """wrk against one URL: requests/s, p50/p99, 5xx, 4xx, socket errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name,
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, timeout=duration + 60,
    )  # fmt: skip
    out = result.stdout
    answered = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    refused = int(re.search(r"status4xx (\d+)", out).group(1)) + int(re.search(r"status5xx (\d+)", out).group(1))  # type: ignore[union-attr]
    return {
        # Served: 2xx only. A 429 from the proxy's per-client read limit is answered fast and is no throughput.
        "requests/s": round(answered * (requests - refused) / requests, 2) if requests else 0.0,
        "answered/s (2xx and 4xx/5xx)": answered,
        # The latency distribution's own lines ("     99%   12.34ms"), not a "98.99%" of the thread stats.
        "p50": re.search(r"^\s+50%[ \t]+(\S+)", out, re.MULTILINE).group(1),  # type: ignore[union-attr]
        "p99": re.search(r"^\s+99%[ \t]+(\S+)", out, re.MULTILINE).group(1),  # type: ignore[union-attr]
        "5xx": int(re.search(r"status5xx (\d+)", out).group(1)),  # type: ignore[union-attr]
        "4xx (429: over the read limit)": int(re.search(r"status4xx (\d+)", out).group(1)),  # type: ignore[union-attr]
        "socket errors": sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }


def _combined(runs: list[dict[str, object]]) -> dict[str, object]:
    """Rounds of one route as one figure: rates averaged, counts added, p50 and p99 the median round's."""

    def mean(key: str) -> float:
        return round(statistics.fmean(float(run[key]) for run in runs), 2)  # type: ignore[arg-type]

    def median_ms(key: str) -> str:
        return f"{statistics.median(_ms(str(run[key])) for run in runs):.2f}ms"

    counts = {key: sum(int(run[key]) for run in runs) for key in _COUNTS}  # type: ignore[call-overload]
    return {
        "requests/s": mean("requests/s"),
        "answered/s (2xx and 4xx/5xx)": mean("answered/s (2xx and 4xx/5xx)"),
        "p50": median_ms("p50"),
        "p99": median_ms("p99"),
        "p99 of each round": ", ".join(str(run["p99"]) for run in runs),
        **counts,
    }


_COUNTS = ("5xx", "4xx (429: over the read limit)", "socket errors", "requests")


def _number(value: object) -> float:
    """A figure of the load table (an int, a float, or their text) as a number."""
    return float(str(value))


def _api_address(stack: sandbox.RunningStack) -> str:
    """The api container's address on the frontend network, which this benchmark's stack created."""
    state = compose.service_states(stack.project)["api"]
    networks = docker.inspect("container", state.container)["NetworkSettings"]["Networks"]
    return str(networks[f"{stack.project}_frontend"]["IPAddress"])


def _gateways(stack: sandbox.RunningStack) -> str:
    """The addresses the load generator's connections come from, as the proxy sees them: the gateway (first
    host) of each network the proxy publishes through, where Docker's port forwarding connects from."""
    return " ".join(
        str(next(ipaddress.ip_network(stack.stack.settings[key]).hosts()))
        for key in ("FRONTEND_SUBNET", "BACKEND_SUBNET")
    )


def bench_load(stack: sandbox.RunningStack, duration: int, connections: int, rounds: int) -> dict[str, object]:
    context = ssl.create_default_context(cafile=stack.ca_file)
    base = stack.base_url
    token = stack.token("write")
    _request(f"{base}/api/channels", context, "POST", {"username": "bench", "title": "bench"}, token)
    for post in range(1, 21):
        _request(f"{base}/api/channels/bench/views", context, "POST", {"post_id": post, "views": post}, token)
    # localhost, not 127.0.0.1: the proxy refuses TLS for names it does not serve (SNI).
    origin = f"https://localhost:{stack.https_port}"
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (scripts/bootstrap installs it)")
    # The summary; the same proxy and connections on the cheapest route (what the summary costs beyond the
    # plumbing); and the floor, the proxy's own static status page (no application, no rate limit): on a
    # small host the load generator and the stack share the cores, and nothing behind the proxy beats its p99.
    # Interleaved in rounds, so that a host that speeds up or slows down during the run (this one's steal
    # time moves) weighs on the three alike.
    read = stack.token("read")
    api = _api_address(stack)
    routes = {
        "summary": f"{origin}/api/channels/bench/summary",
        "live": f"{origin}/api/health/live",
        "static": f"{origin}/",
        "summary, straight to the api": f"http://{api}:8000/channels/bench/summary",
        "live, straight to the api": f"http://{api}:8000/health/live",
    }
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in routes}
    for _ in range(rounds):
        for name, url in routes.items():
            runs[name].append(_wrk(url, read, max(1, duration // rounds), connections))
    combined = {name: _combined(runs[name]) for name in routes}
    figures = dict(combined["summary"])
    live, static = combined["live"], combined["static"]
    figures["health/live requests/s (same proxy)"] = live["requests/s"]
    figures["health/live p99"] = live["p99"]
    figures["static page requests/s (the proxy alone)"] = static["requests/s"]
    figures["static page p99 (the floor)"] = static["p99"]
    figures["429 on reads (the client is exempt: expected 0)"] = sum(
        _number(combined[name]["4xx (429: over the read limit)"]) for name in ("summary", "live")
    )
    straight, straight_live = combined["summary, straight to the api"], combined["live, straight to the api"]
    figures["straight: summary requests/s"] = straight["requests/s"]
    figures["straight: summary p99"] = straight["p99"]
    figures["straight: health/live requests/s"] = straight_live["requests/s"]
    figures["straight: health/live p99"] = straight_live["p99"]
    figures["straight: socket errors"] = _number(straight["socket errors"]) + _number(straight_live["socket errors"])
    figures["ratio: summary p99 / static p99"] = round(_ms(str(figures["p99"])) / _ms(str(static["p99"])), 2)
    figures["ratio: summary / health/live throughput"] = round(
        _number(figures["requests/s"]) / _number(live["requests/s"]), 2
    )
    figures["straight ratio: summary p99 / health/live p99"] = round(
        _ms(str(straight["p99"])) / _ms(str(straight_live["p99"])), 2
    )
    figures["straight ratio: summary / health/live throughput"] = round(
        _number(straight["requests/s"]) / _number(straight_live["requests/s"]), 2
    )
    # A burst of writes past the write limit (20/s, burst 40): some must get 429.
    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(
            lambda i: _request(
                f"{base}/api/channels/bench/views", context, "POST", {"post_id": 1000 + i, "views": 1}, token
            ),
            range(200),
        ))  # fmt: skip
    figures["burst 429"] = codes.count(429)
    figures["burst 5xx"] = sum(1 for c in codes if c >= 500)
    figures["proxy up after burst"] = _request(f"{base}/", context) == 200
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="the seconds of load of each route, split in rounds")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="abbench-"))
    stack = sandbox.make_stack(root, f"abbench-{int(time.time())}")
    # The load generator is one client: exempt from the per-client read limit, so that 429s cap no figure.
    stack.stack = stack.reloaded(RATE_LIMIT_EXEMPT=_gateways(stack))
    ok = True
    try:
        up = bench_up(stack)
        table = Table("deploy", "seconds", "vs sleep 30", "target", "result", title="Time to all-healthy")
        table.add_row("up, cold (initdb)", f"{up['cold']:.1f}", f"{up['cold'] / OLD_SLEEP:.2f}", "-", "-")
        warm = up["warm"]
        table.add_row(
            "up, warm (images, data there)", f"{warm:.1f}", f"{warm / OLD_SLEEP:.2f}", "<= 5 s", verdict(warm <= 5)
        )
        ok &= up["warm"] <= 5
        console.print(table)

        sweep = bench_sweep(stack)
        table = Table("sweep", "seconds", "ratio to sequential", "target", "result", title="Health sweep")
        base = sweep["sequential baseline"]
        table.add_row("healthy (median of 10)", f"{sweep['healthy']:.3f}", f"{sweep['healthy'] / base:.2f}", "<= 0.3",
                      verdict(sweep["healthy"] <= 0.3))  # fmt: skip
        table.add_row("sequential baseline", f"{base:.3f}", "1.00", "-", "-")
        table.add_row(
            "redis paused", f"{sweep['redis paused']:.3f}", "-", "<= 1.3", verdict(sweep["redis paused"] <= 1.3)
        )
        ok &= sweep["healthy"] <= 0.3 and sweep["redis paused"] <= 1.3
        console.print(table)

        detection = bench_detection(stack)
        table = Table("fault", "seconds", "target", "result", title="Detecting an api that is not ready (10 s checks)")
        for fault, seconds in detection.items():
            table.add_row(fault, f"{seconds:.1f}", "<= 30", verdict(seconds <= 30))
            ok &= seconds <= 30
        console.print(table)

        idle = bench_idle_cpu(stack)
        table = Table("host CPU over 20 s", "cores busy", title="What the idle stack costs (healthchecks and all)")
        for state, cores in idle.items():
            table.add_row(state, f"{cores:.3f}")
        cost = idle["idle stack"] - idle["stack paused (baseline)"]
        table.add_row("the stack's own cost (difference)", f"{cost:.3f}")
        console.print(table)
        console.print(f"idle stack against the stack paused: {cost:.3f} cores (target <= 0.10): {verdict(cost <= 0.1)}")
        ok &= cost <= 0.10

        rss = bench_rss(stack)
        table = Table(
            "service", "processes", "idle RSS MB (largest)", "target", "result", title="Idle memory per process"
        )
        for service, (mb, processes) in rss.items():
            target = RSS_TARGETS_MB.get(service)
            table.add_row(
                service,
                str(processes),
                f"{mb:.1f}",
                f"<= {target:.0f}" if target else "-",
                verdict(mb <= target) if target else "-",
            )
            ok &= target is None or mb <= target
        console.print(table)

        footprint = bench_footprint(stack)
        table = Table("service", "image MB", "loaded MB (lower bound)", "image / bound", "target", "result",
                      "loaded by kind (MB)", title="Images against what the running services load")  # fmt: skip
        for service, figure in footprint.items():
            good = figure.ratio <= FOOTPRINT_TARGET
            table.add_row(service, f"{figure.image / 1e6:.1f}", f"{figure.loaded / 1e6:.1f}", f"{figure.ratio:.2f}",
                          f"<= {FOOTPRINT_TARGET}", verdict(good), figure.kinds())  # fmt: skip
            ok &= good
        console.print(table)

        load = bench_load(stack, args.duration, args.connections, max(1, args.rounds))
        table = Table(
            "figure",
            "value",
            title=f"Load: wrk {args.duration} s a route in {args.rounds} rounds, {args.connections} connections",
        )
        for key, value in load.items():
            table.add_row(key, str(value))
        console.print(table)
        p99_ratio = _number(load["ratio: summary p99 / static p99"])
        ratio = _number(load["ratio: summary / health/live throughput"])
        table = Table("ratio, same run", "value", "target", "result", title="Latency and throughput against the floor")
        table.add_row("summary p99 / static page p99 (through the proxy)", f"{p99_ratio:.2f}",
                      f"<= {P99_RATIO_TARGET}", verdict(p99_ratio <= P99_RATIO_TARGET))  # fmt: skip
        table.add_row("summary / health/live requests/s (through the proxy)", f"{ratio:.2f}",
                      f">= {THROUGHPUT_TARGET}", verdict(ratio >= THROUGHPUT_TARGET))  # fmt: skip
        table.add_row("summary p99 / health/live p99 (straight to the api)",
                      str(load["straight ratio: summary p99 / health/live p99"]), "-", "-")  # fmt: skip
        table.add_row("summary / health/live requests/s (straight to the api)",
                      str(load["straight ratio: summary / health/live throughput"]), "-", "-")  # fmt: skip
        console.print(table)
        ok &= p99_ratio <= P99_RATIO_TARGET and ratio >= THROUGHPUT_TARGET
        ok &= _number(load["429 on reads (the client is exempt: expected 0)"]) == 0
        ok &= _number(load["straight: socket errors"]) == 0
        ok &= (
            load["socket errors"] == 0
            and load["burst 429"] > 0
            and load["burst 5xx"] == 0
            and bool(load["proxy up after burst"])
        )
    finally:
        deploy.down(stack.stack, volumes=True)
        shutil.rmtree(root, ignore_errors=True)
    console.print("all targets met" if ok else "some targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
