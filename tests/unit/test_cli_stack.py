"""The `stack` tasks (cli/stack.py): which library call each makes with which stack and options, what it
prints, and the exit code and one `error:` line of each failure. No Docker: every library call that would
reach the daemon is replaced, and a command that would still run fails the test."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from invoke import Exit

from analyticbot_ops import backups, compose, deploy, health, model, rollout
from analyticbot_ops.cli import stack as stack_cli
from analyticbot_ops.errors import DockerUnavailable
from analyticbot_ops.releases import Release
from tests.unit.cli_support import NAMESPACE, fails, record
from tests.unit.cli_support import namespaced_context as context
from tests.unit.cli_support import no_docker as no_docker  # autouse: each test's tasks run isolated
from tests.unit.cli_support import pins as pins  # a fixture the tests ask for by name


def sweep(*verdicts: tuple[str, str, str]) -> health.Sweep:
    """A sweep of services given as (service, docker health, endpoint status)."""
    return health.Sweep(
        "analyticbot-dev",
        [health.ServiceHealth(s, f"{s}-1", "running", h, e) for s, h, e in verdicts],
        0.25,
    )


# --- up, down ------------------------------------------------------------------------------------


def test_up_rolls_out_the_pinned_stack_with_the_configured_options(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], capsys: Any
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(stack_cli.deploy_module, "up", record(calls, 12.34))
    stack_cli.up(context(release_keep=3), env="staging", service=["api", "bot"], timeout="90", allow_downtime=True)
    ((stack,), kwargs), *_ = calls
    assert (stack.env, stack.project) == ("staging", "analyticbot-staging")
    # Images under invoke.yaml's namespace, this checkout's build pinned where nothing names one.
    assert stack.settings["API_IMAGE"] == f"{NAMESPACE}/api:build-1"
    assert stack.settings["BOT_IMAGE"] == f"{NAMESPACE}/bot:latest"
    assert "API_IMAGE" in pins[0]
    assert kwargs["services"] == ["api", "bot"] and kwargs["timeout"] == 90.0
    assert kwargs["allow_downtime"] is True and kwargs["release_keep"] == 3
    assert kwargs["progress"] is stack_cli.progress
    assert capsys.readouterr().out == "analyticbot-staging: healthy after 12.3 s\n"


def test_up_refuses_an_unknown_service_environment_or_timeout_before_deploying(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(stack_cli.deploy_module, "up", record(calls, 1.0))
    assert "unknown service 'web'" in fails(2, stack_cli.up, context(), service=["web"])
    assert "unknown environment 'qa'" in fails(2, stack_cli.up, context(), env="qa")
    assert "--timeout must be a number, got 'soon'" in fails(2, stack_cli.up, context(), timeout="soon")
    assert calls == []


def test_a_bad_invoke_yaml_setting_stops_the_task_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(stack_cli.deploy_module, "up", record(calls, 1.0))
    assert "ops.namespace 'Bad Name'" in fails(2, stack_cli.up, context(namespace="Bad Name"))
    assert calls == []


def test_a_library_failure_or_ctrl_c_is_one_line(monkeypatch: pytest.MonkeyPatch, pins: list[set[str]]) -> None:
    monkeypatch.setattr(stack_cli.deploy_module, "up", record([], OSError(28, "No space left on device")))
    # In words, never Python's `[Errno 28] ...`.
    assert fails(1, stack_cli.up, context()) == "error: no space left on device"
    gone = FileNotFoundError(2, "No such file or directory", "/srv/tls/fullchain.pem")
    monkeypatch.setattr(stack_cli.deploy_module, "up", record([], gone))
    assert fails(1, stack_cli.up, context()) == "error: no such file or directory: /srv/tls/fullchain.pem"
    monkeypatch.setattr(stack_cli.deploy_module, "up", record([], KeyboardInterrupt()))
    with pytest.raises(Exit) as caught:
        stack_cli.up(context())
    assert (caught.value.code, caught.value.message) == (130, "interrupted")


def test_down_keeps_the_volumes_unless_asked(monkeypatch: pytest.MonkeyPatch, pins: list[set[str]]) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(stack_cli.deploy_module, "down", record(calls))
    stack_cli.down(context(), env="prod")
    stack_cli.down(context(), volumes=True)
    assert [(args[0].project, kwargs) for args, kwargs in calls] == [
        ("analyticbot", {"volumes": False}),
        ("analyticbot-dev", {"volumes": True}),
    ]


# --- releases, rollback --------------------------------------------------------------------------

HISTORY = [
    Release(1, "2030-01-01T10:00:00.123456+00:00", "aaaa111", {}),
    Release(2, "2030-01-02T11:30:00.654321+00:00", "bbbb222", {"API_IMAGE": f"{NAMESPACE}/api:id-2"}),
]


def test_releases_lists_newest_first_and_marks_the_running_one(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], capsys: Any
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(stack_cli.release_log, "history", lambda project: asked.append(project) or HISTORY)
    stack_cli.releases(context(), env="prod")
    text = capsys.readouterr().out
    assert asked == ["analyticbot"] and pins == []  # the log only: no image is pinned, no daemon asked
    assert "analyticbot: releases, newest first" in text
    assert text.index("2 (running)") < text.index("aaaa111")
    assert "2030-01-02T11:30:00" in text and "api:id-2" in text and "(the :latest tags)" in text
    assert "654321" not in text  # the time to the second


def test_releases_as_json_and_with_none_recorded(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(stack_cli.release_log, "history", lambda project: HISTORY)
    stack_cli.releases(context(), json=True)
    assert [r["number"] for r in json.loads(capsys.readouterr().out)] == [2, 1]
    monkeypatch.setattr(stack_cli.release_log, "history", lambda project: [])
    stack_cli.releases(context())
    assert "analyticbot-dev: no release recorded yet" in capsys.readouterr().out
    stack_cli.releases(context(), json=True)
    assert json.loads(capsys.readouterr().out) == []


def test_rollback_deploys_the_release_before_the_current_with_its_images(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], capsys: Any
) -> None:
    older = Release(1, "2030-01-01T10:00:00+00:00", "aaaa111", {"API_IMAGE": f"{NAMESPACE}/api:id-1"})
    monkeypatch.setattr(stack_cli.release_log, "history", lambda project, state_dir=None: [older, HISTORY[1]])
    monkeypatch.setattr(stack_cli.release_log, "missing_images", lambda release: [])
    calls: list[Any] = []
    monkeypatch.setattr(stack_cli.deploy_module, "up", record(calls, 4.0))
    stack_cli.rollback(context(release_keep=2), env="staging", timeout="30")
    ((target,), kwargs), *_ = calls
    assert target.project == "analyticbot-staging"
    assert target.settings["API_IMAGE"] == f"{NAMESPACE}/api:id-1"  # the release's image, not the pinned build
    assert kwargs["timeout"] == 30.0 and kwargs["release_keep"] == 2 and kwargs["allow_downtime"] is False
    captured = capsys.readouterr()
    assert "rolling analyticbot-staging back to release #1 (aaaa111)" in captured.err
    assert captured.out == "analyticbot-staging: release #1 (aaaa111) serving, healthy after 4.0 s\n"


def test_rollback_refuses_without_history_or_with_images_gone(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(stack_cli.deploy_module, "up", record(calls, 1.0))
    monkeypatch.setattr(stack_cli.release_log, "history", lambda project, state_dir=None: [])
    assert "no release of analyticbot-dev is recorded here" in fails(2, stack_cli.rollback, context())
    monkeypatch.setattr(stack_cli.release_log, "history", lambda project, state_dir=None: HISTORY)
    monkeypatch.setattr(stack_cli.release_log, "missing_images", lambda release: [f"{NAMESPACE}/api:id-2"])
    message = fails(2, stack_cli.rollback, context(), to="2")
    assert message == f"error: release #2 needs images no longer here: {NAMESPACE}/api:id-2"
    assert calls == []


# --- ps, logs --------------------------------------------------------------------------------------

ROWS = [
    {"service": "api", "container": "api-1", "state": "running", "health": "healthy", "restarts": 0, "uptime": "1:00"},
    {"service": "proxy", "container": "proxy-1", "state": "running", "health": "none", "restarts": 2, "uptime": "0:05"},
]


def test_ps_shows_each_service_and_check_passes_when_all_are_healthy(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(stack_cli.health, "uptimes", lambda project: asked.append(project) or ROWS)
    stack_cli.ps(context(), env="staging", check=True)
    text = capsys.readouterr().out
    assert asked == ["analyticbot-staging"]
    assert "analyticbot-staging" in text and "api-1" in text and "proxy-1" in text and "0:05" in text
    stack_cli.ps(context(), json=True)
    assert json.loads(capsys.readouterr().out) == ROWS


def test_ps_check_exits_5_naming_the_unhealthy_services_or_no_container(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    bad = [
        {**ROWS[0], "health": "unhealthy"},
        {**ROWS[1], "state": "exited"},
        {**ROWS[0], "service": "bot", "health": "starting"},
        {**ROWS[0], "service": "mtproto", "health": "starting"},
    ]
    monkeypatch.setattr(stack_cli.health, "uptimes", lambda project: bad)
    # Before Docker's first check, the check run now decides: the bot's fails, the collector's passes.
    states = {
        name: compose.ServiceState(name, f"{name}-1", "running", "starting", 0, 0, "") for name in ("bot", "mtproto")
    }
    monkeypatch.setattr(stack_cli.compose, "service_states", lambda project: states)
    asked: list[str] = []
    monkeypatch.setattr(
        stack_cli.compose, "probe_ready", lambda state: asked.append(state.service) or state.service == "mtproto"
    )
    stack_cli.ps(context())  # without --check, only the table
    asked.clear()
    message = fails(5, stack_cli.ps, context(), check=True)
    assert message == "error: analyticbot-dev: api, proxy, bot not healthy"
    assert asked == ["bot", "mtproto"]
    monkeypatch.setattr(stack_cli.health, "uptimes", lambda project: [])
    assert fails(5, stack_cli.ps, context(), check=True) == "error: analyticbot-dev: no container"


@pytest.mark.parametrize(("exit_code", "passes"), [(0, True), (1, False)])
def test_ps_check_counts_the_migrate_job_only_when_it_failed(
    monkeypatch: pytest.MonkeyPatch, exit_code: int, passes: bool
) -> None:
    migrate = {**ROWS[0], "service": "migrate", "container": "migrate-1", "state": "exited", "health": "none"}
    monkeypatch.setattr(stack_cli.health, "uptimes", lambda project: [*ROWS, migrate])
    job = compose.ServiceState("migrate", "migrate-1", "exited", "none", exit_code, 0, "")
    monkeypatch.setattr(stack_cli.compose, "service_states", lambda project: {"migrate": job})
    if passes:  # a job that did its work and exited 0 is what a healthy stack looks like
        stack_cli.ps(context(), check=True)
    else:
        assert fails(5, stack_cli.ps, context(), check=True) == "error: analyticbot-dev: migrate not healthy"


@pytest.fixture
def composed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """Every `compose` command a stack would run: (project, args, options)."""
    seen: list[tuple[str, tuple[str, ...], dict[str, Any]]] = []

    def fake(self: compose.Stack, *args: str, **kwargs: Any) -> Any:
        seen.append((self.project, args, kwargs))
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(compose.Stack, "compose", fake)
    return seen


def test_logs_asks_for_the_daemon_then_shows_the_tail(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], composed: list[Any]
) -> None:
    monkeypatch.setattr(stack_cli.docker, "require_daemon", lambda: "27.0")
    stack_cli.logs(context(), env="prod", service=["api", "bot"], follow=True, tail="20")
    stack_cli.logs(context())
    assert composed == [
        ("analyticbot", ("logs", "--tail", "20", "--follow", "api", "bot"), {"capture": False}),
        ("analyticbot-dev", ("logs", "--tail", "100"), {"capture": False}),
    ]


def test_logs_without_a_daemon_or_with_a_bad_tail_exits_before_compose(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], composed: list[Any]
) -> None:
    def no_daemon() -> str:
        raise DockerUnavailable("no Docker daemon answers at unix:///nonexistent/docker.sock")

    monkeypatch.setattr(stack_cli.docker, "require_daemon", no_daemon)
    assert "no Docker daemon answers" in fails(3, stack_cli.logs, context())
    monkeypatch.setattr(stack_cli.docker, "require_daemon", lambda: "27.0")
    assert "--tail must be a whole number, got '1.5'" in fails(2, stack_cli.logs, context(), tail="1.5")
    assert "unknown service 'db'" in fails(2, stack_cli.logs, context(), service=["db"])
    assert composed == []


def test_service_logs_is_the_old_positional_form_of_logs(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], composed: list[Any]
) -> None:
    monkeypatch.setattr(stack_cli.docker, "require_daemon", lambda: "27.0")
    stack_cli.service_logs(context(), "mtproto", env="staging", tail="5")
    assert composed == [("analyticbot-staging", ("logs", "--tail", "5", "mtproto"), {"capture": False})]


# --- restart -----------------------------------------------------------------------------------------


@pytest.fixture
def restarting(monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], composed: list[Any]) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"waited": [], "rolled": [], "reloaded": []}
    monkeypatch.setattr(stack_cli.docker, "require_daemon", lambda: "27.0")
    monkeypatch.setattr(rollout, "can_roll", lambda stack, name: name in ("api", "bot"))
    monkeypatch.setattr(rollout, "containers", lambda stack, name: [{"Id": "p1"}])
    monkeypatch.setattr(deploy, "wait_healthy", lambda *a: seen["waited"].append(a[1:3]))

    def roll(stack: compose.Stack, name: str, *, timeout: float, progress: Any) -> Any:
        seen["rolled"].append((name, timeout))
        return rollout.Outcome(name, "rolled", 3.21, "new container serving")

    monkeypatch.setattr(rollout, "roll", roll)
    monkeypatch.setattr(rollout, "reload_proxy", lambda stack: seen["reloaded"].append(stack.project))
    seen["composed"] = composed
    return seen


def test_restart_rolls_the_apps_reloads_the_proxy_and_restarts_the_rest(
    restarting: dict[str, list[Any]], capsys: Any
) -> None:
    stack_cli.restart(context(), env="staging", timeout="60")
    # The singletons, the backup and monitoring overlays' included (ops.backup and ops.monitoring are on by default).
    singletons = ["postgres", "redis", "mtproto", *model.BACKUPS, *model.MONITORS]
    assert restarting["composed"] == [("analyticbot-staging", ("restart", *singletons), {})]
    assert restarting["waited"] == [(singletons, 60.0)]
    assert restarting["rolled"] == [("api", 60.0), ("bot", 60.0)]
    assert restarting["reloaded"] == ["analyticbot-staging"]
    text = capsys.readouterr().out
    assert "api: rolled in 3.2 s (new container serving)" in text
    assert "proxy: configuration tested and reloaded" in text


def test_restart_of_a_proxy_that_is_not_running_restarts_it(
    monkeypatch: pytest.MonkeyPatch, restarting: dict[str, list[Any]], capsys: Any
) -> None:
    monkeypatch.setattr(rollout, "containers", lambda stack, name: [])
    stack_cli.restart(context(), service=["proxy", "api"])
    assert restarting["composed"] == [("analyticbot-dev", ("restart", "proxy"), {})]
    assert restarting["waited"] == [(["proxy"], 120)]
    assert restarting["rolled"] == [("api", 120)] and restarting["reloaded"] == []
    assert "reloaded" not in capsys.readouterr().out


def test_restart_refuses_a_timeout_of_zero_before_asking_for_the_daemon(
    monkeypatch: pytest.MonkeyPatch, restarting: dict[str, list[Any]]
) -> None:
    def no_daemon() -> str:
        raise AssertionError("the daemon was asked before the options were checked")

    monkeypatch.setattr(stack_cli.docker, "require_daemon", no_daemon)
    assert fails(2, stack_cli.restart, context(), timeout="0") == "error: --timeout must be more than 0 seconds, got 0"
    assert "unknown service 'web'" in fails(2, stack_cli.restart, context(), service=["web"])
    assert restarting["composed"] == []


# --- deploy, setup ---------------------------------------------------------------------------------


def status(ok: bool, *problems: str) -> Any:
    return SimpleNamespace(ok=ok, problems=problems)


@pytest.fixture
def deploying(monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], tmp_path: Path) -> dict[str, list[Any]]:
    """Every library call of deploy and setup, recorded; by default each one succeeds."""
    seen: dict[str, list[Any]] = {k: [] for k in ("daemon", "check", "certs", "bases", "builds", "up", "sweep")}
    monkeypatch.setattr(stack_cli.docker, "require_daemon", lambda: seen["daemon"].append(1) or "27.0")

    def check(env: str, directory: Path) -> list[Any]:
        seen["check"].append((env, directory))
        return []

    monkeypatch.setattr(stack_cli.secrets_module, "check", check)
    monkeypatch.setattr(stack_cli.secrets_module, "check_failed", lambda rows, env: False)
    monkeypatch.setattr(stack_cli.tls, "certificate_status", lambda d: seen["certs"].append(d) or status(True))

    def bases(*names: Any, **kwargs: Any) -> list[Any]:
        seen["bases"].append(kwargs)
        return [SimpleNamespace(name="python-runtime", tag=f"{NAMESPACE}/python-runtime:bookworm")]

    monkeypatch.setattr(stack_cli.baseimages, "build_base_images", bases)
    monkeypatch.setattr(stack_cli.build, "build_services", lambda s, **kw: seen["builds"].append((s, kw)))
    monkeypatch.setattr(stack_cli.deploy_module, "up", lambda stack, **kw: seen["up"].append((stack, kw)) or 7.5)
    monkeypatch.setattr(
        stack_cli.health, "sweep", lambda project: seen["sweep"].append(project) or sweep(("api", "healthy", "healthy"))
    )
    return seen


def test_deploy_checks_secrets_and_certificate_then_deploys_and_sweeps(
    deploying: dict[str, list[Any]], tmp_path: Path, capsys: Any
) -> None:
    stack_cli.deploy(context(release_keep=4), env="dev", timeout="45")
    assert deploying["check"] == [("dev", tmp_path / "secrets")]
    assert deploying["certs"] == [tmp_path / "tls"]
    assert deploying["bases"] == deploying["builds"] == []  # no --build
    ((stack, kwargs),) = deploying["up"]
    assert stack.project == "analyticbot-dev" and stack.settings["API_IMAGE"] == f"{NAMESPACE}/api:build-1"
    assert kwargs["timeout"] == 45.0 and kwargs["release_keep"] == 4 and kwargs["allow_downtime"] is False
    assert deploying["sweep"] == ["analyticbot-dev"]
    captured = capsys.readouterr()
    assert "deploying analyticbot-dev (dev) from docker-compose.yml" in captured.err
    assert "analyticbot-dev: every service healthy after 7.5 s" in captured.out
    assert "swept in 250 ms" in captured.out


def test_deploy_with_build_builds_bases_and_services_under_the_namespace(deploying: dict[str, list[Any]]) -> None:
    stack_cli.deploy(context(base_source="official"), build=True, allow_downtime=True)
    assert deploying["bases"] == [{"source": "official", "namespace": NAMESPACE, "progress": stack_cli.progress}]
    ((services, kwargs),) = deploying["builds"]
    assert list(services) == list(stack_cli.build.SERVICES)
    assert kwargs == {
        "base_images": {"python-runtime": f"{NAMESPACE}/python-runtime:bookworm"},
        "namespace": NAMESPACE,
        "progress": stack_cli.progress,
    }
    assert deploying["up"][0][1]["allow_downtime"] is True


def test_deploy_without_a_daemon_says_so_first(
    monkeypatch: pytest.MonkeyPatch, deploying: dict[str, list[Any]]
) -> None:
    def no_daemon() -> str:
        raise DockerUnavailable("no Docker daemon answers")

    monkeypatch.setattr(stack_cli.docker, "require_daemon", no_daemon)
    monkeypatch.setattr(stack_cli.secrets_module, "check_failed", lambda rows, env: True)
    assert fails(3, stack_cli.deploy, context()) == "error: no Docker daemon answers"
    assert deploying["check"] == [] and deploying["up"] == []


def test_deploy_refuses_secrets_not_ready_or_a_bad_certificate(
    monkeypatch: pytest.MonkeyPatch, deploying: dict[str, list[Any]]
) -> None:
    monkeypatch.setattr(stack_cli.secrets_module, "check_failed", lambda rows, env: True)
    message = fails(2, stack_cli.deploy, context(), env="staging")
    assert message == "error: staging secrets are not ready; run `invoke secrets.check --env staging`"
    monkeypatch.setattr(stack_cli.secrets_module, "check_failed", lambda rows, env: False)
    monkeypatch.setattr(stack_cli.tls, "certificate_status", lambda d: status(False, "expired", "key mismatch"))
    assert fails(2, stack_cli.deploy, context()) == "error: dev certificate: expired; key mismatch"
    assert deploying["up"] == []


def test_deploy_of_prod_without_a_certificate_starts_on_the_bootstrap_one(
    deploying: dict[str, list[Any]], tmp_path: Path
) -> None:
    stack_cli.deploy(context(), env="prod")
    assert deploying["certs"] == []  # the proxy gets a bootstrap certificate; tls.prod replaces it
    assert deploying["up"][0][0].project == "analyticbot"


def test_deploy_exits_5_when_unhealthy_and_0_with_a_note_when_degraded(
    monkeypatch: pytest.MonkeyPatch, deploying: dict[str, list[Any]], capsys: Any
) -> None:
    monkeypatch.setattr(stack_cli.health, "sweep", lambda project: sweep(("api", "unhealthy", "-")))
    assert fails(5, stack_cli.deploy, context()) == "error: analyticbot-dev is unhealthy after the deploy"
    capsys.readouterr()
    monkeypatch.setattr(stack_cli.health, "sweep", lambda project: sweep(("bot", "healthy", "degraded")))
    stack_cli.deploy(context())
    assert "degraded: optional dependencies are down or disabled" in capsys.readouterr().out


def test_setup_dev_protects_the_stack_makes_secrets_certificate_images_then_deploys(
    monkeypatch: pytest.MonkeyPatch, deploying: dict[str, list[Any]], tmp_path: Path, capsys: Any
) -> None:
    protected: list[Any] = []
    made: list[Any] = []
    monkeypatch.setattr(stack_cli.guard, "protect", lambda stack, **kw: protected.append((stack.project, kw)))

    def from_env(env: str, directory: Path, environ: dict[str, str]) -> Any:
        made.append((env, directory, environ))
        outcomes = [SimpleNamespace(name="jwt_secret_key", status="created"), SimpleNamespace(name="x", status="kept")]
        return SimpleNamespace(outcomes=outcomes)

    monkeypatch.setattr(stack_cli.secrets_module, "from_env", from_env)
    monkeypatch.setattr(
        stack_cli.tls, "ensure_dev_certificates", lambda d: made.append(d) or SimpleNamespace(reason="kept")
    )
    stack_cli.setup(context(), secrets=True, timeout="100")
    assert protected == [("analyticbot-dev", {"generating": True, "progress": stack_cli.progress})]
    # Made from nothing (no environment variables), into this stack's folders.
    assert made == [("dev", tmp_path / "secrets", {}), tmp_path / "tls"]
    assert len(deploying["bases"]) == len(deploying["builds"]) == 1
    assert deploying["up"][0][1]["timeout"] == 100.0 and deploying["sweep"] == ["analyticbot-dev"]
    err = capsys.readouterr().err
    assert "dev secrets: created jwt_secret_key" in err and "dev certificate: kept" in err


def test_setup_dev_without_secrets_makes_none(
    monkeypatch: pytest.MonkeyPatch, deploying: dict[str, list[Any]], capsys: Any
) -> None:
    monkeypatch.setattr(stack_cli.guard, "protect", lambda stack, **kw: None)
    monkeypatch.setattr(stack_cli.secrets_module, "from_env", record([], AssertionError("secrets were made")))
    monkeypatch.setattr(stack_cli.tls, "ensure_dev_certificates", lambda d: SimpleNamespace(reason="created"))
    stack_cli.setup(context())
    assert "dev secrets" not in capsys.readouterr().err and deploying["up"]


def test_setup_refuses_secrets_for_prod_and_an_unknown_environment(deploying: dict[str, list[Any]]) -> None:
    message = fails(2, stack_cli.setup, context(), env="prod", secrets=True)
    assert message == "error: --secrets is for dev; make prod's with `invoke secrets.from-env --env prod`"
    assert "unknown environment 'test'" in fails(2, stack_cli.setup, context(), env="test")
    assert deploying["bases"] == []


def test_setup_prod_builds_and_says_what_is_not_ready(
    monkeypatch: pytest.MonkeyPatch, deploying: dict[str, list[Any]], tmp_path: Path
) -> None:
    rows = [
        SimpleNamespace(name="jwt_secret_key", required=True, present=False, valid=None),
        SimpleNamespace(name="bot_token", required=False, present=True, valid=False),
        SimpleNamespace(name="openai_api_key", required=False, present=False, valid=None),
        SimpleNamespace(name="redis_password", required=True, present=True, valid=True),
    ]
    monkeypatch.setattr(stack_cli.secrets_module, "check", lambda env, d: rows)
    message = fails(1, stack_cli.setup, context(), env="prod")
    assert message == "error: prod is not ready: secret jwt_secret_key, secret bot_token"
    assert len(deploying["builds"]) == 1 and deploying["up"] == []  # built, never deployed


def test_setup_prod_is_ready_before_and_after_its_certificate(
    monkeypatch: pytest.MonkeyPatch, deploying: dict[str, list[Any]], tmp_path: Path, capsys: Any
) -> None:
    stack_cli.setup(context(), env="prod")
    assert capsys.readouterr().out.strip() == (
        "prod is ready: run `invoke stack.deploy --env prod`, then `invoke tls.prod --domain D`"
    )
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "fullchain.pem").write_text("a certificate")
    stack_cli.setup(context(), env="prod")
    assert capsys.readouterr().out.strip() == "prod is ready: run `invoke stack.deploy --env prod`"
    assert deploying["certs"] == [tmp_path / "tls"]
    monkeypatch.setattr(stack_cli.tls, "certificate_status", lambda d: status(False, "expires in 3 days"))
    message = fails(1, stack_cli.setup, context(), env="staging")
    assert message == "error: staging certificate: expires in 3 days; run `invoke tls.prod --domain D`"
    assert deploying["up"] == []


# --- backup, restore ------------------------------------------------------------------------------------


def test_backup_writes_to_the_default_folder_keeping_the_configured_number(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], tmp_path: Path, capsys: Any
) -> None:
    calls: list[Any] = []
    pruned = (tmp_path / "analyticbot-dev-20300101.dump", tmp_path / "analyticbot-dev-20300102.dump")
    made = backups.Backup(tmp_path / "analyticbot-dev-20300109.dump", 2048, 31, pruned)
    monkeypatch.setattr(stack_cli.backups, "backup", record(calls, made))
    stack_cli.backup(context(backup_keep=2))
    ((stack, directory), kwargs), *_ = calls
    assert stack.project == "analyticbot-dev" and directory == backups.BACKUP_DIR and kwargs == {"keep": 2}
    captured = capsys.readouterr()
    assert f"backup {made.path}: 2048 bytes, 31 entries, every data block read back" in captured.out
    assert "pruned analyticbot-dev-20300101.dump (keeping the newest 2)" in captured.err
    assert "pruned analyticbot-dev-20300102.dump" in captured.err


def test_backup_to_a_folder_with_an_explicit_keep(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], tmp_path: Path
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(stack_cli.backups, "backup", record(calls, backups.Backup(tmp_path / "b.dump", 1, 1)))
    stack_cli.backup(context(), env="prod", output=str(tmp_path), keep="9")
    ((stack, directory), kwargs), *_ = calls
    assert (stack.project, directory, kwargs) == ("analyticbot", tmp_path, {"keep": 9})
    assert "--keep must be a whole number" in fails(2, stack_cli.backup, context(), keep="all")


def test_backup_refuses_to_keep_fewer_than_one_before_dumping(pins: list[set[str]], tmp_path: Path) -> None:
    # The library's own check (not replaced) comes before the database is asked for anything.
    message = fails(2, stack_cli.backup, context(), output=str(tmp_path), keep="-1")
    assert message == "error: backup retention must keep at least 1 backup, got -1"
    assert list(tmp_path.iterdir()) == []  # nothing dumped, nothing written


def test_backup_verify_checks_a_dump_and_writes_none(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], tmp_path: Path, capsys: Any
) -> None:
    monkeypatch.setattr(stack_cli.backups, "backup", record([], AssertionError("a backup was written")))
    seen: list[Any] = []
    monkeypatch.setattr(stack_cli.backups, "verify", lambda stack, path: seen.append((stack.project, path)) or 44)
    stack_cli.backup(context(), env="staging", verify="backups/x.dump")
    assert seen == [("analyticbot-staging", Path("backups/x.dump"))]
    assert capsys.readouterr().out == "backups/x.dump: whole, 44 entries, every data block read back\n"


def test_restore_passes_the_safety_options_and_names_the_safety_backup(
    monkeypatch: pytest.MonkeyPatch, pins: list[set[str]], tmp_path: Path, capsys: Any
) -> None:
    calls: list[Any] = []
    safety = backups.Backup(tmp_path / "safety.dump", 10, 3)
    monkeypatch.setattr(stack_cli.backups, "restore", record(calls, backups.Restored(5, 40, safety)))
    stack_cli.restore(context(backup_keep=6), "old.dump", env="staging", force=True, allow_foreign=True)
    ((stack, path), kwargs), *_ = calls
    assert (stack.project, path) == ("analyticbot-staging", Path("old.dump"))
    assert kwargs == {"force": True, "allow_foreign": True, "keep": 6, "progress": stack_cli.progress}
    assert capsys.readouterr().out.strip() == (
        f"restored old.dump: 40 entries, 5 tables; the database as it was is in {safety.path}"
    )
    monkeypatch.setattr(stack_cli.backups, "restore", record(calls, backups.Restored(0, 12, None)))
    stack_cli.restore(context(), "new.dump")
    assert calls[-1][1]["force"] is False and calls[-1][1]["allow_foreign"] is False
    assert capsys.readouterr().out == "restored new.dump: 12 entries, 0 tables\n"
