"""Who may do what on the prod-mode stack: bearer tokens through the proxy, the Redis user's narrow ACL,
metrics kept inside, names and Hosts the proxy does not serve, slow clients, and what the access log keeps."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import time
import uuid

import pytest

from analyticbot_ops import access_audit, compose, docker, tokens
from tests.sandbox import TEST_DOMAIN, RunningStack


def _https(
    stack: RunningStack, path: str, method: str = "GET", body: dict | None = None, token: str | None = None
) -> int:
    context = ssl.create_default_context(cafile=stack.ca_file)
    connection = http.client.HTTPSConnection("localhost", stack.https_port, context=context, timeout=10)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def _container(stack: RunningStack, service: str) -> str:
    return compose.service_states(stack.project)[service].container


def _in_network(stack: RunningStack, network: str, code: str) -> str:
    """Run Python in a throwaway container on one of the stack's networks; its stdout."""
    name = f"{stack.project}-probe-{uuid.uuid4().hex[:6]}"
    result = docker.docker(
        ["run", "--rm", "--name", name, "--network", f"{stack.project}_{network}",
         "analyticbot/python-runtime:bookworm", "python3", "-c", code],
        check=False,
    )  # fmt: skip
    return result.stdout.strip()


def test_writes_need_an_unexpired_token_with_the_write_scope(prod_stack: RunningStack) -> None:
    key = prod_stack.secret("jwt_secret_key")
    expired = tokens.mint(
        key, ("read", "write"), dt.timedelta(minutes=1), now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ).value
    body = {"username": f"auth_{uuid.uuid4().hex[:8]}"}
    assert _https(prod_stack, "/api/channels", "POST", body) == 401
    assert _https(prod_stack, "/api/channels", "POST", body, token="not.a.token") == 401
    assert _https(prod_stack, "/api/channels", "POST", body, token=expired) == 401
    assert _https(prod_stack, "/api/channels", "POST", body, token=prod_stack.token("read")) == 403
    assert _https(prod_stack, "/api/channels", "POST", body, token=prod_stack.token("write")) == 201


def test_reads_need_a_read_token_and_the_bots_own_token_is_one(prod_stack: RunningStack) -> None:
    assert _https(prod_stack, "/api/channels") == 401
    # The token the bot mounts (api_read_token, minted from jwt_secret_key) is accepted for reads only.
    bot_token = prod_stack.secret("api_read_token")
    assert _https(prod_stack, "/api/channels", token=bot_token) == 200
    assert _https(prod_stack, "/api/channels", "POST", {"username": "bot_write"}, token=bot_token) == 403


def test_the_redis_app_user_is_refused_config_and_flushall(prod_stack: RunningStack) -> None:
    script = (
        f"AUTH analyticbot {prod_stack.secret('redis_password')}\n"
        "CONFIG GET maxmemory\nFLUSHALL\nKEYS *\nSET other:key 1\nSET summary:acl-test 1\n"
    )
    result = docker.docker(
        ["exec", "-i", _container(prod_stack, "redis"), "redis-cli", "-h", "127.0.0.1"],
        input_bytes=script.encode(),
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0] == "OK"
    assert all(line.startswith("NOPERM") for line in lines[1:5]), lines
    assert lines[5] == "OK"


def test_metrics_are_not_public_but_scrapable_inside(prod_stack: RunningStack) -> None:
    for path in ("/api/metrics", "/api/performance", "/api/metrics/", "/bot/metrics", "/bot/performance"):
        assert _https(prod_stack, path) == 404, path
    assert _https(prod_stack, "/api/health/live") == 200  # the rest of /api/ is untouched
    code = "import urllib.request\nprint(urllib.request.urlopen('http://api:8000/metrics', timeout=5).status)"
    assert _in_network(prod_stack, "frontend", code) == "200"


def _raw_http(port: int, host: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(f"GET /api/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := raw.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_forged_host_is_never_reflected_and_unknown_names_get_nothing(prod_stack: RunningStack) -> None:
    # Port 80: an unknown Host gets no response at all (444); a served one is sent to the configured name.
    assert _raw_http(prod_stack.http_port, "evil.example") == b""
    served = _raw_http(prod_stack.http_port, "localhost").decode()
    assert served.startswith("HTTP/1.1 301")
    assert f"Location: https://{TEST_DOMAIN}:{prod_stack.https_port}/api/health\r\n" in served
    # Port 443: no handshake for a name we do not serve, nor for none (a bare address sends no SNI).
    context = ssl.create_default_context(cafile=prod_stack.ca_file)
    context.check_hostname = False
    for server_name in ("evil.example", None):
        with (
            socket.create_connection(("127.0.0.1", prod_stack.https_port), timeout=5) as raw,
            pytest.raises(ssl.SSLError),
        ):
            context.wrap_socket(raw, server_hostname=server_name)
    # A served SNI with a forged Host header: closed without an answer.
    connection = http.client.HTTPSConnection("localhost", prod_stack.https_port, context=context, timeout=5)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.request("GET", "/api/health", headers={"Host": "evil.example"})
        connection.getresponse()
    connection.close()


def test_a_slow_body_is_cut_off_within_15_seconds(prod_stack: RunningStack) -> None:
    context = ssl.create_default_context(cafile=prod_stack.ca_file)
    headers = (
        "POST /api/channels HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {prod_stack.token('write')}\r\nContent-Length: 64\r\n\r\n{{"
    )
    with (
        socket.create_connection(("127.0.0.1", prod_stack.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as client,
    ):
        client.sendall(headers.encode())
        started = time.monotonic()
        closed_after = None
        # One more byte every 10 s, as the measured attack did; bounded at 40 s.
        while time.monotonic() - started < 40:
            client.settimeout(10)
            try:
                client.recv(4096)  # an answer (408) or the end of the stream: the server gave up on us
                closed_after = time.monotonic() - started
                break
            except TimeoutError:
                try:
                    client.sendall(b" ")
                except OSError:
                    closed_after = time.monotonic() - started
                    break
            except (OSError, ssl.SSLError):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and closed_after < 15, closed_after


def test_the_access_log_keeps_the_path_asked_for_without_its_query(prod_stack: RunningStack) -> None:
    marker = uuid.uuid4().hex[:10]
    assert _https(prod_stack, f"/api/health/live?probe={marker}") == 200
    logs = docker.docker(["logs", "--tail", "200", _container(prod_stack, "proxy")], check=False)
    lines = [line for line in (logs.stdout + logs.stderr).splitlines() if "/health/live" in line]
    assert any('"GET /api/health/live HTTP/' in line for line in lines), lines[-5:]
    assert marker not in logs.stdout + logs.stderr


def test_the_services_believe_forwarded_headers_from_the_proxys_address_only(prod_stack: RunningStack) -> None:
    proxy = docker.inspect("container", _container(prod_stack, "proxy"))
    assert proxy is not None
    proxy_ip = proxy["NetworkSettings"]["Networks"][f"{prod_stack.project}_frontend"]["IPAddress"]
    for service in ("api", "bot"):
        info = docker.inspect("container", _container(prod_stack, service))
        assert info is not None
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        assert env["FORWARDED_ALLOW_IPS"] == proxy_ip


@pytest.mark.parametrize(("service", "role"), [("api", "analyticbot_api"), ("mtproto", "analyticbot_collector")])
def test_each_service_logs_in_as_its_own_role_which_is_no_superuser_and_cannot_drop_tables(
    prod_stack: RunningStack, service: str, role: str
) -> None:
    # From inside the service's container, with the password file and user it runs with.
    script = (
        "import asyncio, os, asyncpg\n"
        "async def main():\n"
        "    pw = open(os.environ['POSTGRES_PASSWORD_FILE']).read().strip()\n"
        "    c = await asyncpg.connect(host='postgres', user=os.environ['POSTGRES_USER'], database='analyticbot',"
        " password=pw)\n"
        "    print(await c.fetchval('SELECT current_user'), await c.fetchval("
        "'SELECT rolsuper FROM pg_roles WHERE rolname = current_user'))\n"
        "    for sql in ('DROP TABLE post_views', 'DELETE FROM channels', 'TRUNCATE channels',"
        " 'CREATE TABLE intruder (id int)'):\n"
        "        try:\n"
        "            await c.execute(sql)\n"
        "            print('ALLOWED', sql)\n"
        "        except asyncpg.InsufficientPrivilegeError:\n"
        "            print('refused')\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
    )
    result = docker.docker(["exec", _container(prod_stack, service), "python3", "-c", script], check=False)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{role} False", result.stderr
    assert lines[1:] == ["refused"] * 4


def test_the_running_audit_finds_no_superuser_role_and_a_narrow_redis_acl(prod_stack: RunningStack) -> None:

    running = [i for i in compose.project_containers(prod_stack.project) if i["State"]["Running"]]
    findings = access_audit.live_findings(prod_stack.stack, running)
    assert {(f.check, f.target): f.ok for f in findings} == {
        ("AB-DBROLE", "api"): True,
        ("AB-DBROLE", "mtproto"): True,
        ("AB-REDISACL", "redis"): True,
    }
