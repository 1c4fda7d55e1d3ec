"""Defaults for every task, merged into Invoke's config under `ops`.

Override any of them in invoke.yaml (or ~/.invoke.yaml) at the project root, e.g.

    ops:
      base_source: official
      budgets_mb: {api: 80}
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    "ops": {
        # Image names are NAMESPACE/NAME:TAG; change it to push to your own registry.
        "namespace": "analyticbot",
        # debian: build bases from the host's apt mirror (works with no registry);
        # official: pull python:3.11-slim-bookworm etc., falling back to debian.
        "base_source": "debian",
        # How many backups of a project `invoke backup` keeps (older ones are pruned,
        # never the one being restored); a restore's safety backup counts too.
        "backup_keep": 7,
        # How many releases of each stack are recorded (`invoke releases`, `invoke rollback`); image tags
        # that none of them, nor this checkout's last build, uses are pruned.
        "release_keep": 5,
        # Uncompressed size budgets (decimal MB, as docker reports): analyze-layers
        # and the benchmark fail when an image grows past its budget.
        "budgets_mb": {
            "python-runtime": 50,
            "python-build": 100,
            "api": 80,
            "bot": 90,
            "mtproto": 90,
            "postgres": 130,
            "redis": 35,
            "nginx": 25,
            "proxy": 25,
            "certbot": 90,
            "pebble": 40,
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


def ops(config: Any) -> Any:
    """The `ops` section of an Invoke config (or a plain dict in tests)."""
    return config["ops"]
