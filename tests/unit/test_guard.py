"""The preflight that protects a running stack, on plain inputs (no daemon)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analyticbot_ops import guard, secrets
from analyticbot_ops.compose import Stack
from analyticbot_ops.paths import COMPOSE_DIR


def _stack(secrets_dir: Path) -> Stack:
    return Stack("dev", "abunit", {"SECRETS_DIR": str(secrets_dir), "PROXY_BIND": "127.0.0.1"})


def _container(working_dir: str, secret_source: str) -> dict:
    return {
        "Config": {"Labels": {"com.docker.compose.project.working_dir": working_dir}},
        "Mounts": [{"Source": secret_source, "Destination": "/run/secrets/postgres_api_password"}],
    }


def test_a_project_started_from_another_checkout_or_secrets_folder_is_refused(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    ours = _container(str(COMPOSE_DIR), str(tmp_path / "postgres_api_password"))
    assert guard.same_checkout(stack, [ours]).ok
    other = guard.same_checkout(stack, [_container("/srv/other/compose", str(tmp_path / "x"))])
    assert not other.ok and "another checkout (/srv/other/compose)" in other.detail
    moved = guard.same_checkout(stack, [_container(str(COMPOSE_DIR), "/srv/old-secrets/postgres_api_password")])
    assert not moved.ok and "SECRETS_DIR=/srv/old-secrets" in moved.detail


def test_a_secret_its_consumer_cannot_read_is_refused_or_fixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "jwt_secret_key"
    path.write_text("x" * 40)
    os.chmod(path, 0o000)
    stack = _stack(tmp_path)
    owner = path.stat().st_uid
    uid = secrets.consumer_uid(secrets.get_spec("jwt_secret_key"))
    refused = guard.secrets_readable(stack, fix=False)
    assert not refused.ok and f"cannot be read by uid {uid}" in refused.detail and "mode 0000" in refused.detail
    changed: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "chown", lambda p, u, g: changed.append((Path(p).name, u, g)))
    fixed = guard.secrets_readable(stack, fix=True)
    assert fixed.ok and fixed.detail == "fixed owner and mode of jwt_secret_key"
    assert changed == [("jwt_secret_key", uid, uid)] and path.stat().st_mode & 0o777 == 0o600
    assert owner == path.stat().st_uid  # chown was the fake's


def test_ports_this_stack_publishes_now_are_exempt_and_others_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = Stack("dev", "abunit", {"PROXY_BIND": "127.0.0.1", "HTTP_PORT": "18080", "HTTPS_PORT": "18443"})
    ours = {"NetworkSettings": {"Ports": {"8443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18443"}]}}}
    taken = {18080, 18443}
    monkeypatch.setattr(guard, "port_in_use", lambda bind, port: port in taken)
    refused = guard.ports_free(stack, [ours])
    assert not refused.ok and "127.0.0.1:18080 (HTTP_PORT) is already in use by another process" in refused.detail
    taken.discard(18080)
    assert guard.ports_free(stack, [ours]).ok  # 18443 is held, but by this stack's own proxy


def test_a_subnet_must_match_the_projects_network_and_overlap_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    import ipaddress

    networks = [
        ("abunit_frontend", [ipaddress.ip_network("172.28.1.0/24")]),
        ("someone_else", [ipaddress.ip_network("172.28.8.0/22")]),
    ]
    monkeypatch.setattr(guard, "_networks", lambda: networks)
    settings = {
        "FRONTEND_SUBNET": "172.28.1.0/24",
        "BACKEND_SUBNET": "172.28.2.0/24",
        "DATABASE_SUBNET": "172.28.3.0/24",
    }
    stack = Stack("dev", "abunit", settings)
    assert guard.subnets_fit(stack).ok
    changed = guard.subnets_fit(Stack("dev", "abunit", {**settings, "FRONTEND_SUBNET": "172.28.4.0/24"}))
    assert not changed.ok and "the running network abunit_frontend has 172.28.1.0/24" in changed.detail
    clash = guard.subnets_fit(Stack("dev", "abunit", {**settings, "BACKEND_SUBNET": "172.28.9.0/24"}))
    assert not clash.ok and "BACKEND_SUBNET 172.28.9.0/24 overlaps the Docker network someone_else" in clash.detail
