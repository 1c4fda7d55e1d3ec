"""The stack on Docker Swarm, proven on a simulated 3-node cluster (Docker Engines in containers, their own
registry), never on the host's engine. Each test names the claim it proves."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from analyticbot_ops import docker
from analyticbot_ops.errors import OpsError
from analyticbot_ops.swarm import deploy as swarm_deploy
from analyticbot_ops.swarm import lab as swarm_lab
from tests.sandbox import RunningStack, SteadyClient, create_channel, make_stack

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def lab() -> Iterator[swarm_lab.Lab]:
    name = f"ablab-{uuid.uuid4().hex[:6]}"  # its own lab: a developer's analyticbot-lab is left alone
    try:
        yield swarm_lab.up(3, name)
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


def test_the_proxy_answers_200_on_a_nodes_address(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    assert swarm_stack.address in {n.address for n in lab.nodes}  # published in host mode, on its node
    assert _get(swarm_stack, "/api/health/ready") == 200


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
    """Targets found by DNS (tasks.<service>): both api replicas scraped, every target up, Watchdog firing."""

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
    assert by_job.get("api") == ["up", "up"], by_job
    assert set(by_job) == jobs
    assert all(health == ["up"] for job, health in by_job.items() if job != "api"), by_job
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


def test_a_rolling_update_of_the_api_drops_no_request(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    create_channel(swarm_stack, "swarmroll")
    client = SteadyClient(swarm_stack, "swarmroll")
    client.start()
    time.sleep(2)
    lab.manage(["service", "update", "--force", "--detach", f"{swarm_stack.project}_api"])
    time.sleep(3)  # the update has begun
    swarm_deploy.wait_converged(lab, swarm_stack.project, 180, lambda _m: None)
    time.sleep(2)
    ok, failures = client.finish()
    assert ok > 50 and failures == [], failures[:5]


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
    try:
        swarm_stack.stack.settings["API_IMAGE"] = broken
        with pytest.raises(OpsError, match=r"Swarm rolled back api"):
            swarm_deploy.deploy(swarm_stack.stack, lab, timeout=300)
    finally:
        swarm_stack.stack.settings["API_IMAGE"] = before.split("@")[0]
        docker.docker(["rmi", "-f", broken], check=False)
    after = _state(lab, swarm_stack.project, "api")
    assert after.image == before and after.running == 2
    assert _get(swarm_stack, "/api/health/ready") == 200


def test_a_lost_worker_nodes_tasks_run_again_elsewhere_within_60_s(
    lab: swarm_lab.Lab, swarm_stack: RunningStack
) -> None:
    proxy_node = _node_of(lab, swarm_stack.project, "proxy")
    workers = [n for n in lab.nodes[1:] if n != proxy_node]  # not the manager (data), not the entry point
    for _ in range(2):
        states = swarm_deploy.states(lab, swarm_stack.project)
        lost = max(workers, key=lambda n: sum(n.hostname in s.nodes for s in states.values()))
        moved = sorted(name for name, s in states.items() if lost.hostname in s.nodes)
        if moved:
            break
        # Earlier tests may have left that worker empty: a forced update spreads the api's replicas again
        # (Swarm places each new task on the node running the fewest).
        lab.manage(["service", "update", "--force", "--detach", f"{swarm_stack.project}_api"])
        time.sleep(3)
        swarm_deploy.wait_converged(lab, swarm_stack.project, 180, lambda _m: None)
    assert moved, f"{lost.hostname} runs no task: nothing to prove"
    create_channel(swarm_stack, "swarmloss")
    client = SteadyClient(swarm_stack, "swarmloss")
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
    finally:
        ok, failures = client.finish()
        docker.docker(["start", lost.name])
    assert recovered < 60
    # At most the requests in flight on the lost node; nginx retries a refused connection on the next replica.
    assert ok > 50 and len(failures) <= 3, failures[:5]
    # No committed row is lost: the channel written before the loss is still there.
    assert _get(swarm_stack, "/api/channels/swarmloss/summary") == 200


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


def test_rotating_postgres_password_on_swarm_refuses_the_old_one(lab: swarm_lab.Lab, swarm_stack: RunningStack) -> None:
    from analyticbot_ops import secrets
    from analyticbot_ops.swarm.rotation import SwarmStack

    old = swarm_stack.secret("postgres_password")
    assert _login(lab, swarm_stack, old) == "accepted"
    secrets.rotate("postgres_password", swarm_stack.secrets_dir, SwarmStack(swarm_stack.stack, lab), timeout=180)
    new = swarm_stack.secret("postgres_password")
    assert new != old
    assert _login(lab, swarm_stack, old) == "refused"
    assert _login(lab, swarm_stack, new) == "accepted"
    # One version of the secret is left on the swarm: the new one.
    names = lab.manage(["secret", "ls", "--format", "{{.Name}}"]).stdout.split()
    versions = [n for n in names if n.startswith(f"{swarm_stack.project}_postgres_password_")]
    assert len(versions) == 1, versions
    assert _get(swarm_stack, "/api/health/ready") == 200
