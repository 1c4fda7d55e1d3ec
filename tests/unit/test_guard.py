"""The preflight that protects a running stack, on plain inputs (no daemon)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyticbot_ops import docker, guard, runner, secrets
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import BadInput
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


# --- the rows and protect, with the daemon faked ------------------------------------------------------------


class Daemon:
    def __init__(self) -> None:
        self.volumes: set[str] = set()
        self.containers: list[dict] = []
        self.daemon_checked = 0

    def inspect(self, kind: str, name: str) -> dict | None:
        assert kind == "volume"
        return {"Name": name, "Driver": "local"} if name in self.volumes else None

    def by_label(self, label: str) -> list[dict]:
        assert label == "com.docker.compose.project=abunit"
        return list(self.containers)

    def require_daemon(self) -> str:
        self.daemon_checked += 1
        return "20.10.24"


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, runner.FakeRunner]]:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    state = Daemon()
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient("/usr/bin/docker", "20.10.24", False))
    monkeypatch.setattr(docker, "inspect", state.inspect)
    monkeypatch.setattr(docker, "containers_by_label", state.by_label)
    monkeypatch.setattr(docker, "require_daemon", state.require_daemon)
    monkeypatch.setattr(guard, "port_in_use", lambda bind, port: False)
    fake = runner.FakeRunner()
    fake.answer("docker", "network", "ls", "-q", stdout="")
    with runner.use(fake):
        yield state, fake


def _full_stack(secrets_dir: Path) -> Stack:
    return Stack(
        "dev",
        "abunit",
        {
            "SECRETS_DIR": str(secrets_dir),
            "PROXY_BIND": "127.0.0.1",
            "HTTP_PORT": "18080",
            "HTTPS_PORT": "18443",
            "FRONTEND_SUBNET": "172.28.1.0/24",
            "BACKEND_SUBNET": "172.28.2.0/24",
            "DATABASE_SUBNET": "172.28.3.0/24",
        },
    )


def _readable_secret(secrets_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 0600 secret owned by the uid its consumers run as (here: whoever runs the tests)."""
    secrets_dir.mkdir(exist_ok=True)
    path = secrets_dir / name
    path.write_text("x" * 40)
    os.chmod(path, 0o600)
    monkeypatch.setattr(guard.secrets, "consumer_uid", lambda _spec: path.stat().st_uid)
    return path


def test_new_database_secrets_are_refused_while_the_database_volume_exists(
    daemon: tuple[Daemon, runner.FakeRunner], tmp_path: Path
) -> None:
    state, _fake = daemon
    stack = _stack(tmp_path)
    assert guard.secrets_match_database(stack).ok  # no volume: a new database gets the new password
    state.volumes.add("abunit_pgdata")
    refused = guard.secrets_match_database(stack)
    assert refused == guard.Check(
        "database volume",
        False,
        f"the database volume abunit_pgdata exists but {tmp_path}/postgres_password does not: a new password "
        "would not open it. Restore the old secrets folder, or `invoke stack.down --env dev --volumes` to start "
        "over (deletes the data)",
    )
    (tmp_path / "postgres_password").write_text("the password the volume was made with")
    assert guard.secrets_match_database(stack).ok


def test_networks_are_read_from_docker_with_their_subnets(daemon: tuple[Daemon, runner.FakeRunner]) -> None:
    import json

    _state, fake = daemon
    assert guard._networks() == []
    assert fake.commands() == ["docker network ls -q"]  # nothing to inspect
    fake.answer("docker", "network", "ls", "-q", stdout="aa\nbb\n")
    nets = [
        {"Name": "bridge", "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}},
        {"Name": "none", "IPAM": {"Config": None}},
        {"Name": "abunit_frontend", "IPAM": {"Config": [{"Subnet": "172.28.1.0/24"}, {"Gateway": "x"}]}},
    ]
    fake.answer("docker", "network", "inspect", "aa", "bb", stdout=json.dumps(nets))
    found = guard._networks()
    assert [(name, [str(s) for s in subnets]) for name, subnets in found] == [
        ("bridge", ["172.17.0.0/16"]),
        ("none", []),
        ("abunit_frontend", ["172.28.1.0/24"]),
    ]
    assert fake.commands()[-1] == "docker network inspect aa bb"


def test_a_secret_owned_by_its_consumer_with_mode_0600_is_readable_and_a_symlink_is_not_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _readable_secret(tmp_path, "jwt_secret_key", monkeypatch)
    (tmp_path / "elsewhere").write_text("y")
    os.chmod(tmp_path / "elsewhere", 0o000)
    (tmp_path / "bot_token").symlink_to(tmp_path / "elsewhere")
    checked = guard.secrets_readable(_stack(tmp_path), fix=False)
    assert checked == guard.Check("secret owners", True, "each readable by its consumer")


def test_secret_owners_are_fixed_by_default_only_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _readable_secret(tmp_path, "jwt_secret_key", monkeypatch)
    os.chmod(path, 0o000)
    changed: list[str] = []
    monkeypatch.setattr(os, "chown", lambda p, u, g: changed.append(Path(p).name))
    monkeypatch.setattr(guard.os, "geteuid", lambda: 1000)
    assert not guard.secrets_readable(_stack(tmp_path)).ok and changed == []
    monkeypatch.setattr(guard.os, "geteuid", lambda: 0)
    assert guard.secrets_readable(_stack(tmp_path)).detail == "fixed owner and mode of jwt_secret_key"
    assert changed == ["jwt_secret_key"]


def test_rows_show_every_check_and_the_database_one_only_when_generating(
    daemon: tuple[Daemon, runner.FakeRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _fake = daemon
    _readable_secret(tmp_path, "jwt_secret_key", monkeypatch)
    stack = _full_stack(tmp_path)
    checked = guard.rows(stack)
    assert [(r.name, r.ok) for r in checked] == [
        ("checkout", True),
        ("ports", True),
        ("subnets", True),
        ("secret owners", True),
    ]
    assert state.daemon_checked == 1
    state.volumes.add("abunit_pgdata")
    generating = guard.rows(stack, generating=True)
    assert [(r.name, r.ok) for r in generating] == [
        ("checkout", True),
        ("ports", True),
        ("subnets", True),
        ("database volume", False),
        ("secret owners", True),
    ]


def test_rows_judge_only_the_running_containers(
    daemon: tuple[Daemon, runner.FakeRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _fake = daemon
    _readable_secret(tmp_path, "jwt_secret_key", monkeypatch)
    stopped = _container("/srv/other/compose", str(tmp_path / "x"))
    stopped["State"] = {"Running": False}
    state.containers.append(stopped)
    assert guard.rows(_full_stack(tmp_path))[0].ok  # a stopped container of another checkout is no clash
    stopped["State"] = {"Running": True}
    assert not guard.rows(_full_stack(tmp_path))[0].ok


def test_protect_raises_the_first_failed_check_as_bad_input(
    daemon: tuple[Daemon, runner.FakeRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _fake = daemon
    _readable_secret(tmp_path, "jwt_secret_key", monkeypatch)
    state.volumes.add("abunit_pgdata")
    monkeypatch.setattr(guard, "port_in_use", lambda bind, port: port == 18443)
    with pytest.raises(BadInput) as caught:
        guard.protect(_full_stack(tmp_path), generating=True)
    assert str(caught.value).startswith("port 127.0.0.1:18443 (HTTPS_PORT) is already in use by another process")
    assert caught.value.code == 2
    monkeypatch.setattr(guard, "port_in_use", lambda bind, port: False)
    with pytest.raises(BadInput, match="the database volume abunit_pgdata exists"):
        guard.protect(_full_stack(tmp_path), generating=True)
    said: list[str] = []
    rows = guard.protect(_full_stack(tmp_path), progress=said.append)  # not generating: the volume is fine
    assert all(r.ok for r in rows) and said == []


def test_protect_fixes_unreadable_secrets_as_root_once_everything_else_passed(
    daemon: tuple[Daemon, runner.FakeRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _state, _fake = daemon
    path = _readable_secret(tmp_path, "jwt_secret_key", monkeypatch)
    os.chmod(path, 0o044)
    monkeypatch.setattr(os, "chown", lambda p, u, g: None)
    monkeypatch.setattr(guard.os, "geteuid", lambda: 1000)
    with pytest.raises(BadInput, match=r"jwt_secret_key cannot be read by uid \d+ \(api\): owner \d+, mode 0044"):
        guard.protect(_full_stack(tmp_path))
    assert path.stat().st_mode & 0o777 == 0o044  # refused: nothing changed
    monkeypatch.setattr(guard.os, "geteuid", lambda: 0)
    said: list[str] = []
    rows = guard.protect(_full_stack(tmp_path), progress=said.append)
    assert rows[-1] == guard.Check("secret owners", True, "fixed owner and mode of jwt_secret_key")
    assert said == ["secret owners: fixed owner and mode of jwt_secret_key"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_as_root_an_unreadable_secret_is_not_fixed_while_another_check_fails(
    daemon: tuple[Daemon, runner.FakeRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _readable_secret(tmp_path, "jwt_secret_key", monkeypatch)
    os.chmod(path, 0o000)
    monkeypatch.setattr(guard.os, "geteuid", lambda: 0)
    monkeypatch.setattr(guard, "port_in_use", lambda bind, port: True)
    with pytest.raises(BadInput, match=r"^port 127.0.0.1:18080 \(HTTP_PORT\) is already in use"):
        guard.protect(_full_stack(tmp_path))
    assert path.stat().st_mode & 0o777 == 0
