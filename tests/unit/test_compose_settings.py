"""Stack settings: where values come from, and the checks a deploy makes before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyticbot_ops import compose, environment, preflight, stack_settings
from analyticbot_ops.errors import BadInput
from analyticbot_ops.paths import REPO_ROOT


def test_relative_secret_and_tls_dirs_are_anchored_at_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose resolves them from compose/, the toolkit from the cwd: both must name one folder.
    monkeypatch.setenv("SECRETS_DIR", "secrets-staging")
    monkeypatch.setenv("TLS_DIR", "secrets-staging/tls")
    monkeypatch.chdir("/")
    settings = stack_settings.settings_with_sources("staging")
    assert settings["SECRETS_DIR"] == (str(REPO_ROOT / "secrets-staging"), "environment")
    assert settings["TLS_DIR"][0] == str(REPO_ROOT / "secrets-staging" / "tls")


def test_process_environment_beats_defaults_and_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PORT", "9999")
    settings = stack_settings.settings_with_sources("dev")
    assert settings["HTTPS_PORT"] == ("9999", "environment")
    assert settings["PROXY_BIND"] == ("127.0.0.1", "default")


def test_compose_project_name_selects_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "preview-42")
    stack = compose.load_stack("dev")
    assert stack.project == "preview-42" and "COMPOSE_PROJECT_NAME" not in stack.settings


def test_an_explicit_settings_file_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no settings file"):
        environment.validate_file("dev", tmp_path / "typo.env")


def test_deploy_refuses_files_the_containers_could_not_read_when_not_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "postgres_password").write_text("x")  # owned by whoever runs the test, not 10001
    stack = compose.load_stack("dev", overrides={"SECRETS_DIR": str(secrets_dir), "TLS_DIR": str(tmp_path / "tls")})
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(Path, "stat", _stat_owned_by(1000))
    with pytest.raises(BadInput, match="uid 10001"):
        preflight.ownership(stack)


def _stat_owned_by(uid: int):  # type: ignore[no-untyped-def]
    real = Path.stat

    def fake(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(self, *args, **kwargs)

        class Owned:
            def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                return uid if name == "st_uid" else getattr(result, name)

        return Owned()

    return fake


def test_the_template_validates_and_a_folder_setting_is_no_secret(tmp_path: Path) -> None:
    written = tmp_path / "template.env"
    written.write_text(environment.template("dev") + "SECRETS_DIR=/srv/secrets\n")
    assert [f for f in environment.validate_file("dev", written) if f.level == "error"] == []
    leaked = tmp_path / "leaked.env"
    leaked.write_text("POSTGRES_PASSWORD=Hunter2-and-more\n")
    assert any("looks like a secret" in f.message for f in environment.validate_file("dev", leaked))


def test_a_malformed_env_file_of_a_stack_is_one_line_that_promises_nothing_about_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same strict reader as secrets.from-env (envfile.read), but a deploy writes nothing anyway: only
    from-env, which would have written secrets, says "nothing was written"."""
    env_file = tmp_path / ".env.dev"
    env_file.write_text("HTTP_PORT=8080\nBOT_TOKEN\n")
    monkeypatch.setattr(stack_settings, "env_file", lambda env: env_file)
    with pytest.raises(BadInput) as caught:
        stack_settings.settings_with_sources("dev")
    assert str(caught.value) == f"{env_file}:2: BOT_TOKEN has no '=' (expected NAME=value)"
