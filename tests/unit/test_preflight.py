"""The deploy preflight (preflight.py): `rows` shows every check on its own, whatever fails, and changes nothing;
`require` stops at the first check that fails with that check's own error and exit code, and asks guard.protect
only once all have passed. No Docker: the daemon, image lookups, secrets rows and the guard are monkeypatched;
certificates are real ones in tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import compose, docker, guard, preflight, secrets, stack_settings, tls
from analyticbot_ops.errors import BadInput, DockerUnavailable, OpsError

DOCKER = "/usr/bin/docker"
NO_DAEMON = "Docker daemon is not reachable at unix:///x: refused"
BOOTSTRAP = "none yet (a bootstrap certificate will let nginx start)"


def row(name: str, *, present: bool = True, valid: bool | None = True) -> secrets.SecretStatus:
    spec = secrets.get_spec(name)
    return secrets.SecretStatus(
        name, spec.kind, spec.required("prod"), present, True, "yes", valid, "ok", False, 1, valid if present else None
    )


ALL_VALID = [row(spec.name) for spec in secrets.SECRETS]
GUARD_OK = [guard.Check("checkout", True, "this checkout"), guard.Check("ports", True, "80, 443 free")]


class Daemon:
    """What the fake daemon holds, and who asked it what."""

    def __init__(self, stack: compose.Stack) -> None:
        self.up = True
        self.images = {stack.settings[s.image_variable] for s in preflight.model.SERVICES}
        self.inspected: list[str] = []

    def require_daemon(self) -> str:
        if not self.up:
            raise DockerUnavailable(f"{NO_DAEMON}\nsecond line")
        return "24.0.7"

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        assert kind == "image"
        self.require_daemon()
        self.inspected.append(name)
        return {"Id": f"sha256:{name}"} if name in self.images else None


class World:
    def __init__(self, stack: compose.Stack, daemon: Daemon, tls_dir: Path) -> None:
        self.stack = stack
        self.daemon = daemon
        self.tls_dir = tls_dir
        self.secrets_asked: list[tuple[str, Path]] = []
        self.guard_asked: list[tuple[compose.Stack, bool]] = []
        self.protected: list[tuple[compose.Stack, Any]] = []


def _stack(tmp_path: Path, env: str) -> compose.Stack:
    return compose.load_stack(
        env, project="abtest", overrides={"SECRETS_DIR": str(tmp_path / "secrets"), "TLS_DIR": str(tmp_path / "tls")}
    )


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    """A prod stack every check passes: daemon, compose, images, secrets, a valid certificate, owners (as root),
    the guard. Each check's dependency is faked where it would reach Docker, and recorded."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(stack_settings, "env_file", lambda env: tmp_path / f".env.{stack_settings.check_env(env)}")
    stack = _stack(tmp_path, "prod")
    daemon = Daemon(stack)
    state = World(stack, daemon, tmp_path / "tls")
    tls.ensure_dev_certificates(state.tls_dir, ["bot.example.com"])
    monkeypatch.setattr(docker, "require_daemon", daemon.require_daemon)
    monkeypatch.setattr(docker, "inspect", daemon.inspect)
    monkeypatch.setattr(preflight, "compose_command", lambda: [DOCKER, "compose"])
    monkeypatch.setattr(secrets, "check", lambda env, folder: state.secrets_asked.append((env, folder)) or ALL_VALID)
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)

    def guard_rows(s: compose.Stack, fix: bool) -> list[guard.Check]:
        state.guard_asked.append((s, fix))
        daemon.require_daemon()  # as the real one does, first
        return list(GUARD_OK)

    monkeypatch.setattr(guard, "rows", guard_rows)
    monkeypatch.setattr(guard, "protect", lambda s, progress: state.protected.append((s, progress)))
    return state


def _break_key(world: World, tmp_path: Path) -> None:
    """A certificate whose private key belongs to another one."""
    tls.ensure_dev_certificates(tmp_path / "other")
    (world.tls_dir / tls.PRIVKEY).write_bytes((tmp_path / "other" / tls.PRIVKEY).read_bytes())


def _foreign_owner(monkeypatch: pytest.MonkeyPatch, world: World) -> Path:
    """Run as a user other than root, with the containers' uid owning none of the files."""
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    fullchain = world.tls_dir / tls.FULLCHAIN
    monkeypatch.setattr(preflight.model, "APP_UID", fullchain.stat().st_uid + 1)
    return fullchain


# --- rows: every check on its own ----------------------------------------------------------------------------------


def test_a_deployable_environment_passes_every_check(world: World) -> None:
    assert preflight.rows(world.stack) == [
        preflight.Check("docker daemon", True, "engine 24.0.7"),
        preflight.Check("compose", True, f"{DOCKER} compose"),
        preflight.Check("images", True, "all present"),
        preflight.Check("secrets", True, f"{len(secrets.SECRETS)} present, the required ones valid"),
        preflight.Check("certificate", True, "CN=bot.example.com, 364 days left"),
        preflight.Check("file owners", True, "run as root: owners are fixed where needed"),
        preflight.Check("checkout", True, "this checkout"),
        preflight.Check("ports", True, "80, 443 free"),
    ]
    assert world.protected == []  # rows only reads: guard.protect (which may fix owners) is never asked


def test_each_check_fails_on_its_own_and_all_are_shown(
    monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path
) -> None:
    def no_compose() -> list[str]:
        raise OpsError("neither `docker compose` nor `docker-compose` is installed\nmore")

    monkeypatch.setattr(preflight, "compose_command", no_compose)
    world.daemon.images -= {world.stack.settings["API_IMAGE"], world.stack.settings["BOT_IMAGE"]}
    special = {
        "postgres_password": row("postgres_password", present=False),  # required, missing
        "jwt_secret_key": row("jwt_secret_key", valid=False),  # present, invalid
        "stripe_secret_key": row("stripe_secret_key", present=False),  # optional, missing: fine
    }
    rows = [special.get(spec.name) or row(spec.name) for spec in secrets.SECRETS]
    monkeypatch.setattr(secrets, "check", lambda env, folder: rows)
    _break_key(world, tmp_path)
    fullchain = _foreign_owner(monkeypatch, world)
    uid = preflight.model.APP_UID
    monkeypatch.setattr(guard, "rows", lambda s, fix: [guard.Check("ports", False, "443 is taken by nginx")])
    assert preflight.rows(world.stack) == [
        preflight.Check("docker daemon", True, "engine 24.0.7"),
        preflight.Check("compose", False, "neither `docker compose` nor `docker-compose` is installed"),
        preflight.Check(
            "images",
            False,
            f"images missing: {world.stack.settings['API_IMAGE']}, {world.stack.settings['BOT_IMAGE']}; "
            "run `invoke images.base images.build`",
        ),
        preflight.Check(
            "secrets",
            False,
            "secrets not ready for prod: postgres_password, jwt_secret_key; run `invoke secrets.check --env prod`",
        ),
        preflight.Check(
            "certificate", False, "the proxy's certificate is unusable: privkey.pem does not match the certificate"
        ),
        preflight.Check(
            "file owners",
            False,
            f"{fullchain} is owned by uid {fullchain.stat().st_uid}, but the containers run as uid {uid}: "
            f"run the tasks as root (sudo), or `sudo chown {uid}:{uid}` the files in {world.tls_dir}",
        ),
        preflight.Check("ports", False, "443 is taken by nginx"),
    ]
    assert world.protected == []


def test_without_a_daemon_the_running_stack_is_not_checked(world: World) -> None:
    world.daemon.up = False
    checks = preflight.rows(world.stack)
    assert checks == [
        preflight.Check("docker daemon", False, NO_DAEMON),  # its first line only
        preflight.Check("compose", True, f"{DOCKER} compose"),
        preflight.Check("images", False, NO_DAEMON),
        preflight.Check("secrets", True, f"{len(secrets.SECRETS)} present, the required ones valid"),
        preflight.Check("certificate", True, "CN=bot.example.com, 364 days left"),
        preflight.Check("file owners", True, "run as root: owners are fixed where needed"),
        preflight.Check("running stack", False, "not checked: no Docker daemon"),
    ]
    assert world.guard_asked == []


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_without_a_certificate_count_on_a_bootstrap_one(
    world: World, tmp_path: Path, env: str
) -> None:
    stack = _stack(tmp_path / env, env)
    world.daemon.images |= {stack.settings[s.image_variable] for s in preflight.model.SERVICES}
    checks = {c.name: c for c in preflight.rows(stack)}
    assert checks["certificate"] == preflight.Check("certificate", True, BOOTSTRAP)
    assert all(c.ok for c in checks.values())
    assert not (tmp_path / env / "tls").exists()  # nothing written


def test_dev_without_a_certificate_fails_with_the_way_out(world: World) -> None:
    stack = compose.Stack("dev", "abtest", {**world.stack.settings, "TLS_DIR": str(world.tls_dir / "none")}, [])
    checks = {c.name: c for c in preflight.rows(stack)}
    fullchain = world.tls_dir / "none" / tls.FULLCHAIN
    assert checks["certificate"] == preflight.Check(
        "certificate", False, f"no certificate at {fullchain}; run `invoke tls.dev` or `invoke tls.prod`"
    )


def test_half_a_certificate_pair_is_no_bootstrap_case(world: World) -> None:
    (world.tls_dir / tls.PRIVKEY).unlink()
    checks = {c.name: c for c in preflight.rows(world.stack)}
    assert checks["certificate"] == preflight.Check(
        "certificate",
        False,
        f"no private key at {world.tls_dir / tls.PRIVKEY}; run `invoke tls.dev` or `invoke tls.prod`",
    )


def test_a_certificate_about_to_expire_still_lets_a_deploy_start(world: World) -> None:
    """The deploy needs a certificate nginx can serve; renewing it in time is `tls.status`'s warning."""
    for name in ("ca.crt", "ca.key", tls.FULLCHAIN, tls.PRIVKEY):
        (world.tls_dir / name).unlink()
    tls.ensure_dev_certificates(world.tls_dir, ["bot.example.com"], now=datetime.now(UTC) - timedelta(days=350))
    checks = {c.name: c for c in preflight.rows(world.stack)}
    assert checks["certificate"] == preflight.Check("certificate", True, "CN=bot.example.com, 14 days left")


def test_an_expired_certificate_fails(world: World) -> None:
    for name in ("ca.crt", "ca.key", tls.FULLCHAIN, tls.PRIVKEY):
        (world.tls_dir / name).unlink()
    tls.ensure_dev_certificates(world.tls_dir, ["bot.example.com"], now=datetime.now(UTC) - timedelta(days=400))
    checks = {c.name: c for c in preflight.rows(world.stack)}
    assert not checks["certificate"].ok


def test_as_another_user_the_files_the_containers_own_pass(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    owner = (world.tls_dir / tls.FULLCHAIN).stat().st_uid  # whoever runs the test, or 10001 chowned by root
    secret = world.tls_dir.parent / "secrets" / "jwt_secret_key"
    secret.parent.mkdir()
    secret.write_text("x")
    if os.geteuid() == 0:
        os.chown(secret, owner, owner)
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(preflight.model, "APP_UID", owner)
    checks = {c.name: c for c in preflight.rows(world.stack)}
    assert checks["file owners"] == preflight.Check("file owners", True, f"every file owned by uid {owner}")
    monkeypatch.setattr(preflight.model, "APP_UID", owner + 1)
    checks = {c.name: c for c in preflight.rows(world.stack)}
    assert not checks["file owners"].ok and checks["file owners"].detail.startswith(f"{secret} is owned by uid {owner}")


def test_guard_rows_are_read_without_fixing_anything(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    checks = preflight.rows(world.stack)
    assert world.guard_asked == [(world.stack, False)]
    monkeypatch.setattr(
        guard, "rows", lambda s, fix: [guard.Check("secret owners", False, "api cannot read jwt_secret_key")]
    )
    checks = preflight.rows(world.stack)
    assert checks[-1] == preflight.Check("secret owners", False, "api cannot read jwt_secret_key")
    assert all(c.ok for c in checks[:-1])


def test_a_guard_that_cannot_ask_the_daemon_is_a_row_not_an_error(
    monkeypatch: pytest.MonkeyPatch, world: World
) -> None:
    def daemon_gone(stack: compose.Stack, fix: bool) -> list[guard.Check]:
        raise DockerUnavailable("Docker daemon is not reachable\nmore")

    monkeypatch.setattr(guard, "rows", daemon_gone)
    checks = preflight.rows(world.stack)
    assert checks[-1] == preflight.Check("running stack", False, "Docker daemon is not reachable")


def test_secrets_are_checked_in_the_stacks_own_folder(world: World, tmp_path: Path) -> None:
    preflight.rows(world.stack)
    assert world.secrets_asked == [("prod", tmp_path / "secrets")]


def test_each_image_is_looked_up_once(world: World) -> None:
    preflight.rows(world.stack)
    assert sorted(world.daemon.inspected) == sorted(world.daemon.images)  # the api's image once, for api and migrate


# --- require: the first failure wins -------------------------------------------------------------------------------


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the checks require() ran, in order (each still the real one)."""
    names: list[str] = []

    def recorded(name: str, check: Callable[[compose.Stack], str]) -> Callable[[compose.Stack], str]:
        def run(stack: compose.Stack) -> str:
            names.append(name)
            return check(stack)

        return run

    monkeypatch.setattr(preflight, "CHECKS", tuple((name, recorded(name, check)) for name, check in preflight.CHECKS))
    return names


CHECK_NAMES = [name for name, _check in preflight.CHECKS]


def test_require_passes_when_every_check_does_then_protects_the_running_stack(world: World, ran: list[str]) -> None:
    said: list[str] = []
    preflight.require(world.stack, said.append)
    assert ran == CHECK_NAMES
    assert world.protected == [(world.stack, said.append)]
    assert said == [
        "preflight ok: images, secrets (prod), certificate (CN=bot.example.com, 364 days left), checkout, ports, "
        "subnets"
    ]


def test_require_counts_on_a_bootstrap_certificate_for_prod_without_one(world: World, ran: list[str]) -> None:
    for name in (tls.FULLCHAIN, tls.PRIVKEY):
        (world.tls_dir / name).unlink()
    said: list[str] = []
    preflight.require(world.stack, said.append)
    assert said == [f"preflight ok: images, secrets (prod), certificate ({BOOTSTRAP}), checkout, ports, subnets"]
    assert len(world.protected) == 1


def _no_daemon(monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path) -> None:
    world.daemon.up = False


def _no_compose(monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path) -> None:
    def missing() -> list[str]:
        raise OpsError("neither `docker compose` nor `docker-compose` is installed")

    monkeypatch.setattr(preflight, "compose_command", missing)


def _no_proxy_image(monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path) -> None:
    world.daemon.images.discard(world.stack.settings["PROXY_IMAGE"])


def _bad_secret(monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path) -> None:
    rows = [row(s.name, valid=s.name != "jwt_secret_key") for s in secrets.SECRETS]
    monkeypatch.setattr(secrets, "check", lambda env, folder: rows)


def _wrong_key(monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path) -> None:
    _break_key(world, tmp_path)


def _foreign_files(monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path) -> None:
    _foreign_owner(monkeypatch, world)


@pytest.mark.parametrize(
    ("breaks", "failing", "error", "code", "message"),
    [
        (_no_daemon, "docker daemon", DockerUnavailable, 3, f"{NO_DAEMON}\nsecond line"),
        (_no_compose, "compose", OpsError, 1, "neither `docker compose` nor `docker-compose` is installed"),
        (_no_proxy_image, "images", OpsError, 1,
         "images missing: {PROXY_IMAGE}; run `invoke images.base images.build`"),
        (_bad_secret, "secrets", BadInput, 2,
         "secrets not ready for prod: jwt_secret_key; run `invoke secrets.check --env prod`"),
        (_wrong_key, "certificate", BadInput, 2,
         "the proxy's certificate is unusable: privkey.pem does not match the certificate"),
        (_foreign_files, "file owners", BadInput, 2,
         "{TLS_DIR}/fullchain.pem is owned by uid {owner}, but the containers run as uid {uid}: run the tasks as root "
         "(sudo), or `sudo chown {uid}:{uid}` the files in {TLS_DIR}"),
    ],
    ids=["daemon", "compose", "images", "secrets", "certificate", "owners"],
)  # fmt: skip
def test_require_stops_at_the_first_failing_check_with_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
    world: World,
    ran: list[str],
    tmp_path: Path,
    breaks: Callable[[pytest.MonkeyPatch, World, Path], None],
    failing: str,
    error: type[OpsError],
    code: int,
    message: str,
) -> None:
    breaks(monkeypatch, world, tmp_path)
    said: list[str] = []
    with pytest.raises(OpsError) as caught:
        preflight.require(world.stack, said.append)
    assert type(caught.value) is error
    assert caught.value.code == code
    owner = (world.tls_dir / tls.FULLCHAIN).stat().st_uid
    assert str(caught.value) == message.format(**world.stack.settings, owner=owner, uid=preflight.model.APP_UID)
    assert ran == CHECK_NAMES[: CHECK_NAMES.index(failing) + 1]  # nothing after the failing check ran
    assert world.protected == [] and said == []


def test_every_check_failing_reports_the_daemon_first(
    monkeypatch: pytest.MonkeyPatch, world: World, ran: list[str], tmp_path: Path
) -> None:
    for breaks in (_no_daemon, _no_compose, _no_proxy_image, _bad_secret, _wrong_key, _foreign_files):
        breaks(monkeypatch, world, tmp_path)
    with pytest.raises(DockerUnavailable):
        preflight.require(world.stack)
    assert ran == ["docker daemon"]


def test_a_refusal_of_the_guard_stops_require_after_every_check_passed(
    monkeypatch: pytest.MonkeyPatch, world: World, ran: list[str]
) -> None:
    def refuse(stack: compose.Stack, progress: Any) -> None:
        raise BadInput("port 443 is taken by nginx (pid 42); stop it or set HTTPS_PORT")

    monkeypatch.setattr(guard, "protect", refuse)
    said: list[str] = []
    with pytest.raises(BadInput, match=r"^port 443 is taken by nginx \(pid 42\); stop it or set HTTPS_PORT$"):
        preflight.require(world.stack, said.append)
    assert ran == CHECK_NAMES
    assert said == []  # no "preflight ok"


def test_require_and_rows_run_the_same_checks_in_the_same_order(world: World, ran: list[str]) -> None:
    shown = [c.name for c in preflight.rows(world.stack)]
    assert ran == CHECK_NAMES
    assert shown[: len(CHECK_NAMES)] == CHECK_NAMES
