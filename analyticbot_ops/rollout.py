"""Rolling updates of the HTTP services (api, bot): no request is dropped, and a bad release never serves.

1. The new container starts beside the old one (`compose up --scale SERVICE=2 --no-recreate`).
2. It must answer /health/ready from the proxy's own network (and not be unhealthy in Docker's eyes).
3. The proxy is switched to it: its runtime include, an upstream group whose connections are kept alive, names
   the new container's address instead of the old one's, `nginx -t` passes, nginx reloads (never restarts): new
   requests go to the new container, old workers finish theirs. One reload a roll.
4. Once the old workers have drained (bounded), the old container is stopped (uvicorn finishes its
   in-flight requests on SIGTERM) and removed.

A new container that is not healthy in time is removed and the old one keeps serving: the task exits 1 with
the new container's last log lines. Singletons (postgres, redis, mtproto, and the proxy itself) are never
overlapped; compose recreates them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import docker, model
from .compose import Stack, running_containers, running_proxy
from .errors import OpsError

# The services that may run twice for a while: stateless HTTP behind the proxy. The bot runs in webhook
# mode here (Telegram calls it through the proxy); the collector keeps one MTProto session: a singleton.
PORT = model.APP_PORT
DRAIN_SECONDS = 15.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    service: str
    action: str  # "rolled" (a failed roll raises, and the old container keeps serving)
    seconds: float = 0.0
    detail: str = ""


def containers(stack: Stack, service: str) -> list[dict[str, Any]]:
    """The service's running containers (not `compose run` one-offs), oldest first."""
    return running_containers(stack.project, service)


def name_of(info: dict[str, Any]) -> str:
    return str(info["Name"]).lstrip("/")


def can_roll(stack: Stack, service: str) -> bool:
    """A roll keeps a service answering through the proxy: it needs the proxy running and exactly one
    running container of the service. Otherwise there is nothing to keep serving, and Compose recreates."""
    return service in model.ROLLING and bool(containers(stack, "proxy")) and len(containers(stack, service)) == 1


def _proxy(stack: Stack) -> str:
    return running_proxy(stack, "switch its upstream")


def _exec(container: str, *command: str, check: bool = True) -> str:
    return docker.docker(["exec", container, *command], check=check).stdout


def upstream_include(service: str, addresses: Sequence[str]) -> str:
    """The proxy's runtime include for `service`: an upstream group of these container addresses, its connections
    kept alive, with the by-name relay as backup; no addresses: the service name, resolved per request."""
    if not addresses:
        return f'map "" ${service}_target {{ default "{service}:{PORT}"; }}\n'
    servers = "".join(f"    server {address}:{PORT} max_fails=1 fail_timeout=10s;\n" for address in addresses)
    return (
        f"upstream {service}_containers {{\n{servers}"
        f"    server 127.0.0.1:{model.RELAY_PORTS[service]} backup;\n"
        f"    keepalive {model.UPSTREAM_KEEPALIVE};\n    keepalive_timeout {model.UPSTREAM_IDLE_SECONDS}s;\n}}\n"
        f'map "" ${service}_target {{ default "{service}_containers"; }}\n'
    )


def _runtime_path(service: str) -> str:
    return f"/tmp/nginx-runtime/upstream-{service}.conf"


def _read_runtime(proxy: str, path: str) -> str:
    # busybox sh's builtins only (the image has no cat): every line as it is.
    script = 'while IFS= read -r line || [ -n "$line" ]; do printf "%s\\n" "$line"; done < "$1"'
    return _exec(proxy, "sh", "-c", script, "sh", path, check=False)


def _write_runtime(proxy: str, path: str, content: str) -> None:
    _exec(proxy, "sh", "-c", 'printf "%s" "$2" > "$1"', "sh", path, content)


def address_of(stack: Stack, info: dict[str, Any]) -> str:
    """A container's address on the stack's frontend network, where the proxy reaches it."""
    networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
    address = (networks.get(f"{stack.project}_frontend") or {}).get("IPAddress")
    if not address:
        raise OpsError(f"{name_of(info)} has no address on {stack.project}_frontend")
    return str(address)


def point_proxy(stack: Stack, service: str, addresses: Sequence[str]) -> bool:
    """Send the proxy's requests for `service` to these container addresses (none: the service name, resolved per
    request): the runtime include is rewritten, tested with `nginx -t`, and nginx reloads; on a failed test the
    old file is back. Nothing is written or reloaded when the include already says so; True when it reloaded."""
    proxy = _proxy(stack)
    path = _runtime_path(service)
    wanted = upstream_include(service, addresses)
    before = _read_runtime(proxy, path)
    if before == wanted:
        return False
    _write_runtime(proxy, path, wanted)
    try:
        test_and_reload(proxy, f"the switch of {service} to {', '.join(addresses) or 'its name'}")
    except OpsError:
        _write_runtime(proxy, path, before)
        raise
    return True


def keep_alive(stack: Stack, progress: Progress = lambda _m: None) -> list[str]:
    """After a deploy: point the proxy at the running api and bot containers, their connections kept alive (one
    reload, only when an address changed). A service with no running container, or with several (a roll under
    way elsewhere), is left as it is. The services switched, in order."""
    if not containers(stack, "proxy"):
        return []
    switched = []
    for service in model.ROLLING:
        running = containers(stack, service)
        if len(running) == 1 and point_proxy(stack, service, [address_of(stack, running[0])]):
            switched.append(service)
            progress(f"{service}: the proxy keeps connections to {name_of(running[0])} alive")
    return switched


def test_and_reload(proxy: str, change: str) -> None:
    """`nginx -t`, then a reload (never a restart): new workers take new requests, old ones finish theirs.
    OpsError naming `change` (what was just changed) when the test refuses it; nothing is reloaded then."""
    tested = docker.docker(["exec", proxy, "nginx", "-t"], check=False)
    if tested.returncode != 0:
        raise OpsError(f"nginx -t refused {change}: {docker.first_line(tested.stderr)}")
    _exec(proxy, "nginx", "-s", "reload")


def reload_proxy(stack: Stack) -> None:
    """Reload the running proxy's configuration as it is (stack.restart --service proxy)."""
    test_and_reload(_proxy(stack), "the proxy's configuration")


def _draining_workers(proxy: str) -> int:
    """nginx workers of an older generation still finishing their requests after a reload."""
    script = (
        'n=0; for f in /proc/[0-9]*/cmdline; do read -r t < "$f" 2>/dev/null || continue; '
        'case "$t" in *"shutting down"*) n=$((n+1));; esac; done; echo $n'
    )
    out = _exec(proxy, "sh", "-c", script, check=False).strip()
    return int(out) if out.isdigit() else 0


def wait_drained(stack: Stack, timeout: float = DRAIN_SECONDS) -> float:
    """Wait (bounded) until the workers that still send requests to the old container have exited."""
    proxy, started = _proxy(stack), time.monotonic()
    time.sleep(0.2)  # the reload signal is asynchronous: let the new generation start
    while _draining_workers(proxy) and time.monotonic() - started < timeout:
        time.sleep(0.1)
    return time.monotonic() - started


def _ready_from_proxy(stack: Stack, container: str) -> bool:
    proxy = _proxy(stack)
    url = f"http://{container}:{PORT}/health/ready"
    # busybox wget: its -T crashes in this build, so the bound is on docker exec instead.
    try:
        result = docker.docker(["exec", proxy, "wget", "-q", "-O", "-", url], check=False, timeout=5)
    except OpsError:
        return False
    return result.returncode == 0 and '"ready"' in result.stdout


def _inspect(container: str) -> dict[str, Any]:
    return docker.inspect("container", container) or {}


def _health(container: str) -> tuple[str, bool]:
    info = _inspect(container)
    state = info.get("State") or {}
    return (state.get("Health") or {}).get("Status", "none"), bool(state.get("Running"))


def _logs(container: str, lines: int = 30) -> str:
    result = docker.docker(["logs", "--tail", str(lines), container], check=False)
    return (result.stdout + result.stderr).strip()


def _not_ready(container: str) -> str:
    """Why a new container did not serve, in words a user can act on: its state, its exit code and restart count
    when it stopped (a release that exits at import restarts, then gives up), and its last log lines, or that it
    printed nothing."""
    info = _inspect(container)
    state = info.get("State") or {}
    if state.get("Running"):
        said = f"{(state.get('Health') or {}).get('Status', 'no healthcheck')}"
    else:
        said = f"{state.get('Status', 'gone')}, exit code {state.get('ExitCode', '?')}"
    said += f", restarts {info.get('RestartCount', 0)}"
    logs = _logs(container) or "(no output)"
    return f"{container} did not become ready ({said}); its last log lines:\n{logs}"


def wait_serving(stack: Stack, container: str, timeout: float, progress: Progress) -> None:
    """Ready as the proxy sees it (its /health/ready from the proxy's network), and never unhealthy or stopped in
    Docker's eyes meanwhile; OpsError with its logs otherwise."""
    started, shown = time.monotonic(), ""
    while time.monotonic() - started < timeout:
        health, running = _health(container)
        if not running or health == "unhealthy":
            break
        if health != shown:
            progress(f"  {time.monotonic() - started:5.1f}s  {container}: {health}")
            shown = health
        # Readiness as the proxy sees it decides, not Docker's first check, which comes 10 s after start.
        if _ready_from_proxy(stack, container):
            return
        time.sleep(0.25)
    raise OpsError(_not_ready(container))


def roll(stack: Stack, service: str, *, timeout: float = 120.0, progress: Progress = lambda _m: None) -> Outcome:
    """Replace the service's running container by a new one (from the current settings) without a gap."""
    if service not in model.ROLLING:
        raise OpsError(f"{service} is a singleton: it is recreated, never rolled")
    started = time.monotonic()
    before = containers(stack, service)
    if len(before) != 1:
        raise OpsError(f"{service} of {stack.project} runs {len(before)} containers; a rolling update needs exactly 1")
    old, old_address = name_of(before[0]), address_of(stack, before[0])
    # The proxy sends to the old container's address (already so after a deploy: no reload then): the service
    # name will soon also resolve to the new one, which must get no request before it is ready.
    point_proxy(stack, service, [old_address])
    progress(f"{service}: starting a new container beside {old}")
    stack.compose("up", "-d", "--no-deps", "--no-build", "--no-recreate", "--scale", f"{service}=2", service)
    added = next((info for info in containers(stack, service) if name_of(info) != old), None)
    if added is None:
        raise OpsError(f"compose started no second {service} container")
    new = name_of(added)
    try:
        wait_serving(stack, new, timeout, progress)
        new_address = address_of(stack, added)
    except BaseException as exc:
        # The proxy never saw the new container: remove it, the old one goes on serving.
        docker.docker(["rm", "-f", "-v", new], check=False)
        detail = str(exc) if isinstance(exc, OpsError) else "interrupted"
        raise OpsError(f"{service}: the new release was rolled back, {old} keeps serving: {detail}") from None
    # One reload: new requests (and kept-alive connections) go to the new container; the old workers finish theirs.
    point_proxy(stack, service, [new_address])
    drained = wait_drained(stack)
    progress(f"{service}: the proxy sends to {new}; old requests drained in {drained:.1f} s; stopping {old}")
    docker.docker(["stop", "--time", "15", old], check=False)
    docker.docker(["rm", "-f", "-v", old], check=False)
    return Outcome(service, "rolled", time.monotonic() - started, f"{old} -> {new}")
