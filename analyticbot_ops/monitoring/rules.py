"""The alert rules as data, read from compose/monitoring/rules/: the one source that Prometheus loads, the rule
tests check and `monitoring.alerts` judges by (an alert's severity decides the exit code)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import BadInput
from ..paths import COMPOSE_DIR

MONITORING_DIR = COMPOSE_DIR / "monitoring"
RULES_DIR = MONITORING_DIR / "rules"
# The alert that always fires: proof that rules are evaluated and alerts leave Prometheus.
WATCHDOG = "Watchdog"
SEVERITIES = ("critical", "warning", "none")


@dataclass(frozen=True)
class AlertRule:
    name: str
    group: str
    expr: str
    severity: str
    summary: str
    reason: str


def alert_rules(directory: Path = RULES_DIR) -> tuple[AlertRule, ...]:
    """Every alerting rule of every rules file, in file and group order."""
    found: list[AlertRule] = []
    for path in sorted(directory.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in data.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" not in rule:
                    continue
                labels = rule.get("labels") or {}
                annotations = rule.get("annotations") or {}
                found.append(
                    AlertRule(
                        name=rule["alert"],
                        group=group["name"],
                        expr=str(rule["expr"]),
                        severity=str(labels.get("severity", "")),
                        summary=str(annotations.get("summary", "")),
                        reason=str(annotations.get("reason", "")),
                    )
                )
    return tuple(found)


def by_name(directory: Path = RULES_DIR) -> dict[str, AlertRule]:
    return {rule.name: rule for rule in alert_rules(directory)}


def check_alert_name(name: str) -> str:
    """An alert the rules define, or one line naming the known ones."""
    known = by_name()
    if name not in known:
        raise BadInput(f"unknown alert {name!r}; known: {', '.join(known)}")
    return name
