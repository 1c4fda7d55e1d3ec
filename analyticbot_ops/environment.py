"""Environment files and checks that change nothing: `.env.ENV` templates and
validation, the merged configuration of each environment, and deployability."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import audit, build, compose, docker, envfile, stack_settings, tls
from .errors import BadInput

SECRET_LOOKING = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "API_HASH")


def template(env: str) -> str:
    """A commented .env file for an environment, with its defaults."""
    stack_settings.check_env(env)
    defaults = {**stack_settings.COMMON_DEFAULTS, **stack_settings.DEFAULTS[env]}
    lines = [
        f"# Settings for the {env} stack (read by invoke with python-dotenv; never by another environment).",
        "# Secrets do NOT belong here: they are files under secrets/ (invoke secrets.from-env).",
        "",
    ]
    for key, purpose in stack_settings.SETTINGS.items():
        lines.append(f"# {purpose}")
        value = defaults.get(key)
        lines.append(f"{key}={value}" if value is not None else f"# {key}=")
    return "\n".join(lines) + "\n"


def write_template(env: str) -> Path:
    path = stack_settings.env_file(env)
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
    path = path or stack_settings.env_file(env)
    if not path.exists():
        return [Finding("warning", f"{path.name} does not exist: the defaults apply (invoke env.template)")]
    values = envfile.read(path)
    findings = []
    try:
        stack_settings.validate_settings(values, path.name)
    except BadInput as exc:
        findings.append(Finding("error", str(exc)))
    for key in values:
        # A setting the compose files read is never a secret, whatever its name (SECRETS_DIR is a folder).
        if key not in stack_settings.SETTINGS and any(word in key.upper() for word in SECRET_LOOKING):
            findings.append(
                Finding("error", f"{key} looks like a secret: keep it in secrets/ (invoke secrets.from-env)")
            )
        elif key not in stack_settings.SETTINGS:
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
        return Check("nginx -t", False, f"{tag} is missing: invoke images.build --service proxy")
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
