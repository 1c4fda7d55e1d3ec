"""The monitoring overlay's files for a swarm: Prometheus finds each task by DNS, the rest is mounted as is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from analyticbot_ops.monitoring import config, rules, tools


def test_every_service_target_becomes_a_lookup_of_its_tasks() -> None:
    rendered = yaml.safe_load(config.swarm_prometheus_config((rules.MONITORING_DIR / "prometheus.yml").read_text()))
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    assert jobs["api"]["dns_sd_configs"] == [
        {"names": ["tasks.api"], "type": "A", "port": 8000, "refresh_interval": "10s"}
    ]
    assert jobs["postgres"]["dns_sd_configs"][0]["names"] == ["tasks.postgres-exporter"]
    assert "static_configs" not in jobs["api"]
    # Itself and the edge probe's URL are not services to look up.
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    assert jobs["edge"]["static_configs"][0]["targets"][0].startswith("https://__PUBLIC_NAME__")
    assert rendered["rule_files"] == ["/etc/monitoring/rules/*.yml"]


def test_the_rendered_config_passes_promtool(tmp_path: Path) -> None:
    text = config.swarm_prometheus_config((rules.MONITORING_DIR / "prometheus.yml").read_text())
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "prometheus_password").write_text("x")
    text = text.replace("/run/secrets/", f"{tmp_path}/secrets/").replace("/etc/monitoring/", f"{rules.MONITORING_DIR}/")
    (tmp_path / "prometheus.yml").write_text(text)
    result = subprocess.run(
        [str(tools.tool("promtool")), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_file_the_overlay_mounts_is_a_config_of_the_service_that_reads_it() -> None:
    mounted = {f.name: f for f in config.mounted_files()}
    assert set(mounted) >= {"prometheus_yml", "rules_analyticbot", "console_analyticbot", "alertmanager_yml"}
    assert all(f.source.is_file() and f.target.startswith("/etc/monitoring/") for f in mounted.values())
    assert {f.service for f in mounted.values()} == {
        "prometheus",
        "alertmanager",
        "blackbox-exporter",
        "postgres-exporter",
    }
