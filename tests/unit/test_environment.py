"""Environment files and the checks that change nothing: the `.env.ENV` template, its validation and the merged
configuration of each environment (nginx -t in the proxy image, hadolint); whether an environment could be deployed
now is test_preflight.py's. No Docker: commands go to a FakeRunner, engine and stack reads are monkeypatched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import audit, compose, docker, environment, runner, secrets, stack_settings, tls
from analyticbot_ops.errors import BadInput

DOCKER = "/usr/bin/docker"


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient(DOCKER, "20.10.24", False))
    monkeypatch.setattr(docker, "require_daemon", lambda: pytest.fail("the daemon was asked"))
    monkeypatch.setattr(docker, "inspect", lambda kind, name: pytest.fail(f"{kind} {name} inspected"))


@pytest.fixture
def env_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`.env.ENV` files live in tmp_path, never in the repository."""
    monkeypatch.setattr(stack_settings, "env_file", lambda env: tmp_path / f".env.{stack_settings.check_env(env)}")
    return tmp_path


# --- template ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_template_names_every_setting_once_with_the_environments_defaults(env: str) -> None:
    text = environment.template(env)
    lines = text.splitlines()
    assert (
        lines[0] == f"# Settings for the {env} stack (read by invoke with python-dotenv; never by another environment)."
    )
    assert "Secrets do NOT belong here" in lines[1]
    assert text.endswith("\n")
    defaults = {**stack_settings.COMMON_DEFAULTS, **stack_settings.DEFAULTS[env]}
    for key, purpose in stack_settings.SETTINGS.items():
        assigned = [line for line in lines if line.startswith(f"{key}=") or line == f"# {key}="]
        assert len(assigned) == 1, key
        # Each setting is preceded by what it is for.
        assert lines[lines.index(assigned[0]) - 1] == f"# {purpose}"
        if key in defaults:
            assert assigned[0] == f"{key}={defaults[key]}"
        else:
            assert assigned[0] == f"# {key}="  # no default: commented out, so the file sets nothing


def test_template_defaults_differ_per_environment() -> None:
    assert "PROXY_BIND=0.0.0.0" in environment.template("prod").splitlines()
    assert "HTTPS_PORT=9443" in environment.template("staging").splitlines()
    assert "EXTRA_SERVER_NAMES=localhost 127.0.0.1" in environment.template("dev").splitlines()
    assert "# DOMAIN=" in environment.template("prod").splitlines()


def test_template_of_an_unknown_environment_is_bad_input() -> None:
    with pytest.raises(BadInput, match="unknown environment 'production'; use one of: dev, staging, prod"):
        environment.template("production")


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_a_written_template_validates_clean(env_files: Path, env: str) -> None:
    path = environment.write_template(env)
    assert path == env_files / f".env.{env}"
    assert path.read_text() == environment.template(env)
    assert environment.validate_file(env) == []
    # ...and it sets exactly the defaults.
    assert secrets.read_env_file(path) == {
        k: v
        for k, v in {**stack_settings.COMMON_DEFAULTS, **stack_settings.DEFAULTS[env]}.items()
        if k in stack_settings.SETTINGS
    }


def test_write_template_never_overwrites(env_files: Path) -> None:
    path = env_files / ".env.prod"
    path.write_text("DOMAIN=bot.example.com\n")
    with pytest.raises(BadInput, match=r"^\.env\.prod exists and is never overwritten; edit it, or remove it first$"):
        environment.write_template("prod")
    assert path.read_text() == "DOMAIN=bot.example.com\n"


# --- validate_file -------------------------------------------------------------------------------------------------


def test_a_missing_env_file_is_a_warning_the_defaults_apply(env_files: Path) -> None:
    assert environment.validate_file("staging") == [
        environment.Finding("warning", ".env.staging does not exist: the defaults apply (invoke env.template)")
    ]


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=f"no settings file at {tmp_path / 'nope.env'}"):
        environment.validate_file("dev", tmp_path / "nope.env")
    with pytest.raises(BadInput, match="no settings file at"):
        environment.validate_file("dev", tmp_path)  # a directory is no file


def test_an_explicit_file_is_validated_instead_of_the_environments(env_files: Path, tmp_path: Path) -> None:
    (env_files / ".env.dev").write_text("HTTP_PORT=not-a-port\n")
    other = tmp_path / "candidate.env"
    other.write_text("HTTP_PORT=8081\n")
    assert environment.validate_file("dev", other) == []


def test_values_compose_would_refuse_are_errors(env_files: Path) -> None:
    (env_files / ".env.prod").write_text("HTTP_PORT=80\nHTTPS_PORT=４４３\n")  # full-width digits
    assert environment.validate_file("prod") == [
        environment.Finding("error", ".env.prod: HTTPS_PORT must be a port number, got '４４３'")
    ]


def test_secrets_and_stray_variables_are_named_never_their_values(env_files: Path) -> None:
    (env_files / ".env.dev").write_text(
        "SECRETS_DIR=./secrets\n"  # a setting, although its name says SECRET
        "BOT_TOKEN=123456:AAAA-the-real-token\n"
        "postgres_password=hunter2-hunter2\n"
        "OPENAI_API_KEY=sk-abcdef\n"
        "TELEGRAM_API_HASH=0123456789abcdef0123456789abcdef\n"
        "MY_FLAG=1\n"
    )
    findings = environment.validate_file("dev")
    assert findings == [
        environment.Finding("error", "BOT_TOKEN looks like a secret: keep it in secrets/ (invoke secrets.from-env)"),
        environment.Finding(
            "error", "postgres_password looks like a secret: keep it in secrets/ (invoke secrets.from-env)"
        ),
        environment.Finding(
            "error", "OPENAI_API_KEY looks like a secret: keep it in secrets/ (invoke secrets.from-env)"
        ),
        environment.Finding(
            "error", "TELEGRAM_API_HASH looks like a secret: keep it in secrets/ (invoke secrets.from-env)"
        ),
        environment.Finding("warning", "MY_FLAG is not a setting the compose files read"),
    ]
    text = " ".join(f.message for f in findings)
    for value in ("123456:AAAA", "hunter2", "sk-abcdef", "0123456789abcdef"):
        assert value not in text


def test_a_malformed_line_is_bad_input_with_its_number_not_its_text(env_files: Path) -> None:
    (env_files / ".env.dev").write_text("HTTP_PORT=8080\n\nBOT_TOKEN\n")
    with pytest.raises(BadInput) as e:
        environment.validate_file("dev")
    assert str(e.value) == f"{env_files / '.env.dev'}:3: BOT_TOKEN has no '=' (expected NAME=value)"


def test_one_bad_value_and_a_stray_variable_are_both_reported(env_files: Path) -> None:
    (env_files / ".env.staging").write_text("PROXY_BIND=localhost\nEXTRA=1\n")
    assert [(f.level, f.message.split(":")[0]) for f in environment.validate_file("staging")] == [
        ("error", ".env.staging"),
        ("warning", "EXTRA is not a setting the compose files read"),
    ]


# --- nginx -t in the proxy image -----------------------------------------------------------------------------------


def test_nginx_test_needs_the_proxy_image(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(docker, "inspect", lambda kind, name: asked.append((kind, name)))
    fake = runner.FakeRunner()
    with runner.use(fake):
        check = environment._nginx_test()
    assert check == environment.Check(
        "nginx -t", False, "analyticbot/proxy:latest is missing: invoke images.build --service proxy"
    )
    assert asked == [("image", "analyticbot/proxy:latest")]
    assert fake.calls == []


def test_nginx_test_runs_offline_read_only_with_a_throwaway_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "inspect", lambda kind, name: {"Id": "sha256:1"})
    mounted: list[Path] = []

    def nginx_t(call: runner.Call) -> runner.Completed[str]:
        volume = call.argv[call.argv.index("-v") + 1]
        source, target, mode = volume.split(":")
        assert (target, mode) == ("/etc/nginx/tls", "ro")
        mounted.append(Path(source))
        # The certificate exists while nginx reads it, and is fit to serve.
        assert tls.certificate_status(Path(source)).ok
        return runner.Completed(
            list(call.argv),
            0,
            "",
            "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
            "nginx: configuration file /etc/nginx/nginx.conf test is successful\n",
        )

    fake = runner.FakeRunner()
    fake.answers[("docker", "run")] = nginx_t
    with runner.use(fake):
        check = environment._nginx_test()
    assert check == environment.Check(
        "nginx -t", True, "nginx: configuration file /etc/nginx/nginx.conf test is successful"
    )
    argv = fake.calls[0].argv
    assert argv == (
        DOCKER,
        "run",
        "--rm",
        "--network=none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-v",
        f"{mounted[0]}:/etc/nginx/tls:ro",
        "analyticbot/proxy:latest",
        "nginx",
        "-t",
    )
    assert mounted[0].name == "tls" and not mounted[0].exists()  # thrown away afterwards


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "ok", "detail"),
    [
        (1, "", 'nginx: [emerg] unknown directive "sever" in /etc/nginx/conf.d/default.conf:3\nnginx: test failed\n',
         False, "nginx: test failed"),
        (125, "stdout only\n", "", False, "stdout only"),
        (1, "", "", False, ""),
    ],
    ids=["rejected", "stdout", "silent"],
)  # fmt: skip
def test_nginx_test_reports_nginxs_last_word(
    monkeypatch: pytest.MonkeyPatch, returncode: int, stdout: str, stderr: str, ok: bool, detail: str
) -> None:
    monkeypatch.setattr(docker, "inspect", lambda kind, name: {"Id": "sha256:1"})
    fake = runner.FakeRunner()
    fake.answer("docker", "run", stdout=stdout, stderr=stderr, returncode=returncode)
    with runner.use(fake):
        assert environment._nginx_test() == environment.Check("nginx -t", ok, detail)


# --- hadolint ------------------------------------------------------------------------------------------------------


def hadolint_says(monkeypatch: pytest.MonkeyPatch, output: str | None) -> list[list[str]]:
    linted: list[list[str]] = []

    def run(paths: list[str]) -> str | None:
        linted.append(list(paths))
        return output

    monkeypatch.setattr(audit, "run_hadolint", run)
    return linted


def test_hadolint_clean_counts_the_dockerfiles(monkeypatch: pytest.MonkeyPatch) -> None:
    linted = hadolint_says(monkeypatch, "[]")
    check = environment._hadolint()
    assert linted == [["nginx/Dockerfile", "services/Dockerfile"]]
    assert check == environment.Check("hadolint", True, "2 Dockerfiles clean")


def test_hadolint_findings_show_the_first_three(monkeypatch: pytest.MonkeyPatch) -> None:
    findings = [
        {"code": f"DL300{n}", "file": "services/Dockerfile", "line": n, "message": f"problem {n}", "level": "warning"}
        for n in range(1, 5)
    ]
    hadolint_says(monkeypatch, json.dumps(findings))
    check = environment._hadolint()
    assert check == environment.Check("hadolint", False, "line 1: problem 1; line 2: problem 2; line 3: problem 3")


def test_hadolint_missing_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    hadolint_says(monkeypatch, None)
    assert environment._hadolint() == environment.Check("hadolint", False, "skipped: hadolint not installed")


# --- validate_configuration ----------------------------------------------------------------------------------------


def test_validate_configuration_merges_each_environment_then_nginx_and_hadolint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def load_stack(env: str) -> compose.Stack:
        if env == "staging":
            raise BadInput("compose file /x/docker-compose.prod.yml is missing")
        return compose.Stack(env, f"ab-{env}", {}, [])

    merged: list[str] = []

    def merged_config(stack: compose.Stack) -> dict[str, Any]:
        merged.append(stack.env)
        if stack.env == "prod":
            raise BadInput("the prod compose files do not merge: services.api.ports must be a list")
        return {"services": {"api": {}, "bot": {}, "proxy": {}}}

    monkeypatch.setattr(compose, "load_stack", load_stack)
    monkeypatch.setattr(compose, "merged_config", merged_config)
    monkeypatch.setattr(environment, "_nginx_test", lambda: environment.Check("nginx -t", True, "ok"))
    monkeypatch.setattr(environment, "_hadolint", lambda: environment.Check("hadolint", True, "clean"))
    checks = environment.validate_configuration(["dev", "staging", "prod"])
    assert checks == [
        environment.Check("compose dev", True, "3 services merge"),
        environment.Check("compose staging", False, "compose file /x/docker-compose.prod.yml is missing"),
        environment.Check(
            "compose prod", False, "the prod compose files do not merge: services.api.ports must be a list"
        ),
        environment.Check("nginx -t", True, "ok"),
        environment.Check("hadolint", True, "clean"),
    ]
    assert merged == ["dev", "prod"]


def test_validate_configuration_of_a_file_without_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose, "load_stack", lambda env: compose.Stack(env, "p", {}, []))
    monkeypatch.setattr(compose, "merged_config", lambda stack: {"name": "p"})
    monkeypatch.setattr(environment, "_nginx_test", lambda: environment.Check("nginx -t", False, "x"))
    monkeypatch.setattr(environment, "_hadolint", lambda: environment.Check("hadolint", False, "y"))
    checks = environment.validate_configuration(["dev"])
    assert checks[0] == environment.Check("compose dev", True, "0 services merge")
    assert [c.ok for c in checks] == [True, False, False]
