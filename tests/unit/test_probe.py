"""analyticbot_common.probe, the services' healthcheck: against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from analyticbot_common import probe

COMMON = Path(__file__).resolve().parents[2] / "services" / "common"


@contextmanager
def serving(status: int) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering every GET with `status`; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (204, True), (503, False), (404, False), (302, False)])
def test_only_a_2xx_is_healthy(status: int, healthy: bool) -> None:
    with serving(status) as base:
        assert probe.probe(f"{base}/health/ready") is healthy


def test_a_refused_connection_is_unhealthy() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refused
        assert probe.probe(f"http://127.0.0.1:{port}/health/ready") is False


def test_a_server_that_never_answers_is_unhealthy_within_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (the kernel does) and never answers
        started = time.monotonic()
        assert probe.probe(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.3) is False
        assert time.monotonic() - started < 2


def test_something_that_is_not_http_is_unhealthy() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"+PONG\r\n")  # Redis, say

        threading.Thread(target=answer, daemon=True).start()
        assert probe.probe(f"http://127.0.0.1:{server.getsockname()[1]}/") is False


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://127.0.0.1:8000/health/ready", ("127.0.0.1", 8000, "/health/ready")),
        ("http://api:8000", ("api", 8000, "/")),
        ("http://localhost/x?y=1", ("localhost", 80, "/x?y=1")),
    ],
)
def test_urls_parse(url: str, parsed: tuple[str, int, str]) -> None:
    assert probe.parse_url(url) == parsed


@pytest.mark.parametrize("url", ["https://127.0.0.1/", "127.0.0.1:8000", "http://:8000/", "http://h:0/", "http://h:x/"])
def test_other_urls_are_refused_and_unhealthy(url: str) -> None:
    with pytest.raises(ValueError):
        probe.parse_url(url)
    assert probe.probe(url) is False


def test_the_command_exits_0_or_1_without_site(tmp_path: Path) -> None:
    """As the healthcheck runs it: `python3 -S -m analyticbot_common.probe URL`, the code on PYTHONPATH."""
    env = {"PYTHONPATH": str(COMMON)}
    command = [sys.executable, "-S", "-m", "analyticbot_common.probe"]
    with serving(200) as up, serving(503) as down:
        assert subprocess.run([*command, f"{up}/"], env=env, check=False).returncode == 0
        assert subprocess.run([*command, f"{down}/"], env=env, check=False).returncode == 1


def test_the_probe_imports_no_http_library() -> None:
    """What keeps it cheap: neither urllib.request nor http.client (and email with it) is imported."""
    script = "import sys, analyticbot_common.probe; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-S", "-c", script], env={"PYTHONPATH": str(COMMON)}, capture_output=True, text=True
    ).stdout.split()
    assert "socket" in out
    assert not {"urllib.request", "http.client", "email"} & set(out)
