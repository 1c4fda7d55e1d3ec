"""Deploys with Docker, Compose and git faked: what preflight refuses (and what it never reaches), which
command lines `up` issues in which order (the migrate job, rolls, `compose up` and its scope), and when a
release is recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import compose, deploy, docker, engine, model, preflight, releases, rollout, runner, secrets, tls
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.model import Labels
from analyticbot_ops.paths import REPO_ROOT
from analyticbot_ops.tls import backup as backup_tls

from .secrets_support import BOT_TOKEN, populate

PROJECT = "abtest"
REVISION = "abc123def456"


class World:
    """What the fake daemon holds: images, containers (inspect-shaped), and the calls that reached it."""

    def __init__(self) -> None:
        self.images: set[str] = set()
        self.containers: list[dict[str, Any]] = []
        self.daemon_checked = 0

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        if kind == "image":
            return {"Id": f"sha256:{name}"} if name in self.images else None
        return None

    def by_label(self, label: str) -> list[dict[str, Any]]:
        assert label == f"{Labels.PROJECT}={PROJECT}"
        return list(self.containers)

    def require_daemon(self) -> str:
        self.daemon_checked += 1
        return "20.10.24"

    def run(self, service: str, config_hash: str, *, name: str | None = None) -> None:
        """A running container of the service, created by Compose with that configuration hash."""
        self.containers.append(
            {
                "Name": f"/{name or f'{PROJECT}-{service}-1'}",
                "Created": f"2024-05-01T00:00:0{len(self.containers)}Z",
                "Config": {
                    "Labels": {
                        Labels.PROJECT: PROJECT,
                        Labels.SERVICE: service,
                        Labels.ONEOFF: "False",
                        Labels.CONFIG_HASH: config_hash,
                    }
                },
                "State": {"Status": "running", "Running": True, "Health": {"Status": "healthy"}},
            }
        )


def _no_engine(*_a: Any, **_k: Any) -> Any:
    raise AssertionError("a unit test reached the Engine API")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    state = World()
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient("/usr/bin/docker", "20.10.24", False))
    monkeypatch.setattr(docker, "require_daemon", state.require_daemon)
    monkeypatch.setattr(docker, "inspect", state.inspect)
    monkeypatch.setattr(docker, "containers_by_label", state.by_label)
    for name in ("inspect", "containers", "logs", "server_version", "history"):
        monkeypatch.setattr(engine, name, _no_engine)
    monkeypatch.setattr(compose, "compose_command", lambda: ["docker-compose"])
    monkeypatch.setattr(preflight, "compose_command", lambda: ["docker-compose"])
    return state


@pytest.fixture
def fake(world: World) -> Iterator[runner.FakeRunner]:
    fake = runner.FakeRunner()
    fake.answer("git", "log", stdout=f"{REVISION} 2024-05-01T10:00:00+00:00\n")
    fake.answer("git", "status", stdout="")
    with runner.use(fake):
        yield fake


def _stack(
    tmp_path: Path, env: str = "prod", monitoring: bool = False, backup: bool = False, **overrides: str
) -> compose.Stack:
    """The deploy's orchestration is the same with the monitoring and backup overlays: most tests leave them out."""
    settings = {"SECRETS_DIR": str(tmp_path / "secrets"), "TLS_DIR": str(tmp_path / "tls"), **overrides}
    return compose.load_stack(env, project=PROJECT, overrides=settings, monitoring=monitoring, backup=backup)


def _compose(stack: compose.Stack, *args: str) -> str:
    """One compose command line as FakeRunner.commands() shows it."""
    return " ".join(stack.command(*args))


def _hashes(fake: runner.FakeRunner, stack: compose.Stack, **hashes: str) -> None:
    """What `compose config --hash '*'` prints for the files as they are now."""
    lines = "".join(f"{service} {value}\n" for service, value in hashes.items())
    fake.answer(*stack.command("config", "--hash", "*"), stdout=lines)


def _all_images(world: World, stack: compose.Stack) -> None:
    world.images.update(stack.settings[s.image_variable] for s in stack.services)


# --- images and preflight ------------------------------------------------------------------------------


def test_each_service_needs_the_image_its_setting_names_and_the_job_shares_the_apis(
    world: World, tmp_path: Path
) -> None:
    # What preflight wants of a daemon that has no image at all: each one, once.
    stack = _stack(tmp_path, API_IMAGE="registry.example/api:r7")
    images = preflight.missing_images(stack)
    settings = ("POSTGRES_IMAGE", "REDIS_IMAGE", "API_IMAGE", "BOT_IMAGE", "MTPROTO_IMAGE", "PROXY_IMAGE")
    assert sorted(images) == sorted(stack.settings[name] for name in settings)
    assert images.count("registry.example/api:r7") == 1  # the migrate job runs the api's image
    monitored = preflight.missing_images(_stack(tmp_path, monitoring=True, API_IMAGE="registry.example/api:r7"))
    assert len(set(monitored) - set(images)) == len(model.MONITORS)
    assert "analyticbot/postgres-exporter:bookworm" in monitored
    # The backup services run pgBackRest from the postgres image: nothing more to build or pull.
    backed = preflight.missing_images(_stack(tmp_path, backup=True, API_IMAGE="registry.example/api:r7"))
    assert backed == images


def test_missing_images_are_the_ones_the_daemon_does_not_have(world: World, tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    _all_images(world, stack)
    assert preflight.missing_images(stack) == []
    world.images.discard(stack.settings["BOT_IMAGE"])
    assert preflight.missing_images(stack) == [stack.settings["BOT_IMAGE"]]


def test_a_missing_image_shared_by_two_services_is_named_once(world: World, tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    _all_images(world, stack)
    world.images.discard(stack.settings["API_IMAGE"])
    assert preflight.missing_images(stack) == [stack.settings["API_IMAGE"]]


@pytest.fixture
def protected(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """guard.protect (tested in test_guard.py), recorded."""
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(preflight.guard, "protect", lambda stack, progress: calls.append((stack.project, progress)))
    return calls


def test_preflight_passes_with_images_valid_secrets_and_a_certificate_that_fits(
    world: World, fake: runner.FakeRunner, protected: list, tmp_path: Path
) -> None:
    stack = _stack(tmp_path, env="dev")
    _all_images(world, stack)
    populate(tmp_path / "secrets", "dev")
    tls.ensure_dev_certificates(tmp_path / "tls")
    said: list[str] = []
    preflight.require(stack, said.append)
    assert world.daemon_checked == 1
    assert protected == [(PROJECT, said.append)]
    assert said == [
        "preflight ok: images, secrets (dev), certificate (CN=localhost, 364 days left), checkout, ports, subnets",
    ]
    assert fake.commands() == []  # checks only: nothing started, nothing created


def test_preflight_refuses_missing_images_before_looking_at_secrets(
    world: World, protected: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack(tmp_path)
    _all_images(world, stack)
    world.images.discard(stack.settings["PROXY_IMAGE"])
    monkeypatch.setattr(preflight.secrets, "check", _no_engine)  # the secrets check is never reached
    with pytest.raises(OpsError) as caught:
        preflight.require(stack, lambda _m: None)
    assert type(caught.value) is OpsError and caught.value.code == 1
    assert str(caught.value) == (
        f"images missing: {stack.settings['PROXY_IMAGE']}; run `invoke images.base images.build`"
    )
    assert protected == []


def test_preflight_names_every_secret_that_is_missing_or_invalid(
    world: World, protected: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack(tmp_path)
    _all_images(world, stack)
    populate(tmp_path / "secrets", "dev")  # no bot_token: prod needs one
    (tmp_path / "secrets" / "telegram_webhook_secret").write_text("short")
    monkeypatch.setattr(preflight, "needs_bootstrap_certificate", _no_engine)  # the certificate is never looked at
    with pytest.raises(BadInput) as caught:
        preflight.require(stack, lambda _m: None)
    assert str(caught.value) == (
        "secrets not ready for prod: telegram_webhook_secret, bot_token; run `invoke secrets.check --env prod`"
    )
    assert caught.value.code == 2
    assert protected == []


def test_preflight_refuses_a_certificate_whose_key_does_not_match(
    world: World, protected: list, tmp_path: Path
) -> None:
    stack = _stack(tmp_path, env="dev")
    _all_images(world, stack)
    populate(tmp_path / "secrets", "dev")
    tls.ensure_dev_certificates(tmp_path / "tls")
    tls.ensure_dev_certificates(tmp_path / "other")
    (tmp_path / "tls" / tls.PRIVKEY).write_bytes((tmp_path / "other" / tls.PRIVKEY).read_bytes())
    with pytest.raises(BadInput, match=r"^the proxy's certificate is unusable: privkey.pem does not match"):
        preflight.require(stack, lambda _m: None)
    assert protected == []


def test_preflight_of_prod_without_a_certificate_counts_on_a_bootstrap_one(
    world: World, fake: runner.FakeRunner, protected: list, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    _all_images(world, stack)
    populate(tmp_path / "secrets", "prod", BOT_TOKEN=BOT_TOKEN)
    said: list[str] = []
    preflight.require(stack, said.append)
    assert said == [
        "preflight ok: images, secrets (prod), certificate (none yet (a bootstrap certificate will let nginx "
        "start)), checkout, ports, subnets"
    ]
    assert not (tmp_path / "tls").exists()  # preflight writes nothing
    assert len(protected) == 1


def test_only_staging_and_prod_without_any_certificate_file_need_a_bootstrap_one(tmp_path: Path) -> None:
    assert not preflight.needs_bootstrap_certificate(_stack(tmp_path, env="dev"))
    prod = _stack(tmp_path)
    assert preflight.needs_bootstrap_certificate(prod)
    assert preflight.needs_bootstrap_certificate(_stack(tmp_path, env="staging"))
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / tls.PRIVKEY).write_text("a key without its certificate")
    assert not preflight.needs_bootstrap_certificate(prod)  # half a pair is for a person to sort out


def _owned_files(tmp_path: Path) -> compose.Stack:
    stack = _stack(tmp_path)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "jwt_secret_key").write_text("x")
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / tls.FULLCHAIN).write_text("cert")
    return stack


def test_ownership_is_not_checked_as_root_who_chowns_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _owned_files(tmp_path)
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    preflight.ownership(stack)


def test_a_user_other_than_root_is_told_which_file_the_containers_cannot_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _owned_files(tmp_path)
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    owner = (tmp_path / "secrets" / "jwt_secret_key").stat().st_uid
    if owner == secrets.SERVICE_UIDS["api"]:
        pytest.skip("the test runs as the containers' uid")
    with pytest.raises(BadInput) as caught:
        preflight.ownership(stack)
    assert str(caught.value) == (
        f"{tmp_path / 'secrets' / 'jwt_secret_key'} is owned by uid {owner}, but the containers run as uid 10001: "
        f"run the tasks as root (sudo), or `sudo chown 10001:10001` the files in {tmp_path / 'secrets'}"
    )
    # Files the containers' uid owns pass (the privkey is absent: nothing to check).
    monkeypatch.setattr(preflight.model, "APP_UID", owner)
    preflight.ownership(stack)


def test_preflight_checks_ownership_as_a_user_other_than_root(
    world: World, protected: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack(tmp_path, env="dev")
    _all_images(world, stack)
    populate(tmp_path / "secrets", "dev")
    tls.ensure_dev_certificates(tmp_path / "tls")
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(preflight.model, "APP_UID", 4242)  # nobody's files
    with pytest.raises(BadInput) as caught:
        preflight.require(stack, lambda _m: None)
    # The first foreign file in the folder's listing is named, with its real owner.
    named = Path(str(caught.value).split(" is owned by uid ")[0])
    assert named.parent == tmp_path / "secrets" and named.is_file()
    assert str(caught.value) == (
        f"{named} is owned by uid {named.stat().st_uid}, but the containers run as uid 4242: "
        f"run the tasks as root (sudo), or `sudo chown 4242:4242` the files in {tmp_path / 'secrets'}"
    )
    assert caught.value.code == 2
    assert protected == []


# --- the migrate job --------------------------------------------------------------------------------


def test_the_migrate_job_runs_once_without_its_dependencies(fake: runner.FakeRunner, tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    deploy.run_migrate(stack)
    assert fake.commands() == [_compose(stack, "run", "--rm", "--no-deps", "-T", "migrate")]
    assert fake.calls[0].env == stack.settings and fake.calls[0].cwd == REPO_ROOT


def test_a_failed_migrate_job_stops_the_deploy_with_its_last_twelve_lines(
    fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    out = "".join(f"line {n}\n\n" for n in range(1, 16))
    fake.answer(*stack.command("run"), stdout=out, stderr="alembic: boom\n", returncode=3)
    with pytest.raises(OpsError) as caught:
        deploy.run_migrate(stack)
    message = str(caught.value)
    assert message.startswith("the migrate job failed (exit code 3), so nothing that needs it was started. ")
    assert message.endswith("Its last log lines:\n" + "\n".join(f"line {n}" for n in range(5, 16)) + "\nalembic: boom")
    assert "line 4\n" not in message and "postgres_password" not in message


def test_a_migrate_job_refused_by_postgres_says_the_volume_has_another_password(
    fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    fake.answer(
        *stack.command("run"),
        stderr='FATAL:  password authentication failed for user "analyticbot"\n',
        returncode=1,
    )
    with pytest.raises(OpsError, match=r"another postgres_password.*`invoke stack\.down --env prod --volumes`"):
        deploy.run_migrate(stack)


# --- up ----------------------------------------------------------------------------------------------


class Recorder:
    """up's collaborators tested elsewhere: each call recorded, with how many commands had run by then."""

    def __init__(self, fake: runner.FakeRunner) -> None:
        self.fake = fake
        self.events: list[tuple[Any, ...]] = []
        self.fail_wait: Exception | None = None

    def preflight(self, stack: compose.Stack, progress: Any) -> None:
        self.events.append(("preflight", stack.project))

    def roll(self, stack: compose.Stack, service: str, *, timeout: float, progress: Any) -> rollout.Outcome:
        self.events.append(("roll", service, timeout, len(self.fake.calls)))
        return rollout.Outcome(service, "rolled", 2.25, f"{PROJECT}-{service}-1 -> {PROJECT}-{service}-2")

    def wait_healthy(self, stack: compose.Stack, services: list, timeout: float, progress: Any, **kw: Any) -> float:
        process = kw["compose_process"]  # None: compose up had nothing to do, so it was not run
        self.events.append(("wait", tuple(services), timeout, None if process is None else process.returncode))
        if self.fail_wait:
            raise self.fail_wait
        return 12.5

    def bootstrap(self, tls_dir: Path, domain: str) -> bool:
        self.events.append(("bootstrap", tls_dir, domain))
        return True

    def record_release(self, stack: compose.Stack, revision: str, *, keep: int) -> releases.Release:
        self.events.append(("release", revision, keep))
        return releases.Release(7, "2024-05-01T10:00:00Z", revision)

    def prune(self, *, keep: int) -> list[str]:
        self.events.append(("prune", keep))
        return ["analyticbot/api:r1", "analyticbot/bot:r1"]

    def keep_alive(self, stack: compose.Stack, progress: Any) -> list[str]:
        self.events.append(("keep_alive", len(self.fake.calls)))
        return []

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == name]


@pytest.fixture
def rec(fake: runner.FakeRunner, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(fake)
    monkeypatch.setattr(deploy.preflight, "require", recorder.preflight)
    monkeypatch.setattr(deploy.rollout, "roll", recorder.roll)
    monkeypatch.setattr(deploy, "wait_healthy", recorder.wait_healthy)
    monkeypatch.setattr(deploy.tls, "write_bootstrap_certificate", recorder.bootstrap)
    monkeypatch.setattr(deploy.releases, "record_release", recorder.record_release)
    monkeypatch.setattr(deploy.releases, "prune", recorder.prune)
    monkeypatch.setattr(deploy.rollout, "keep_alive", recorder.keep_alive)
    return recorder


HASHES = {"postgres": "p1", "redis": "r1", "migrate": "m2", "api": "a2", "bot": "b2", "mtproto": "t1", "proxy": "x1"}


def _running(world: World, **hashes: str) -> None:
    """Every long-running service runs, with the hash given or the one HASHES says (unchanged)."""
    for service in ("postgres", "redis", "api", "bot", "mtproto", "proxy"):
        world.run(service, hashes.get(service, HASHES[service]))


def _up(stack: compose.Stack, *scope: str) -> str:
    return _compose(stack, "up", "-d", "--no-build", "--remove-orphans", *scope)


def test_a_timeout_that_is_not_positive_is_refused_before_any_check(
    rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    with pytest.raises(BadInput, match=r"^--timeout must be more than 0 seconds, got -1$"):
        deploy.up(_stack(tmp_path), timeout=-1)
    assert rec.events == [] and fake.commands() == []


def test_a_fresh_stack_starts_in_dependency_order_and_its_release_is_recorded(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path, DOMAIN="bot.example.org")
    _hashes(fake, stack, **HASHES)
    said: list[str] = []
    seconds = deploy.up(stack, timeout=90, progress=said.append, release_keep=4)
    assert seconds == 12.5
    assert fake.commands() == [
        _compose(stack, "config", "--hash", "*"),
        _up(stack),  # no --no-deps: Compose starts the migrate job before what needs it
        "git log -1 --format=%h %cI --abbrev=12 -- .",
        "git status --porcelain -- .",
    ]
    started = fake.calls[1]
    assert started.env == stack.settings and started.cwd == REPO_ROOT
    assert rec.events == [
        ("preflight", PROJECT),
        ("bootstrap", Path(stack.settings["TLS_DIR"]), "bot.example.org"),
        ("wait", ("postgres", "redis", "api", "bot", "mtproto", "proxy"), 90, 0),
        ("keep_alive", 2),  # once every service is ready: the proxy's upstream groups name the new containers
        ("release", REVISION, 4),
        ("prune", 4),
    ]
    assert said == [
        "wrote a 1-day bootstrap certificate; run `invoke tls.prod --domain D` once the stack is up",
        *(f"{s}: starting" for s in ("postgres", "redis", "api", "bot", "mtproto", "proxy")),
        f"release #7 ({REVISION}) recorded for {PROJECT}",
        "pruned image tags no kept release uses: analyticbot/api:r1, analyticbot/bot:r1",
    ]
    # Compose mounts every declared secret: the optional ones get empty placeholders first.
    assert (tmp_path / "secrets" / "openai_api_key").read_text() == ""


def test_with_the_backup_overlay_up_issues_the_backup_paths_certificates_once(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path, backup=True)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _hashes(fake, stack, **HASHES, **{"backup-agent": "g1", "backup-repo": "h1"})
    said: list[str] = []
    deploy.up(stack, progress=said.append)
    folder = tmp_path / "secrets" / backup_tls.FOLDER
    assert "backup path: issued the TLS certificates of ca, backup-agent, backup-repo" in said
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{name}.{ext}" for name in ("ca", "backup-agent", "backup-repo") for ext in ("crt", "key")
    )
    assert rec.named("wait")[0][1] == ("postgres", "redis", "api", "bot", "mtproto", "proxy", *model.BACKUPS)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    said.clear()
    deploy.up(stack, progress=said.append)
    assert not any(line.startswith("backup path:") for line in said)  # valid ones are kept
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_without_the_backup_overlay_up_issues_no_backup_certificate(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    _hashes(fake, stack, **HASHES)
    said: list[str] = []
    deploy.up(stack, progress=said.append)
    assert not (tmp_path / "secrets" / backup_tls.FOLDER).exists()
    assert not any(line.startswith("backup path:") for line in said)


def test_a_new_release_on_a_running_stack_migrates_first_then_rolls_the_http_services(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls_dir = tmp_path / "tls"
    tls.ensure_dev_certificates(tls_dir)  # a certificate exists: no bootstrap
    _running(world, api="a1", bot="b1")
    _hashes(fake, stack, **HASHES)
    said: list[str] = []
    deploy.up(stack, timeout=60, progress=said.append)
    # Rolled, the api and bot run the new configuration; the rest was unchanged: nothing left for compose up.
    assert fake.commands() == [
        _compose(stack, "config", "--hash", "*"),
        _compose(stack, "run", "--rm", "--no-deps", "-T", "migrate"),
        "git log -1 --format=%h %cI --abbrev=12 -- .",
        "git status --porcelain -- .",
    ]
    assert rec.named("wait")[0][3] is None
    # Both rolls come after the migrate job (2 commands run) and before compose up.
    assert rec.named("roll") == [("roll", "api", 60, 2), ("roll", "bot", 60, 2)]
    assert not rec.named("bootstrap")
    assert rec.named("release") == [("release", REVISION, releases.DEFAULT_KEEP)]
    assert said[:2] == [
        f"api: rolled in 2.2 s ({PROJECT}-api-1 -> {PROJECT}-api-2)",
        f"bot: rolled in 2.2 s ({PROJECT}-bot-1 -> {PROJECT}-bot-2)",
    ]
    assert said[2:8] == [
        "postgres: unchanged, left running",
        "redis: unchanged, left running",
        "api: rolled without a gap",
        "bot: rolled without a gap",
        "mtproto: unchanged, left running",
        "proxy: unchanged, left running",
    ]


def test_an_http_service_that_cannot_roll_is_recreated_and_said_so(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _running(world, api="a1")
    world.run("api", "a1", name=f"{PROJECT}-api-2")  # two at once: no roll
    _hashes(fake, stack, **HASHES)
    said: list[str] = []
    deploy.up(stack, progress=said.append)
    assert rec.named("roll") == []
    assert "api: changed: recreated (a singleton)" in said
    assert _compose(stack, "run", "--rm", "--no-deps", "-T", "migrate") in fake.commands()


def test_when_only_the_bot_changes_no_migrate_job_runs(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _running(world, bot="b1", proxy="x0")  # and the proxy's settings: compose up recreates it
    _hashes(fake, stack, **HASHES)
    deploy.up(stack, allow_downtime=True)
    assert fake.commands()[:2] == [
        _compose(stack, "config", "--hash", "*"),
        _up(stack, "--no-deps", "postgres", "redis", "api", "bot", "mtproto", "proxy"),  # each judged on its own
    ]
    assert [e[1] for e in rec.named("roll")] == ["bot"]


def test_some_services_of_a_running_stack_are_updated_alone_and_no_release_is_recorded(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _running(world, api="a1", bot="b1")
    _hashes(fake, stack, **HASHES)
    said: list[str] = []
    deploy.up(stack, services=["bot"], progress=said.append)
    # Rolled, the bot needs no compose up; the api changed too, but was not asked for.
    assert fake.commands() == [_compose(stack, "config", "--hash", "*")]
    assert [e[1] for e in rec.named("roll")] == ["bot"]
    assert rec.named("wait") == [("wait", ("bot",), 180.0, None)]
    assert not rec.named("release") and not rec.named("prune")
    assert said[-1] == "bot: rolled without a gap"


def test_some_services_of_a_fresh_stack_start_with_their_dependencies(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    _hashes(fake, stack, **HASHES)
    deploy.up(stack, services=["api"])
    assert fake.commands() == [_compose(stack, "config", "--hash", "*"), _up(stack, "api")]


def test_recreating_the_proxy_is_refused_before_anything_changes(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    _running(world, proxy="x0", api="a1")
    _hashes(fake, stack, **HASHES)
    with pytest.raises(BadInput, match="--allow-downtime"):
        deploy.up(stack)
    assert fake.commands() == [_compose(stack, "config", "--hash", "*")]
    assert rec.events == [("preflight", PROJECT)]
    assert not (tmp_path / "secrets").exists() and not (tmp_path / "tls").exists()


def test_with_allow_downtime_the_proxy_is_recreated(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _running(world, proxy="x0")
    _hashes(fake, stack, **HASHES)
    said: list[str] = []
    deploy.up(stack, allow_downtime=True, progress=said.append)
    assert "proxy: changed: recreated (a singleton)" in said
    assert fake.commands()[1] == _up(stack, "--no-deps", "postgres", "redis", "api", "bot", "mtproto", "proxy")


def test_a_failed_migrate_job_stops_before_any_roll_and_before_compose_up(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _running(world, api="a1")
    _hashes(fake, stack, **HASHES)
    fake.answer(*stack.command("run"), stderr="relation does not exist\n", returncode=1)
    with pytest.raises(OpsError, match="the migrate job failed"):
        deploy.up(stack)
    assert fake.commands() == [
        _compose(stack, "config", "--hash", "*"),
        _compose(stack, "run", "--rm", "--no-deps", "-T", "migrate"),
    ]
    assert not rec.named("roll") and not rec.named("wait")


def test_a_stack_that_never_gets_healthy_records_no_release(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    _hashes(fake, stack, **HASHES)
    rec.fail_wait = OpsError("api did not become healthy")
    with pytest.raises(OpsError, match="api did not become healthy"):
        deploy.up(stack)
    assert not rec.named("release")
    assert not any(c.startswith("git") for c in fake.commands())


def test_compose_files_that_do_not_merge_stop_the_plan(world: World, fake: runner.FakeRunner, tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    fake.answer(*stack.command("config"), stderr="services.api.ports must be a list\n", returncode=1)
    with pytest.raises(BadInput, match=r"the prod compose files do not merge: services\.api\.ports must be a list"):
        deploy.plan(stack)


# --- down and subnets ----------------------------------------------------------------------------


def test_down_keeps_volumes_unless_asked(fake: runner.FakeRunner, tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    deploy.down(stack)
    deploy.down(stack, volumes=True)
    assert fake.commands() == [
        _compose(stack, "down", "--remove-orphans", "--timeout", "20"),
        _compose(stack, "down", "--remove-orphans", "--timeout", "20", "--volumes"),
    ]


def _networks(fake: runner.FakeRunner, *subnets: list[str]) -> None:
    ids = [f"n{i}" for i in range(len(subnets))]
    fake.answer("docker", "network", "ls", "-q", stdout="".join(f"{i}\n" for i in ids))
    nets = [
        {"Name": i, "IPAM": {"Config": [{"Subnet": s} for s in found]} if found else None}
        for i, found in zip(ids, subnets, strict=True)
    ]
    fake.answer("docker", "network", "inspect", *ids, stdout=json.dumps(nets))


def test_used_subnets_are_every_subnet_of_every_docker_network(fake: runner.FakeRunner) -> None:
    _networks(fake, ["172.17.0.0/16"], [], ["10.9.0.0/23", "fd00::/64"])
    assert [str(n) for n in deploy.used_subnets()] == ["172.17.0.0/16", "10.9.0.0/23", "fd00::/64"]
    assert fake.commands() == ["docker network ls -q", "docker network inspect n0 n1 n2"]


def test_a_network_removed_between_the_listing_and_the_inspect_is_skipped(fake: runner.FakeRunner) -> None:
    """Another user of the daemon removed n1 meanwhile (seen in CI with tests on parallel workers): the CLI
    still prints the others and exits 1 saying which is gone; the subnets of the others are what count."""
    fake.answer("docker", "network", "ls", "-q", stdout="n0\nn1\n")
    nets = [{"Name": "n0", "IPAM": {"Config": [{"Subnet": "172.30.1.0/24"}]}}]
    fake.answer(
        "docker", "network", "inspect", "n0", "n1",
        stdout=json.dumps(nets), stderr="Error: No such network: n1\n", returncode=1,
    )  # fmt: skip
    assert [str(n) for n in deploy.used_subnets()] == ["172.30.1.0/24"]


def test_any_other_inspect_failure_is_an_error(fake: runner.FakeRunner) -> None:
    fake.answer("docker", "network", "ls", "-q", stdout="n0\n")
    fake.answer(
        "docker", "network", "inspect", "n0",
        stderr="Error response from daemon: i/o timeout\n", returncode=1,
    )  # fmt: skip
    with pytest.raises(OpsError, match="docker network inspect failed: Error response from daemon: i/o timeout"):
        deploy.used_subnets()


def test_no_networks_means_no_inspect(fake: runner.FakeRunner) -> None:
    assert deploy.used_subnets() == []
    assert fake.commands() == ["docker network ls -q"]


def test_free_subnets_overlap_no_network_nor_each_other(fake: runner.FakeRunner) -> None:
    _networks(fake, ["10.9.0.0/23"])
    chosen = deploy.free_subnets(2, pool="10.9.0.0/22", seed=1)
    assert sorted(chosen) == ["10.9.2.0/24", "10.9.3.0/24"]
    assert deploy.free_subnets(1, pool="10.9.0.0/22", seed=5) == deploy.free_subnets(1, pool="10.9.0.0/22", seed=5)


def test_a_pool_without_enough_free_subnets_is_an_error(fake: runner.FakeRunner) -> None:
    _networks(fake, ["10.9.0.0/23"])
    with pytest.raises(OpsError, match=r"^no 3 free /24 subnets left in 10.9.0.0/22$"):
        deploy.free_subnets(3, pool="10.9.0.0/22")


def test_a_started_compose_process_is_waited_for_when_still_running(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack(tmp_path)
    _hashes(fake, stack, **HASHES)
    waited: list[float | None] = []

    class Running:
        returncode = None

        def poll(self) -> None:
            return None

        def wait(self, timeout: float | None = None) -> int:
            waited.append(timeout)
            return 0

    monkeypatch.setattr(deploy.runner, "start", lambda *a, **k: Running())
    rec.fail_wait = OpsError("timed out")
    with pytest.raises(OpsError, match="timed out"):
        deploy.up(stack)
    assert waited == [60]


def test_a_rerun_with_nothing_changed_runs_no_compose_up_and_only_confirms_health(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _running(world)
    _hashes(fake, stack, **HASHES)
    said: list[str] = []
    deploy.up(stack, progress=said.append)
    assert not [c for c in fake.commands() if " up " in c or " run " in c]
    assert rec.named("wait") == [("wait", ("postgres", "redis", "api", "bot", "mtproto", "proxy"), 180.0, None)]
    assert "api: unchanged, left running" in said


def test_a_service_no_compose_file_names_any_more_is_still_removed(
    world: World, rec: Recorder, fake: runner.FakeRunner, tmp_path: Path
) -> None:
    stack = _stack(tmp_path)
    tls.ensure_dev_certificates(tmp_path / "tls")
    _running(world)
    world.run("worker", "w1")  # an orphan: `up --remove-orphans` is what removes it
    _hashes(fake, stack, **HASHES)
    deploy.up(stack)
    assert _up(stack, "--no-deps", "postgres", "redis", "api", "bot", "mtproto", "proxy") in fake.commands()
    assert deploy.orphans(stack, deploy.plan(stack)) == ["worker"]
