"""The stack on Docker Swarm, proven on a simulated 3-node cluster (Docker Engines in containers, their own
registry), never on the host's engine. Each test names the claim it proves."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from analyticbot_ops import docker, model, tls
from analyticbot_ops.acme import AcmeRequest
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.swarm import certificates as swarm_certificates
from analyticbot_ops.swarm import deploy as swarm_deploy
from analyticbot_ops.swarm import lab as swarm_lab
from analyticbot_ops.swarm import render
from tests.sandbox import (
    TEST_DOMAIN,
    LabPebble,
    RunningStack,
    SteadyClient,
    create_channel,
    make_stack,
    pebble_on_swarm,
    subnet_pool,
    under_clients,
    under_each,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def lab() -> Iterator[swarm_lab.Lab]:
    name = f"ablab-{uuid.uuid4().hex[:6]}"  # its own lab: a developer's analyticbot-lab is left alone
    try:
        yield swarm_lab.up(3, name, subnet_pool=subnet_pool())
    finally:
        swarm_lab.down(name)


@pytest.fixture(scope="module")
def swarm_stack(lab: swarm_lab.Lab, tmp_path_factory: pytest.TempPathFactory) -> RunningStack:
    """From nothing but secrets (no certificate, no Compose deploy before), with the monitoring and backup
    overlays, as a swarm runs it by default. The client pins the bootstrap certificate the deploy wrote."""
    project = f"abswarm-{uuid.uuid4().hex[:6]}"
    running = make_stack(tmp_path_factory.mktemp("swarm"), project, monitoring=True, backup=True, certificates=False)
    assert not running.tls_dir.exists()
    swarm_deploy.deploy(running.stack, lab, timeout=300)
    running.address = _node_of(lab, running.project, "proxy").address
    running.trust_served = True
    return running


def _edges(lab: swarm_lab.Lab) -> list[swarm_lab.Node]:
    """The nodes the swarm has labelled as the edge (lab-up: every worker)."""
    labelled = {n.hostname for n in swarm_lab.describe_nodes(lab) if n.labelled(render.EDGE_LABEL)}
    return [n for n in lab.nodes if n.hostname in labelled]


def _at(stack: RunningStack, node: swarm_lab.Node) -> RunningStack:
    """The same stack, reached on one node's address (an edge's, as DNS round robin would hand out)."""
    return dataclasses.replace(stack, address=node.address)


def _state(lab: swarm_lab.Lab, project: str, service: str) -> swarm_deploy.ServiceState:
    return swarm_deploy.states(lab, project)[service]


def _node_of(lab: swarm_lab.Lab, project: str, service: str) -> swarm_lab.Node:
    hostname = _state(lab, project, service).nodes[0]
    return next(n for n in lab.nodes if n.hostname == hostname)


def _container_on(lab: swarm_lab.Lab, node: swarm_lab.Node, project: str, service: str) -> str:
    listed = lab.on(node, ["ps", "-q", "--filter", f"label=com.docker.swarm.service.name={project}_{service}"])
    return listed.stdout.split()[0]


def _get(stack: RunningStack, path: str) -> int:
    connection = stack.connection()
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {stack.token('read')}"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_api_runs_two_replicas_on_two_nodes(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    api = _state(lab, swarm_stack.project, "api")
    assert api.running == api.desired == 2
    assert len(api.nodes) == 2, api.nodes
    # Every node runs the same bytes: the image is pinned by digest in the lab's registry.
    assert api.image.startswith(f"{lab.registry}/") and "@sha256:" in api.image


def test_a_proxy_serves_on_every_edge_node_and_on_no_other(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    edges = _edges(lab)
    assert [n.hostname for n in edges] == ["node2", "node3"]  # the workers; the manager keeps the data
    proxy = _state(lab, swarm_stack.project, "proxy")
    assert proxy.nodes == ["node2", "node3"] and proxy.running == proxy.desired == 2
    for node in edges:  # published in host mode, on each edge's own address
        assert _get(_at(swarm_stack, node), "/api/health/ready") == 200, node.hostname
    with pytest.raises(ConnectionRefusedError):  # the data node publishes nothing
        _get(_at(swarm_stack, lab.manager), "/api/health/ready")


def test_the_bot_runs_two_replicas_on_two_nodes(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    bot = _state(lab, swarm_stack.project, "bot")
    assert bot.running == bot.desired == 2 and len(bot.nodes) == 2, bot.nodes


def test_a_first_deploy_from_nothing_serves_the_bootstrap_certificate_it_wrote(
    lab: swarm_lab.Lab, swarm_stack: RunningStack
) -> None:
    """Secrets, then swarm.deploy: no Compose deploy of the project ever ran on this host, and the proxy serves
    the short-lived self-signed pair the deploy wrote for DOMAIN (what tls.prod later replaces)."""
    composed = f"label=com.docker.compose.project={swarm_stack.project}"
    assert docker.docker(["ps", "-aq", "--filter", composed]).stdout == ""
    written = x509.load_pem_x509_certificate((swarm_stack.tls_dir / "fullchain.pem").read_bytes())
    assert written.issuer == written.subject  # self-signed
    assert written.not_valid_after_utc - written.not_valid_before_utc <= timedelta(days=1, minutes=5)
    connection = swarm_stack.connection()
    try:
        connection.connect()
        served = connection.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    finally:
        connection.close()
    assert served == written.public_bytes(serialization.Encoding.DER)


def test_data_services_run_on_the_labelled_node(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    for service in ("postgres", "redis"):
        assert _state(lab, swarm_stack.project, service).nodes == [lab.manager.hostname], service


def test_the_backups_reach_repository_2_on_another_node(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    """The agent beside postgres on the data node, the repository host on another node: the schedule's first
    full backup lands in each repository, and the WAL archive is in both."""
    assert _state(lab, swarm_stack.project, "backup-agent").nodes == [lab.manager.hostname]
    repo_host = _state(lab, swarm_stack.project, "backup-repo").nodes
    assert repo_host and repo_host != [lab.manager.hostname], repo_host
    node = _node_of(lab, swarm_stack.project, "backup-agent")
    container = _container_on(lab, node, swarm_stack.project, "backup-agent")

    def backed_up() -> dict[int, int]:
        said = lab.on(node, ["exec", container, "pgbackrest", "--stanza=analyticbot", "--output=json", "info"])
        stanza = json.loads(said.stdout)[0]
        counts = {1: 0, 2: 0}
        for backup in stanza.get("backup", []):
            counts[int(backup["database"]["repo-key"])] += 1
        return counts

    deadline = time.monotonic() + 240
    counts = backed_up()
    while time.monotonic() < deadline and not all(counts.values()):
        time.sleep(5)
        counts = backed_up()
    assert all(counts.values()), counts


def _prometheus_api(lab: swarm_lab.Lab, stack: RunningStack, path: str) -> dict:
    """GET a Prometheus API path inside its container (it publishes nothing on a swarm): the password goes in
    on stdin and into the request by the shell's printf, never into a process's arguments."""
    node = _node_of(lab, stack.project, "prometheus")
    container = _container_on(lab, node, stack.project, "prometheus")
    script = (
        'read -r p; printf "GET %s HTTP/1.0\\r\\nAuthorization: Basic %s\\r\\n\\r\\n" "$0" '
        '"$(printf "ops:%s" "$p" | base64 -w0)" | nc 127.0.0.1 9090'
    )
    answer = lab.on(
        node,
        ["exec", "-i", container, "sh", "-c", script, path],
        stdin=(stack.secret("prometheus_password") + "\n").encode(),
    )
    return json.loads(str(answer.stdout).split("\r\n\r\n", 1)[1])


def test_prometheus_on_the_swarm_finds_every_task_and_each_answers(
    lab: swarm_lab.Lab, swarm_stack: RunningStack
) -> None:
    """Targets found by DNS (tasks.<service>): both replicas of the api and of the bot scraped, every target up,
    Watchdog firing."""

    def targets() -> list[dict]:
        return _prometheus_api(lab, swarm_stack, "/api/v1/targets?state=active")["data"]["activeTargets"]

    jobs = {"prometheus", "alertmanager", "api", "bot", "mtproto", "postgres", "redis", "nginx", "edge"}

    def settled(found: list[dict]) -> bool:
        """Every job found, every target up (an exporter may still be starting right after the deploy)."""
        return {t["labels"]["job"] for t in found} == jobs and all(t["health"] == "up" for t in found)

    deadline = time.monotonic() + 180
    found = targets()
    while time.monotonic() < deadline and not settled(found):
        time.sleep(3)
        found = targets()
    by_job: dict[str, list[str]] = {}
    for target in found:
        by_job.setdefault(target["labels"]["job"], []).append(target["health"])
    assert by_job.get("api") == by_job.get("bot") == ["up", "up"], by_job  # each replica scraped
    assert set(by_job) == jobs
    assert all(health == ["up"] for job, health in by_job.items() if job not in ("api", "bot")), by_job
    alerts = _prometheus_api(lab, swarm_stack, "/api/v1/alerts")["data"]["alerts"]
    assert any(a["labels"]["alertname"] == "Watchdog" and a["state"] == "firing" for a in alerts)


def test_a_secret_is_only_a_file_under_run_secrets(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    node = _node_of(lab, swarm_stack.project, "api")
    container = _container_on(lab, node, swarm_stack.project, "api")
    value = swarm_stack.secret("jwt_secret_key")
    script = "import os; print(sorted(os.listdir('/run/secrets'))); print(open('/run/secrets/jwt_secret_key').read())"
    said = lab.on(node, ["exec", container, "python3", "-c", script]).stdout.splitlines()
    assert "jwt_secret_key" in said[0] and said[1] == value  # readable by the service, as a file
    inspected = lab.on(node, ["inspect", container]).stdout
    assert value not in inspected  # not in its environment, labels or command
    secret_names = lab.manage(["secret", "ls", "--format", "{{.Name}}"]).stdout.split()
    jwt = next(n for n in secret_names if n.startswith(f"{swarm_stack.project}_jwt_secret_key_"))
    shown = json.loads(lab.manage(["secret", "inspect", jwt]).stdout)[0]
    assert "Data" not in shown["Spec"] and value not in json.dumps(shown)


def test_the_database_network_is_unreachable_from_the_frontend_tier(
    lab: swarm_lab.Lab, swarm_stack: RunningStack
) -> None:
    # The bot is on the frontend and backend overlays, not on the internal database one.
    node = _node_of(lab, swarm_stack.project, "bot")
    container = _container_on(lab, node, swarm_stack.project, "bot")
    probe = (
        "import socket\ntry:\n    socket.create_connection(('postgres', 5432), timeout=3)\n    print('reached')\n"
        "except OSError as exc:\n    print('refused', type(exc).__name__)"
    )
    said = lab.on(node, ["exec", container, "python3", "-c", probe]).stdout.strip()
    assert said.startswith("refused"), said


def _upstreams(lab: swarm_lab.Lab, stack: RunningStack, node: swarm_lab.Node, service: str) -> str:
    """The runtime include the proxy on `node` wrote for `service` (nginx/entrypoint.sh, UPSTREAM_TASKS)."""
    proxy = _container_on(lab, node, stack.project, "proxy")
    return lab.on(node, ["exec", proxy, "busybox", "cat", f"/tmp/nginx-runtime/upstream-{service}.conf"]).stdout


def _task_addresses(lab: swarm_lab.Lab, stack: RunningStack, service: str) -> set[str]:
    """The frontend-overlay addresses of the service's running tasks, as Swarm reports them."""
    found = set()
    for node in lab.nodes:
        listed = lab.on(
            node, ["ps", "-q", "--filter", f"label=com.docker.swarm.service.name={stack.project}_{service}"]
        )
        for container in listed.stdout.split():
            networks = json.loads(lab.on(node, ["inspect", container]).stdout)[0]["NetworkSettings"]["Networks"]
            found.add(networks[f"{stack.project}_frontend"]["IPAddress"])
    return found


def _kept_alive_to(lab: swarm_lab.Lab, stack: RunningStack, service: str, timeout: float = 20) -> set[str]:
    """The addresses every edge proxy keeps connections alive to for `service`, once each lists exactly the running
    tasks (a proxy asks Swarm's DNS every second)."""
    deadline = time.monotonic() + timeout
    while True:
        running = _task_addresses(lab, stack, service)
        written = {n.hostname: _upstreams(lab, stack, n, service) for n in _edges(lab)}
        listed = {
            node: {line.split()[1].rsplit(":", 1)[0] for line in text.splitlines() if ":8000 " in line}
            for node, text in written.items()
        }
        if all(addresses == running for addresses in listed.values()):
            kept_alive = f"keepalive {model.UPSTREAM_KEEPALIVE};"
            assert all(f"upstream {service}_containers" in text and kept_alive in text for text in written.values())
            return running
        assert time.monotonic() < deadline, (running, written)
        time.sleep(1)


def test_each_edge_proxy_keeps_connections_to_the_api_and_bot_replicas_alive(
    lab: swarm_lab.Lab, swarm_stack: RunningStack
) -> None:
    for service in ("api", "bot"):
        assert len(_kept_alive_to(lab, swarm_stack, service)) == 2, service


def test_a_rolling_update_of_the_api_drops_no_request(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    """Both kinds of client: a new connection per request, and one kept alive; the proxies follow the new
    replicas (their upstream groups rewritten from Swarm's DNS, nginx reloaded) without a failed request."""
    before = _kept_alive_to(lab, swarm_stack, "api")

    def update() -> None:
        lab.manage(["service", "update", "--force", "--detach", f"{swarm_stack.project}_api"])
        time.sleep(3)  # the update has begun
        swarm_deploy.wait_converged(lab, swarm_stack.project, 180, lambda _m: None)

    _seconds, results = under_clients(swarm_stack, update)
    for mode, (ok, failures) in results.items():
        assert ok > 50 and failures == [], (mode, failures[:5])
    after = _kept_alive_to(lab, swarm_stack, "api")
    assert len(after) == 2 and not after & before  # two new replicas, kept alive to


def test_a_broken_release_is_rolled_back_by_swarm_and_the_deploy_says_so(
    lab: swarm_lab.Lab, swarm_stack: RunningStack, tmp_path: Path
) -> None:
    before = _state(lab, swarm_stack.project, "api").image
    # An api image whose process exits at once (a release that cannot start).
    broken = f"abtest/api-broken:{uuid.uuid4().hex[:6]}"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {swarm_stack.stack.settings['API_IMAGE']}\n"
        'CMD ["python3", "-c", "raise SystemExit(\'this release cannot start\')"]\n'
    )
    docker.docker(["build", "-q", "-t", broken, str(tmp_path)], env={"DOCKER_BUILDKIT": "0"}, timeout=300)
    local = swarm_stack.stack.settings["API_IMAGE"]  # this checkout's build, which later deploys push again
    try:
        swarm_stack.stack.settings["API_IMAGE"] = broken
        with pytest.raises(OpsError, match=r"Swarm rolled back api"):
            swarm_deploy.deploy(swarm_stack.stack, lab, timeout=300)
    finally:
        swarm_stack.stack.settings["API_IMAGE"] = local
        docker.docker(["rmi", "-f", broken], check=False)
    after = _state(lab, swarm_stack.project, "api")
    assert after.image == before and after.running == 2
    assert _get(swarm_stack, "/api/health/ready") == 200


def test_a_lost_edge_node_leaves_the_other_edge_serving_and_its_tasks_run_again_elsewhere_within_60_s(
    lab: swarm_lab.Lab, swarm_stack: RunningStack
) -> None:
    """An edge node (a worker: its proxy, and whatever app tasks Swarm put there) stops at once. The other edge
    serves throughout, the api and the bot through it with no failed request; the lost node's replicated tasks run
    again elsewhere within 60 s; its proxy is not moved to a node outside the edge (whose address no client
    knows), so the edge is one node short until the node is back."""
    edges = _edges(lab)
    for _ in range(2):
        states = swarm_deploy.states(lab, swarm_stack.project)
        # The edge that runs a bot replica (Swarm spreads the two, so one edge does), and of those the busiest: the
        # loss of the bot's node is proven here too.
        lost = max(
            edges,
            key=lambda n: (n.hostname in states["bot"].nodes, sum(n.hostname in s.nodes for s in states.values())),
        )
        moved = sorted(name for name, s in states.items() if lost.hostname in s.nodes and name != "proxy")
        if "bot" in moved:
            break
        # Earlier tests may have left both bot replicas off the edges: a forced update spreads them again.
        lab.manage(["service", "update", "--force", "--detach", f"{swarm_stack.project}_bot"])
        time.sleep(3)
        swarm_deploy.wait_converged(lab, swarm_stack.project, 180, lambda _m: None)
    assert "bot" in moved, f"no edge runs a bot replica ({lost.hostname} runs {moved}): not the case to prove"
    print(f"losing {lost.hostname}, which runs {', '.join(moved)} and a proxy")
    surviving = _at(swarm_stack, next(n for n in edges if n != lost))
    create_channel(surviving, "swarmloss")
    # A read in flight on the lost node's api replica is answered by the other one after nginx's 10 s read timeout
    # (nginx/snippets/proxy.conf): slow, not failed, for a client that waits as long as a browser would.
    api = SteadyClient(surviving, "swarmloss", timeout=30)
    bot = SteadyClient(surviving, "swarmloss", path="/bot/health/live", timeout=30)
    for client in (api, bot):
        client.start()
    docker.docker(["stop", "-t", "0", lost.name])
    try:
        started = time.monotonic()
        while True:
            now = swarm_deploy.states(lab, swarm_stack.project)
            back = [n for n in moved if now[n].running == now[n].desired and lost.hostname not in now[n].nodes]
            if back == moved:
                break
            assert time.monotonic() - started < 60, {n: (now[n].running, now[n].nodes) for n in moved}
            time.sleep(1)
        recovered = time.monotonic() - started
        time.sleep(2)
        proxy = swarm_deploy.states(lab, swarm_stack.project)["proxy"]
    finally:
        results = {name: client.finish() for name, client in (("api", api), ("bot", bot))}
        docker.docker(["start", lost.name])
        _wait_whole(lab, swarm_stack, edges)  # for the tests that follow, whatever this one found
    assert recovered < 60
    assert set(proxy.nodes) <= {n.hostname for n in edges} and lost.hostname not in proxy.nodes, proxy.nodes
    for name, (ok, failures) in results.items():
        assert ok > 50 and failures == [], (name, failures[:5])
    # No committed row is lost: the channel written before the loss is still there.
    assert _get(surviving, "/api/channels/swarmloss/summary") == 200
    # The node back, its proxy serves again: the edge is whole.
    assert _get(_at(swarm_stack, lost), "/api/health/ready") == 200


def _wait_whole(lab: swarm_lab.Lab, stack: RunningStack, edges: list[swarm_lab.Node], timeout: float = 180) -> None:
    """Every edge runs its proxy again and the stack has converged (a node back after its loss)."""
    deadline = time.monotonic() + timeout
    while _state(lab, stack.project, "proxy").nodes != [n.hostname for n in edges]:
        assert time.monotonic() < deadline, _state(lab, stack.project, "proxy")
        time.sleep(2)
    swarm_deploy.wait_converged(lab, stack.project, max(deadline - time.monotonic(), 10), lambda _m: None)


# --- certificates through the edge: pebble (a real ACME server) inside the lab ----------------------------------


@pytest.fixture(scope="module")
def lab_pebble(
    lab: swarm_lab.Lab, swarm_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabPebble]:
    with pebble_on_swarm(lab, swarm_stack, tmp_path_factory.mktemp("lab-pebble")) as pebble:
        yield pebble


def _site(lab: swarm_lab.Lab, stack: RunningStack) -> dict[str, RunningStack]:
    """A client per edge address, and one for the site behind DNS round robin (every edge, the next one when an
    address refuses). They read without checking the certificate, which changes under them to one they could
    not know in advance; the test checks what each edge serves on its own."""
    edges = _edges(lab)
    clients = {n.hostname: dataclasses.replace(_at(stack, n), verify=False) for n in edges}
    clients["round robin"] = dataclasses.replace(stack, verify=False, round_robin=tuple(n.address for n in edges))
    return clients


def _under_the_site(lab: swarm_lab.Lab, stack: RunningStack, action: Callable[[], object]) -> dict[str, Any]:
    return under_each(_site(lab, stack), action)[1]


def test_tls_prod_through_the_edge_serves_the_new_certificate_on_every_edge(
    lab: swarm_lab.Lab, swarm_stack: RunningStack, lab_pebble: LabPebble
) -> None:
    request = AcmeRequest(
        TEST_DOMAIN, server=lab_pebble.directory_url, ca_bundle=lab_pebble.ca_bundle, allow_test_domain=True
    )
    # The pair on this host has expired (a bootstrap pair after its day, a renewal that failed for weeks): a
    # deploy refuses it, and tls.prod, which replaces it, goes on. The edges keep serving what they have.
    for name in ("fullchain.pem", "privkey.pem"):
        (swarm_stack.tls_dir / name).unlink()
    tls.write_bootstrap_certificate(swarm_stack.tls_dir, TEST_DOMAIN, now=datetime.now(UTC) - timedelta(days=3))
    with pytest.raises(BadInput, match="the proxy's certificate is unusable: expired on "):
        swarm_deploy.require(swarm_stack.stack, lambda: lab)
    issued: list[swarm_certificates.Issued] = []
    proxy = _tasks(lab, swarm_stack, "proxy")
    results = _under_the_site(
        lab, swarm_stack, lambda: issued.append(swarm_certificates.obtain(swarm_stack.stack, lab, request))
    )
    assert _tasks(lab, swarm_stack, "proxy") == proxy  # no proxy was restarted: each reloaded nginx
    installed = x509.load_pem_x509_certificate((swarm_stack.tls_dir / "fullchain.pem").read_bytes())
    assert installed.issuer != installed.subject and "Pebble" in installed.issuer.rfc4514_string()
    assert issued[0].served == {n.hostname: installed.serial_number for n in _edges(lab)}
    assert swarm_certificates.edge_serials(lab, swarm_stack.stack, TEST_DOMAIN) == issued[0].served
    _nothing_lost(results)


def _tasks(lab: swarm_lab.Lab, stack: RunningStack, service: str) -> list[str]:
    """A service's running tasks: Swarm replaces a task (a new ID) to restart it, never in place. (The service's
    spec version moves on every `stack deploy`, changed or not.)"""
    tasks = lab.manage(["service", "ps", "-q", "--filter", "desired-state=running", f"{stack.project}_{service}"])
    return sorted(tasks.stdout.split())


def _nothing_lost(results: dict[str, tuple[int, list[str]]]) -> None:
    """What the roll cost each client, one held to each edge's address and the site's (round robin): nothing. The
    proxies are never restarted for a certificate: edge-tls, which publishes no port, rolls start-first and each
    proxy reloads nginx (render.py). benchmarks/swarm.py reports the counts."""
    for name, (answered, lost) in results.items():
        print(f"{name}: {answered} answered, {len(lost)} failed: {lost[:3]}")
        assert answered > 50 and lost == [], (name, lost[:5])


def test_tls_renew_with_nothing_due_leaves_the_proxies_as_they_are(
    lab: swarm_lab.Lab, swarm_stack: RunningStack, lab_pebble: LabPebble
) -> None:
    before = json.loads(lab.manage(["service", "inspect", f"{swarm_stack.project}_proxy"]).stdout)[0]
    renewal = swarm_certificates.renew(swarm_stack.stack, lab)
    assert renewal.verdict == "nothing due" and renewal.issued is None
    after = json.loads(lab.manage(["service", "inspect", f"{swarm_stack.project}_proxy"]).stdout)[0]
    assert after["Version"] == before["Version"]


def test_tls_renew_forced_rolls_every_edge_to_a_new_certificate(
    lab: swarm_lab.Lab, swarm_stack: RunningStack, lab_pebble: LabPebble
) -> None:
    before = x509.load_pem_x509_certificate((swarm_stack.tls_dir / "fullchain.pem").read_bytes()).serial_number
    renewals: list[swarm_certificates.Renewal] = []
    proxy = _tasks(lab, swarm_stack, "proxy")
    results = _under_the_site(
        lab, swarm_stack, lambda: renewals.append(swarm_certificates.renew(swarm_stack.stack, lab, force=True))
    )
    assert _tasks(lab, swarm_stack, "proxy") == proxy
    assert renewals[0].verdict == "renewed" and renewals[0].issued is not None
    served = set(renewals[0].issued.served.values())
    assert len(served) == 1 and served != {before}
    _nothing_lost(results)


# --- last: a password rotation redeploys the stack ---------------------------------------------------------------


def _login(lab: swarm_lab.Lab, stack: RunningStack, password: str) -> str:
    """Log in to PostgreSQL as the owner role from an api container, the password on stdin."""
    node = _node_of(lab, stack.project, "api")
    container = _container_on(lab, node, stack.project, "api")
    script = (
        "import asyncio, sys\nimport asyncpg\n"
        "async def main():\n"
        "    try:\n"
        "        c = await asyncpg.connect(host='postgres', user='analyticbot', database='analyticbot',"
        " password=sys.stdin.read())\n"
        "        await c.close(); print('accepted')\n"
        "    except asyncpg.InvalidPasswordError:\n"
        "        print('refused')\n"
        "asyncio.run(main())\n"
    )
    return lab.on(node, ["exec", "-i", container, "python3", "-c", script], stdin=password.encode()).stdout.strip()


def test_rotating_postgres_password_on_swarm_refuses_the_old_one_and_the_next_deploy_drops_no_request(
    lab: swarm_lab.Lab, swarm_stack: RunningStack
) -> None:
    """The rotation is the live ALTER ROLE and the file (no service reads the password again until the migrate job
    of the next deploy). That next deploy does not restart the database, which read the password only at initdb
    (it keeps the version it made its cluster with): no request meets a database that is down, for either kind
    of client. Before, it restarted postgres (54 "database unavailable" answers in one run)."""
    from analyticbot_ops import secrets
    from analyticbot_ops.swarm.rotation import SwarmStack

    old = swarm_stack.secret("postgres_password")
    assert _login(lab, swarm_stack, old) == "accepted"
    secrets.rotate("postgres_password", swarm_stack.secrets_dir, SwarmStack(swarm_stack.stack, lab), timeout=180)
    new = swarm_stack.secret("postgres_password")
    assert new != old
    assert _login(lab, swarm_stack, old) == "refused"
    assert _login(lab, swarm_stack, new) == "accepted"
    postgres = _tasks(lab, swarm_stack, "postgres")
    _seconds, results = under_clients(swarm_stack, lambda: swarm_deploy.deploy(swarm_stack.stack, lab, timeout=300))
    for mode, (ok, failures) in results.items():
        assert ok > 20 and failures == [], (mode, failures[:5])
    assert _tasks(lab, swarm_stack, "postgres") == postgres
    # Two versions of the secret are on the swarm: the new one (the migrate job's), and the one postgres keeps.
    names = lab.manage(["secret", "ls", "--format", "{{.Name}}"]).stdout.split()
    versions = [n for n in names if n.startswith(f"{swarm_stack.project}_postgres_password_")]
    assert len(versions) == 2, versions
    assert _get(swarm_stack, "/api/health/ready") == 200
