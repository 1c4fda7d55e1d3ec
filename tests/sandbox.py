"""Throwaway stacks for tests and benchmarks: prod settings under their own project
name, secrets, certificates, loopback ports and subnets, so one runs beside a dev
stack (or another run) without touching it."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from analyticbot_ops import compose, deploy, docker, registry, releases, secrets, tls, tokens
from analyticbot_ops.swarm import lab as swarm_lab

# A token of the right shape. The bot is pointed at a closed local port instead
# of Telegram (TELEGRAM_API_BASE), so no test sends anything off this machine.
FAKE_BOT_TOKEN = "123456789:" + "A" * 35
TEST_DOMAIN = "proxy.analyticbot.test"


def subnet_pool() -> str:
    """The subnets this test process may take: the deploy's whole pool in a serial run, a quarter of it per
    pytest-xdist worker (gw0-gw3), so that two workers never pick the same free subnet before either has
    created its network."""
    pool = ipaddress.ip_network(deploy.SUBNET_POOL)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return str(pool)
    quarters = list(pool.subnets(prefixlen_diff=2))
    return str(quarters[int(worker[2:]) % len(quarters)])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningStack:
    stack: compose.Stack
    secrets_dir: Path
    tls_dir: Path
    http_port: int
    https_port: int
    # Where the proxy listens: loopback for a Compose stack, a node's address for a Swarm lab's. The TLS
    # name (SNI, Host) stays localhost either way.
    address: str = "127.0.0.1"
    # What the client trusts: the stack's dev CA (the name localhost), or, for a stack served on the bootstrap
    # certificate a first deploy writes, that one certificate, pinned, under the name it is for (DOMAIN).
    trust_served: bool = False
    # A site behind DNS round robin: every edge's address, each connection starting at the next and going on to
    # the one after when an address refuses or does not answer, as browsers and most HTTP clients do.
    round_robin: tuple[str, ...] = ()
    # False: the client reads without checking the certificate (a test that checks the served certificate on its
    # own, while it changes from one the client could not know in advance).
    verify: bool = True

    def connection(self, timeout: float = 10) -> http.client.HTTPSConnection:
        """An HTTPS connection to the proxy, verified against the stack's dev CA (or its pinned certificate)."""
        if self.round_robin:
            return _RoundRobin(self.round_robin, self.https_port, self._context(), timeout, self.server_name)
        return _Connection(self.address, self.https_port, self._context(), timeout, self.server_name)

    def _context(self) -> ssl.SSLContext:
        if self.verify:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.trust_served:
                # Pinned: the served chain itself is trusted, an ACME server's intermediate included (its root,
                # a test server's, is not at hand).
                context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            return context
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    @property
    def server_name(self) -> str:
        return self.stack.settings["DOMAIN"] if self.trust_served else "localhost"

    @property
    def project(self) -> str:
        return self.stack.project

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def ca_file(self) -> str:
        return str(self.tls_dir / ("fullchain.pem" if self.trust_served else "ca.crt"))

    def reloaded(self, **overrides: str) -> compose.Stack:
        """The same stack (project, settings, with or without the monitoring overlay) with some settings changed:
        a new image, a broken setting."""
        return compose.load_stack(
            self.stack.env,
            project=self.project,
            overrides={**self.stack.settings, **overrides},
            monitoring=self.stack.monitoring,
            backup=self.stack.backup,
        )

    def secret(self, name: str) -> str:
        return secrets.read_secret(name, self.secrets_dir)

    def token(self, scope: str = "write", ttl: str = "1h") -> str:
        """A bearer token for this stack's API, as `invoke api-token` mints one."""
        key = self.secret("jwt_secret_key")
        return tokens.mint(key, tokens.parse_scopes(scope), tokens.parse_ttl(ttl), subject="tests").value


def make_stack(
    root: Path,
    project: str,
    env: str = "prod",
    *,
    monitoring: bool = False,
    backup: bool = False,
    certificates: bool = True,
) -> RunningStack:
    """A stack on its own ports and subnets. Without the monitoring and backup overlays unless asked: the
    modules that prove an overlay start one with it; the others need not pay for its containers. Without
    `certificates`, nothing but secrets: what a user has before the first deploy."""
    secrets_dir, tls_dir = root / "secrets", root / "tls"
    secrets.from_env(env, secrets_dir, environ={"BOT_TOKEN": FAKE_BOT_TOKEN})
    if certificates:
        tls.ensure_dev_certificates(tls_dir)
    http_port, https_port = free_port(), free_port()
    frontend, backend, database, watched, backed_up = deploy.free_subnets(5, pool=subnet_pool())
    stack = compose.load_stack(
        env,
        project=project,
        monitoring=monitoring,
        backup=backup,
        overrides={
            "PROXY_BIND": "127.0.0.1",
            "HTTP_PORT": str(http_port),
            "HTTPS_PORT": str(https_port),
            "FRONTEND_SUBNET": frontend,
            "BACKEND_SUBNET": backend,
            "DATABASE_SUBNET": database,
            "MONITORING_SUBNET": watched,
            "BACKUP_SUBNET": backed_up,
            "PROMETHEUS_PORT": str(free_port()),
            "ALERTMANAGER_PORT": str(free_port()),
            "SECRETS_DIR": str(secrets_dir),
            "TLS_DIR": str(tls_dir),
            "TELEGRAM_API_BASE": "http://127.0.0.1:9",
            # The proxy answers to this name inside the stack (a network alias), so
            # pebble on the same network validates ACME challenges through it.
            "DOMAIN": TEST_DOMAIN,
            # The tests reach the proxy as https://localhost:PORT.
            "EXTRA_SERVER_NAMES": "localhost",
        },
    )
    releases.pin(stack)  # the images this checkout built, as a deploy runs them
    return RunningStack(stack, secrets_dir, tls_dir, http_port, https_port)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to an address, presenting and verifying a name the proxy serves (SNI and Host)."""

    def __init__(
        self, address: str, port: int, context: ssl.SSLContext, timeout: float, name: str = "localhost"
    ) -> None:
        super().__init__(name, port, context=context, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


class _RoundRobin(_Connection):
    """Each new connection starts at the next address; one that refuses or times out passes to the one after."""

    _turn = 0
    _lock = threading.Lock()

    def __init__(
        self, addresses: tuple[str, ...], port: int, context: ssl.SSLContext, timeout: float, name: str
    ) -> None:
        super().__init__(addresses[0], port, context, timeout, name)
        with self._lock:
            start, _RoundRobin._turn = _RoundRobin._turn, _RoundRobin._turn + 1
        self.addresses = addresses[start % len(addresses) :] + addresses[: start % len(addresses)]

    def connect(self) -> None:
        for address in self.addresses[:-1]:
            try:
                raw = socket.create_connection((address, self.port), min(self.timeout or 2, 2))
            except OSError:
                continue
            self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
            return
        self.address = self.addresses[-1]
        super().connect()


# How a server's close of an idle connection shows to a request sent on it: before any byte of an answer.
_CLOSED_BEFORE_ANSWER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(eq=False)  # a Thread must stay hashable
class SteadyClient(threading.Thread):
    """GET a channel summary through the proxy every 40 ms (about 25/s); anything but a 200 with the channel in
    its body is a failure, with its reason kept. The tests and benchmarks/deploy.py run it across operations
    that must drop nothing.

    Two ways to connect, as clients do:
    - a new connection for every request (the default);
    - `keep_alive`: one connection, reused for as long as the server keeps it, the way browsers, the bot and
      most API clients connect. Like them (urllib3's is_connection_dropped, a browser's idle socket pool), it
      opens a new one when the server has closed the idle connection (an nginx reload closes its old workers'
      idle connections) or said `Connection: close`; those are counted in `reconnects`, not as failures. A
      GET sent on a reused connection that the server closed before any answer is sent again once on a new
      connection, as browsers and urllib3 do; anything else, and a second failure, is a failure."""

    stack: RunningStack
    channel: str
    # Another path to read instead (the bot's /bot/health/live): any 200 counts.
    path: str | None = None
    keep_alive: bool = False
    # Seconds a request may take before it counts as failed. A browser waits far longer; 10 s catches a hang.
    timeout: float = 10
    ok: int = 0
    reconnects: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.token = self.stack.token("read")

    def run(self) -> None:
        connection: http.client.HTTPSConnection | None = None
        while not self.stop.is_set():
            started = time.monotonic()
            if connection is not None and (not self.keep_alive or dropped(connection)):
                connection.close()
                connection = None
                self.reconnects += self.keep_alive
            reused = connection is not None
            current = connection = connection or self.stack.connection(self.timeout)
            try:
                try:
                    response, body = self._get(current)
                except _CLOSED_BEFORE_ANSWER:
                    if not reused:
                        raise
                    # A reused connection the server closed as this request was sent (an idle keep-alive
                    # connection closed by an nginx reload's old worker at that instant): nothing was answered,
                    # so a client sends a GET again on a new connection, once, as browsers and urllib3 do
                    # (RFC 9112 9.3.1). A second failure counts.
                    current.close()
                    self.reconnects += 1
                    current = connection = self.stack.connection(self.timeout)
                    response, body = self._get(current)
                if response.status == 200 and (self.path is not None or self.channel.encode() in body):
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {response.status}: {body[:80]!r}")
                if response.will_close:  # the server said Connection: close: a new one next time
                    current.close()
                    connection = None
                    self.reconnects += self.keep_alive
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                current.close()
                connection = None
            time.sleep(max(0.0, 0.04 - (time.monotonic() - started)))
        if connection is not None:
            connection.close()

    def _get(self, connection: http.client.HTTPConnection) -> tuple[http.client.HTTPResponse, bytes]:
        path = self.path or f"/api/channels/{self.channel}/summary"
        connection.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        response = connection.getresponse()
        return response, response.read()

    def finish(self) -> tuple[int, list[str]]:
        self.stop.set()
        self.join(timeout=15)
        return self.ok, self.failures


@dataclass(eq=False)
class SteadyClients:
    """Both kinds of client at once on one channel: a new connection per request, and one kept alive."""

    stack: RunningStack
    channel: str
    path: str | None = None  # SteadyClient's

    def __post_init__(self) -> None:
        self.clients = {
            "new connection per request": SteadyClient(self.stack, self.channel, self.path),
            "one keep-alive connection": SteadyClient(self.stack, self.channel, self.path, keep_alive=True),
        }

    def start(self) -> None:
        for client in self.clients.values():
            client.start()

    def finish(self) -> dict[str, tuple[int, list[str]]]:
        """Each mode's (requests answered, failures)."""
        return {mode: client.finish() for mode, client in self.clients.items()}


def dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether the server has closed (or reset) an idle keep-alive connection: its socket is readable with
    nothing sent to it, which on an idle HTTP/1.1 connection means end of file. What urllib3 checks before it
    reuses a pooled connection."""
    sock = connection.sock
    if sock is None:
        return True
    readable, _w, _x = select.select([sock], [], [], 0)
    return bool(readable)


def create_channel(stack: RunningStack, username: str) -> None:
    """A channel to read, through the proxy with a write token."""
    connection = stack.connection()
    try:
        connection.request(
            "POST",
            "/api/channels",
            body=f'{{"username": "{username}"}}',
            headers={"Authorization": f"Bearer {stack.token('write')}", "Content-Type": "application/json"},
        )
        status = connection.getresponse().status
    finally:
        connection.close()
    if status != 201:
        raise RuntimeError(f"creating channel {username} answered {status}")


# The channel AckWriter writes to (create it first: INSERT INTO channels (id, username) ...).
WRITER_CHANNEL = 424242


@dataclass(eq=False)
class AckWriter(threading.Thread):
    """One psql session inserting a post_views row every 50 ms (channel WRITER_CHANNEL, which must exist); a row
    counts as acknowledged when psql has printed its RETURNING line, which it does after the commit
    (autocommit). The recovery tests and benchmarks/backup.py count what a restore brings back."""

    stack: RunningStack
    first: int
    acknowledged: dict[int, float] = field(default_factory=dict)  # post_id -> time.time() of the ack
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        container = compose.service_states(self.stack.project)["postgres"].container
        self.process = subprocess.Popen(
            [docker.client().path, "exec", "-i", container, "psql", "-U", "analyticbot", "-d", "analyticbot", "-qtA"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def run(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        post = self.first
        try:
            while not self.stop.is_set():
                self.process.stdin.write(
                    f"INSERT INTO post_views (channel_id, post_id, views) VALUES ({WRITER_CHANNEL}, {post}, 1) "
                    "RETURNING post_id;\n"
                )
                self.process.stdin.flush()
                line = self.process.stdout.readline()
                if not line.strip().isdigit():
                    return  # the server went away: what was acknowledged is recorded
                self.acknowledged[int(line)] = time.time()
                post += 1
                time.sleep(0.05)
        except (BrokenPipeError, OSError):
            return

    def finish(self) -> None:
        self.stop.set()
        self.process.kill()
        self.join(10)


def lose_database_disk(stack: RunningStack, *, and_repository_1: bool = False) -> None:
    """postgres killed and its volume deleted, as a dead disk would take it (repository 1's volume too)."""
    states = compose.service_states(stack.project)
    docker.docker(["kill", states["postgres"].container], check=False)
    stack.stack.compose("rm", "-s", "-f", "-v", "postgres", "backup-agent")
    volumes = ["pgdata", *(["pgbackrest"] if and_repository_1 else [])]
    for volume in volumes:
        docker.docker(["volume", "rm", f"{stack.project}_{volume}"])


def under_client(stack: RunningStack, action: Callable[[], object]) -> tuple[float, int, list[str]]:
    """Run `action` while a steady client reads a channel through the proxy: (seconds the action took, requests
    answered, failures). The client starts a second before and stops a second after."""
    seconds, results = under_clients(stack, action, keep_alive=False)
    return seconds, *results["new connection per request"]


def under_each(
    reached: dict[str, RunningStack], action: Callable[[], object]
) -> tuple[float, dict[str, tuple[int, list[str]]]]:
    """Run `action` while one steady client per entry reads a channel (a new connection per request), each
    through its own way in (an edge's address, the site behind round robin): the seconds it took, and each
    client's (requests answered, failures)."""
    channel = f"steady_{uuid.uuid4().hex[:8]}"
    create_channel(next(iter(reached.values())), channel)
    return _while_reading({name: SteadyClient(stack, channel) for name, stack in reached.items()}, action)


def under_clients(
    stack: RunningStack, action: Callable[[], object], *, keep_alive: bool = True
) -> tuple[float, dict[str, tuple[int, list[str]]]]:
    """Run `action` under both steady clients (SteadyClients; only the new-connection one without
    `keep_alive`): the seconds it took, and each client's (requests answered, failures)."""
    channel = f"steady_{uuid.uuid4().hex[:8]}"
    create_channel(stack, channel)
    clients = SteadyClients(stack, channel).clients
    if not keep_alive:
        del clients["one keep-alive connection"]
    return _while_reading(clients, action)


def _while_reading(
    clients: dict[str, SteadyClient], action: Callable[[], object]
) -> tuple[float, dict[str, tuple[int, list[str]]]]:
    """Start the clients, give them a second, run `action` (timed), give them a second more, stop them."""
    for client in clients.values():
        client.start()
    time.sleep(1)
    started = time.monotonic()
    try:
        action()
    finally:
        seconds = time.monotonic() - started
        time.sleep(1)
        results = {name: client.finish() for name, client in clients.items()}
    return seconds, results


@dataclass
class LabPebble:
    directory_url: str
    ca_bundle: Path


# pebble's settings (/etc/pebble/pebble-config.json), on a Compose network and on a swarm's overlay alike: its
# certificate from the dev CA under /etc/pebble/tls; HTTP-01 validation connects to the domain on the proxy's
# container port (the proxies' port on the overlay).
PEBBLE_CONFIG = {
    "pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/etc/pebble/tls/fullchain.pem",
        "privateKey": "/etc/pebble/tls/privkey.pem",
        "httpPort": 8080,
        "tlsPort": 8443,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
}


@contextlib.contextmanager
def pebble_on_swarm(lab: swarm_lab.Lab, stack: RunningStack, folder: Path) -> Iterator[LabPebble]:
    """pebble (a real ACME server) as a service on a swarm stack's frontend overlay: it validates HTTP-01 by asking
    DOMAIN, the proxies' name there, so any edge may take the challenge. Removed on the way out."""
    tls.ensure_dev_certificates(folder / "tls", ["pebble"])
    image = registry.push_one("analyticbot/pebble:bookworm", lab.registry_local, lab.registry)
    tag = uuid.uuid4().hex[:6]
    made = {
        ("config", f"abpebble-config-{tag}"): json.dumps(PEBBLE_CONFIG).encode(),
        ("config", f"abpebble-chain-{tag}"): (folder / "tls" / "fullchain.pem").read_bytes(),
        ("secret", f"abpebble-key-{tag}"): (folder / "tls" / "privkey.pem").read_bytes(),
    }
    for (kind, name), content in made.items():
        lab.on(lab.manager, [kind, "create", name, "-"], stdin=content)
    service = f"{stack.project}_pebble"
    try:
        lab.manage(
            ["service", "create", "--detach", "--name", service, "--endpoint-mode", "dnsrr",
             "--network", f"name={stack.project}_frontend,alias=pebble",
             "--config", f"source=abpebble-config-{tag},target=/etc/pebble/pebble-config.json,mode=0444",
             "--config", f"source=abpebble-chain-{tag},target=/etc/pebble/tls/fullchain.pem,mode=0444",
             "--secret", f"source=abpebble-key-{tag},target=/etc/pebble/tls/privkey.pem,uid=10001,mode=0400",
             image]
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            logs = lab.manage(["service", "logs", "--raw", service], check=False)
            if "Listening on: 0.0.0.0:14000" in logs.stdout + logs.stderr:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"pebble did not start: {lab.manage(['service', 'ps', '--no-trunc', service]).stdout}"
                )
            time.sleep(1)
        yield LabPebble("https://pebble:14000/dir", folder / "tls" / "ca.crt")
    finally:
        lab.manage(["service", "rm", service], check=False)
        time.sleep(2)  # the task lets go of its config and secret
        for kind, name in made:
            lab.manage([kind, "rm", name], check=False)
