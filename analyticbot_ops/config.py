"""Defaults for every task, merged into Invoke's config under `ops`.

Override any of them in invoke.yaml (or ~/.invoke.yaml) at the project root, e.g.

    ops:
      base_source: official
      budgets_mb: {api: 80}
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .errors import EXIT_BAD_INPUT, BadInput
from .model import DEFAULT_NAMESPACE

DEFAULTS: dict[str, Any] = {
    "ops": {
        # Image names are NAMESPACE/NAME:TAG; change it to push to your own registry.
        "namespace": DEFAULT_NAMESPACE,
        # debian: build bases from the host's apt mirror (works with no registry);
        # official: pull python:3.11-slim-bookworm etc., falling back to debian.
        "base_source": "debian",
        # How many backups of a project `invoke backup` keeps (older ones are pruned,
        # never the one being restored); a restore's safety backup counts too.
        "backup_keep": 7,
        # How many releases of each stack are recorded (`invoke releases`, `invoke rollback`); image tags
        # that none of them, nor this checkout's last build, uses are pruned.
        "release_keep": 5,
        # The monitoring overlay (Prometheus, Alertmanager, exporters: compose/docker-compose.monitoring.yml) runs
        # with every stack; false leaves it out.
        "monitoring": True,
        # The backup overlay (pgBackRest's WAL archiving into two repositories, scheduled backups, point-in-time
        # restore: compose/docker-compose.backup.yml) runs with every stack; false leaves it out.
        "backup": True,
        # Uncompressed size budgets (decimal MB, as docker reports): analyze-layers
        # and the benchmark fail when an image grows past its budget.
        "budgets_mb": {
            "python-runtime": 50,
            "python-build": 100,
            # The services' images: their shared runtime layer is pruned to what their code imports.
            "api": 50,
            "bot": 55,
            "mtproto": 55,
            "postgres": 90,
            "redis": 35,
            "nginx": 25,
            "proxy": 25,
            "certbot": 55,
            "pebble": 40,
            # The monitoring overlay's parts: a Go binary, libc and busybox each.
            "prometheus": 60,
            "alertmanager": 32,
            "postgres-exporter": 20,
            "redis-exporter": 20,
            "nginx-exporter": 20,
            "blackbox-exporter": 20,
        },
        # Failed audit checks we accept, each with its reason (`invoke audit` shows
        # them as excepted). env "*" or an environment; image findings match only "*".
        "audit_exceptions": [
            {
                "check": "5.27",
                "service": "migrate",
                "env": "*",
                "reason": "a one-shot job that exits within seconds: Compose waits for its exit code "
                "(service_completed_successfully), and a healthcheck would have nothing to probe",
            },
            {
                "check": "5.26",
                "service": "*",
                "env": "swarm",
                "reason": "docker stack deploy on Engine 20.10 ignores security_opt, so no-new-privileges cannot be "
                "set; every task runs as uid 10001 with every capability dropped, which is what it guards",
            },
            {
                "check": "5.15",
                "service": "*",
                "env": "swarm",
                "reason": "on Swarm the orchestrator keeps the replicas: a task that stops is replaced "
                "(condition any, with a delay), not retried a bounded number of times on one host",
            },
            {
                "check": "5.27",
                "service": "migrate",
                "env": "swarm",
                "reason": "the one-shot migrate job runs to completion and exits: there is nothing to probe",
            },
            {
                "check": "5.8",
                "service": "proxy",
                "env": "swarm",
                "reason": "the public entry point publishes 80/443 on its node (host mode: no routing mesh here)",
            },
            {
                "check": "5.14",
                "service": "proxy",
                "env": "swarm",
                "reason": "the public entry point accepts traffic on its node's every address (Swarm drops a host IP)",
            },
            {
                "check": "5.8",
                "service": "proxy",
                "env": "prod",
                "reason": "the public entry point must listen on the standard ports 80/443; "
                "it is the only service that publishes any",
            },
            {
                "check": "5.14",
                "service": "proxy",
                "env": "prod",
                "reason": "the public entry point must accept traffic on every host address "
                "(PROXY_BIND=0.0.0.0); the other services publish nothing",
            },
        ],
    }
}


# Docker's rule for a repository path (lower case; parts joined by . _ - and /).
_NAMESPACE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")


def validate(section: Any) -> None:
    """Refuse an `ops` section a task would trip over later, with one line naming the key (BadInput)."""
    # Invoke's config sections are mapping-like proxies, not Mapping subclasses.
    if not hasattr(section, "keys"):
        raise BadInput("invoke.yaml: `ops` must be a mapping of settings")
    unknown = sorted(set(section.keys()) - set(DEFAULTS["ops"]))
    if unknown:
        raise BadInput(f"invoke.yaml: unknown ops setting {unknown[0]!r}; known: {', '.join(DEFAULTS['ops'])}")
    namespace = section.get("namespace")
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise BadInput(f"invoke.yaml: ops.namespace {namespace!r} is not an image repository path like analyticbot")
    if section.get("base_source") not in ("debian", "official"):
        raise BadInput(f"invoke.yaml: ops.base_source must be debian or official, got {section.get('base_source')!r}")
    for key in ("backup_keep", "release_keep"):
        value = section.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInput(f"invoke.yaml: ops.{key} must be a whole number of at least 1, got {value!r}")
    budgets = section.get("budgets_mb")
    if not hasattr(budgets, "values") or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in budgets.values()
    ):
        raise BadInput("invoke.yaml: ops.budgets_mb must map image names to sizes in MB above 0")
    if not isinstance(section.get("monitoring"), bool):
        raise BadInput(f"invoke.yaml: ops.monitoring must be true or false, got {section.get('monitoring')!r}")
    if not isinstance(section.get("backup"), bool):
        raise BadInput(f"invoke.yaml: ops.backup must be true or false, got {section.get('backup')!r}")
    if not isinstance(section.get("audit_exceptions"), list):
        raise BadInput("invoke.yaml: ops.audit_exceptions must be a list")


def check_project_file(directory: Path) -> None:
    """Invoke parses invoke.yaml after loading tasks.py, and a YAML error there is its traceback, even for
    `invoke --list`: read the file first and stop with one line instead (exit 2)."""
    path = directory / "invoke.yaml"
    if not path.is_file():
        return
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        _stop(f"{path.name} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}")
    if not isinstance(data, Mapping):
        _stop(f"{path.name} must be a mapping (like `ops: {{namespace: analyticbot}}`)")


def _stop(message: str) -> NoReturn:
    """One line and exit 2, before Invoke (and its traceback) gets to the file."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


@dataclass(frozen=True)
class OpsSettings:
    """The toolkit's settings, typed: Invoke's `ops` section (DEFAULTS, then invoke.yaml, then
    ~/.invoke.yaml and INVOKE_OPS_* as Invoke merges them), validated once by `ops()`."""

    namespace: str
    base_source: str
    backup_keep: int
    release_keep: int
    monitoring: bool
    backup: bool
    budgets_mb: dict[str, float]
    audit_exceptions: list[dict[str, Any]]


def ops(config: Any) -> OpsSettings:
    """The `ops` section of an Invoke config (or a plain dict in tests), checked and typed."""
    section = config["ops"]
    validate(section)
    return OpsSettings(
        namespace=section["namespace"],
        base_source=section["base_source"],
        backup_keep=section["backup_keep"],
        release_keep=section["release_keep"],
        monitoring=section["monitoring"],
        backup=section["backup"],
        budgets_mb=dict(section["budgets_mb"]),
        audit_exceptions=[dict(e) for e in section["audit_exceptions"]],
    )
