"""The monitoring overlay's configuration, checked by the tools that ship with Debian's packages (promtool and
amtool, unpacked by scripts/bootstrap): as the containers will read it, with the paths they mount."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from analyticbot_ops import compose, model, secrets
from analyticbot_ops.monitoring import rules, tools

PASSWORD = "Monitoring-Passw0rd-for-the-unit-tests"


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def mounted(tmp_path: Path) -> Path:
    """compose/monitoring/ and the secrets the containers mount, with their in-container paths rewritten into
    tmp_path, and the public name filled in as Prometheus's start does."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "prometheus_password").write_text(PASSWORD)
    (tmp_path / "secrets" / "alert_webhook_token").write_text("t" * 43)
    (tmp_path / "secrets" / "prometheus_web_config").write_text(secrets.prometheus_web_config(PASSWORD))
    for source in [*rules.MONITORING_DIR.rglob("*.yml"), *rules.MONITORING_DIR.rglob("*.html")]:
        target = tmp_path / "monitoring" / source.relative_to(rules.MONITORING_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text().replace("/etc/monitoring/", f"{tmp_path}/monitoring/")
        text = text.replace("/run/secrets/", f"{tmp_path}/secrets/").replace("__PUBLIC_NAME__", "proxy.example.org")
        target.write_text(text)
    return tmp_path


def test_promtool_checks_the_prometheus_config_and_its_rules(mounted: Path) -> None:
    result = _run(tools.tool("promtool"), "check", "config", mounted / "monitoring" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules.alert_rules())} rules found" in result.stdout


def test_promtool_checks_the_web_config_made_from_the_secret(mounted: Path) -> None:
    result = _run(tools.tool("promtool"), "check", "web-config", mounted / "secrets" / "prometheus_web_config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSWORD not in (mounted / "secrets" / "prometheus_web_config").read_text()


def test_amtool_checks_the_alertmanager_config(mounted: Path) -> None:
    result = _run(tools.tool("amtool"), "check-config", mounted / "monitoring" / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Found:" in result.stdout and "3 inhibit rules" in result.stdout


def test_a_broken_config_fails_promtool(mounted: Path) -> None:
    """The negative control: promtool really reads what it is given."""
    path = mounted / "monitoring" / "prometheus.yml"
    path.write_text(path.read_text().replace("scrape_interval: 5s", "scrape_interval: fast"))
    assert _run(tools.tool("promtool"), "check", "config", path).returncode != 0


def test_the_inhibited_alerts_and_their_sources_are_alerts_the_rules_define() -> None:
    config = yaml.safe_load((rules.MONITORING_DIR / "alertmanager.yml").read_text())
    known = set(rules.by_name())
    for rule in config["inhibit_rules"]:
        for matcher in (*rule["source_matchers"], *rule["target_matchers"]):
            names = matcher.replace("=~", "=").split("=", 1)[1].strip('"').split("|")
            assert set(names) <= known, names


def test_every_scrape_job_is_a_service_of_the_overlay_or_the_stack() -> None:
    """Prometheus scrapes by service name: a renamed service must not leave a target that never resolves."""
    config = yaml.safe_load((rules.MONITORING_DIR / "prometheus.yml").read_text())
    overlay = yaml.safe_load((compose.COMPOSE_DIR / compose.MONITORING_FILE).read_text())["services"]
    hosts = {
        target.rsplit(":", 1)[0]
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
        if not target.startswith("https://")
    }
    assert hosts - {"localhost"} <= set(overlay) | set(model.APPS)


def test_the_tools_come_from_the_venv_then_path_else_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_ops.errors import OpsError

    monkeypatch.setattr(tools, "TOOLS_DIR", tmp_path / "venv-bin")
    (tmp_path / "path").mkdir()
    found = tmp_path / "path" / "amtool"
    found.write_text("#!/bin/sh\n")
    found.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    assert tools.tool("amtool") == found
    with pytest.raises(OpsError, match=r"^promtool is not installed: run scripts/bootstrap"):
        tools.tool("promtool")


def test_the_edge_probe_asks_for_a_name_the_proxy_answers_to() -> None:
    """The probe's name is the proxy's alias on the frontend network, and the proxy serves it: with DOMAIN, that
    name; without (dev), an internal one. A name the proxy does not serve gets its TLS handshake refused."""
    overlay = yaml.safe_load((compose.COMPOSE_DIR / compose.MONITORING_FILE).read_text())["services"]
    proxy = yaml.safe_load((compose.COMPOSE_DIR / "docker-compose.proxy.yml").read_text())["services"]["proxy"]
    probed = overlay["prometheus"]["environment"]["PUBLIC_NAME"]
    assert probed == proxy["networks"]["frontend"]["aliases"][0] == proxy["environment"]["INTERNAL_NAME"]
    assert "INTERNAL_NAME" in (compose.REPO_ROOT / "nginx" / "entrypoint.sh").read_text()
    edge = next(j for j in yaml.safe_load((rules.MONITORING_DIR / "prometheus.yml").read_text())["scrape_configs"]
                if j["job_name"] == "edge")  # fmt: skip
    assert edge["static_configs"][0]["targets"] == ["https://__PUBLIC_NAME__:8443/api/health/ready"]
