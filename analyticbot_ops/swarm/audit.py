"""The Swarm stack in the audit: the stack `swarm.deploy` would render for prod, through the same CIS
container checks as the compose files, and the checks only Swarm needs (AB-SWARM-*).

What Swarm cannot express is reported, not hidden: no-new-privileges (5.26; `security_opt` is ignored by
`stack deploy` on 20.10) and a bounded restart count (5.15; the orchestrator replaces tasks) fail those
checks, and the toolkit's defaults except them with the reason (config.py, env "swarm")."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import compose, model
from ..audit import Finding
from ..monitoring.config import swarm_files
from ..paths import COMPOSE_DIR
from ..tls import backup
from . import render

ENV = "swarm"  # the environment name its findings and exceptions carry


def rendered(stack: compose.Stack) -> dict[str, Any]:
    """The stack as `swarm.deploy` renders it, from placeholder secret files (only their names matter here)
    and the settings' image tags (the deploy pins digests; the audit reads the images' own facts)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {}
        for name in {n for s in stack.services for n in s.secrets} | {"fullchain.pem", "privkey.pem"}:
            (folder / name).write_text("placeholder")
            files[name] = folder / name
        for peer in ("ca", *backup.PEERS):  # the backup path's TLS files, where the overlay is on
            for suffix in ("crt", "key"):
                (folder / f"{peer}.{suffix}").write_text("placeholder")
        return render.render(
            compose.merged_config(stack),
            project=stack.project,
            images={s.image_variable: stack.settings[s.image_variable] for s in stack.services},
            secret_files={k: v for k, v in files.items() if not k.endswith(".pem")},
            tls_dir=folder,
            redis_conf=COMPOSE_DIR / "redis" / "redis.conf",
            http_port=int(stack.settings["HTTP_PORT"]),
            https_port=int(stack.settings["HTTPS_PORT"]),
            monitoring_files=swarm_files(stack.project, folder) if stack.monitoring else {},
            backup_tls_dir=folder if stack.backup else None,
        )


def swarm_findings(stack_file: Mapping[str, Any]) -> list[Finding]:
    """AB-SWARM-DNSRR (no IPVS here: a virtual IP would not route), AB-SWARM-SECRETS (each secret its
    user's alone: 0400, uid 10001; Swarm's default is root 0444), AB-SWARM-DATA (postgres, redis and the
    backup agent pinned to the node with their volumes; the repository host kept off it)."""
    found = []
    for name, service in stack_file["services"].items():
        deploy = service.get("deploy") or {}
        mode = deploy.get("endpoint_mode")
        found.append(Finding("AB-SWARM-DNSRR", name, mode == "dnsrr", f"endpoint_mode {mode or 'vip'}"))
        loose = [
            s["source"]
            for s in service.get("secrets") or []
            if s.get("mode") != 0o400 or s.get("uid") != str(model.APP_UID)
        ]
        if service.get("secrets"):
            detail = (
                f"loose: {', '.join(loose)}" if loose else f"{len(service['secrets'])} secrets 0400 uid {model.APP_UID}"
            )
            found.append(Finding("AB-SWARM-SECRETS", name, not loose, detail))
        constraints = (deploy.get("placement") or {}).get("constraints") or []
        if render.spec_of(name).kind == "data" or name == "backup-agent":
            # The agent reads postgres' data volume and socket: on another node it would back up an empty volume.
            pinned = render.DATA_CONSTRAINT in constraints
            found.append(Finding("AB-SWARM-DATA", name, pinned, "on the data node" if pinned else "unpinned"))
        if name == "backup-repo":
            # Repository 2 is the off-host copy: on the database's node it would go with that node's disk.
            away = render.OFF_DATA_CONSTRAINT in constraints
            found.append(Finding("AB-SWARM-DATA", name, away, "off the data node" if away else "may share it"))
    return found
