"""Secrets on the running prod-mode stack: every consumer reads its file and works,
no value leaks into Docker's metadata, logs or process arguments, and rotation
swaps a password without locking anyone out."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from analyticbot_ops import compose, docker, maintenance, model, secrets
from tests.sandbox import RunningStack, under_clients

SERVICES = ("postgres", "redis", "api", "bot", "mtproto", "proxy")


def _values(stack: RunningStack) -> dict[str, str]:
    """Every non-empty secret of the stack, plus the parts of the bot token worth hiding. Only an optional secret
    the stack was not given (no file) is left out: a secret that cannot be read fails the test, rather than
    leaving the leak check with fewer values to look for."""
    found = {}
    for spec in secrets.SECRETS:
        if not spec.required(stack.stack.env) and not os.path.lexists(stack.secrets_dir / spec.name):
            continue
        value = stack.secret(spec.name)
        if len(value) >= 8:
            found[spec.name] = value
    found["bot_token secret part"] = found["bot_token"].split(":", 1)[1]
    return found


def _containers(stack: RunningStack) -> dict[str, str]:
    # The migrate job too: it held the owner's password, and its container stays (exited) for inspection.
    return {s: compose.service_states(stack.project)[s].container for s in (*SERVICES, *model.JOBS)}


def _context(stack: RunningStack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=stack.ca_file)


def test_every_consumer_reads_its_secret_and_works(prod_stack: RunningStack) -> None:
    with urllib.request.urlopen(f"{prod_stack.base_url}/api/health", context=_context(prod_stack), timeout=5) as r:
        report = json.loads(r.read())
    # PostgreSQL and Redis accepted the API's passwords from their files.
    assert {n: d["state"] for n, d in report["dependencies"].items()} == {
        "postgres": "up",
        "redis": "up",
        "redis_writes": "up",
    }

    # The bot read the webhook secret: the right token passes the check, a wrong one is refused.
    def webhook(token: str) -> int:
        request = urllib.request.Request(
            f"{prod_stack.base_url}/bot/webhook",
            data=b'{"update_id": 1}',
            headers={"X-Telegram-Bot-Api-Secret-Token": token, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, context=_context(prod_stack), timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert webhook("wrong-secret") == 401
    assert webhook(prod_stack.secret("telegram_webhook_secret")) != 401


def test_no_secret_value_in_inspect_history_logs_or_process_arguments(prod_stack: RunningStack) -> None:
    values = _values(prod_stack)
    leaks: list[str] = []
    for service, container in _containers(prod_stack).items():
        info = docker.inspect("container", container)
        image = info["Config"]["Image"]
        sources = {
            "docker inspect": json.dumps(info),
            "docker history": json.dumps(docker.image_history(image)) + json.dumps(docker.inspect("image", image)),
            "logs": docker.docker(["logs", container], check=False).stdout
            + docker.docker(["logs", container], check=False).stderr,
            # `docker top` runs ps on the host: the arguments of every process in the container (a job has
            # exited: none left to show).
            "process arguments": docker.docker(["top", container, "-eo", "pid,args"]).stdout
            if info["State"]["Running"]
            else "",
        }
        for where, text in sources.items():
            leaks += [f"{name} in {where} of {service}" for name, value in values.items() if value in text]
    assert leaks == []


def _connects(stack: RunningStack, password: str, user: str) -> bool:
    """Log in to PostgreSQL over TCP from the API container, the password on stdin."""
    api = compose.service_states(stack.project)["api"].container
    script = (
        "import asyncio, sys, asyncpg\n"
        "async def main():\n"
        "    pw = sys.stdin.read()\n"
        "    try:\n"
        f"        c = await asyncpg.connect(host='postgres', user='{user}', database='analyticbot', password=pw)\n"
        "    except asyncpg.InvalidPasswordError:\n"
        "        sys.exit(1)\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [docker.client().path, "exec", "-i", api, "python3", "-c", script],
        input=password,
        capture_output=True,
        text=True,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


@pytest.mark.parametrize(
    ("name", "role", "restarted"),
    [("postgres_api_password", "analyticbot_api", ("api",)), ("postgres_password", "analyticbot", ())],
)
def test_rotation_keeps_the_api_healthy_and_retires_the_old_password(
    prod_stack: RunningStack, name: str, role: str, restarted: tuple[str, ...]
) -> None:
    old = prod_stack.secret(name)
    assert _connects(prod_stack, old, role)
    restarts_before = compose.service_states(prod_stack.project)["api"].restarts
    rotated: list[secrets.RotationResult] = []
    _seconds, clients = under_clients(
        prod_stack,
        lambda: rotated.append(
            secrets.rotate(name, prod_stack.secrets_dir, maintenance.LiveStack(prod_stack.stack), timeout=120)
        ),
    )
    # Readers through the proxy, on new connections and on one kept alive, see no error while it rotates.
    assert {mode: failures for mode, (_ok, failures) in clients.items() if failures} == {}
    result = rotated[0]
    new = prod_stack.secret(name)
    assert new != old and result.restarted == restarted
    assert _connects(prod_stack, new, role) and not _connects(prod_stack, old, role)
    state = compose.service_states(prod_stack.project)["api"]
    # A planned restart, not a crash; Docker's first check may still be due (every 10 s), the check run now passes.
    assert state.health in ("healthy", "starting") and compose.probe_ready(state) and state.restarts == restarts_before
    with urllib.request.urlopen(
        f"{prod_stack.base_url}/api/health/ready", context=_context(prod_stack), timeout=5
    ) as r:
        assert r.status == 200
    assert list((prod_stack.secrets_dir / ".backup").glob(f"{name}.*"))  # the old value was kept


def _redis_auth(stack: RunningStack, password: str) -> str:
    redis = compose.service_states(stack.project)["redis"].container
    result = subprocess.run(
        [docker.client().path, "exec", "-i", redis, "redis-cli", "-h", "127.0.0.1"],
        input=f"AUTH analyticbot {password}\n",
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def test_rotating_redis_password_swaps_the_live_acl(prod_stack: RunningStack) -> None:
    old = prod_stack.secret("redis_password")
    assert _redis_auth(prod_stack, old) == "OK"
    secrets.rotate("redis_password", prod_stack.secrets_dir, maintenance.LiveStack(prod_stack.stack), timeout=120)
    new = prod_stack.secret("redis_password")
    assert new != old
    assert _redis_auth(prod_stack, new) == "OK"
    assert "WRONGPASS" in _redis_auth(prod_stack, old)
    # The ACL file on disk matches, so a Redis restart keeps the new password.
    assert (prod_stack.secrets_dir / "redis_acl").read_text() == secrets.redis_acl_line(
        new, prod_stack.secret("redis_admin_password"), prod_stack.secret("redis_monitor_password")
    )
    with urllib.request.urlopen(
        f"{prod_stack.base_url}/api/health/ready", context=_context(prod_stack), timeout=5
    ) as r:
        assert r.status == 200
