"""The monitoring overlay's files as a Swarm stack mounts them: each is a Swarm config (immutable, versioned by
its content), and Prometheus finds every task of a service by DNS (`tasks.<service>`), since a service name
resolves to one of its replicas at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from .rules import MONITORING_DIR

TARGET_DIR = "/etc/monitoring"  # where the compose overlay mounts compose/monitoring/


@dataclass(frozen=True)
class MountedFile:
    """One file of compose/monitoring/ that a service reads, as a Swarm config."""

    name: str  # the config's name in the stack file
    service: str
    source: Path
    target: str


def mounted_files(directory: Path = MONITORING_DIR) -> Iterator[MountedFile]:
    """What each monitoring service reads from compose/monitoring/ (the Compose overlay bind-mounts it whole)."""
    yield MountedFile("prometheus_yml", "prometheus", directory / "prometheus.yml", f"{TARGET_DIR}/prometheus.yml")
    for rules in sorted((directory / "rules").glob("*.yml")):
        yield MountedFile(f"rules_{rules.stem}", "prometheus", rules, f"{TARGET_DIR}/rules/{rules.name}")
    for page in sorted((directory / "consoles").glob("*.html")):
        yield MountedFile(f"console_{page.stem}", "prometheus", page, f"{TARGET_DIR}/consoles/{page.name}")
    yield MountedFile(
        "alertmanager_yml", "alertmanager", directory / "alertmanager.yml", f"{TARGET_DIR}/alertmanager.yml"
    )
    yield MountedFile("blackbox_yml", "blackbox-exporter", directory / "blackbox.yml", f"{TARGET_DIR}/blackbox.yml")
    yield MountedFile(
        "postgres_queries",
        "postgres-exporter",
        directory / "postgres-queries.yml",
        f"{TARGET_DIR}/postgres-queries.yml",
    )


def swarm_prometheus_config(text: str) -> str:
    """prometheus.yml for a swarm: each scrape target named `service:port` becomes a DNS lookup of every task of
    that service (`tasks.service`, type A), so each replica is scraped and a scaled service is seen whole."""
    config = yaml.safe_load(text)
    for job in config.get("scrape_configs", []):
        static = job.get("static_configs") or []
        named = [t for s in static for t in s.get("targets", []) if _is_service_target(t)]
        if not named or len(named) != sum(len(s.get("targets", [])) for s in static):
            continue  # itself (localhost) and the edge probe's URL stay as they are
        job.pop("static_configs")
        # Looked up again every 10 s (Prometheus's default is 30 s): a task that moved to another node is
        # scraped again within a few scrapes.
        job["dns_sd_configs"] = [
            {
                "names": [f"tasks.{target.rsplit(':', 1)[0]}"],
                "type": "A",
                "port": int(target.rsplit(":", 1)[1]),
                "refresh_interval": "10s",
            }
            for target in named
        ]
    header = "# Rendered for Docker Swarm from compose/monitoring/prometheus.yml (targets found by DNS).\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def _is_service_target(target: str) -> bool:
    host, _, port = target.rpartition(":")
    return bool(host) and port.isdigit() and "/" not in host and host != "localhost"


def swarm_files(project: str, folder: Path, directory: Path = MONITORING_DIR) -> dict[str, Path]:
    """The monitoring files that differ on a swarm, written into `folder`: Prometheus's config (targets by DNS)."""
    path = folder / f"{project}-prometheus.yml"
    path.write_text(swarm_prometheus_config((directory / "prometheus.yml").read_text()))
    return {"prometheus_yml": path}
