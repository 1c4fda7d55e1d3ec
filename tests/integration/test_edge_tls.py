"""How a certificate reaches the proxy on a swarm's edge node (nginx/edge-tls.sh, TLS_WATCH in nginx/entrypoint.sh),
proven with the real proxy image on this daemon, one node's worth: a tmpfs volume as Swarm creates it per node, the
proxy mounting it read-only, and one edge-tls container per certificate, its secrets where Swarm mounts them. The
swarm itself (a roll of edge-tls under clients, 0 failed) is test_swarm.py's."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from analyticbot_ops import build, docker, model, tls
from analyticbot_ops.swarm import render
from analyticbot_ops.swarm.certificates import served_serial

pytestmark = pytest.mark.docker
UID = model.APP_UID
HARDENED = ["--read-only", "--cap-drop", "ALL", "--user", f"{UID}:{UID}", "--tmpfs", "/tmp"]


class Node:
    """One edge node's volume and proxy; `hand(pair)` starts an edge-tls container for a certificate."""

    def __init__(self, tag: str, scratch: Path) -> None:
        self.tag, self.scratch = tag, scratch
        self.image = build.service_tag("proxy")
        self.volume = f"abedgetls-{tag}"
        self.proxy = f"abedgetls-{tag}-proxy"
        self.handers: list[str] = []
        # As the stack file has Swarm create it on each node.
        options = [f"--opt={key}={value}" for key, value in render.EDGE_TLS_DRIVER_OPTS.items()]
        docker.docker(["volume", "create", "--driver", "local", *options, self.volume])
        docker.docker(
            ["run", "-d", "--name", self.proxy, *HARDENED, "-p", "127.0.0.1::8443",
             "-e", f"TLS_WATCH={render.TLS_WATCH}",
             "--mount", f"type=volume,src={self.volume},dst={render.TLS_TARGET},readonly,volume-nocopy", self.image]
        )  # fmt: skip
        published = docker.docker(["port", self.proxy, "8443/tcp"]).stdout.split()[0]
        self.port = int(published.rsplit(":", 1)[1])

    def pair(self, name: str) -> tuple[Path, int]:
        """A new self-signed pair for localhost, as Swarm mounts the TLS secrets; its serial."""
        made = self.scratch / f"made-{name}"
        tls.write_bootstrap_certificate(made, "localhost")
        secrets = self.scratch / name
        secrets.mkdir(mode=0o755)
        shutil.copy(made / "fullchain.pem", secrets / "tls_fullchain")
        shutil.copy(made / "privkey.pem", secrets / "tls_privkey")
        for path in secrets.iterdir():
            path.chmod(0o400)
            if os.geteuid() == 0:
                os.chown(path, UID, UID)
        leaf = x509.load_pem_x509_certificate((made / "fullchain.pem").read_bytes())
        return secrets, leaf.serial_number

    def hand(self, secrets: Path) -> str:
        """An edge-tls container for this pair, once it has moved `current` (its own healthcheck's test)."""
        name = f"abedgetls-{self.tag}-{len(self.handers)}"
        docker.docker(
            ["run", "-d", "--name", name, *HARDENED, "--network", "none", "--entrypoint", "/usr/local/bin/edge-tls",
             "-v", f"{secrets}:/run/secrets:ro", "-v", f"{self.volume}:{render.EDGE_TLS_TARGET}", self.image]
        )  # fmt: skip
        self.handers.append(name)
        deadline = time.monotonic() + 15
        while not self.current_is(name):
            assert time.monotonic() < deadline, docker.docker(["logs", name], check=False).stderr
            time.sleep(0.2)
        return name

    def current_is(self, hander: str) -> bool:
        """edge-tls's healthcheck, as the stack file runs it: `current` is that container's own generation."""
        test = [part.replace("$$", "$") for part in render.EDGE_TLS_HEALTHCHECK[1:]]  # CMD form; `$$` escapes `$`
        return docker.docker(["exec", hander, *test], check=False).returncode == 0

    def serves(self, serial: int, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while served_serial("127.0.0.1", self.port, "localhost") != serial:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def listing(self) -> str:
        return docker.docker(["exec", self.proxy, "busybox", "ls", "-la", render.TLS_TARGET]).stdout

    def started_at(self) -> str:
        return docker.docker(["inspect", "-f", "{{.State.StartedAt}}", self.proxy]).stdout.strip()

    def remove(self) -> None:
        docker.docker(["rm", "-f", "-v", self.proxy, *self.handers], check=False)
        docker.docker(["volume", "rm", self.volume], check=False)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = Node(uuid.uuid4().hex[:8], tmp_path)
    try:
        yield made
    finally:
        made.remove()


def test_the_proxy_waits_for_its_first_pair_then_serves_it_from_memory(node: Node) -> None:
    first, serial = node.pair("first")
    time.sleep(2)
    assert served_serial("127.0.0.1", node.port, "localhost") is None  # nginx has not started without a pair
    node.hand(first)
    assert node.serves(serial)
    listing = node.listing()
    # One generation, the app user's alone; the names nginx reads are links through `current`.
    assert "current -> g-" in listing and "fullchain.pem -> current/fullchain.pem" in listing
    assert "privkey.pem -> current/privkey.pem" in listing
    generations = [line for line in listing.splitlines() if " g-" in line and "->" not in line]
    assert len(generations) == 1 and generations[0].startswith("drwx------") and " app " in generations[0]
    mounted = docker.docker(["exec", node.proxy, "busybox", "grep", f" {render.TLS_TARGET} ", "/proc/mounts"]).stdout
    assert mounted.startswith("tmpfs ") and " ro," in mounted  # memory only, and read-only for the proxy


def test_a_new_pair_is_served_by_a_reload_never_a_restart_and_the_old_generation_goes(node: Node) -> None:
    first, first_serial = node.pair("first")
    old = node.hand(first)
    assert node.serves(first_serial)
    started = node.started_at()
    second, second_serial = node.pair("second")
    new = node.hand(second)
    assert node.serves(second_serial)
    assert node.started_at() == started  # the same nginx master, reloaded
    assert "certificate g-" in docker.docker(["logs", node.proxy]).stderr
    assert len([line for line in node.listing().splitlines() if " g-" in line and "->" not in line]) == 1
    # The older edge-tls is no longer healthy (its generation is not current): a roll waits for the new one.
    assert node.current_is(new) and not node.current_is(old)


def test_a_pair_nginx_refuses_leaves_the_one_it_serves(node: Node) -> None:
    first, first_serial = node.pair("first")
    node.hand(first)
    assert node.serves(first_serial)
    second, _serial = node.pair("second")
    # The second certificate with the first key: a pair that does not match.
    mismatched = node.scratch / "mismatched"
    mismatched.mkdir()
    for name, source in (("tls_fullchain", second), ("tls_privkey", first)):
        shutil.copy(source / name, mismatched / name)
        if os.geteuid() == 0:
            os.chown(mismatched / name, UID, UID)
    node.hand(mismatched)
    deadline = time.monotonic() + 10
    while "refused by nginx -t" not in docker.docker(["logs", node.proxy]).stderr:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert served_serial("127.0.0.1", node.port, "localhost") == first_serial
