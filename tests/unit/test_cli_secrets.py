"""The `secrets` tasks (cli/secrets.py) over a real secrets folder in tmp_path (SECRETS_DIR): what each writes,
prints and refuses, with its exit code and one `error:` line. The database guard and the live rotation are
replaced: no Docker."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from analyticbot_ops import compose, maintenance, tokens
from analyticbot_ops import secrets as sec
from analyticbot_ops.cli import secrets as secrets_cli
from analyticbot_ops.errors import DockerUnavailable
from tests.unit.cli_support import NAMESPACE, fails, isolated_tasks
from tests.unit.cli_support import namespaced_context as context

from .secrets_support import BOT_TOKEN, MADE_WITHOUT_INPUT, populate, write_raw


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    for spec in sec.SECRETS:  # a secret in the process environment would be read by from-env
        monkeypatch.delenv(spec.env_var, raising=False)
    monkeypatch.setattr("analyticbot_ops.releases.pinned_settings", lambda unnamed, state_dir=None: {})
    with isolated_tasks(monkeypatch, tmp_path):
        yield


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    return tmp_path / "secrets"


class DatabaseGuard:
    """guard.secrets_match_database answering with `answer` (by default: no daemon answers, so the secrets
    are made as usual); the projects asked about, recorded."""

    def __init__(self) -> None:
        self.answer: Any = DockerUnavailable("no Docker daemon answers")
        self.asked: list[str] = []

    def __call__(self, stack: compose.Stack) -> Any:
        self.asked.append(stack.project)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> DatabaseGuard:
    fake = DatabaseGuard()
    monkeypatch.setattr(secrets_cli.guard, "secrets_match_database", fake)
    return fake


def row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if f" {name} " in line)


# --- from-env, init -------------------------------------------------------------------------------


def test_from_env_generates_the_missing_secrets_and_prints_each_outcome(
    guard: DatabaseGuard, sdir: Path, capsys: Any
) -> None:
    secrets_cli.from_env(context())
    assert guard.asked == ["analyticbot-dev"]  # asked about the database first; no daemon: made as usual
    assert sorted(p.name for p in sdir.iterdir() if not p.name.startswith(".")) == sorted(MADE_WITHOUT_INPUT)
    text = capsys.readouterr().out
    assert "created" in row(text, "jwt_secret_key") and "missing" in row(text, "bot_token")
    assert "created" in row(text, "prometheus_web_config") and "missing" in row(text, "alert_chat_id")


def test_from_env_reads_an_env_file_and_keeps_what_exists_unless_forced(
    guard: DatabaseGuard, sdir: Path, tmp_path: Path, capsys: Any
) -> None:
    env_file = tmp_path / "values.env"
    env_file.write_text(f"BOT_TOKEN={BOT_TOKEN}\n")
    secrets_cli.from_env(context(), env_file=str(env_file))
    assert (sdir / "bot_token").read_text().strip() == BOT_TOKEN
    other = BOT_TOKEN.replace("123456789", "987654321")
    env_file.write_text(f"BOT_TOKEN={other}\n")
    capsys.readouterr()
    secrets_cli.from_env(context(), env_file=str(env_file))
    assert "kept" in row(capsys.readouterr().out, "bot_token")
    assert (sdir / "bot_token").read_text().strip() == BOT_TOKEN
    secrets_cli.from_env(context(), env_file=str(env_file), force=True)
    assert (sdir / "bot_token").read_text().strip() == other


def test_from_env_rejected_prints_why_and_writes_nothing(guard: DatabaseGuard, sdir: Path, capsys: Any) -> None:
    message = fails(2, secrets_cli.from_env, context(), env="prod")
    assert "bot_token" in message
    assert "missing" in row(capsys.readouterr().out, "bot_token")  # the table first, then the one line
    assert not sdir.exists() or not any(p for p in sdir.iterdir() if not p.name.startswith("."))


def test_a_new_database_password_for_an_existing_volume_is_refused(
    monkeypatch: pytest.MonkeyPatch, guard: DatabaseGuard, sdir: Path
) -> None:
    guard.answer = SimpleNamespace(ok=False, detail="the postgres volume of analyticbot-staging exists")
    made: list[Any] = []
    monkeypatch.setattr(secrets_cli.secrets, "init_interactive", lambda *a, **kw: made.append(a))
    message = fails(2, secrets_cli.from_env, context(), env="staging")
    assert message == "error: the postgres volume of analyticbot-staging exists"
    assert fails(2, secrets_cli.init, context(), env="staging") == message
    assert guard.asked == ["analyticbot-staging"] * 2 and made == [] and not sdir.exists()


def test_init_asks_for_the_missing_secrets_in_the_stack_folder(
    monkeypatch: pytest.MonkeyPatch, guard: DatabaseGuard, sdir: Path, capsys: Any
) -> None:
    guard.answer = SimpleNamespace(ok=True, detail="")
    asked: list[Any] = []

    def init_interactive(env: str, directory: Path, *, force: bool) -> sec.ApplyReport:
        asked.append((env, directory, force))
        outcome = sec.SecretOutcome("bot_token", "created", "from the terminal")
        return sec.ApplyReport(env, directory, (outcome,))

    monkeypatch.setattr(secrets_cli.secrets, "init_interactive", init_interactive)
    secrets_cli.init(context(), env="prod", force=True)
    assert asked == [("prod", sdir, True)]
    assert "from the terminal" in row(capsys.readouterr().out, "bot_token")


# --- check, list ----------------------------------------------------------------------------------------


def test_check_of_an_empty_folder_fails_listing_every_required_secret(sdir: Path, capsys: Any) -> None:
    message = fails(1, secrets_cli.check, context())
    assert message == "error: a required secret is missing or a secret is invalid (see above)"
    text = capsys.readouterr().out
    assert "NO" in row(text, "jwt_secret_key") and "yes" in row(text, "jwt_secret_key")  # required, absent
    assert " no " in row(text, "openai_api_key")  # optional in dev


def test_check_of_generated_secrets_passes_and_shows_their_state(sdir: Path, capsys: Any) -> None:
    populate(sdir)
    secrets_cli.check(context())
    line = row(capsys.readouterr().out, "jwt_secret_key")
    assert line.count("yes") >= 2 and " ok " in line and "INVALID" not in line and " 0 " in line


def test_check_shows_a_bad_mode_and_an_invalid_value_with_its_problems(sdir: Path, capsys: Any) -> None:
    populate(sdir)
    (sdir / "redis_password").chmod(0o644)
    write_raw(sdir, "jwt_secret_key", "a" * 64)
    fails(1, secrets_cli.check, context())
    text = capsys.readouterr().out
    assert "BAD" in row(text, "redis_password")
    assert "INVALID" in row(text, "jwt_secret_key")
    assert any(line.startswith("  jwt_secret_key: ") for line in text.splitlines())


def test_check_as_json_has_one_row_per_secret(sdir: Path, capsys: Any) -> None:
    populate(sdir)
    secrets_cli.check(context(), json=True)
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [s.name for s in sec.SECRETS]
    assert next(r for r in rows if r["name"] == "jwt_secret_key")["valid"] is True
    assert "unknown environment 'uat'" in fails(2, secrets_cli.check, context(), env="uat")


def test_list_names_sizes_and_consumers_never_values(sdir: Path, capsys: Any) -> None:
    populate(sdir)
    write_raw(sdir, "stray_file", "not registered")
    secrets_cli.list_(context())
    text = capsys.readouterr().out
    assert "api" in row(text, "jwt_secret_key") and "(unknown file)" in row(text, "stray_file")
    assert (sdir / "jwt_secret_key").read_text().strip() not in text
    secrets_cli.list_(context(), json=True)
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["stray_file"]["known"] is False and listed["stray_file"]["size"] == len("not registered")


def test_list_of_no_folder_is_an_empty_table(capsys: Any) -> None:
    secrets_cli.list_(context(), json=True)
    assert json.loads(capsys.readouterr().out) == []


# --- token ----------------------------------------------------------------------------------------------


def claims(token: str, sdir: Path) -> dict[str, Any]:
    key = (sdir / "jwt_secret_key").read_text().strip()
    return jwt.decode(token, key, algorithms=[tokens.ALGORITHM], audience=tokens.AUDIENCE)


def test_token_alone_on_stdout_signed_with_the_stack_key(sdir: Path, capsys: Any) -> None:
    populate(sdir)
    secrets_cli.token(context(), scope="write", ttl="15m", subject="ci")
    captured = capsys.readouterr()
    token = captured.out.strip()
    assert captured.out == token + "\n"
    data = claims(token, sdir)
    assert data["sub"] == "ci" and data["scope"] == "read write" and data["exp"] - data["iat"] == 900
    assert captured.err.startswith("token for ci: scopes read write, expires ")


def test_token_as_json(sdir: Path, capsys: Any) -> None:
    populate(sdir)
    secrets_cli.token(context(), json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["subject"] == "operator" and data["scopes"] == ["read"]
    assert claims(data["token"], sdir)["sub"] == "operator" and data["expires"]


def test_token_refuses_a_bad_scope_ttl_or_a_missing_key(sdir: Path, capsys: Any) -> None:
    assert "--scope must be read or write, got admin" in fails(2, secrets_cli.token, context(), scope="admin")
    assert "--ttl must be" in fails(2, secrets_cli.token, context(), ttl="forever")
    assert "secret jwt_secret_key is missing" in fails(2, secrets_cli.token, context())
    assert capsys.readouterr().out == ""


# --- rotate ---------------------------------------------------------------------------------------------


@pytest.fixture
def rotations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    monkeypatch.setattr(secrets_cli.docker, "require_daemon", lambda: "27.0")

    def rotate(name: str, directory: Path, stack: Any, *, timeout: float) -> Any:
        seen.append((name, directory, stack, timeout))
        return SimpleNamespace(name=name, restarted=("api", "bot") if name == "redis_password" else ())

    monkeypatch.setattr(secrets_cli.secrets, "rotate", rotate)
    return seen


def test_rotate_drives_the_live_pinned_stack(rotations: list[Any], sdir: Path, capsys: Any) -> None:
    secrets_cli.rotate(context(), "redis_password", env="staging", timeout="30")
    ((name, directory, live, timeout),) = rotations
    assert (name, directory, timeout) == ("redis_password", sdir, 30.0)
    assert isinstance(live, maintenance.LiveStack) and live.stack.project == "analyticbot-staging"
    assert live.stack.settings["API_IMAGE"] == f"{NAMESPACE}/api:latest" and live.progress is secrets_cli.progress
    assert capsys.readouterr().out.strip() == "rotated redis_password; restarted api, bot; backups kept"
    secrets_cli.rotate(context(), "jwt_secret_key")
    assert capsys.readouterr().out.strip() == "rotated jwt_secret_key; restarted nothing; backups kept"


def test_rotate_refuses_an_unknown_secret_or_no_daemon_before_touching_files(
    monkeypatch: pytest.MonkeyPatch, rotations: list[Any]
) -> None:
    assert "unknown secret 'root_password'" in fails(2, secrets_cli.rotate, context(), "root_password")

    def no_daemon() -> str:
        raise DockerUnavailable("no Docker daemon answers at unix:///nonexistent/docker.sock")

    monkeypatch.setattr(secrets_cli.docker, "require_daemon", no_daemon)
    assert "no Docker daemon answers" in fails(3, secrets_cli.rotate, context(), "redis_password")
    assert rotations == []
