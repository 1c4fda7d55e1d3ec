"""Environment files and checks that change nothing: `.env.ENV` templates and
validation, the merged configuration of each environment, and deployability."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import audit, build, compose, deploy, docker, guard, secrets, tls
from .errors import BadInput, OpsError

SECRET_LOOKING = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "API_HASH")


def template(env: str) -> str:
    """A commented .env file for an environment, with its defaults."""
    compose.check_env(env)
    defaults = {**compose.COMMON_DEFAULTS, **compose.DEFAULTS[env]}
    lines = [
        f"# Settings for the {env} stack (read by invoke with python-dotenv; never by another environment).",
        "# Secrets do NOT belong here: they are files under secrets/ (invoke secrets-from-env).",
        "",
    ]
    for key, purpose in compose.SETTINGS.items():
        lines.append(f"# {purpose}")
        value = defaults.get(key)
        lines.append(f"{key}={value}" if value is not None else f"# {key}=")
    return "\n".join(lines) + "\n"


def write_template(env: str) -> Path:
    path = compose.env_file(env)
    if path.exists():
        raise BadInput(f"{path.name} exists and is never overwritten; edit it, or remove it first")
    path.write_text(template(env))
    return path


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning
    message: str


def validate_file(env: str, path: Path | None = None) -> list[Finding]:
    """Problems of an environment's .env file; malformed lines raise BadInput with their number."""
    if path is not None and not path.is_file():
        raise BadInput(f"no settings file at {path}")
    path = path or compose.env_file(env)
    if not path.exists():
        return [Finding("warning", f"{path.name} does not exist: the defaults apply (invoke env-template)")]
    values = secrets.read_env_file(path)
    findings = []
    try:
        compose.validate_settings(values, path.name)
    except BadInput as exc:
        findings.append(Finding("error", str(exc)))
    for key in values:
        # A setting the compose files read is never a secret, whatever its name (SECRETS_DIR is a folder).
        if key not in compose.SETTINGS and any(word in key.upper() for word in SECRET_LOOKING):
            findings.append(
                Finding("error", f"{key} looks like a secret: keep it in secrets/ (invoke secrets-from-env)")
            )
        elif key not in compose.SETTINGS:
            findings.append(Finding("warning", f"{key} is not a setting the compose files read"))
    return findings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _nginx_test() -> Check:
    """`nginx -t` inside the proxy image, with a throwaway dev certificate."""
    tag = build.service_tag("proxy")
    if docker.inspect("image", tag) is None:
        return Check("nginx -t", False, f"{tag} is missing: invoke build-optimized --service proxy")
    with tempfile.TemporaryDirectory() as scratch:
        tls.ensure_dev_certificates(Path(scratch) / "tls")
        result = docker.docker(
            [
                "run",
                "--rm",
                "--network=none",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "-v",
                f"{scratch}/tls:/etc/nginx/tls:ro",
                tag,
                "nginx",
                "-t",
            ],
            check=False,
        )
    text = (result.stderr or result.stdout).strip().splitlines()
    return Check("nginx -t", result.returncode == 0, text[-1] if text else "")


def _hadolint() -> Check:
    paths = audit.dockerfiles()
    findings = [f for f in audit.hadolint_findings(audit.run_hadolint(paths), paths) if not f.ok]
    return Check(
        "hadolint", not findings, "; ".join(f.detail for f in findings[:3]) or f"{len(paths)} Dockerfiles clean"
    )


def validate_configuration(envs: list[str]) -> list[Check]:
    """Every environment's merged compose, nginx -t in the proxy image, hadolint."""
    checks = []
    for env in envs:
        try:
            merged = compose.merged_config(compose.load_stack(env))
            checks.append(Check(f"compose {env}", True, f"{len(merged.get('services', {}))} services merge"))
        except BadInput as exc:
            checks.append(Check(f"compose {env}", False, str(exc)))
    checks.append(_nginx_test())
    checks.append(_hadolint())
    return checks


def test_environment(env: str) -> list[Check]:
    """Whether `env` could be deployed now: each preflight check on its own, nothing started."""
    stack = compose.load_stack(env)
    checks: list[Check] = []

    def attempt(name: str, step) -> None:  # type: ignore[no-untyped-def]
        try:
            checks.append(Check(name, True, step() or "ok"))
        except (BadInput, Exception) as exc:  # each check reports its own failure
            checks.append(Check(name, False, str(exc).splitlines()[0]))

    attempt("docker daemon", lambda: f"engine {docker.require_daemon()}")
    attempt("compose", lambda: " ".join(compose.compose_command()))
    attempt("images", lambda: _images(stack))
    attempt("secrets", lambda: _secrets(stack))
    attempt("certificate", lambda: _certificate(stack))
    try:
        checks += [Check(row.name, row.ok, row.detail) for row in guard.rows(stack, fix=False)]
    except OpsError as exc:
        checks.append(Check("running stack", False, str(exc).splitlines()[0]))
    return checks


def _images(stack: compose.Stack) -> str:
    missing = deploy.missing_images(stack)
    if missing:
        raise BadInput(f"missing {', '.join(missing)}")
    return "all present"


def _secrets(stack: compose.Stack) -> str:
    rows = secrets.check(stack.env, Path(stack.settings["SECRETS_DIR"]))
    if secrets.check_failed(rows, stack.env):
        raise BadInput(
            f"not ready: {', '.join(r.name for r in rows if r.valid is False or (r.required and not r.present))}"
        )
    return f"{sum(r.present for r in rows)} present, required ones valid"


def _certificate(stack: compose.Stack) -> str:
    status = tls.certificate_status(Path(stack.settings["TLS_DIR"]))
    if not status.ok:
        raise BadInput("; ".join(status.problems))
    return f"{status.subject}, {status.days_left} days left"
