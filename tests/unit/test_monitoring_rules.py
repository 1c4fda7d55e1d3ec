"""The alert rules under promtool: each alert has a case where it fires (with the labels and the annotations
it must carry) and a case where it stays quiet, and `promtool test rules` runs them all. An alert without both
cases fails here, so a new rule cannot land untested."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from analyticbot_ops.monitoring import rules, tools

API = {"job": "api", "instance": "api:8000"}
EDGE = {"job": "edge", "instance": "https://proxy.example:8443/api/health/ready"}
POSTGRES = {"job": "postgres", "instance": "postgres-exporter:9187"}
REDIS = {"job": "redis", "instance": "redis-exporter:9121"}
SUMMARY_ROUTE = {"route": "/channels/{channel}/summary", "method": "GET"}


def series(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


@dataclass(frozen=True)
class Case:
    """Input series (promtool's expanding notation, one sample per 5 s) and the time to evaluate at."""

    series: dict[str, str]
    at: str
    labels: dict[str, str] = field(default_factory=dict)  # the firing alert's labels, besides severity
    summary: str = ""  # the firing alert's rendered summary


# alert -> (fires, stays quiet). Each quiet case is the nearest thing that must not page.
CASES: dict[str, tuple[Case, Case | None]] = {
    "ServiceDown": (
        Case({series("up", API): "1 1 0x10"}, "40s", API, "api does not answer its /metrics"),
        # One failed scrape is not an outage.
        Case({series("up", API): "1 0 1x10"}, "40s"),
    ),
    "ServiceMissing": (
        # A swarm's api with no task: no `up` series for it at all.
        Case(
            {
                series("up", {"job": "bot", "instance": "10.0.0.5:8000"}): "1x20",
                series("up", {"job": "mtproto", "instance": "10.0.0.6:8000"}): "1x20",
            },
            "60s",
            {"job": "api"},
            "api has no target to scrape",
        ),
        Case(
            {
                series("up", {"job": job, "instance": f"10.0.0.{n}:8000"}): "1x20"
                for n, job in enumerate(("api", "bot", "mtproto"))
            },
            "60s",
        ),
    ),
    "TargetDown": (
        Case(
            {series("up", POSTGRES): "1 0x20"},
            "60s",
            POSTGRES,
            "monitoring target postgres (postgres-exporter:9187) is down",
        ),
        # An app's target is ServiceDown's, never this warning too.
        Case({series("up", API): "0x20"}, "60s"),
    ),
    "CriticalDependencyDown": (
        Case(
            {series("dependency_up", {**API, "dependency": "postgres", "critical": "true"}): "0x10"},
            "30s",
            {**API, "dependency": "postgres", "critical": "true"},
            "api cannot reach postgres",
        ),
        # An optional dependency down degrades; it does not page.
        Case({series("dependency_up", {**API, "dependency": "openai", "critical": "false"}): "0x10"}, "30s"),
    ),
    "EdgeProbeFailing": (
        Case(
            {series("probe_success", EDGE): "0x10"},
            "30s",
            EDGE,
            f"the API's readiness through the public proxy fails ({EDGE['instance']})",
        ),
        Case({series("probe_success", EDGE): "1x10"}, "30s"),
    ),
    "CertificateExpiresSoon": (
        # Ten days from the epoch, evaluated two minutes in.
        Case(
            {series("probe_ssl_earliest_cert_expiry", EDGE): "864000x30"},
            "2m",
            EDGE,
            "the proxy's certificate expires in 9d 23h 58m 0s",
        ),
        Case({series("probe_ssl_earliest_cert_expiry", EDGE): "2592000x30"}, "2m"),
    ),
    "AlertDeliveryFailing": (
        Case(
            {
                series(
                    "alert_notifications_total", {"job": "bot", "instance": "bot:8000", "outcome": "rejected"}
                ): "0 0 3x10"
            },
            "30s",
            {"job": "bot"},
            "alerts are not reaching the operators (bot)",
        ),
        # Deliveries that went to the chat, or were logged where none is set, are how it should be.
        Case(
            {
                series(
                    "alert_notifications_total", {"job": "bot", "instance": "bot:8000", "outcome": "sent"}
                ): "0+1x10",
                series(
                    "alertmanager_notifications_failed_total", {"job": "alertmanager", "integration": "webhook"}
                ): "0x10",
            },
            "30s",
        ),
    ),
    "Watchdog": (Case({}, "0s", {}, "the alerting pipeline works"), None),
    "HighErrorRate": (
        Case(
            {
                series("http_requests_total", {**API, **SUMMARY_ROUTE, "status_class": "5xx"}): "0+10x40",
                series("http_requests_total", {**API, **SUMMARY_ROUTE, "status_class": "2xx"}): "0+10x40",
            },
            "3m",
            {"job": "api"},
            "api answers 50% of its requests with 5xx",
        ),
        # The healthchecks' 503s while a dependency is down are not the users' errors.
        Case(
            {
                series(
                    "http_requests_total", {**API, "route": "/health/ready", "method": "GET", "status_class": "5xx"}
                ): "0+10x40",
                series("http_requests_total", {**API, **SUMMARY_ROUTE, "status_class": "2xx"}): "0+10x40",
            },
            "3m",
        ),
    ),
    "HighLatency": (
        Case(
            {
                series("http_request_duration_seconds_bucket", {**API, "route": "/x", "le": "1.0"}): "0x130",
                series("http_request_duration_seconds_bucket", {**API, "route": "/x", "le": "2.5"}): "0+10x130",
                series("http_request_duration_seconds_bucket", {**API, "route": "/x", "le": "+Inf"}): "0+10x130",
            },
            "10m",
            {"job": "api"},
            "api's p95 latency is 2.425s",
        ),
        # Slow scrapes of /metrics are not users waiting.
        Case(
            {
                series("http_request_duration_seconds_bucket", {**API, "route": "/metrics", "le": "1.0"}): "0x130",
                series("http_request_duration_seconds_bucket", {**API, "route": "/metrics", "le": "+Inf"}): "0+10x130",
            },
            "10m",
        ),
    ),
    "DatabasePoolSaturated": (
        Case(
            {series("db_pool_in_use", API): "10x40", series("db_pool_max", API): "10x40"},
            "3m",
            API,
            "api uses 100% of its database pool",
        ),
        Case({series("db_pool_in_use", API): "5x40", series("db_pool_max", API): "10x40"}, "3m"),
    ),
    "CollectorStalled": (
        Case(
            {series("collector_last_cycle_timestamp_seconds", {"job": "mtproto", "instance": "mtproto:8000"}): "0x400"},
            "20m",
            {"job": "mtproto", "instance": "mtproto:8000"},
            "the collector's last cycle ended 20m 0s ago",
        ),
        # A cycle every 5 s keeps the last one's time at the clock.
        Case(
            {
                series(
                    "collector_last_cycle_timestamp_seconds", {"job": "mtproto", "instance": "mtproto:8000"}
                ): "0+5x400"
            },
            "20m",
        ),
    ),
    "BackupTooOld": (
        # The value is when the backup ended; promtool's clock starts at 0, so a day and more is negative.
        Case(
            {
                series(
                    "analyticbot_backup_last_completed_timestamp_seconds", {**POSTGRES, "repo": "2", "kind": "full"}
                ): "-100000x200",
                series(
                    "analyticbot_backup_last_completed_timestamp_seconds", {**POSTGRES, "repo": "1", "kind": "full"}
                ): "-100x200",
            },
            "11m",
            {"repo": "2"},
            "repository 2's newest backup ended 1d 3h 57m 40s ago",
        ),
        # A full backup two days old with yesterday's differential one on top is fresh enough.
        Case(
            {
                series(
                    "analyticbot_backup_last_completed_timestamp_seconds", {**POSTGRES, "repo": "1", "kind": "full"}
                ): "-180000x200",
                series(
                    "analyticbot_backup_last_completed_timestamp_seconds", {**POSTGRES, "repo": "1", "kind": "diff"}
                ): "-80000x200",
            },
            "11m",
        ),
    ),
    "WalArchiveFailing": (
        Case(
            {
                series("analyticbot_wal_archive_failing", POSTGRES): "0 1x20",
                series("analyticbot_wal_archive_failed_total", POSTGRES): "0 1+1x20",
            },
            "80s",
            POSTGRES,
            "PostgreSQL cannot archive WAL (16 failures so far)",
        ),
        # One failure that the next attempt fixed.
        Case(
            {
                series("analyticbot_wal_archive_failing", POSTGRES): "0 1 0x20",
                series("analyticbot_wal_archive_failed_total", POSTGRES): "0 1x20",
            },
            "80s",
        ),
    ),
    "RepositoryUnreachable": (
        Case(
            {
                series("analyticbot_backup_repository_reachable", {**POSTGRES, "repo": "1"}): "1x60",
                series("analyticbot_backup_repository_reachable", {**POSTGRES, "repo": "2"}): "1 0x60",
                series("analyticbot_backup_report_age_seconds", POSTGRES): "30x60",
            },
            "4m",
            {**POSTGRES, "repo": "2"},
            "backup repository 2 cannot be read",
        ),
        # The repository host restarting: back within the 3 minutes.
        Case(
            {
                series("analyticbot_backup_repository_reachable", {**POSTGRES, "repo": "2"}): "1 0x20 1x40",
                series("analyticbot_backup_report_age_seconds", POSTGRES): "30x60",
            },
            "4m",
        ),
    ),
    "PostgresDown": (
        Case({series("pg_up", POSTGRES): "1 0x10"}, "30s", POSTGRES, "PostgreSQL does not answer the exporter"),
        Case({series("pg_up", POSTGRES): "1 0 1x10"}, "30s"),
    ),
    "PostgresTooManyConnections": (
        Case(
            {
                series("pg_stat_activity_count", {**POSTGRES, "datname": "analyticbot", "state": "active"}): "90x40",
                series("pg_settings_max_connections", POSTGRES): "100x40",
            },
            "3m",
            {"instance": POSTGRES["instance"]},
            "PostgreSQL uses 90% of max_connections",
        ),
        Case(
            {
                series("pg_stat_activity_count", {**POSTGRES, "datname": "analyticbot", "state": "active"}): "10x40",
                series("pg_settings_max_connections", POSTGRES): "100x40",
            },
            "3m",
        ),
    ),
    "PostgresDeadlocks": (
        Case(
            {series("pg_stat_database_deadlocks", {**POSTGRES, "datname": "analyticbot"}): "0 0 1x10"},
            "30s",
            {"datname": "analyticbot"},
            "deadlocks in analyticbot in the last 5 minutes",
        ),
        Case({series("pg_stat_database_deadlocks", {**POSTGRES, "datname": "analyticbot"}): "3x10"}, "30s"),
    ),
    "RedisDown": (
        Case({series("redis_up", REDIS): "1 0x10"}, "30s", REDIS, "Redis does not answer the exporter"),
        Case({series("redis_up", REDIS): "1x10"}, "30s"),
    ),
    "RedisNearMaxmemory": (
        Case(
            {series("redis_memory_used_bytes", REDIS): "95x80", series("redis_memory_max_bytes", REDIS): "100x80"},
            "6m",
            REDIS,
            "Redis uses 95% of maxmemory",
        ),
        # maxmemory 0: no ceiling to be near.
        Case(
            {series("redis_memory_used_bytes", REDIS): "95x80", series("redis_memory_max_bytes", REDIS): "0x80"}, "6m"
        ),
    ),
    "RedisRejectedConnections": (
        Case(
            {series("redis_rejected_connections_total", REDIS): "0 0 5x10"},
            "30s",
            REDIS,
            "Redis rejected connections in the last 5 minutes",
        ),
        Case({series("redis_rejected_connections_total", REDIS): "0x10"}, "30s"),
    ),
    "RedisAofWriteFailing": (
        Case(
            {series("redis_aof_last_write_status", REDIS): "0x4"},
            "10s",
            REDIS,
            "Redis cannot write its append-only file",
        ),
        Case({series("redis_aof_last_write_status", REDIS): "1x4"}, "10s"),
    ),
    "NginxDown": (
        Case(
            {series("nginx_up", {"job": "nginx", "instance": "nginx-exporter:9113"}): "1 0x10"},
            "30s",
            {"job": "nginx", "instance": "nginx-exporter:9113"},
            "the proxy's status endpoint does not answer",
        ),
        Case({series("nginx_up", {"job": "nginx", "instance": "nginx-exporter:9113"}): "1x10"}, "30s"),
    ),
}
# Watchdog fires by design: it has no quiet case, and `monitoring.alerts` fails when it is missing instead.
ALWAYS_FIRING = {rules.WATCHDOG}


def _test_group(alert: rules.AlertRule, case: Case, fires: bool) -> dict[str, object]:
    expected = []
    if fires:
        expected = [
            {
                "exp_labels": {"severity": alert.severity, **case.labels},
                "exp_annotations": {"summary": case.summary, "reason": alert.reason},
            }
        ]
    return {
        "name": f"{alert.name} {'fires' if fires else 'stays quiet'}",
        "interval": "5s",
        "input_series": [{"series": name, "values": values} for name, values in case.series.items()],
        "alert_rule_test": [{"eval_time": case.at, "alertname": alert.name, "exp_alerts": expected}],
    }


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    defined = [rule.name for rule in rules.alert_rules()]
    assert sorted(defined) == sorted(CASES), "add a case to CASES for each new alert, drop the case of a removed one"
    assert [name for name, (_, quiet) in CASES.items() if quiet is None] == sorted(ALWAYS_FIRING)


def test_every_alert_has_a_severity_a_summary_and_a_reason() -> None:
    for rule in rules.alert_rules():
        assert rule.severity in rules.SEVERITIES, rule.name
        assert rule.summary and rule.reason.endswith((".", ")")), rule.name
    assert rules.by_name()[rules.WATCHDOG].severity == "none"


def test_promtool_runs_every_case(tmp_path: Path) -> None:
    known = rules.by_name()
    groups = []
    for name, (fires, quiet) in CASES.items():
        groups.append(_test_group(known[name], fires, fires=True))
        if quiet is not None:
            groups.append(_test_group(known[name], quiet, fires=False))
    spec = {
        "rule_files": [str(path) for path in sorted(rules.RULES_DIR.glob("*.yml"))],
        "evaluation_interval": "5s",
        "tests": groups,
    }
    (tmp_path / "alerts.test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        [str(tools.tool("promtool")), "test", "rules", "alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(groups) == 2 * len(CASES) - len(ALWAYS_FIRING)


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The negative control: promtool really compares, so a case that expects the wrong summary fails."""
    alert = rules.by_name()["PostgresDown"]
    fires, _ = CASES["PostgresDown"]
    wrong = Case(fires.series, fires.at, fires.labels, "PostgreSQL is fine")
    spec = {"rule_files": [str(rules.RULES_DIR / "analyticbot.yml")], "tests": [_test_group(alert, wrong, fires=True)]}
    (tmp_path / "wrong.test.yml").write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [str(tools.tool("promtool")), "test", "rules", "wrong.test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0 and "PostgreSQL is fine" in result.stdout + result.stderr


@pytest.mark.parametrize("unknown", ["Nope", "postgresdown"])
def test_an_unknown_alert_name_is_bad_input(unknown: str) -> None:
    from analyticbot_ops.errors import BadInput

    with pytest.raises(BadInput, match="PostgresDown"):
        rules.check_alert_name(unknown)
