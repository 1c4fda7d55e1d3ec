"""POST /alerts: Alertmanager's webhook, forwarded to the operator chat on Telegram as one plain-text message.

Alertmanager retries a notification on 5xx and gives it up on 4xx, so a Telegram failure is answered 503 and a
request that could never succeed (wrong token, not a notification, too large) 401, 400 or 413. Without a bot
token or an operator chat the alerts are written to the log ("alert: ..."), and answered 200: development and
tests have no chat, and an alert that cannot be sent anywhere must not be retried forever.

No aiogram here: main.py imports this module before aiogram has loaded (engine.py), and the sender it is given
reaches Telegram through the engine's gateway once that exists."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from analyticbot_common.scrub import SCRUBBER
from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("analyticbot.bot.alerts")

# Alertmanager's payloads are a few KiB (compose/monitoring/alertmanager.yml caps them at 20 alerts); anything
# far larger is not from it, and must not be held in memory.
MAX_BODY_BYTES = 256 * 1024
# sendMessage's limit, which Telegram counts in UTF-16 code units (an emoji is two).
TELEGRAM_LIMIT = 4096
# One alert's fields are cut so that a runaway annotation cannot crowd every other alert out of the message.
MAX_NAME_CHARS = 100
MAX_SEVERITY_CHARS = 30
MAX_SUMMARY_CHARS = 300

Status = Literal["firing", "resolved"]
STATUSES: tuple[Status, ...] = ("firing", "resolved")
OUTCOMES = ("sent", "logged", "failed", "rejected")
Sender = Callable[[int, str], Awaitable[None]]


class DeliveryFailed(Exception):
    """Telegram did not take the message; str(exc) is a scrubbed one-line reason."""


class MalformedNotification(ValueError):
    """The body is not an Alertmanager webhook notification."""


@dataclass(frozen=True)
class Alert:
    status: Status
    name: str
    severity: str
    summary: str
    starts_at: datetime | None
    ends_at: datetime | None


@dataclass(frozen=True)
class Notification:
    alerts: tuple[Alert, ...]
    # Alertmanager's `truncatedAlerts`: how many alerts max_alerts left out of the payload.
    truncated: int = 0


def clip(text: str, limit: int) -> str:
    """One line (labels and annotations may hold newlines), at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}


def _timestamp(value: object) -> datetime | None:
    """An RFC 3339 time, or None for what is absent or unreadable and for Go's zero time (a firing alert's end)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.year <= 1:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _status(value: object, default: Status) -> Status:
    return "resolved" if value == "resolved" else "firing" if value == "firing" else default


def parse_notification(body: bytes) -> Notification:
    """Read Alertmanager's webhook JSON (version 4). Only the shape that a message needs is required: an object
    with an `alerts` list of objects; missing or odd fields inside an alert are tolerated, so that one strange
    alert does not lose the others (Alertmanager does not resend after a 4xx)."""
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedNotification("not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise MalformedNotification("no alerts list")
    # An alert without its own status takes the notification's; a page is safer than silence when neither says.
    default = _status(payload.get("status"), "firing")
    alerts: list[Alert] = []
    for item in payload["alerts"]:
        if not isinstance(item, dict):
            raise MalformedNotification("an alert is not an object")
        labels = _strings(item.get("labels"))
        annotations = _strings(item.get("annotations"))
        alerts.append(
            Alert(
                status=_status(item.get("status"), default),
                name=labels.get("alertname", "unnamed alert"),
                severity=labels.get("severity", ""),
                summary=annotations.get("summary") or annotations.get("description") or "",
                starts_at=_timestamp(item.get("startsAt")),
                ends_at=_timestamp(item.get("endsAt")),
            )
        )
    truncated = payload.get("truncatedAlerts")
    hidden = truncated if isinstance(truncated, int) and not isinstance(truncated, bool) and truncated > 0 else 0
    return Notification(tuple(alerts), hidden)


def _when(moment: datetime, now: datetime) -> str:
    # The date only when it is not today's: most alerts are minutes old, and the line stays short.
    if moment.date() == now.astimezone(UTC).date():
        return f"{moment:%H:%M:%S} UTC"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def alert_line(alert: Alert, now: datetime) -> str:
    """e.g. "FIRING critical PostgresDown: postgres does not answer (since 12:01:05 UTC)"."""
    words = [alert.status.upper()]
    if alert.severity:
        words.append(clip(alert.severity, MAX_SEVERITY_CHARS))
    words.append(clip(alert.name, MAX_NAME_CHARS))
    line = " ".join(words)
    if alert.summary:
        line += f": {clip(alert.summary, MAX_SUMMARY_CHARS)}"
    if alert.status == "resolved" and alert.ends_at is not None:
        line += f" (ended {_when(alert.ends_at, now)})"
    elif alert.starts_at is not None:
        line += f" (since {_when(alert.starts_at, now)})"
    return line


def telegram_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def compose(lines: Sequence[str], *, hidden: int = 0, limit: int = TELEGRAM_LIMIT) -> str:
    """The lines as one message of at most `limit`; those that do not fit (and `hidden` ones) are counted in a
    last line "… and N more"."""
    total = len(lines) + hidden
    kept: list[str] = []
    length = 0
    for index, line in enumerate(lines):
        after = total - index - 1
        grown = length + (1 if kept else 0) + telegram_length(line)
        tail = telegram_length(f"\n… and {after} more") if after else 0
        if grown + tail > limit:
            break
        kept.append(line)
        length = grown
    dropped = total - len(kept)
    if dropped:
        kept.append(f"… and {dropped} more")
    return "\n".join(kept)


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "alert_notifications_total",
            "Alertmanager notifications by outcome: sent to Telegram, logged (no bot token or operator chat), "
            "failed (answered 503 for a retry) or rejected (401, 400 or 413).",
            ["outcome"],
            registry=registry,
        )
        self.received = Counter(
            "alerts_received_total",
            "Alerts in the accepted Alertmanager notifications, by status.",
            ["status"],
            registry=registry,
        )
        # Every series exists from the start: a rate() over a series that appears with its first event misses it.
        for outcome in OUTCOMES:
            self.notifications.labels(outcome=outcome)
        for status in STATUSES:
            self.received.labels(status=status)


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` header (the scheme is case-insensitive)."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes (whatever Content-Length claims)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _now() -> datetime:
    return datetime.now(UTC)


class AlertRelay:
    """The state POST /alerts needs, set by the lifespan once the secrets are read: until then it accepts nothing."""

    def __init__(self, metrics: AlertMetrics, send: Sender, clock: Callable[[], datetime] | None = None) -> None:
        self.metrics = metrics
        self._send = send
        self._clock = clock
        self.token: str | None = None
        self.chat_id: int | None = None
        self.telegram = False

    def configure(self, *, token: str | None, chat_id: int | None, telegram: bool) -> None:
        """`telegram`: whether a usable bot token is configured; without one alerts are only logged."""
        self.token, self.chat_id, self.telegram = token, chat_id, telegram

    def reject(self, status: int, detail: str) -> JSONResponse:
        self.metrics.notifications.labels(outcome="rejected").inc()
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    def _outcome(self, outcome: str, status: int, body: dict[str, object]) -> JSONResponse:
        self.metrics.notifications.labels(outcome=outcome).inc()
        return JSONResponse(body, status_code=status)

    async def receive(self, request: Request) -> JSONResponse:
        """Everything after the token check (main.py makes it, as for the Telegram webhook)."""
        body = await read_limited(request, MAX_BODY_BYTES)
        if body is None:
            return self.reject(413, "body too large")
        try:
            notification = parse_notification(body)
        except MalformedNotification:
            return self.reject(400, "not an Alertmanager notification")
        # Firing first: when the message must be cut, resolutions are what it loses.
        alerts = sorted(notification.alerts, key=lambda alert: alert.status != "firing")
        for alert in alerts:
            self.metrics.received.labels(status=alert.status).inc()
        now = (self._clock or _now)()
        lines = [alert_line(alert, now) for alert in alerts]
        count = len(lines)
        if self.chat_id is None or not self.telegram or not lines:
            for alert, line in zip(alerts, lines, strict=True):
                log.log(logging.WARNING if alert.status == "firing" else logging.INFO, "alert: %s", line)
            if notification.truncated:
                log.warning("alert: … and %d more, left out by Alertmanager (max_alerts)", notification.truncated)
            if not lines:
                log.info("alert: a notification without alerts")
            return self._outcome("logged", 200, {"ok": True, "delivery": "logged", "alerts": count})
        try:
            await self._send(self.chat_id, compose(lines, hidden=notification.truncated))
        except Exception as exc:  # answered 503 whatever failed: Alertmanager then retries
            reason = str(exc) if isinstance(exc, DeliveryFailed) else type(exc).__name__
            log.warning(
                "alerts: sending %d alert(s) to Telegram failed, answered 503 for a retry: %s",
                count,
                SCRUBBER.error_text(reason),
            )
            return self._outcome("failed", 503, {"detail": "Telegram delivery failed"})
        return self._outcome("sent", 200, {"ok": True, "delivery": "sent", "alerts": count})
