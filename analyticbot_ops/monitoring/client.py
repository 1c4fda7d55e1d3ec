"""Prometheus and Alertmanager of a running stack, through their loopback ports with the `ops` login: the
alerts and their verdict, the scrape targets, silences. What `monitoring.*` prints comes from here."""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .. import docker, secrets
from ..compose import Stack
from ..errors import EXIT_DEGRADED, EXIT_OK, EXIT_UNHEALTHY, BadInput, Unhealthy
from .rules import WATCHDOG

TIMEOUT = 10.0
_DURATION = re.compile(r"([0-9]+)(m|h|d|w)")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # firing | pending
    severity: str
    summary: str
    labels: dict[str, str] = field(default_factory=dict)
    active_at: str = ""


@dataclass(frozen=True)
class Target:
    job: str
    instance: str
    health: str  # up | down | unknown
    last_error: str
    last_scrape: str


@dataclass(frozen=True)
class Endpoint:
    """Prometheus or Alertmanager on the host's loopback, and the login every path needs."""

    name: str
    url: str
    user: str
    password: str = field(repr=False)

    def get(self, path: str, *keys: str) -> Any:
        """GET a path and take `keys` from its JSON, or one line saying the answer was not the expected shape."""
        found = self.request(path)
        try:
            for key in keys:
                found = found[key]
        except (KeyError, TypeError, IndexError):
            raise Unhealthy(f"{self.name} on {self.url} answered {path} without {'.'.join(keys)}") from None
        return found

    def request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.loads(response.read() or b"null")
        except (ValueError, http.client.HTTPException) as exc:  # something else on the port, or not JSON
            raise Unhealthy(
                f"{self.name} on {self.url} gave an answer that is not its API's ({type(exc).__name__})"
            ) from None
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise BadInput(
                    f"{self.name} refused the password of prometheus_password (HTTP 401): the secrets folder is not "
                    "the one the stack runs with, or it changed since (`invoke secrets.rotate prometheus_password`)"
                ) from None
            detail = exc.read().decode(errors="replace").strip()[:200]
            raise BadInput(f"{self.name} answered HTTP {exc.code} to {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unhealthy(f"{self.name} does not answer on {self.url} ({reason}); is the stack up?") from None


@dataclass(frozen=True)
class Monitoring:
    prometheus: Endpoint
    alertmanager: Endpoint

    def alerts(self) -> list[Alert]:
        """Every alert Prometheus holds now, pending or firing, critical first."""
        data = self.prometheus.get("/api/v1/alerts", "data", "alerts")
        found = [
            Alert(
                name=a["labels"].get("alertname", ""),
                state=a.get("state", ""),
                severity=a["labels"].get("severity", ""),
                summary=(a.get("annotations") or {}).get("summary", ""),
                labels={k: v for k, v in a["labels"].items() if k not in ("alertname", "severity")},
                active_at=a.get("activeAt", ""),
            )
            for a in data
        ]
        order = {"critical": 0, "warning": 1}
        return sorted(found, key=lambda a: (order.get(a.severity, 2), a.name, sorted(a.labels.items())))

    def targets(self) -> list[Target]:
        data = self.prometheus.get("/api/v1/targets?state=active", "data", "activeTargets")
        return sorted(
            (
                Target(
                    job=t["labels"].get("job", ""),
                    instance=t["labels"].get("instance", ""),
                    health=t.get("health", "unknown"),
                    last_error=t.get("lastError", ""),
                    last_scrape=t.get("lastScrape", ""),
                )
                for t in data
            ),
            key=lambda t: (t.job, t.instance),
        )

    def silence(self, alert: str, duration: timedelta, reason: str, author: str) -> str:
        """Silence one alert by name for `duration` from now; Alertmanager's id of the silence."""
        now = datetime.now(UTC)
        body = {
            "matchers": [{"name": "alertname", "value": alert, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + duration).isoformat(),
            "createdBy": author,
            "comment": reason,
        }
        answer = self.alertmanager.request("/api/v2/silences", body)
        if not isinstance(answer, dict) or "silenceID" not in answer:
            raise Unhealthy(f"Alertmanager on {self.alertmanager.url} did not say which silence it made")
        return str(answer["silenceID"])


def verdict(alerts: Iterable[Alert]) -> tuple[int, str]:
    """The exit code of `monitoring.alerts` and its one line: 0 when only Watchdog fires, 4 on a warning, 5 on a
    critical alert or when Watchdog is missing (the rules are not evaluated, or alerts do not leave Prometheus).
    Pending alerts have not fired yet and do not count."""
    firing = [a for a in alerts if a.state == "firing"]
    critical = sorted({a.name for a in firing if a.severity == "critical"})
    warnings = sorted({a.name for a in firing if a.severity == "warning"})
    if not any(a.name == WATCHDOG for a in firing):
        return EXIT_UNHEALTHY, f"{WATCHDOG} is not firing: Prometheus does not evaluate its rules"
    if critical:
        return EXIT_UNHEALTHY, f"critical alerts firing: {', '.join(critical)}"
    if warnings:
        return EXIT_DEGRADED, f"warnings firing: {', '.join(warnings)}"
    return EXIT_OK, f"only {WATCHDOG} fires"


def parse_duration(text: str) -> timedelta:
    """`--for` of a silence: 30m, 1h, 2d, 1w or a sum of them (1h30m); at most 90 days."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise BadInput(f"--for must be a duration like 30m, 1h or 2d, got {text!r}")
    total = sum((int(n) * _UNITS[u] for n, u in parts), timedelta())
    if not timedelta(0) < total <= timedelta(days=90):
        raise BadInput(f"--for must be more than 0 and at most 90 days, got {text!r}")
    return total


def for_stack(stack: Stack) -> Monitoring:
    """The stack's Prometheus and Alertmanager, logged in with its secrets folder's prometheus_password."""
    if not stack.monitoring:
        raise BadInput("the monitoring overlay is off (invoke.yaml: ops.monitoring: false)")
    docker.require_daemon()
    password = secrets.read_secret("prometheus_password", Path(stack.settings["SECRETS_DIR"]))
    user = secrets.MONITORING_USER
    return Monitoring(
        Endpoint("Prometheus", f"http://127.0.0.1:{stack.settings['PROMETHEUS_PORT']}", user, password),
        Endpoint("Alertmanager", f"http://127.0.0.1:{stack.settings['ALERTMANAGER_PORT']}", user, password),
    )
