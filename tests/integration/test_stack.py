"""The hardened stack in prod mode: what `docker inspect` shows is what the
compose files promise, the networks really separate, and the proxy works."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from analyticbot_ops import compose, docker
from tests.sandbox import TEST_DOMAIN, RunningStack

EXPECTED_NETWORKS = {
    "proxy": {"frontend", "backend"},
    "api": {"frontend", "database"},
    "bot": {"frontend", "backend"},
    "mtproto": {"backend", "database"},
    "postgres": {"database"},
    "redis": {"database"},
}


def _inspect(stack: RunningStack, service: str) -> dict:
    state = compose.service_states(stack.project)[service]
    info = docker.inspect("container", state.container)
    assert info is not None
    return info


def _networks(stack: RunningStack, service: str) -> set[str]:
    attached = _inspect(stack, service)["NetworkSettings"]["Networks"]
    return {name.removeprefix(f"{stack.project}_") for name in attached}


@pytest.mark.parametrize("service", sorted(EXPECTED_NETWORKS))
def test_each_service_is_on_exactly_its_networks(prod_stack: RunningStack, service: str) -> None:
    assert _networks(prod_stack, service) == EXPECTED_NETWORKS[service]


def test_no_service_is_on_all_three_networks(prod_stack: RunningStack) -> None:
    assert all(len(_networks(prod_stack, s)) < 3 for s in EXPECTED_NETWORKS)


def test_database_network_is_internal(prod_stack: RunningStack) -> None:
    info = docker.inspect("network", f"{prod_stack.project}_database")
    assert info is not None and info["Internal"] is True


@pytest.mark.parametrize("service", sorted(EXPECTED_NETWORKS))
def test_only_the_proxy_publishes_ports_and_only_on_loopback(prod_stack: RunningStack, service: str) -> None:
    bindings = _inspect(prod_stack, service)["HostConfig"]["PortBindings"] or {}
    published = [b for bs in bindings.values() for b in (bs or [])]
    if service != "proxy":
        assert published == []
    else:
        assert {b["HostIp"] for b in published} == {"127.0.0.1"}
        assert {int(b["HostPort"]) for b in published} == {prod_stack.http_port, prod_stack.https_port}


@pytest.mark.parametrize("service", sorted(EXPECTED_NETWORKS))
def test_hardening_is_in_force(prod_stack: RunningStack, service: str) -> None:
    info = _inspect(prod_stack, service)
    host = info["HostConfig"]
    user = info["Config"]["User"]
    assert user and user.split(":")[0] not in ("", "0", "root")
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert host["RestartPolicy"]["Name"] == "on-failure" and 0 < host["RestartPolicy"]["MaximumRetryCount"] <= 5
    assert host["LogConfig"]["Config"].get("max-size") and host["LogConfig"]["Config"].get("max-file")
    # Docker checks every 10 s: until its first check the same command, run now, must pass.
    state = compose.service_states(prod_stack.project)[service]
    assert info["State"]["Health"]["Status"] in ("healthy", "starting") and compose.probe_ready(state)
    mounts = [m.get("Source", "") for m in info["Mounts"]]
    assert not [m for m in mounts if m.endswith("docker.sock")]
    assert host["NetworkMode"] != "host" and host["PidMode"] != "host" and host["IpcMode"] != "host"


def _tcp_probe(stack: RunningStack, networks: set[str], host: str, port: int) -> bool:
    """Connect from a throwaway container attached exactly to `networks`."""
    tag = "analyticbot/python-runtime:bookworm"
    first, *rest = sorted(networks)
    name = f"{stack.project}-probe-{first}-{host}"
    code = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout(2)\n"
        f"sys.exit(0 if s.connect_ex(('{host}', {port}))==0 else 1)"
    )
    docker.docker(["create", "--name", name, "--network", f"{stack.project}_{first}", tag, "python3", "-c", code])
    try:
        for net in rest:
            docker.docker(["network", "connect", f"{stack.project}_{net}", name])
        return docker.docker(["start", "-a", name], check=False).returncode == 0
    finally:
        docker.docker(["rm", "-f", "-v", name], check=False)


@pytest.mark.parametrize(("host", "port"), [("postgres", 5432), ("redis", 6379)])
def test_database_ports_are_unreachable_from_the_proxys_networks(
    prod_stack: RunningStack, host: str, port: int
) -> None:
    assert _tcp_probe(prod_stack, EXPECTED_NETWORKS["proxy"], host, port) is False


@pytest.mark.parametrize(("host", "port"), [("postgres", 5432), ("redis", 6379)])
def test_database_ports_are_reachable_from_the_apis_networks(prod_stack: RunningStack, host: str, port: int) -> None:
    assert _tcp_probe(prod_stack, EXPECTED_NETWORKS["api"], host, port) is True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_http_redirects_to_https_on_the_public_name_and_port(prod_stack: RunningStack) -> None:
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(f"http://localhost:{prod_stack.http_port}/api/health", timeout=5)
    assert redirect.value.code == 301
    # To the configured domain, whatever Host the request named.
    assert redirect.value.headers["Location"] == f"https://{TEST_DOMAIN}:{prod_stack.https_port}/api/health"


def test_api_health_answers_through_the_proxy(prod_stack: RunningStack) -> None:
    context = ssl.create_default_context(cafile=prod_stack.ca_file)
    with urllib.request.urlopen(f"{prod_stack.base_url}/api/health/ready", context=context, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Strict-Transport-Security"].startswith("max-age=63072000")


def test_a_healthy_stack_passes_ps_check_and_the_health_sweep_from_the_cli(prod_stack: RunningStack) -> None:
    """The tasks themselves, as a user runs them, on the running stack: the exited migrate job is no failure."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    invoke = str(Path(sys.executable).with_name("invoke"))
    env = {**os.environ, "COMPOSE_PROJECT_NAME": prod_stack.project}
    checked = subprocess.run([invoke, "stack.ps", "--env", "prod", "--check"], env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "migrate" in checked.stdout and "exited" in checked.stdout
    swept = subprocess.run([invoke, "health-check", "--env", "prod", "--json"], env=env, capture_output=True, text=True)
    # healthy (0) or degraded (4: the bot and the collector have no Telegram credentials here), never unhealthy
    assert swept.returncode in (0, 4), swept.stderr


def _server_processes(stack: RunningStack, service: str) -> int:
    """The container's processes running the service's server (the supervisor and its workers, or one)."""
    state = compose.service_states(stack.project)[service]
    listed = docker.docker(["top", state.container, "-o", "pid,args"]).stdout.splitlines()[1:]
    return sum("analyticbot_common.serve" in line for line in listed)


def test_the_api_runs_a_process_per_started_core_of_its_cpu_limit(prod_stack: RunningStack) -> None:
    """Production gives the API 1.5 CPUs: two server processes (a supervisor forks them), each answering
    with its share; the bot and the collector hold one Telegram session each and stay single."""
    assert _inspect(prod_stack, "api")["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert _server_processes(prod_stack, "api") == 3  # the supervisor and two workers
    assert _server_processes(prod_stack, "bot") == 1
    assert _server_processes(prod_stack, "mtproto") == 1
    state = compose.service_states(prod_stack.project)["api"]
    code = "import json, urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/performance').read().decode())"
    seen = set()
    for _ in range(40):  # a new connection each time: either worker may answer
        answer = docker.docker(["exec", state.container, "python3", "-c", code]).stdout
        worker = json.loads(answer)["worker"]
        assert worker["of"] == 2
        seen.add(worker["index"])
        if seen == {0, 1}:
            break
    assert seen == {0, 1}
