"""The `env` tasks (cli/environment.py): effective settings and their sources, .env templates and validation
against a .env file in tmp_path, and the configuration and preflight checks (replaced: they need Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import compose, environment, model, preflight, releases
from analyticbot_ops.cli import environment as env_cli
from tests.unit.cli_support import NAMESPACE, context, fails
from tests.unit.cli_support import no_docker as no_docker  # autouse: each test's tasks run isolated

# --- check ------------------------------------------------------------------------------------------------


def test_check_as_json_gives_each_setting_with_its_source(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / ".env.staging").write_text("HTTP_PORT=9443\n")
    env_cli.check(context(), env="staging", json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["HTTP_PORT"] == {"value": "9443", "source": ".env.staging"}
    assert data["SECRETS_DIR"] == {"value": str(tmp_path / "secrets"), "source": "environment"}
    assert data["PROXY_BIND"]["source"] == "default"
    assert data["API_IMAGE"]["source"] == "ops.namespace"


def test_check_as_a_table_titled_with_the_project(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / ".env.dev").write_text("COMPOSE_PROJECT_NAME=mybot\n")
    env_cli.check(context())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].strip() == "dev: project mybot"
    assert any("COMPOSE_PROJECT_NAME" in line and "mybot" in line and ".env.dev" in line for line in lines)
    keys = [line.split()[1] for line in lines if line.startswith("│")]
    assert keys == sorted(keys)


@pytest.mark.parametrize("json_output", [True, False])
def test_check_shows_images_under_the_configured_namespace(json_output: bool, capsys: Any) -> None:
    env_cli.check(context(namespace=NAMESPACE), json=json_output)
    out = capsys.readouterr().out
    deployed = env_cli.stack_of(context(namespace=NAMESPACE), "dev").settings["API_IMAGE"]
    assert deployed == f"{NAMESPACE}/api:latest"
    if json_output:
        assert json.loads(out)["API_IMAGE"]["value"] == deployed
    else:
        assert deployed in out


def test_a_tasks_stack_has_the_overlays_invoke_yaml_turns_on() -> None:
    on = env_cli.stack_of(context(), "dev")
    assert on.monitoring and on.backup and compose.BACKUP_FILE in {f.name for f in on.files}
    off = env_cli.stack_of(context(backup=False), "dev")
    assert off.monitoring and not off.backup and compose.BACKUP_FILE not in {f.name for f in off.files}
    # A caller that cannot run an overlay leaves it out whatever invoke.yaml says (the Swarm tasks).
    assert not env_cli.stack_of(context(), "prod", backup=False).backup


def test_check_refuses_an_unknown_environment_or_a_bad_setting(tmp_path: Path) -> None:
    assert "unknown environment 'local'" in fails(2, env_cli.check, context(), env="local")
    (tmp_path / ".env.dev").write_text("HTTP_PORT=eighty\n")
    assert fails(2, env_cli.check, context()) == "error: .env.dev: HTTP_PORT must be a port number, got 'eighty'"


# --- template --------------------------------------------------------------------------------------------


def test_template_prints_the_environment_defaults(capsys: Any) -> None:
    env_cli.template(context(), env="prod")
    text = capsys.readouterr().out
    assert text == environment.template("prod")
    assert "# Settings for the prod stack" in text and "\nHTTPS_PORT=" in text


def test_template_write_creates_the_file_once(tmp_path: Path, capsys: Any) -> None:
    env_cli.template(context(), env="staging", write=True)
    path = tmp_path / ".env.staging"
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    assert path.read_text() == environment.template("staging")
    path.write_text("HTTP_PORT=1\n")
    message = fails(2, env_cli.template, context(), env="staging", write=True)
    assert message == "error: .env.staging exists and is never overwritten; edit it, or remove it first"
    assert path.read_text() == "HTTP_PORT=1\n"


# --- validate ---------------------------------------------------------------------------------------------


def test_validate_without_a_file_warns_that_defaults_apply(capsys: Any) -> None:
    env_cli.validate(context())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("warning: .env.dev does not exist: the defaults apply")
    assert lines[-1] == "dev settings are valid"


def test_validate_prints_every_finding_and_exits_2_on_an_error(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / ".env.prod").write_text("HTTP_PORT=99999\nDB_PASSWORD=hunter2\nFAVOURITE_COLOUR=blue\n")
    assert fails(2, env_cli.validate, context(), env="prod") == "error: 2 problem(s) in the prod settings"
    lines = capsys.readouterr().out.splitlines()
    assert "error: .env.prod: HTTP_PORT must be a port number, got '99999'" in lines
    assert any(line.startswith("error: DB_PASSWORD looks like a secret") for line in lines)
    assert "warning: FAVOURITE_COLOUR is not a setting the compose files read" in lines
    assert "hunter2" not in "".join(lines)


def test_validate_of_a_given_file_with_only_warnings_passes(tmp_path: Path, capsys: Any) -> None:
    other = tmp_path / "candidate.env"
    other.write_text("HTTP_PORT=8081\nEDITOR=vi\n")
    env_cli.validate(context(), file=str(other))
    assert capsys.readouterr().out.splitlines() == [
        "warning: EDITOR is not a setting the compose files read",
        "dev settings are valid",
    ]


def test_validate_refuses_a_missing_or_malformed_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    assert fails(2, env_cli.validate, context(), file=str(missing)) == f"error: no settings file at {missing}"
    bad = tmp_path / "bad.env"
    bad.write_text("HTTP_PORT=8081\nJUST_A_NAME\n")
    assert fails(2, env_cli.validate, context(), file=str(bad)).startswith(f"error: {bad}:2: JUST_A_NAME")


# --- configuration, preflight (checks that need Docker, replaced) -----------------------------------------

GOOD = [environment.Check("compose dev", True, "7 services merge"), environment.Check("hadolint", True, "clean")]


def test_configuration_validates_every_environment_by_default(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(env_cli.environment, "validate_configuration", lambda envs: asked.append(envs) or GOOD)
    env_cli.configuration(context())
    env_cli.configuration(context(), env=["prod", "dev"])
    assert asked == [list(model.ENVIRONMENTS), ["prod", "dev"]]
    text = capsys.readouterr().out
    assert "configuration" in text and "7 services merge" in text and "FAIL" not in text


def test_configuration_exits_1_when_a_check_fails(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    checks = [*GOOD, environment.Check("nginx -t", False, "analyticbot/proxy:latest is missing")]
    monkeypatch.setattr(env_cli.environment, "validate_configuration", lambda envs: checks)
    message = fails(1, env_cli.configuration, context())
    assert message == "error: the configuration does not validate (see above)"
    line = next(line for line in capsys.readouterr().out.splitlines() if "nginx -t" in line)
    assert "FAIL" in line and "is missing" in line


def test_configuration_refuses_an_unknown_environment_before_checking(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    monkeypatch.setattr(env_cli.environment, "validate_configuration", lambda envs: asked.append(envs) or GOOD)
    assert "unknown environment 'qa'" in fails(2, env_cli.configuration, context(), env=["dev", "qa"])
    assert asked == []


PASSING = [preflight.Check("docker daemon", True, "engine 24.0.7"), preflight.Check("images", True, "all present")]


def test_preflight_shows_each_check_and_exits_1_unless_all_pass(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    pinned = f"{NAMESPACE}/api:build-1"

    def pinned_settings(unnamed: Any, state_dir: Any = None) -> dict[str, str]:
        return {"API_IMAGE": pinned} if "API_IMAGE" in unnamed else {}

    monkeypatch.setattr(releases, "pinned_settings", pinned_settings)
    asked: list[compose.Stack] = []
    answers = [PASSING, [*PASSING, preflight.Check("docker daemon", False, "no Docker daemon answers")]]
    monkeypatch.setattr(preflight, "rows", lambda stack: asked.append(stack) or answers.pop(0))
    env_cli.preflight(context(namespace=NAMESPACE), env="staging")
    out = capsys.readouterr().out
    assert "staging deployability" in out and "engine 24.0.7" in out and "FAIL" not in out
    assert fails(1, env_cli.preflight, context(namespace=NAMESPACE)) == "error: dev is not deployable now (see above)"
    line = next(line for line in capsys.readouterr().out.splitlines() if "no Docker daemon answers" in line)
    assert "FAIL" in line
    # The very stack a deploy would run: this checkout's build by its pinned tag, the others under the namespace.
    assert [stack.env for stack in asked] == ["staging", "dev"]
    assert all(stack.settings["API_IMAGE"] == pinned for stack in asked)
    assert all(stack.settings["BOT_IMAGE"] == f"{NAMESPACE}/bot:latest" for stack in asked)


def test_preflight_for_a_swarm_shows_the_swarm_deploys_checks(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(releases, "pinned_settings", lambda unnamed, state_dir=None: {})
    monkeypatch.setattr(preflight, "rows", lambda stack: pytest.fail("the Compose preflight ran"))
    found: list[Any] = []
    monkeypatch.setattr(env_cli.swarm_lab, "target", lambda context, registry: found.append((context, registry)))
    asked: list[compose.Stack] = []

    def rows(stack: compose.Stack, find: Any) -> list[preflight.Check]:
        asked.append(stack)
        find()  # the swarm is looked for inside its own row
        return [*PASSING, preflight.Check("swarm", False, "no Docker context 'far'")]

    monkeypatch.setattr(env_cli.swarm_deploy, "preflight_rows", rows)
    message = fails(1, env_cli.preflight, context(), env="prod", swarm=True, context="far", registry="r.example:5000")
    assert message == "error: prod is not deployable on the swarm far (see above)"
    out = capsys.readouterr().out
    assert "prod deployability on the swarm far" in out and "no Docker context 'far'" in out
    assert [s.env for s in asked] == ["prod"] and found == [("far", "r.example:5000")]
    assert fails(2, env_cli.preflight, context(), env="dev", swarm=True).startswith("error: the swarm stack is for")
