"""The proxy's entrypoint (nginx/entrypoint.sh) as the container runs it, in a mount namespace of its own: a tmpfs
on /tmp for its runtime files and a resolv.conf of the test's choosing. nginx's resolver is the container's own
DNS server (Docker's 127.0.0.11 on Compose and Swarm, the cluster's on Kubernetes), and UPSTREAM_DOMAIN completes
the upstreams' names where nginx's resolver would not (it applies no search domain)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "nginx" / "entrypoint.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare for a mount namespace"
)


def _run(tmp_path: Path, resolv: str, **environment: str) -> tuple[int, str, dict[str, str]]:
    """Run the entrypoint (its command: `true`) and return its exit code, stderr and the runtime files it wrote."""
    (tmp_path / "resolv.conf").write_text(resolv)
    root_tmp = tmp_path / "tmp"  # the container's /tmp: what the entrypoint writes there stays here
    root_tmp.mkdir()
    # resolv.conf first: once /tmp is covered, the test's own folder (under /tmp) is out of sight, and so is a
    # checkout under /tmp: the entrypoint comes in on stdin, read before anything is mounted.
    script = 'mount --bind "$RESOLV" /etc/resolv.conf && mount --bind "$ROOT_TMP" /tmp && exec sh -s true'
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        env={"PATH": os.environ["PATH"], "RESOLV": str(tmp_path / "resolv.conf"), "ROOT_TMP": str(root_tmp),
             **environment},
        input=ENTRYPOINT.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    runtime = root_tmp / "nginx-runtime"
    return (
        result.returncode,
        result.stderr,
        {p.name: p.read_text() for p in runtime.iterdir()} if runtime.is_dir() else {},
    )


def test_on_docker_the_resolver_is_the_embedded_dns_and_upstreams_are_service_names(tmp_path: Path) -> None:
    code, _err, written = _run(tmp_path, "nameserver 127.0.0.11\noptions ndots:0\n")
    assert code == 0
    assert written["resolver.conf"] == "resolver 127.0.0.11 valid=1s ipv6=off;\n"
    for service in ("api", "bot", "mtproto"):
        # By name, resolved per request, until the toolkit writes the containers' upstream group.
        assert written[f"upstream-{service}.conf"] == f'map "" ${service}_target {{ default "{service}:8000"; }}\n'
        assert written[f"by-name-{service}.conf"] == f'map "" ${service}_by_name {{ default "{service}:8000"; }}\n'


def test_on_kubernetes_the_cluster_dns_answers_and_upstream_domain_completes_the_names(tmp_path: Path) -> None:
    resolv = "search ab.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    code, _err, written = _run(tmp_path, resolv, UPSTREAM_DOMAIN="ab.svc.cluster.local")
    assert code == 0
    assert written["resolver.conf"] == "resolver 10.96.0.10 valid=1s ipv6=off;\n"
    assert written["upstream-api.conf"] == 'map "" $api_target { default "api.ab.svc.cluster.local:8000"; }\n'
    assert written["by-name-mtproto.conf"] == (
        'map "" $mtproto_by_name { default "mtproto.ab.svc.cluster.local:8000"; }\n'
    )


def test_a_resolver_nginx_cannot_take_as_written_falls_back_to_the_embedded_dns(tmp_path: Path) -> None:
    # An IPv6 nameserver would need brackets in nginx, and the resolver runs with ipv6=off.
    code, _err, written = _run(tmp_path, "nameserver fd00::10\nnameserver 10.0.0.2\n")
    assert code == 0
    assert written["resolver.conf"] == "resolver 127.0.0.11 valid=1s ipv6=off;\n"


def test_a_malformed_upstream_domain_stops_the_proxy_with_one_line(tmp_path: Path) -> None:
    code, err, _written = _run(tmp_path, "nameserver 10.96.0.10\n", UPSTREAM_DOMAIN="ab.svc; evil")
    assert code == 1
    assert err.strip() == "proxy: UPSTREAM_DOMAIN must be a domain name, got 'ab.svc; evil'"


def test_no_client_is_exempt_from_the_read_limit_unless_named(tmp_path: Path) -> None:
    code, _err, written = _run(tmp_path, "nameserver 127.0.0.11\n")
    assert code == 0
    assert written["rate-limit-exempt.conf"] == "geo $rate_limit_exempt {\n    default 0;\n}\n"


def test_named_addresses_and_subnets_are_exempt_from_the_read_limit(tmp_path: Path) -> None:
    code, _err, written = _run(tmp_path, "nameserver 127.0.0.11\n", RATE_LIMIT_EXEMPT="172.30.0.1 10.9.0.0/16")
    assert code == 0
    assert written["rate-limit-exempt.conf"] == (
        "geo $rate_limit_exempt {\n    default 0;\n    172.30.0.1 1;\n    10.9.0.0/16 1;\n}\n"
    )


@pytest.mark.parametrize("bad", ["all", "10.0.0.1;", "10..0.1", "10.0.0."])
def test_a_malformed_exempt_address_stops_the_proxy_with_one_line(tmp_path: Path, bad: str) -> None:
    code, err, _written = _run(tmp_path, "nameserver 127.0.0.11\n", RATE_LIMIT_EXEMPT=f"10.0.0.1 {bad}")
    assert code == 1
    assert err.strip() == f"proxy: RATE_LIMIT_EXEMPT must list IPv4 addresses or subnets, got '{bad}'"


def test_without_an_acme_solver_a_challenge_not_in_the_webroot_is_not_found(tmp_path: Path) -> None:
    code, _err, written = _run(tmp_path, "nameserver 127.0.0.11\n")
    assert code == 0
    assert written["acme-solver.inc"] == "location @acme_solver {\n    return 404;\n}\n"
    assert "acme-solver.conf" not in written


def test_an_acme_solver_gets_every_challenge_not_in_the_webroot_by_name(tmp_path: Path) -> None:
    code, _err, written = _run(tmp_path, "nameserver 127.0.0.11\n", ACME_SOLVER="acme-solver:8402")
    assert code == 0
    # Resolved per request: the name exists only while the one-shot certbot runs.
    assert written["acme-solver.conf"] == 'map "" $acme_solver { default "acme-solver:8402"; }\n'
    assert written["acme-solver.inc"] == (
        "location @acme_solver {\n    proxy_pass http://$acme_solver;\n    proxy_connect_timeout 2s;\n}\n"
    )
    (tmp_path / "k8s").mkdir()
    _code, _err, on_kubernetes = _run(
        tmp_path / "k8s", "nameserver 10.96.0.10\n", ACME_SOLVER="acme:80", UPSTREAM_DOMAIN="ab.svc.cluster.local"
    )
    assert on_kubernetes["acme-solver.conf"] == 'map "" $acme_solver { default "acme.ab.svc.cluster.local:80"; }\n'


@pytest.mark.parametrize("bad", ["acme", ":80", "acme:", "acme:80:1", "acme:http", "acme solver:80", "a;b:80"])
def test_a_malformed_acme_solver_stops_the_proxy_with_one_line(tmp_path: Path, bad: str) -> None:
    code, err, _written = _run(tmp_path, "nameserver 127.0.0.11\n", ACME_SOLVER=bad)
    assert code == 1
    assert err.strip() == f"proxy: ACME_SOLVER must be HOST:PORT, got '{bad}'"


UPSTREAMS = ENTRYPOINT.parent / "upstreams.sh"


@pytest.mark.parametrize("addresses", [[], ["10.120.0.5"], ["10.120.0.5", "10.120.0.7"]])
def test_on_a_swarm_the_proxy_writes_the_upstream_group_the_toolkit_writes_on_compose(addresses: list[str]) -> None:
    """nginx/upstreams.sh, which the proxy runs on a swarm for the replicas Swarm's DNS lists, and
    rollout.upstream_include, which the toolkit writes on Compose: the same text, so the same nginx config."""
    from analyticbot_ops import model, rollout

    for service in ("api", "bot"):
        said = subprocess.run(
            ["sh", str(UPSTREAMS), service, str(model.RELAY_PORTS[service]), str(model.UPSTREAM_IDLE_SECONDS),
             *addresses],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert said.stdout == rollout.upstream_include(service, addresses)


@pytest.mark.parametrize("bad", ["api", "api:", ":8091", "api:8091:1", "Api:8091", "api:x", "api;b:1"])
def test_a_malformed_upstream_tasks_list_stops_the_proxy_with_one_line(tmp_path: Path, bad: str) -> None:
    code, err, _written = _run(tmp_path, "nameserver 127.0.0.11\n", UPSTREAM_TASKS=f"bot:8092 {bad}")
    assert code == 1
    assert err.strip() == f"proxy: UPSTREAM_TASKS must list SERVICE:PORT pairs, got '{bad}'"


def test_a_malformed_upstream_idle_time_stops_the_proxy_with_one_line(tmp_path: Path) -> None:
    code, err, _written = _run(tmp_path, "nameserver 127.0.0.11\n", UPSTREAM_IDLE_SECONDS="4s")
    assert code == 1
    assert err.strip() == "proxy: UPSTREAM_IDLE_SECONDS must be a number, got '4s'"


def test_a_malformed_upstream_network_stops_the_proxy_with_one_line(tmp_path: Path) -> None:
    code, err, _written = _run(tmp_path, "nameserver 127.0.0.11\n", UPSTREAM_NETWORK="ab frontend")
    assert code == 1
    assert err.strip() == "proxy: UPSTREAM_NETWORK must be a network name, got 'ab frontend'"
