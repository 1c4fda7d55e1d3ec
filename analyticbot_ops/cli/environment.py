"""The `env` namespace: environment settings and checks that start nothing: check, template, validate,
configuration and preflight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection
from rich.table import Table

from .. import environment, model, stack_settings
from .. import preflight as preflight_checks  # aliased: `preflight` is this namespace's task (env.preflight)
from ..config import ops
from ..errors import BadInput, CheckFailed
from ..swarm import deploy as swarm_deploy
from ..swarm import lab as swarm_lab
from ._task import ops_task, out, print_json, stack_of
from .legacy import Legacy

ENV = "Environment: dev, staging or prod."


def _print_checks(checks: list[environment.Check] | list[preflight_checks.Check], title: str) -> None:
    table = Table("check", "result", "detail", title=title, title_justify="left")
    for check in checks:
        table.add_row(check.name, "ok" if check.ok else "FAIL", check.detail)
    out.print(table)


@ops_task(help={"env": ENV, "json": "Print the settings as JSON."})
def check(c: Any, env: str = "dev", json: bool = False) -> None:
    """Show an environment's effective settings and where each one comes from."""
    settings = stack_settings.settings_with_sources(env, namespace=ops(c.config).namespace)
    if json:
        print_json({key: {"value": value, "source": source} for key, (value, source) in settings.items()})
        return
    project = stack_of(c, env).project  # COMPOSE_PROJECT_NAME, when set, names it
    table = Table("setting", "value", "from", title=f"{env}: project {project}", title_justify="left")
    for key, (value, source) in sorted(settings.items()):
        table.add_row(key, value, source)
    out.print(table)


@ops_task(help={"env": ENV, "write": "Write .env.ENV (only when it does not exist) instead of printing."})
def template(c: Any, env: str = "dev", write: bool = False) -> None:
    """Print (or write) a commented .env template for an environment."""
    if write:
        out.print(f"wrote {environment.write_template(env)}")
    else:
        print(environment.template(env), end="")


@ops_task(help={"env": ENV, "file": "Validate this file instead of .env.ENV."})
def validate(c: Any, env: str = "dev", file: str | None = None) -> None:
    """Validate an environment's .env file: syntax (with line numbers), values, stray secrets."""
    findings = environment.validate_file(env, Path(file) if file else None)
    for finding in findings:
        out.print(f"{finding.level}: {finding.message}", markup=False)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise BadInput(f"{len(errors)} problem(s) in the {env} settings")
    out.print(f"{env} settings are valid")


@ops_task(help={"env": "Only this environment (default: all three)."}, iterable=["env"])
def configuration(c: Any, env: list[str] | None = None) -> None:
    """Validate each environment's merged compose files, nginx -t in the proxy image, and hadolint."""
    envs = [stack_settings.check_env(e) for e in env] if env else list(model.ENVIRONMENTS)
    checks = environment.validate_configuration(envs)
    _print_checks(checks, "configuration")
    if not all(check.ok for check in checks):
        raise CheckFailed("the configuration does not validate (see above)")


@ops_task(
    help={
        "env": ENV,
        "swarm": "Check a deploy on a swarm instead (`swarm.deploy`): the same checks, then the swarm's manager.",
        "context": "With --swarm: the lab of this name, or a Docker context reaching a manager.",
        "registry": "With --swarm: HOST:PORT of the registry the nodes pull from (a swarm that is not the lab).",
    }
)
def preflight(
    c: Any, env: str = "dev", swarm: bool = False, context: str = swarm_lab.DEFAULT_NAME, registry: str | None = None
) -> None:
    """Check that an environment could be deployed now (daemon, images, secrets, certificate, ports)."""
    stack = stack_of(c, env, pinned=True)
    if swarm:
        if env == "dev":
            raise BadInput("the swarm stack is for staging and prod (dev runs on Compose: `invoke stack.up`)")
        # The very checks swarm.deploy stops on; the swarm is found inside its row, so a missing one is a row too.
        checks = swarm_deploy.preflight_rows(stack, lambda: swarm_lab.target(context, registry))
        title, where = f"{env} deployability on the swarm {context}", f"on the swarm {context}"
    else:
        checks = preflight_checks.rows(stack)  # the very checks a deploy stops on
        title, where = f"{env} deployability", "now"
    _print_checks(checks, title)
    if not all(check.ok for check in checks):
        raise CheckFailed(f"{env} is not deployable {where} (see above)")


ns = Collection("env")
ns.add_task(check, default=True)
ns.add_task(template)
ns.add_task(validate)
ns.add_task(configuration)
ns.add_task(preflight)
LEGACY = {
    "env-check": Legacy("env.check"),
    "env-template": Legacy("env.template"),
    "env-validate": Legacy("env.validate"),
    "validate-configuration": Legacy("env.configuration"),
    "test-environment": Legacy("env.preflight"),
}
