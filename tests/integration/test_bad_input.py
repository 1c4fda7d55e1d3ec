"""Bad input, end to end: each case runs the real `invoke` in a subprocess and proves
that the task refuses with the documented exit code (2 bad input, 3 no Docker, 1 a
failed check), one `error:` line naming the problem and no traceback, and that it
changed nothing: not the case's own secrets and TLS folders, not the repository's
secrets/ or .env files, not Docker's containers, networks or volumes.

Every case runs with SECRETS_DIR and TLS_DIR in its own temporary folder and a
throwaway COMPOSE_PROJECT_NAME, so no real stack is ever matched. Nothing here
starts a container when the code is right; if a case ever does, its objects are
removed and the case fails.

The Docker daemon is shared (other people run stacks and tests on it meanwhile), so
a container, network or volume that appears or goes fails a case only when the case
could own it: it carries the case's project or folders, or a default project
(analyticbot-dev, analyticbot-staging, analyticbot) that a task ignoring
COMPOSE_PROJECT_NAME would act on. Other changes are reported as warnings."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import stat
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from analyticbot_ops import compose, deploy, docker, environment, model, preflight, secrets, stack_settings, tls
from analyticbot_ops.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NO_DOCKER, EXIT_UNHEALTHY
from analyticbot_ops.paths import REPO_ROOT
from tests.sandbox import free_port, subnet_pool

pytestmark = pytest.mark.docker

INVOKE = str(Path(sys.executable).with_name("invoke"))
NO_DAEMON = "unix:///nonexistent/docker.sock"
# Values that must never be echoed: a refused secret is named, never shown.
WEAK_PASSWORD = "weakPw9!x"
MALFORMED_TOKEN = "abc"
SETTINGS_FILE_SECRET = "Settings-File-Secret-4711-xyz"
OUTSIDE_SECRET = "Outside-Target-Secret-0815-qrs"
BAD_LINE_TEXT = "s3cr3tLineText"
# The repository's own files that no case may touch.
REPO_WATCHED = (REPO_ROOT / "secrets", *(REPO_ROOT / f".env.{env}" for env in model.ENVIRONMENTS))
DEFAULT_PROJECTS = tuple(model.PROJECTS.values())
THIS_CASE = "this case (its project or its folders)"


# --- one run of a case ------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A case's sandbox: its temporary folders, throwaway project and environment."""

    root: Path
    project: str
    env: dict[str, str]
    cleanup: contextlib.ExitStack

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    def fmt(self, text: str) -> str:
        """Fill {tmp}, {secrets}, {tls} and {project} (plain replacement: regexes keep their own braces)."""
        for key, value in (
            ("{tmp}", str(self.root)),
            ("{secrets}", str(self.secrets_dir)),
            ("{tls}", str(self.tls_dir)),
            ("{project}", self.project),
        ):
            text = text.replace(key, value)
        return text


def base_env(root: Path, project: str) -> dict[str, str]:
    """The caller's environment without anything that would steer a task: no settings,
    no secret values, no Invoke overrides; then this case's folders and project."""
    dropped = {*stack_settings.SETTINGS, *(spec.env_var for spec in secrets.SECRETS)}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("INVOKE_")}
    env.update(SECRETS_DIR=str(root / "secrets"), TLS_DIR=str(root / "tls"), COMPOSE_PROJECT_NAME=project)
    return env


# --- setups: what a case needs on disk (or on a port) before it runs --------------------------------------------


def write(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


def bad_env_file(run: Run) -> None:
    """Line 3 is not NAME=value; it carries text that must not be echoed."""
    write(run.root / "bad.env", f"HTTP_PORT=8080\n# a comment\nthis line has no equals sign {BAD_LINE_TEXT}\nA=1\n")


def env_file_with_a_bare_name(run: Run) -> None:
    """Line 4 names a variable with no `=`: python-dotenv skips it, and a typo would vanish."""
    write(run.root / "bare.env", "HTTP_PORT=8080\n\n# a comment\nHTTPS_PORT\n")


def secret_in_settings_file(run: Run) -> None:
    write(run.root / "settings.env", f"HTTP_PORT=8080\nPOSTGRES_PASSWORD={SETTINGS_FILE_SECRET}\n")


def secret_is_a_directory(run: Run) -> None:
    (run.secrets_dir / "postgres_password").mkdir(mode=0o700)


def symlink_outside(run: Run) -> None:
    target = write(run.root / "outside" / "postgres_password", OUTSIDE_SECRET)
    (run.secrets_dir / "postgres_password").symlink_to(target)


def dev_secrets_and_certificates(run: Run) -> None:
    secrets.from_env("dev", run.secrets_dir, environ={})
    tls.ensure_dev_certificates(run.tls_dir)


def dev_secrets_without_the_monitoring_password(run: Run) -> None:
    """Every dev secret but prometheus_password: Prometheus and Alertmanager would have no login."""
    dev_secrets_and_certificates(run)
    (run.secrets_dir / "prometheus_password").unlink()


def https_port_taken(run: Run) -> None:
    """Valid dev secrets and certificates, every image present, HTTPS_PORT held by a listener."""
    dev_secrets_and_certificates(run)
    missing = preflight.missing_images(compose.load_stack("dev", project=run.project))
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}; run `invoke images.base images.build`")
    listener = run.cleanup.enter_context(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    run.env.update(HTTPS_PORT=str(listener.getsockname()[1]), HTTP_PORT=str(free_port()), PROXY_BIND="127.0.0.1")


def _deployable(run: Run) -> None:
    """Valid dev secrets and certificates, every image present, free loopback ports and subnets: a dev
    deploy of the case's project would start, but for what the case adds."""
    dev_secrets_and_certificates(run)
    missing = preflight.missing_images(compose.load_stack("dev", project=run.project))
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}; run `invoke images.base images.build`")
    # Every network's subnet and every published port its own: a dev stack on this daemon (the overlays'
    # default subnets and ports) is left alone and does not decide the case.
    frontend, backend, database, watched, backed_up = deploy.free_subnets(5, pool=subnet_pool())
    run.env.update(
        HTTP_PORT=str(free_port()),
        HTTPS_PORT=str(free_port()),
        PROMETHEUS_PORT=str(free_port()),
        ALERTMANAGER_PORT=str(free_port()),
        PROXY_BIND="127.0.0.1",
        FRONTEND_SUBNET=frontend,
        BACKEND_SUBNET=backend,
        DATABASE_SUBNET=database,
        MONITORING_SUBNET=watched,
        BACKUP_SUBNET=backed_up,
    )


def existing_database_volume(run: Run) -> None:
    """The project's PostgreSQL volume exists (a database was made), its secrets folder is gone."""
    _deployable(run)
    for path in run.secrets_dir.iterdir():
        if path.is_file():
            path.unlink()
    volume = f"{run.project}_pgdata"
    docker.docker(["volume", "create", volume])
    run.cleanup.callback(docker.docker, ["volume", "rm", "-f", volume], check=False)


def another_network_on_the_subnet(run: Run) -> None:
    """Someone else's Docker network holds the subnet the case's FRONTEND_SUBNET names."""
    _deployable(run)
    (subnet,) = deploy.free_subnets(1, pool=subnet_pool())
    network = f"{run.project}-someone-else"
    docker.docker(["network", "create", "--subnet", subnet, network])
    run.cleanup.callback(docker.docker, ["network", "rm", network], check=False)
    run.env["FRONTEND_SUBNET"] = subnet


def running_from_another_checkout(run: Run) -> None:
    """A container of the case's project runs, started by Compose from another checkout's files."""
    _deployable(run)
    name = f"{run.project}_api_1"
    docker.docker(
        ["run", "-d", "--name", name,
         "--label", f"com.docker.compose.project={run.project}",
         "--label", "com.docker.compose.service=api",
         "--label", "com.docker.compose.project.working_dir=/srv/other-checkout/compose",
         "analyticbot/python-runtime:bookworm", "python3", "-c", "import time; time.sleep(300)"]
    )  # fmt: skip
    run.cleanup.callback(docker.docker, ["rm", "-f", "-v", name], check=False)


def mismatched_key(run: Run) -> None:
    """Dev certificates, then privkey.pem replaced by another EC key (same mode and owner)."""
    tls.ensure_dev_certificates(run.tls_dir)
    key_path = run.tls_dir / "privkey.pem"
    info = key_path.stat()
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write(key_path, other, 0o600)
    os.chown(key_path, info.st_uid, info.st_gid)


def garbage_certificate(run: Run) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write(run.tls_dir / "fullchain.pem", "this is not a certificate\n", 0o644)
    write(run.tls_dir / "privkey.pem", key, 0o600)


def prod_secrets(run: Run) -> None:
    """Every prod secret valid (a bot token of the right shape), no certificate: what a first deploy starts from."""
    secrets.from_env("prod", run.secrets_dir, environ={"BOT_TOKEN": "123456789:" + "A" * 35})


def prod_secrets_and_a_mismatched_key(run: Run) -> None:
    prod_secrets(run)
    mismatched_key(run)


def prod_secrets_and_an_expired_certificate(run: Run) -> None:
    """A pair that matches, but whose day ran out two days ago."""
    prod_secrets(run)
    tls.write_bootstrap_certificate(run.tls_dir, "localhost", now=datetime.now(UTC) - timedelta(days=3))


def prod_secrets_and_a_key_without_its_certificate(run: Run) -> None:
    """privkey.pem is there, fullchain.pem is not: writing a certificate for it would need a person."""
    prod_secrets(run)
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write(run.tls_dir / "privkey.pem", key, 0o600)


def unrecorded_dump(run: Run) -> None:
    """A dump-shaped file with no backup record beside it (copied from somewhere)."""
    (run.root / "copied.dump").write_bytes(b"PGDMP" + b"\0" * 64)


def foreign_dump(run: Run) -> None:
    """A dump whose record says it is another project's."""
    dump = run.root / "foreign.dump"
    dump.write_bytes(b"PGDMP" + b"\0" * 64)
    record = {"format": "analyticbot-backup/1", "project": "someone-else", "env": "prod", "created": "2026-01-01",
              "sha256": hashlib.sha256(dump.read_bytes()).hexdigest(), "size": 69, "entries": 3}  # fmt: skip
    (run.root / "foreign.dump.json").write_text(json.dumps(record))


def _project_invoke_yaml(text: str) -> Callable[[Run], None]:
    """The repository's invoke.yaml holding `text` for the case (a user's own file is never touched:
    the case is skipped where one exists)."""

    def setup(run: Run) -> None:
        path = REPO_ROOT / "invoke.yaml"
        if path.exists():
            pytest.skip("the repository has its own invoke.yaml, which no test may change")
        path.write_text(text)
        run.cleanup.callback(path.unlink, missing_ok=True)

    return setup


def existing_staging_env_file(run: Run) -> None:
    """env-template --write must refuse an existing .env.staging. The repository's own
    file, if there is one, is left alone (and watched); otherwise one with the template's
    defaults is created for this case and removed after it."""
    path = REPO_ROOT / ".env.staging"
    if path.exists():
        return
    path.write_text(environment.template("staging") + "# written by tests/integration/test_bad_input.py for a moment\n")
    run.cleanup.callback(path.unlink, missing_ok=True)


# --- the catalogue ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    message: str  # regex searched in the last stderr line ({project} etc. filled in)
    env: Mapping[str, str] = field(default_factory=dict)
    setup: Callable[[Run], None] | None = None
    stdout: str = ""  # regex that stdout must match, where the details are printed there
    hidden: tuple[str, ...] = ()  # values that must appear nowhere in the output
    guard_env: str = ""  # a deploy: first prove the env resolves to the throwaway project
    xfail: str = ""  # a product bug: the case stays, marked strict


CASES: tuple[Case, ...] = (
    # 1. no Docker daemon
    Case(
        "no-daemon-ps",
        ("ps",),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    Case(
        "no-daemon-up",
        ("up", "--env", "dev", "--timeout", "5"),
        EXIT_NO_DOCKER,
        r"Docker daemon is not reachable at unix:///nonexistent/docker\.sock",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    Case(
        "no-daemon-analyze-layers",
        ("analyze-layers", "--service", "api"),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    # 2. an unknown environment
    Case("ps-unknown-env", ("ps", "--env", "nope"), EXIT_BAD_INPUT, r"unknown environment 'nope'; use one of: dev"),
    Case(
        "secrets-check-unknown-env",
        ("secrets-check", "--env", "nope"),
        EXIT_BAD_INPUT,
        r"unknown environment 'nope'",
    ),
    # 3. a malformed .env line
    Case(
        "env-validate-malformed-line-3",
        ("env-validate", "--file", "{tmp}/bad.env"),
        EXIT_BAD_INPUT,
        r"bad\.env:3: malformed line",
        setup=bad_env_file,
        hidden=(BAD_LINE_TEXT,),
    ),
    Case(
        "secrets-from-env-malformed-env-file",
        ("secrets-from-env", "--env-file", "{tmp}/bad.env"),
        EXIT_BAD_INPUT,
        r"bad\.env:3: malformed line .*nothing was written",
        setup=bad_env_file,
        hidden=(BAD_LINE_TEXT,),
    ),
    Case(
        "env-validate-line-without-equals",
        ("env-validate", "--file", "{tmp}/bare.env"),
        EXIT_BAD_INPUT,
        r"bare\.env:4: HTTPS_PORT has no '=' \(expected NAME=value\)",
        setup=env_file_with_a_bare_name,
    ),
    Case(
        "secrets-from-env-missing-env-file",
        ("secrets-from-env", "--env-file", "{tmp}/absent.env"),
        EXIT_BAD_INPUT,
        r"env file .*absent\.env not found",
    ),
    # 4. a missing required secret
    Case(
        "secrets-check-prod-empty-folder",
        ("secrets-check", "--env", "prod"),
        EXIT_FAILED,
        r"a required secret is missing",
    ),
    # 5. a secret that is a directory
    Case(
        "secrets-from-env-secret-is-a-directory",
        ("secrets-from-env",),
        EXIT_BAD_INPUT,
        r"postgres_password is a directory, not a secret file",
        setup=secret_is_a_directory,
    ),
    Case(
        "secrets-check-secret-is-a-directory",
        ("secrets-check",),
        EXIT_FAILED,
        r"a secret is invalid",
        setup=secret_is_a_directory,
        stdout=r"postgres_password: .*postgres_password is a directory",
    ),
    # 6. a symlink out of SECRETS_DIR
    Case(
        "secrets-from-env-symlink-outside",
        ("secrets-from-env",),
        EXIT_BAD_INPUT,
        r"postgres_password is a symlink to .*outside.*refusing to use it",
        setup=symlink_outside,
        hidden=(OUTSIDE_SECRET,),
    ),
    Case(
        "secrets-rotate-symlink-outside",
        ("secrets-rotate", "--name", "postgres_password"),
        EXIT_BAD_INPUT,
        r"postgres_password is a symlink to .*refusing to use it",
        setup=symlink_outside,
        hidden=(OUTSIDE_SECRET,),
    ),
    # 7. a weak user-supplied password
    Case(
        "secrets-from-env-weak-password",
        ("secrets-from-env",),
        EXIT_BAD_INPUT,
        r"nothing was written; invalid: postgres_password \(is too weak",
        env={"POSTGRES_PASSWORD": WEAK_PASSWORD},
        hidden=(WEAK_PASSWORD,),
    ),
    # 8. a malformed bot token
    Case(
        "secrets-from-env-malformed-bot-token",
        ("secrets-from-env",),
        EXIT_BAD_INPUT,
        r"nothing was written; invalid: bot_token \(does not match",
        env={"BOT_TOKEN": MALFORMED_TOKEN},
        hidden=(MALFORMED_TOKEN,),
    ),
    # 9. secrets-init without a terminal
    Case(
        "secrets-init-without-tty",
        ("secrets-init",),
        EXIT_BAD_INPUT,
        r"secrets\.init needs a terminal; use `invoke secrets\.from-env`",
    ),
    # 10, 11. rotating what cannot be rotated
    Case(
        "secrets-rotate-unknown-name",
        ("secrets-rotate", "--name", "nope"),
        EXIT_BAD_INPUT,
        r"unknown secret 'nope'; known secrets: postgres_password",
    ),
    Case(
        "secrets-rotate-user-secret",
        ("secrets-rotate", "--name", "bot_token"),
        EXIT_BAD_INPUT,
        r"bot_token is supplied by you, not generated.*secrets\.from-env --force",
    ),
    Case(
        "secrets-rotate-derived-secret",
        ("secrets-rotate", "--name", "redis_acl"),
        EXIT_BAD_INPUT,
        r"redis_acl is derived from redis_password",
    ),
    # 12. the proxy's port already taken (the port check runs after images, secrets, certificate)
    Case(
        "up-https-port-in-use",
        ("up", "--env", "dev", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"port 127\.0\.0\.1:\d+ \(HTTPS_PORT\) is already in use",
        setup=https_port_taken,
        guard_env="dev",
    ),
    # deploys whose checks refuse before anything starts
    Case(
        "up-prod-secrets-not-ready",
        ("up", "--env", "prod", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"secrets not ready for prod: postgres_password",
        guard_env="prod",
    ),
    Case(
        "deploy-prod-secrets-not-ready",
        ("deploy-prod-secrets", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"prod secrets are not ready; run `invoke secrets\.check --env prod`",
        guard_env="prod",
    ),
    # 13. domains no ACME CA issues for
    Case(
        "ssl-prod-localhost",
        ("ssl-prod", "--domain", "localhost"),
        EXIT_BAD_INPUT,
        r"'localhost' is a localhost name",
    ),
    Case(
        "ssl-prod-ip-address",
        ("ssl-prod", "--domain", "127.0.0.1"),
        EXIT_BAD_INPUT,
        r"'127\.0\.0\.1' is an IP address",
    ),
    Case(
        "ssl-prod-domain-with-space",
        ("ssl-prod", "--domain", "bad domain"),
        EXIT_BAD_INPUT,
        r"'bad domain' contains white space",
    ),
    # 14. ssl-prod with no proxy running
    Case(
        "ssl-prod-proxy-not-running",
        ("ssl-prod", "--domain", "example.org"),
        EXIT_BAD_INPUT,
        r"the proxy of {project} is not running",
    ),
    Case(
        "ssl-prod-missing-ca-bundle",
        ("ssl-prod", "--domain", "example.org", "--ca-bundle", "{tmp}/absent-ca.pem"),
        EXIT_BAD_INPUT,
        r"no CA bundle at .*absent-ca\.pem",
    ),
    Case(
        "ssl-setup-staging-without-domain",
        ("ssl-setup", "--env", "staging"),
        EXIT_BAD_INPUT,
        r"no domain for staging: pass --domain",
    ),
    # 15, 16. certificates: a key of another pair, none at all, not PEM
    Case(
        "ssl-status-key-mismatch",
        ("ssl-status",),
        EXIT_FAILED,
        r"privkey\.pem does not match the certificate",
        setup=mismatched_key,
    ),
    Case(
        "ssl-status-no-certificate",
        ("ssl-status",),
        EXIT_BAD_INPUT,
        r"no certificate at .*fullchain\.pem",
    ),
    Case(
        "ssl-status-not-a-certificate",
        ("ssl-status",),
        EXIT_BAD_INPUT,
        r"fullchain\.pem holds no PEM certificate",
        setup=garbage_certificate,
    ),
    Case(
        "ssl-dev-days-out-of-range",
        ("ssl-dev", "--days", "5"),
        EXIT_BAD_INPUT,
        r"--days must be between \d+ and \d+",
    ),
    # 17. settings compose would accept and then fail on
    Case(
        "env-check-port-not-a-number",
        ("env-check",),
        EXIT_BAD_INPUT,
        r"HTTPS_PORT must be a port number, got 'notaport'",
        env={"HTTPS_PORT": "notaport"},
    ),
    Case(
        "ssl-prod-for-dev",
        ("ssl-prod", "--env", "dev", "--domain", "bot.example.org"),
        EXIT_BAD_INPUT,
        r"tls\.prod is for staging and prod; dev uses the local CA",
    ),
    Case(
        "ssl-prod-bad-email-before-any-proxy",
        ("ssl-prod", "--domain", "bot.example.org", "--email", "not-an-address"),
        EXIT_BAD_INPUT,
        r"'not-an-address' is not an email address",
    ),
    Case(
        "health-check-nothing-running",
        ("health-check",),
        EXIT_UNHEALTHY,
        r"error: {project} is missing",
    ),
    Case(
        "env-check-port-in-another-script",
        ("env-check",),
        EXIT_BAD_INPUT,
        r"HTTPS_PORT must be a port number, got '١٨٤٤٣'",
        env={"HTTPS_PORT": "١٨٤٤٣"},
    ),
    Case(
        "up-timeout-zero",
        ("up", "--env", "dev", "--timeout", "0"),
        EXIT_BAD_INPUT,
        r"--timeout must be more than 0 seconds, got 0",
    ),
    Case(
        "up-timeout-negative",
        ("up", "--env", "dev", "--timeout", "-5"),
        EXIT_BAD_INPUT,
        r"--timeout must be more than 0 seconds, got -5",
    ),
    Case(
        "up-timeout-not-a-number",
        ("up", "--env", "dev", "--timeout", "abc"),
        EXIT_BAD_INPUT,
        r"--timeout must be a number, got 'abc'",
    ),
    Case(
        "backup-keep-not-whole",
        ("backup", "--keep", "1.5"),
        EXIT_BAD_INPUT,
        r"--keep must be a whole number, got '1.5'",
    ),
    Case(
        "restart-timeout-negative",
        ("restart", "--timeout", "-5"),
        EXIT_BAD_INPUT,
        r"--timeout must be more than 0 seconds, got -5",
    ),
    Case(
        "service-logs-no-daemon",
        ("service-logs", "--service", "api"),
        EXIT_NO_DOCKER,
        r"Docker daemon is not reachable",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    Case(
        "env-check-server-name-not-a-name",
        ("env-check",),
        EXIT_BAD_INPUT,
        r"EXTRA_SERVER_NAMES holds 'evil/x', which is not a host name",
        env={"EXTRA_SERVER_NAMES": "localhost evil/x"},
    ),
    Case(
        "ps-subnet-out-of-range",
        ("ps",),
        EXIT_BAD_INPUT,
        r"FRONTEND_SUBNET must be a subnet like .*'300\.1\.2\.0/24'",
        env={"FRONTEND_SUBNET": "300.1.2.0/24"},
    ),
    Case(
        "env-check-bind-not-an-ip",
        ("env-check",),
        EXIT_BAD_INPUT,
        r"PROXY_BIND must be an IP address, got 'not-an-ip'",
        env={"PROXY_BIND": "not-an-ip"},
    ),
    # 18. an image over its size budget (Invoke's env override of ops.budgets_mb.api)
    Case(
        "analyze-layers-over-budget",
        ("analyze-layers", "--service", "api"),
        EXIT_FAILED,
        r"api is [\d.]+ MB, over its budget of 1 MB",
        env={"INVOKE_OPS_BUDGETS_MB_API": "1"},
    ),
    # 19. unknown service names
    Case("logs-unknown-service", ("logs", "--service", "nope"), EXIT_BAD_INPUT, r"unknown service 'nope'; known:"),
    Case(
        "build-optimized-unknown-service",
        ("build-optimized", "--service", "nope"),
        EXIT_BAD_INPUT,
        r"unknown service 'nope'; known: api",
    ),
    Case(
        "analyze-layers-unknown-service",
        ("analyze-layers", "--service", "nope"),
        EXIT_BAD_INPUT,
        r"unknown service 'nope'",
    ),
    Case(
        "up-unknown-service",
        ("up", "--env", "dev", "--service", "nope", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"unknown service 'nope'; known: postgres",
    ),
    # 20. base images
    Case(
        "base-images-unknown-name",
        ("base-images", "--name", "nope"),
        EXIT_BAD_INPUT,
        r"unknown base image 'nope'; known: python-runtime",
    ),
    Case(
        "base-images-unknown-source",
        ("base-images", "--source", "bogus"),
        EXIT_BAD_INPUT,
        r"unknown base image source 'bogus'; use 'debian' or 'official'",
    ),
    # 21. restore and backup with nothing to work on
    Case(
        "restore-missing-file",
        ("restore", "--file", "{tmp}/absent.dump"),
        EXIT_BAD_INPUT,
        r"no backup at .*absent\.dump",
    ),
    Case(
        "restore-dump-without-record",
        ("restore", "--file", "{tmp}/copied.dump", "--force"),
        EXIT_BAD_INPUT,
        r"has no backup record .*pass --allow-foreign",
        setup=unrecorded_dump,
    ),
    Case(
        "restore-dump-of-another-project",
        ("restore", "--file", "{tmp}/foreign.dump", "--force"),
        EXIT_BAD_INPUT,
        r"is a backup of someone-else \(prod\), not of {project} \(dev\)",
        setup=foreign_dump,
    ),
    Case(
        "backup-verify-missing-file",
        ("backup", "--verify", "{tmp}/absent.dump"),
        EXIT_BAD_INPUT,
        r"no backup at .*absent\.dump",
    ),
    Case(
        "backup-keep-negative",
        ("backup", "--keep", "-1"),
        EXIT_BAD_INPUT,
        r"must keep at least 1 backup, got -1",
    ),
    Case(
        "backup-stack-not-running",
        ("backup", "--output", "{tmp}/backups"),
        EXIT_FAILED,
        r"postgres of {project} is not running",
    ),
    # 26. point-in-time restores and pgBackRest backups refused before anything runs
    Case(
        "restore-to-not-a-time",
        ("restore", "--to", "yesterday"),
        EXIT_BAD_INPUT,
        r"--to must be `latest` or a time like 2026-12-07T16:59:00Z \(UTC without an offset\), got 'yesterday'",
    ),
    Case(
        "restore-to-the-future",
        ("restore", "--to", "2999-01-01T00:00:00Z"),
        EXIT_BAD_INPUT,
        r"--to 2999-01-01T00:00:00\+00:00 is in the future .*nothing was touched",
    ),
    Case(
        "restore-repo-3",
        ("restore", "--to", "latest", "--repo", "3"),
        EXIT_BAD_INPUT,
        r"--repo must be 1 \(this host\) or 2 \(the repository host\), got 3",
    ),
    Case(
        "restore-without-the-cipher-key",
        ("restore", "--to", "latest"),
        EXIT_BAD_INPUT,
        r"the repositories' cipher key is missing \(.*pgbackrest_cipher_pass\).*nothing was touched",
    ),
    Case(
        "backup-unknown-kind",
        ("backup", "--kind", "weekly"),
        EXIT_BAD_INPUT,
        r"--kind must be dump, full, diff, incr; got 'weekly'",
    ),
    Case(
        "restore-drill-without-a-time",
        ("restore", "--into", "scratch"),
        EXIT_BAD_INPUT,
        r"--into is the drill of a point-in-time restore: give --to latest\|TIME with it",
    ),
    # 25. what runs is protected before anything is written, built or started
    Case(
        "secrets-from-env-over-an-existing-database",
        ("secrets-from-env",),
        EXIT_BAD_INPUT,
        r"the database volume {project}_pgdata exists but .*postgres_password does not",
        setup=existing_database_volume,
    ),
    Case(
        "setup-dev-with-secrets-over-an-existing-database",
        ("setup-dev-with-secrets", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"the database volume {project}_pgdata exists .*Restore the old secrets folder",
        setup=existing_database_volume,
        guard_env="dev",
    ),
    Case(
        "up-subnet-overlaps-another-network",
        ("up", "--env", "dev", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"FRONTEND_SUBNET \S+ overlaps the Docker network {project}-someone-else",
        setup=another_network_on_the_subnet,
        guard_env="dev",
    ),
    Case(
        "up-project-running-from-another-checkout",
        ("up", "--env", "dev", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"project {project} runs from another checkout \(/srv/other-checkout/compose\)",
        setup=running_from_another_checkout,
        guard_env="dev",
    ),
    # 27. the namespaced tasks, the old names, and Invoke's own parse errors (one line, exit 2, not its exit 1)
    Case(
        "missing-positional-argument",
        ("service-logs",),
        EXIT_BAD_INPUT,
        r"^error: 'service-logs' did not receive required positional arguments: 'service'$",
    ),
    Case("unknown-option", ("stack.ps", "--bogus"), EXIT_BAD_INPUT, r"^error: No idea what '--bogus' is!$"),
    Case("unknown-task", ("stack.nope",), EXIT_BAD_INPUT, r"^error: No idea what 'stack\.nope' is!$"),
    Case("health-check-namespaced", ("health.check",), EXIT_UNHEALTHY, r"^error: {project} is missing$"),
    Case("health-status-nothing-running", ("health-status",), EXIT_UNHEALTHY, r"^error: {project}: no container$"),
    Case(
        "setup-prod-with-dev-secrets-option",
        ("stack.setup", "--env", "prod", "--secrets"),
        EXIT_BAD_INPUT,
        r"--secrets is for dev",
    ),
    # 28. no daemon: every task that needs one says so first, before it writes anything
    Case("no-daemon-down", ("down",), EXIT_NO_DOCKER, r"Docker daemon", env={"DOCKER_HOST": NO_DAEMON}),
    Case("no-daemon-restart", ("restart",), EXIT_NO_DOCKER, r"Docker daemon", env={"DOCKER_HOST": NO_DAEMON}),
    Case("no-daemon-logs", ("logs",), EXIT_NO_DOCKER, r"Docker daemon", env={"DOCKER_HOST": NO_DAEMON}),
    Case(
        "no-daemon-secrets-rotate",
        ("secrets-rotate", "--name", "jwt_secret_key"),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
        setup=dev_secrets_and_certificates,
    ),
    Case(
        "no-daemon-setup-dev-with-secrets",
        ("setup-dev-with-secrets", "--timeout", "5"),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    Case(
        "no-daemon-stack-deploy",
        ("stack.deploy", "--env", "dev", "--timeout", "5"),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    # 30. the monitoring overlay: its tasks need the daemon, its stack its secrets
    Case(
        "no-daemon-monitoring-alerts",
        ("monitoring.alerts",),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    Case(
        "no-daemon-monitoring-targets",
        ("monitoring.targets",),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    Case(
        "no-daemon-monitoring-silence",
        ("monitoring.silence", "--alert", "PostgresDown", "--reason", "drill"),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    Case(
        "monitoring-silence-unknown-alert",
        ("monitoring.silence", "--alert", "PostgresDwn", "--reason", "drill"),
        EXIT_BAD_INPUT,
        r"unknown alert 'PostgresDwn'; known: ServiceDown",
    ),
    Case(
        "monitoring-silence-bad-duration",
        ("monitoring.silence", "--alert", "PostgresDown", "--for", "soon", "--reason", "drill"),
        EXIT_BAD_INPUT,
        r"--for must be a duration like 30m, 1h or 2d, got 'soon'",
    ),
    Case(
        "up-dev-monitoring-secret-missing",
        ("up", "--env", "dev", "--timeout", "5"),
        EXIT_BAD_INPUT,
        r"secrets not ready for dev: prometheus_password",
        setup=dev_secrets_without_the_monitoring_password,
        guard_env="dev",
    ),
    # 29. Swarm: refused before any engine is started or any image pushed
    Case(
        "swarm-deploy-dev",
        ("swarm.deploy", "--env", "dev"),
        EXIT_BAD_INPUT,
        r"the swarm stack is for staging and prod",
    ),
    Case("swarm-lab-up-no-nodes", ("swarm.lab-up", "--nodes", "0"), EXIT_BAD_INPUT, r"--nodes must be between 1 and 9"),
    Case(
        "swarm-status-unknown-swarm",
        ("swarm.status", "--context", "abnowhere"),
        EXIT_BAD_INPUT,
        r"'abnowhere' is not a lab started here: name the registry",
    ),
    Case(
        "swarm-deploy-unknown-context",
        ("swarm.deploy", "--context", "abnowhere", "--registry", "127.0.0.1:1"),
        EXIT_BAD_INPUT,
        r"no Docker context 'abnowhere'",
        setup=prod_secrets,
    ),
    # A swarm deploy runs the Compose preflight's checks, the swarm last: a certificate it cannot serve is named
    # before any swarm is reached, and nothing is written (not even a bootstrap certificate).
    Case(
        "swarm-deploy-key-mismatch",
        ("swarm.deploy", "--context", "abnowhere", "--registry", "127.0.0.1:1"),
        EXIT_BAD_INPUT,
        r"the proxy's certificate is unusable: privkey\.pem does not match the certificate",
        setup=prod_secrets_and_a_mismatched_key,
    ),
    Case(
        "swarm-deploy-expired-certificate",
        ("swarm.deploy", "--context", "abnowhere", "--registry", "127.0.0.1:1"),
        EXIT_BAD_INPUT,
        r"the proxy's certificate is unusable: expired on ",
        setup=prod_secrets_and_an_expired_certificate,
    ),
    Case(
        "swarm-deploy-key-without-certificate",
        ("swarm.deploy", "--context", "abnowhere", "--registry", "127.0.0.1:1"),
        EXIT_BAD_INPUT,
        r"no certificate at .*fullchain\.pem; run `invoke tls\.dev` or `invoke tls\.prod`",
        setup=prod_secrets_and_a_key_without_its_certificate,
    ),
    Case(
        "swarm-deploy-secrets-not-ready",
        ("swarm.deploy", "--context", "abnowhere", "--registry", "127.0.0.1:1"),
        EXIT_BAD_INPUT,
        r"secrets not ready for prod: postgres_password",
    ),
    # Certificates on a swarm: the request is checked before any swarm is looked for.
    Case(
        "tls-prod-swarm-localhost",
        ("tls.prod", "--context", "abnowhere", "--domain", "localhost"),
        EXIT_BAD_INPUT,
        r"'localhost' is a localhost name",
    ),
    Case(
        "tls-prod-swarm-bad-email",
        ("tls.prod", "--context", "abnowhere", "--domain", "analytics.example.org", "--email", "nobody"),
        EXIT_BAD_INPUT,
        r"'nobody' is not an email address",
    ),
    Case(
        # An expired pair is what tls.prod replaces: its check is skipped, and the next one (the swarm) speaks.
        "tls-prod-swarm-over-an-expired-certificate",
        ("tls.prod", "--context", "abnowhere", "--domain", "analytics.example.org", "--email", "ops@example.org"),
        EXIT_BAD_INPUT,
        r"'abnowhere' is not a lab started here",
        setup=prod_secrets_and_an_expired_certificate,
    ),
    Case(
        "tls-renew-swarm-not-started",
        ("tls.renew", "--context", "abnowhere"),
        EXIT_BAD_INPUT,
        r"'abnowhere' is not a lab started here",
    ),
    Case(
        "schedule-install-swarm-bad-context",
        ("schedule.install", "--context", "lab+1", "--unit-dir", "{tmp}"),
        EXIT_BAD_INPUT,
        r"--context 'lab\+1' is not a name a timer can carry",
    ),
    Case(
        "env-preflight-swarm-not-started",
        ("env.preflight", "--env", "prod", "--swarm", "--context", "abnowhere"),
        EXIT_FAILED,
        r"prod is not deployable on the swarm abnowhere \(see above\)",
        setup=prod_secrets,
        stdout=r"'abnowhere' is not a lab started here",
    ),
    Case(
        "no-daemon-swarm-lab-up",
        ("swarm.lab-up",),
        EXIT_NO_DOCKER,
        r"Docker daemon",
        env={"DOCKER_HOST": NO_DAEMON},
    ),
    # 26. the toolkit's settings file
    Case(
        "invoke-yaml-unknown-setting",
        ("env-check",),
        EXIT_BAD_INPUT,
        r"invoke\.yaml: unknown ops setting 'nmespace'",
        setup=_project_invoke_yaml("ops:\n  nmespace: other\n"),
    ),
    Case(
        "invoke-yaml-bad-namespace",
        ("build-optimized",),
        EXIT_BAD_INPUT,
        r"ops\.namespace 'Bad Namespace!' is not an image repository path",
        setup=_project_invoke_yaml('ops: {namespace: "Bad Namespace!"}\n'),
    ),
    Case(
        "invoke-yaml-wrong-type",
        ("env-check",),
        EXIT_BAD_INPUT,
        r"ops\.backup_keep must be a whole number of at least 1, got 'seven'",
        setup=_project_invoke_yaml("ops:\n  backup_keep: seven\n"),
    ),
    Case(
        "invoke-yaml-not-yaml",
        ("--list",),
        EXIT_BAD_INPUT,
        r"invoke\.yaml is not valid YAML \(line 2\)",
        setup=_project_invoke_yaml("ops: [unclosed\n"),
    ),
    # 24. API tokens
    Case(
        "api-token-unknown-scope",
        ("api-token", "--scope", "admin"),
        EXIT_BAD_INPUT,
        r"--scope must be read or write, got admin",
    ),
    Case(
        "api-token-zero-ttl",
        ("api-token", "--ttl", "0"),
        EXIT_BAD_INPUT,
        r"--ttl must be more than 0 and at most 366d",
    ),
    Case(
        "api-token-ttl-not-a-duration",
        ("api-token", "--ttl", "1w"),
        EXIT_BAD_INPUT,
        r"--ttl must be a number with an optional unit",
    ),
    Case(
        "api-token-without-secrets",
        ("api-token", "--scope", "write"),
        EXIT_BAD_INPUT,
        r"secret jwt_secret_key is missing",
    ),
    # 22, 23. settings files
    Case(
        "env-validate-secret-in-settings-file",
        ("env-validate", "--file", "{tmp}/settings.env"),
        EXIT_BAD_INPUT,
        r"1 problem\(s\) in the dev settings",
        setup=secret_in_settings_file,
        stdout=r"POSTGRES_PASSWORD looks like a secret",
        hidden=(SETTINGS_FILE_SECRET,),
    ),
    Case(
        "env-template-write-existing-file",
        ("env-template", "--env", "staging", "--write"),
        EXIT_BAD_INPUT,
        r"\.env\.staging exists and is never overwritten",
        setup=existing_staging_env_file,
    ),
)


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


# --- snapshots: what must not change ----------------------------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root (root included): kind, mode, owner, and a hash of the bytes (never the bytes:
    these are secrets, and an assertion message would print them)."""
    if not os.path.lexists(root):
        return {str(root): ("absent",)}
    found: dict[str, tuple[object, ...]] = {}
    paths = [root]
    if root.is_dir() and not root.is_symlink():
        for folder, dirs, files in os.walk(root):
            paths += [Path(folder) / name for name in sorted(dirs + files)]
    for path in paths:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            found[str(path)] = ("symlink", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            found[str(path)] = ("dir", oct(mode), info.st_uid, info.st_gid)
        elif stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            found[str(path)] = ("file", oct(mode), info.st_uid, info.st_gid, info.st_size, digest)
        else:
            found[str(path)] = ("other", oct(mode))
    return found


@dataclass(frozen=True)
class DockerObject:
    kind: str  # container, network, volume
    ident: str
    project: str  # com.docker.compose.project
    text: str  # names, networks, mounts: where a project's name shows
    testcontainers: bool = False  # made through testcontainers (its org.testcontainers labels)

    def owner(self, run: Run) -> str:
        """Whose object this is, where a case could have made it: '' when it is someone else's."""
        if self.project == run.project or run.project in self.text or str(run.root) in self.text:
            return THIS_CASE
        for default in DEFAULT_PROJECTS:
            if self.project == default or f"{default}_" in self.text:
                return f"the default project {default}"
        return ""

    def of_this_suite(self) -> bool:
        """Made by this test suite, for another test: on another xdist worker, at the same time."""
        return self.testcontainers or bool(SUITE_NAME.search(f"{self.project} {self.text}"))


COMPOSE_LABEL = "com.docker.compose.project"
TESTCONTAINERS_LABEL = "org.testcontainers.lang"
# The suite's throwaway projects, volumes and labs: abtest-, abmon-, abpitr-, ablab-, abedgetls-, abbad-, ...
# and a hex id (tests/integration, tests/sandbox.py).
SUITE_NAME = re.compile(r"\bab[a-z]+-[0-9a-f]{6,}")
LISTINGS = {
    "container": (
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        f'{{{{.ID}}}}\t{{{{.Label "{COMPOSE_LABEL}"}}}}\t{{{{.Label "{TESTCONTAINERS_LABEL}"}}}}'
        "\t{{.Names}} {{.Networks}} {{.Mounts}}",
    ),
    "network": (
        "network",
        "ls",
        "--no-trunc",
        "--format",
        f'{{{{.ID}}}}\t{{{{.Label "{COMPOSE_LABEL}"}}}}\t{{{{.Label "{TESTCONTAINERS_LABEL}"}}}}\t{{{{.Name}}}}',
    ),
    "volume": (
        "volume",
        "ls",
        "--format",
        f'{{{{.Name}}}}\t{{{{.Label "{COMPOSE_LABEL}"}}}}\t{{{{.Label "{TESTCONTAINERS_LABEL}"}}}}\t{{{{.Name}}}}',
    ),
}


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _engine_get(socket_path: str, path: str) -> Any:
    connection = _UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, f"GET {path}: {response.status} {body[:200]!r}"
    return json.loads(body)


def _object(kind: str, ident: str, labels: Mapping[str, str] | None, text: str) -> DockerObject:
    labels = labels or {}
    return DockerObject(kind, ident, labels.get(COMPOSE_LABEL, ""), text, TESTCONTAINERS_LABEL in labels)


def _objects_from_socket(socket_path: str) -> dict[str, DockerObject]:
    """The three listings from the Engine API: a few ms, where the CLI takes ~100 ms a call."""
    found = []
    for c in _engine_get(socket_path, "/containers/json?all=1"):
        networks = ",".join(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        mounts = ",".join(m.get("Name") or m.get("Source") or "" for m in c.get("Mounts") or [])
        names = ",".join(name.lstrip("/") for name in c.get("Names") or [])
        found.append(_object("container", c["Id"], c.get("Labels"), f"{names} {networks} {mounts}"))
    for n in _engine_get(socket_path, "/networks"):
        found.append(_object("network", n["Id"], n.get("Labels"), n["Name"]))
    for v in _engine_get(socket_path, "/volumes").get("Volumes") or []:
        found.append(_object("volume", v["Name"], v.get("Labels"), v["Name"]))
    return {f"{o.kind} {o.ident}": o for o in found}


def _objects_from_cli() -> dict[str, DockerObject]:
    """`docker ps -a`, `docker network ls`, `docker volume ls`, asked at once."""
    client = docker.client().path
    running = {
        kind: subprocess.Popen([client, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for kind, args in LISTINGS.items()
    }
    objects: dict[str, DockerObject] = {}
    for kind, process in running.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"listing {kind}s failed: {err.strip()}"
        for line in out.splitlines():
            ident, project, testcontainers, text = [*line.split("\t", 3), "", "", ""][:4]
            objects[f"{kind} {ident}"] = DockerObject(kind, ident, project, text, bool(testcontainers))
    return objects


def docker_objects() -> dict[str, DockerObject]:
    """Every container, network and volume of the daemon, with what tells its owner."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    socket_path = host.removeprefix("unix://") if host.startswith("unix://") else ""
    if socket_path and os.path.exists(socket_path):
        return _objects_from_socket(socket_path)
    return _objects_from_cli()


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, tuple[object, ...]]
    docker: dict[str, DockerObject]


def snapshot(run: Run) -> Snapshot:
    files: dict[str, tuple[object, ...]] = {}
    for root in (run.root, *REPO_WATCHED):
        files.update(tree(root))
    return Snapshot(files, docker_objects())


def file_changes(before: Snapshot, after: Snapshot) -> list[str]:
    changes = []
    for path in sorted(before.files.keys() | after.files.keys()):
        old, new = before.files.get(path, ("absent",)), after.files.get(path, ("absent",))
        if old != new:
            changes.append(f"{path}: {old} -> {new}")
    return changes


def docker_changes(before: Snapshot, after: Snapshot, run: Run) -> tuple[list[str], list[str]]:
    """Containers, networks and volumes that appeared or went: those a case could own (its throwaway
    project or folders, a default project) fail it; the suite's own, for tests on other xdist workers, are
    expected and pass unsaid; any other is another user's of the shared daemon, and warns."""
    ours, foreign = [], []
    for key in sorted(before.docker.keys() ^ after.docker.keys()):
        obj = after.docker.get(key) or before.docker[key]
        change = f"{'appeared' if key in after.docker else 'went'}: {key} ({obj.project or 'no project'}) {obj.text}"
        owner = obj.owner(run)
        if owner:
            ours.append(f"{change} [{owner}]")
        elif not obj.of_this_suite():
            foreign.append(f"{change} [not ours]")
    return ours, foreign


def remove_what_the_case_started(before: Snapshot, after: Snapshot, run: Run) -> list[str]:
    """Remove what a broken case started (new objects of its project or folders); return what they were."""
    started = [o for key, o in after.docker.items() if key not in before.docker and o.owner(run) == THIS_CASE]
    for kind, command in (
        ("container", ["rm", "-f", "-v"]),
        ("network", ["network", "rm"]),
        ("volume", ["volume", "rm"]),
    ):
        for obj in (o for o in started if o.kind == kind):
            docker.docker([*command, obj.ident], check=False)
    return [f"{o.kind} {o.ident} {o.text}" for o in started]


def assert_throwaway_project(run: Run, env: str) -> None:
    """Before a deploy task runs, prove its stack resolves to this case's project, never a real one."""
    code = "import sys\nfrom analyticbot_ops import compose\nprint(compose.load_stack(sys.argv[1]).project)"
    result = subprocess.run(
        [sys.executable, "-c", code, env], env=run.env, cwd=run.root / "cwd", capture_output=True, text=True
    )
    assert result.stdout.strip() == run.project, f"{env} resolves to {result.stdout.strip()!r}: {result.stderr}"


# --- the tests --------------------------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    project = f"abbad-{uuid.uuid4().hex[:8]}"
    for name in ("secrets", "tls", "cwd"):
        (tmp_path / name).mkdir(mode=0o700)
    with contextlib.ExitStack() as cleanup:
        yield Run(tmp_path, project, base_env(tmp_path, project), cleanup)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input_fails_with_one_line_and_changes_nothing(case: Case, run: Run) -> None:
    run.env.update({key: run.fmt(value) for key, value in case.env.items()})
    if case.setup is not None:
        case.setup(run)
    if case.guard_env:
        assert_throwaway_project(run, case.guard_env)
    before = snapshot(run)
    try:
        result = subprocess.run(
            [INVOKE, "-r", str(REPO_ROOT), *(run.fmt(arg) for arg in case.args)],
            cwd=run.root / "cwd",
            env=run.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        after = snapshot(run)
        started = remove_what_the_case_started(before, after, run)
    assert not started, f"the case started something under {run.project} (now removed): {started}"

    shown = f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == case.code, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), shown
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]], shown
    assert re.search(run.fmt(case.message), lines[-1]), f"{lines[-1]!r} does not match {case.message!r}"
    if case.stdout:
        assert re.search(case.stdout, result.stdout), shown
    for value in case.hidden:
        assert value not in result.stdout + result.stderr, f"{value!r} was echoed:\n{shown}"

    assert file_changes(before, after) == []
    ours, foreign = docker_changes(before, after, run)
    assert ours == []
    if foreign:
        shown_foreign = "; ".join(foreign[:3]) + (f"; and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        warnings.warn(f"meanwhile, others changed the shared Docker daemon: {shown_foreign}", stacklevel=1)


def test_the_catalogue_has_at_least_20_distinct_cases() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) >= 20
    assert len(set(ids)) == len(ids)
