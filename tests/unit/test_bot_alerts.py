"""POST /alerts: Alertmanager's webhook, forwarded to the operator chat or written to the log.

The app (its lifespan included), the route, the relay, the formatting and the metrics are the real code;
Telegram is a fake gateway (the engine needs aiogram, which the unit tests' environment does not have). Where
aiogram is installed, the last tests also send through the real gateway to a fake Bot API server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from analyticbot_bot import alerts, main
from analyticbot_bot.alerts import (
    MAX_BODY_BYTES,
    TELEGRAM_LIMIT,
    Alert,
    DeliveryFailed,
    MalformedNotification,
    alert_line,
    bearer_token,
    compose,
    parse_notification,
    telegram_length,
)
from analyticbot_bot.settings import BotSecrets, BotSettings, chat_id, load_secrets
from analyticbot_common.settings import load_settings
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

ALERT_TOKEN = "Kf83-alertmanager-bearer-value"
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"
CHAT = -1001234567890
NOW = datetime(2026, 3, 3, 12, 30, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {ALERT_TOKEN}"}
ALERTS_LOG = "analyticbot.bot.alerts"


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "_now", lambda: NOW)


def alert(
    name: str,
    status: str = "firing",
    *,
    severity: str | None = "critical",
    summary: str | None = None,
    starts: str = "2026-03-03T12:01:05.123456789Z",
    ends: str = "0001-01-01T00:00:00Z",
) -> dict[str, Any]:
    labels = {"alertname": name, "job": "api", "instance": "api:8000"}
    if severity is not None:
        labels["severity"] = severity
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": summary or f"{name} summary", "reason": "why it pages"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": "0123456789abcdef",
    }


def notification(*alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    statuses = {a["status"] for a in alerts}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="PostgresDown"}',
        "status": "firing" if "firing" in statuses else "resolved",
        "receiver": "telegram",
        "groupLabels": {"alertname": "PostgresDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
        **extra,
    }


# --- the pieces ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_the_bearer_token_is_read_from_the_authorization_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_a_notification_is_read_into_alerts() -> None:
    body = notification(
        alert("PostgresDown", summary="postgres does not answer"),
        alert("HighLatency", "resolved", severity=None, ends="2026-03-03T12:20:00Z"),
        truncatedAlerts=3,
    )
    parsed = parse_notification(json.dumps(body).encode())
    assert parsed.truncated == 3
    first, second = parsed.alerts
    assert (first.status, first.name, first.severity, first.summary) == (
        "firing",
        "PostgresDown",
        "critical",
        "postgres does not answer",
    )
    assert first.starts_at == datetime(2026, 3, 3, 12, 1, 5, 123456, tzinfo=UTC)
    assert first.ends_at is None  # Go's zero time: still firing
    assert (second.status, second.severity, second.ends_at) == (
        "resolved",
        "",
        datetime(2026, 3, 3, 12, 20, tzinfo=UTC),
    )


def test_odd_fields_inside_an_alert_are_tolerated() -> None:
    body = {"status": "resolved", "alerts": [{"labels": "nope", "annotations": {"description": "only this"}}, {}]}
    first, second = parse_notification(json.dumps(body).encode()).alerts
    assert (first.status, first.name, first.summary, first.starts_at) == (
        "resolved",
        "unnamed alert",
        "only this",
        None,
    )
    assert alert_line(second, NOW) == "RESOLVED unnamed alert"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'"alerts"',
        b"{}",
        b'{"alerts": {}}',
        b'{"alerts": null}',
        b'{"alerts": ["PostgresDown"]}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "empty",
        "broken",
        "not-utf8",
        "list",
        "string",
        "no-alerts",
        "alerts-object",
        "alerts-null",
        "str-alert",
        "deep",
    ],
)
def test_what_is_not_a_notification_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedNotification):
        parse_notification(body)


def test_an_alert_is_one_short_plain_line() -> None:
    firing = Alert("firing", "PostgresDown", "critical", "postgres\ndoes not   answer", NOW.replace(minute=1), None)
    assert alert_line(firing, NOW) == "FIRING critical PostgresDown: postgres does not answer (since 12:01:00 UTC)"
    resolved = Alert("resolved", "HighLatency", "warning", "", NOW.replace(minute=1), NOW.replace(minute=20))
    assert alert_line(resolved, NOW) == "RESOLVED warning HighLatency (ended 12:20:00 UTC)"
    old = Alert("firing", "DiskFilling", "", "disk at 91%", datetime(2026, 3, 1, 8, 0, tzinfo=UTC), None)
    assert alert_line(old, NOW) == "FIRING DiskFilling: disk at 91% (since 2026-03-01 08:00:00 UTC)"
    runaway = Alert("firing", "N" * 500, "s" * 100, "x" * 5000, None, None)
    assert len(alert_line(runaway, NOW)) < 500


def test_a_message_that_fits_is_the_lines_joined() -> None:
    assert compose(["a", "b"]) == "a\nb"
    assert compose(["a", "b"], hidden=2) == "a\nb\n… and 2 more"


def test_a_long_message_is_cut_under_telegrams_limit_and_says_how_many_more() -> None:
    lines = [f"FIRING critical Alert{i}: " + "x" * 80 for i in range(200)]
    text = compose(lines, hidden=5)
    assert telegram_length(text) <= TELEGRAM_LIMIT
    kept = text.splitlines()[:-1]
    assert kept == lines[: len(kept)]
    assert text.endswith(f"… and {200 + 5 - len(kept)} more")
    # Telegram counts UTF-16 units: an emoji takes two, and the cut comes earlier.
    emoji = compose(["🔥" * 100] * 100)
    assert telegram_length(emoji) <= TELEGRAM_LIMIT < len(emoji.encode("utf-16-le"))
    # Exactly at the limit: nothing is cut.
    exact = ["y" * 2047, "y" * 2048]
    assert compose(exact) == "\n".join(exact)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1001234567890", -1001234567890),
        ("123456789", 123456789),
        ("", None),
        (None, None),
        ("0", None),
        ("-0", None),
        ("@channel", None),
        ("12.5", None),
        ("--5", None),
        ("1" * 17, None),
    ],
)
def test_a_chat_id_is_an_integer_possibly_negative(text: str | None, expected: int | None) -> None:
    assert chat_id(text) == expected


# --- the secrets --------------------------------------------------------------------------------------------


def _secret_files(monkeypatch: pytest.MonkeyPatch, folder: Path, files: dict[str, str | None]) -> None:
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.setenv("SECRETS_DIR", str(folder))
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET_FILE", str(folder / "telegram_webhook_secret"))
    monkeypatch.setenv("BOT_TOKEN_FILE", str(folder / "absent"))
    monkeypatch.setenv("API_READ_TOKEN_FILE", str(folder / "absent"))
    (folder / "telegram_webhook_secret").write_text("Kf83webhookvalue")
    for variable, content in files.items():
        path = folder / variable.removesuffix("_FILE").lower()
        if content is not None:
            path.write_text(content, encoding="utf-8")
        monkeypatch.setenv(variable, str(path))


def test_alert_secrets_are_read_from_their_files_and_hidden_in_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _secret_files(
        monkeypatch, tmp_path, {"ALERT_WEBHOOK_TOKEN_FILE": f"{ALERT_TOKEN}\n", "ALERT_CHAT_ID_FILE": f" {CHAT}\n"}
    )
    secrets = load_secrets(load_settings(BotSettings))
    assert (secrets.alert_token, secrets.alert_chat_id) == (ALERT_TOKEN, CHAT)
    assert ALERT_TOKEN not in repr(secrets) and str(CHAT) not in repr(secrets)


@pytest.mark.parametrize(("token", "chat"), [(None, None), ("", ""), ("change_me", "not-a-chat")])
def test_absent_or_unusable_alert_secrets_are_none_and_named_never_shown(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    token: str | None,
    chat: str | None,
) -> None:
    _secret_files(monkeypatch, tmp_path, {"ALERT_WEBHOOK_TOKEN_FILE": token, "ALERT_CHAT_ID_FILE": chat})
    with caplog.at_level(logging.WARNING):
        secrets = load_secrets(load_settings(BotSettings))
    assert (secrets.alert_token, secrets.alert_chat_id) == (None, None)
    if chat:
        assert "ALERT_WEBHOOK_TOKEN_FILE" in caplog.text and "ALERT_CHAT_ID_FILE" in caplog.text
        assert "change_me" not in caplog.text and "not-a-chat" not in caplog.text


# --- the route ----------------------------------------------------------------------------------------------


class FakeGateway:
    """The engine's TelegramGateway as POST /alerts uses it: records what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.failure: Exception | None = None

    async def send_text(self, chat_id: int, text: str) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append((chat_id, text))

    async def close(self) -> None:
        pass


class FakeEngine:
    def __init__(self, telegram: FakeGateway) -> None:
        self.telegram = telegram


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    """The engine's load (which imports aiogram) replaced by one that installs a fake gateway at once."""
    fake = FakeGateway()

    async def load(self: main.EngineHolder, *_args: object) -> None:
        self.engine = FakeEngine(fake)  # type: ignore[assignment]

    monkeypatch.setattr(main.EngineHolder, "load", load)
    return fake


def bot_settings(**overrides: Any) -> BotSettings:
    # A closed port: nothing in these tests may reach a real Bot API server.
    values: dict[str, Any] = {"environment": "development", "telegram_api_base": "http://127.0.0.1:9", **overrides}
    return BotSettings(**values)


class AppClient:
    """The app with its lifespan, called synchronously on an event loop of its own (Starlette's TestClient does
    the same, but warns about its httpx dependency)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        self._lifespan: AbstractAsyncContextManager[None] = app.router.lifespan_context(app)
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot:8000")

    def __enter__(self) -> AppClient:
        self._loop.run_until_complete(self._lifespan.__aenter__())
        self.wait(0)  # the engine's loader task gets its first turn
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.run_until_complete(self._http.aclose())
        self._loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self._loop.close()

    def wait(self, seconds: float) -> None:
        self._loop.run_until_complete(asyncio.sleep(seconds))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._http.get(url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._http.post(url, **kwargs))


def client_for(
    *, alert_token: str | None = ALERT_TOKEN, chat: int | None = None, bot_token: str | None = None
) -> AppClient:
    secrets = BotSecrets(
        token=bot_token,
        webhook_secret="Kf83webhookvalue",
        alert_token=alert_token,
        alert_chat_id=chat,
        token_problem=None if bot_token else "no valid bot token configured",
    )
    return AppClient(main.create_app(bot_settings(), secrets))


def samples(client: AppClient) -> dict[tuple[str, str], float]:
    """The alert counters in GET /metrics, keyed by (sample name, label value)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in ("alert_notifications_total", "alerts_received_total"):
                found[(sample.name, next(iter(sample.labels.values())))] = sample.value
    return found


def outcome(client: AppClient, name: str) -> float:
    return samples(client)[("alert_notifications_total", name)]


@pytest.fixture
def logged_client(gateway: FakeGateway) -> Iterator[AppClient]:
    with client_for() as client:
        yield client


def test_the_alert_counters_are_in_metrics_from_the_start(logged_client: AppClient) -> None:
    assert samples(logged_client) == {
        ("alert_notifications_total", "sent"): 0,
        ("alert_notifications_total", "logged"): 0,
        ("alert_notifications_total", "failed"): 0,
        ("alert_notifications_total", "rejected"): 0,
        ("alerts_received_total", "firing"): 0,
        ("alerts_received_total", "resolved"): 0,
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {ALERT_TOKEN}x"},
        {"Authorization": f"Basic {ALERT_TOKEN}"},
        {"Authorization": ALERT_TOKEN},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "longer", "basic", "no-scheme", "empty"],
)
def test_a_missing_or_wrong_token_is_401_without_detail(logged_client: AppClient, headers: dict[str, str]) -> None:
    response = logged_client.post("/alerts", json=notification(alert("PostgresDown")), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert outcome(logged_client, "rejected") == 1
    assert outcome(logged_client, "logged") == 0


def test_without_a_configured_token_every_call_is_refused(
    gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), client_for(alert_token=None, chat=CHAT, bot_token=BOT_TOKEN) as client:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}, AUTH):
            response = client.post("/alerts", json=notification(alert("PostgresDown")), headers=headers)
            assert response.status_code == 401
        assert gateway.sent == []
        # The webhook, health and the rest of the bot run as usual.
        assert client.get("/health/live").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if "ALERT_WEBHOOK_TOKEN_FILE" in r.getMessage()]
    assert warnings == ["ALERT_WEBHOOK_TOKEN_FILE names no token: POST /alerts refuses every call"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b"{}", b'{"alerts": "PostgresDown"}', b'{"alerts": [1, 2]}'],
    ids=["broken", "list", "no-alerts", "alerts-string", "alerts-numbers"],
)
def test_a_body_that_is_not_a_notification_is_400(logged_client: AppClient, body: bytes) -> None:
    response = logged_client.post("/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "not an Alertmanager notification"}
    assert outcome(logged_client, "rejected") == 1


def test_a_body_over_the_limit_is_413_whether_or_not_it_says_its_length(logged_client: AppClient) -> None:
    big = b'{"alerts": [' + b" " * MAX_BODY_BYTES + b"]}"
    response = logged_client.post("/alerts", content=big, headers=AUTH)
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: streamed
        yield b'{"alerts": ['
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b" " * 1024
        yield b"]}"

    response = logged_client.post("/alerts", content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert outcome(logged_client, "rejected") == 2
    # Just under the limit is read.
    fits = json.dumps(notification(alert("PostgresDown"))).encode()
    fits = fits[:-1] + b" " * (MAX_BODY_BYTES - len(fits)) + b"}"
    assert logged_client.post("/alerts", content=fits, headers=AUTH).status_code == 200


def test_without_an_operator_chat_alerts_are_logged_and_answered_200(
    logged_client: AppClient, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    body = notification(
        alert("PostgresDown", summary="postgres does not answer"),
        alert("HighLatency", "resolved", ends="2026-03-03T12:20:00Z"),
        alert("RedisDown"),
    )
    with caplog.at_level(logging.INFO, logger=ALERTS_LOG):
        response = logged_client.post("/alerts", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "delivery": "logged", "alerts": 3}
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == ALERTS_LOG]
    assert lines == [
        (logging.WARNING, "alert: FIRING critical PostgresDown: postgres does not answer (since 12:01:05 UTC)"),
        (logging.WARNING, "alert: FIRING critical RedisDown: RedisDown summary (since 12:01:05 UTC)"),
        (logging.INFO, "alert: RESOLVED critical HighLatency: HighLatency summary (ended 12:20:00 UTC)"),
    ]
    assert gateway.sent == []
    counted = samples(logged_client)
    assert counted[("alert_notifications_total", "logged")] == 1
    assert counted[("alerts_received_total", "firing")] == 2
    assert counted[("alerts_received_total", "resolved")] == 1
    assert ALERT_TOKEN not in caplog.text


def test_without_a_bot_token_alerts_are_logged_even_with_a_chat(gateway: FakeGateway) -> None:
    with client_for(chat=CHAT, bot_token=None) as client:
        response = client.post("/alerts", json=notification(alert("PostgresDown")), headers=AUTH)
        assert response.json()["delivery"] == "logged"
        assert gateway.sent == [] and outcome(client, "logged") == 1


@pytest.fixture
def sending_client(gateway: FakeGateway) -> Iterator[AppClient]:
    with client_for(chat=CHAT, bot_token=BOT_TOKEN) as client:
        yield client


def test_with_a_chat_and_a_bot_the_alerts_are_sent_as_one_message(
    sending_client: AppClient, gateway: FakeGateway
) -> None:
    body = notification(
        alert("HighLatency", "resolved", ends="2026-03-03T12:20:00Z"),
        alert("PostgresDown", summary="postgres does not answer"),
    )
    response = sending_client.post("/alerts", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "delivery": "sent", "alerts": 2}
    [(chat, text)] = gateway.sent
    assert chat == CHAT
    first, second = text.splitlines()
    assert first.startswith("FIRING critical PostgresDown: postgres does not answer (since ")
    assert second.startswith("RESOLVED critical HighLatency")
    counted = samples(sending_client)
    assert counted[("alert_notifications_total", "sent")] == 1
    assert counted[("alerts_received_total", "firing")] == 1
    assert counted[("alerts_received_total", "resolved")] == 1


def test_a_telegram_failure_is_503_so_alertmanager_retries(
    sending_client: AppClient, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.failure = DeliveryFailed("TelegramBadRequest: Bad Request: chat not found")
    with caplog.at_level(logging.WARNING, logger=ALERTS_LOG):
        response = sending_client.post("/alerts", json=notification(alert("PostgresDown")), headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"detail": "Telegram delivery failed"}
    assert outcome(sending_client, "failed") == 1 and outcome(sending_client, "sent") == 0
    [line] = [r.getMessage() for r in caplog.records if r.name == ALERTS_LOG]
    assert "chat not found" in line and "503" in line
    for secret in (ALERT_TOKEN, BOT_TOKEN, str(CHAT)):
        assert secret not in caplog.text
    # An unexpected error is a failure too, named by its type only.
    gateway.failure = ConnectionResetError(f"reset while sending to bot{BOT_TOKEN}")
    assert sending_client.post("/alerts", json=notification(alert("PostgresDown")), headers=AUTH).status_code == 503
    assert BOT_TOKEN not in caplog.text
    # Telegram back: the retry goes through.
    gateway.failure = None
    assert sending_client.post("/alerts", json=notification(alert("PostgresDown")), headers=AUTH).status_code == 200
    assert outcome(sending_client, "failed") == 2 and outcome(sending_client, "sent") == 1


def test_until_the_telegram_client_has_loaded_alerts_are_503(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(self: main.EngineHolder, *_args: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(main.EngineHolder, "load", never)
    with client_for(chat=CHAT, bot_token=BOT_TOKEN) as client:
        assert client.post("/alerts", json=notification(alert("PostgresDown")), headers=AUTH).status_code == 503
        assert outcome(client, "failed") == 1


def test_a_long_notification_is_cut_under_4096_characters(sending_client: AppClient, gateway: FakeGateway) -> None:
    alerts = [alert(f"Alert{i:03}", summary="a rather long summary " * 10) for i in range(150)]
    response = sending_client.post("/alerts", json=notification(*alerts, truncatedAlerts=7), headers=AUTH)
    assert response.status_code == 200 and response.json()["alerts"] == 150
    [(_, text)] = gateway.sent
    assert telegram_length(text) <= TELEGRAM_LIMIT
    *lines, more = text.splitlines()
    assert lines[0].startswith("FIRING critical Alert000") and 0 < len(lines) < 150
    assert more == f"… and {150 + 7 - len(lines)} more"


# --- through aiogram, where it is installed -----------------------------------------------------------------


class FakeBotApi:
    """A Bot API server on 127.0.0.1 that records sendMessage calls and answers with `reply`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.reply: dict[str, Any] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.calls.append((self.path, _form(self.headers.get("Content-Type", ""), body)))
                payload = json.dumps(owner.reply).encode()
                self.send_response(200 if owner.reply.get("ok") else owner.reply.get("error_code", 500))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer_message(self) -> None:
        self.reply = {
            "ok": True,
            "result": {"message_id": 7, "date": 0, "chat": {"id": CHAT, "type": "supergroup"}, "text": "x"},
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _form(content_type: str, body: bytes) -> dict[str, str]:
    if content_type.startswith("multipart/"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        return {
            part.get_param("name", header="content-disposition"): part.get_content() for part in message.iter_parts()
        }
    return dict(parse_qsl(body.decode()))


# Only looked for: importing aiogram before engine.py would defeat its lazy types (lazy_types.install()).
needs_aiogram = pytest.mark.skipif(importlib.util.find_spec("aiogram") is None, reason="aiogram is not installed")


@pytest.fixture
def bot_api() -> Iterator[FakeBotApi]:
    server = FakeBotApi()
    yield server
    server.close()


@needs_aiogram
def test_the_gateway_sends_plain_text_to_the_chat_through_the_configured_server(bot_api: FakeBotApi) -> None:
    from analyticbot_bot.engine import build_engine
    from analyticbot_bot.main import ApiClient

    settings = bot_settings(telegram_api_base=bot_api.base, telegram_api_timeout=2.0)
    secrets = BotSecrets(token=BOT_TOKEN)

    async def scenario() -> None:
        engine = build_engine(settings, secrets, ApiClient("http://127.0.0.1:9", timeout=1))
        try:
            bot_api.answer_message()
            await engine.telegram.send_text(CHAT, "FIRING critical <b>PostgresDown</b>")
            bot_api.reply = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            with pytest.raises(DeliveryFailed, match="chat not found") as failed:
                await engine.telegram.send_text(CHAT, "again")
            assert BOT_TOKEN not in str(failed.value)
        finally:
            await engine.telegram.close()

    asyncio.run(scenario())
    (path, form), _ = bot_api.calls
    assert path == f"/bot{BOT_TOKEN}/sendMessage"
    assert form["chat_id"] == str(CHAT)
    assert form["text"] == "FIRING critical <b>PostgresDown</b>"
    assert "parse_mode" not in form


@needs_aiogram
def test_the_gateway_fails_within_its_timeout_when_telegram_is_unreachable() -> None:
    from analyticbot_bot.engine import build_engine
    from analyticbot_bot.main import ApiClient

    engine = build_engine(bot_settings(telegram_api_timeout=1.0), BotSecrets(token=BOT_TOKEN), ApiClient("x", 1))

    async def scenario() -> None:
        try:
            await engine.telegram.send_text(CHAT, "FIRING")
        finally:
            await engine.telegram.close()

    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(scenario())
    assert time.monotonic() - started < 5
    assert BOT_TOKEN not in str(failed.value)


@needs_aiogram
def test_alertmanager_to_the_fake_bot_api_end_to_end(bot_api: FakeBotApi) -> None:
    bot_api.answer_message()
    settings = bot_settings(telegram_api_base=bot_api.base)
    secrets = BotSecrets(
        token=BOT_TOKEN, webhook_secret="Kf83webhookvalue", alert_token=ALERT_TOKEN, alert_chat_id=CHAT
    )
    with AppClient(main.create_app(settings, secrets)) as client:
        holder: main.EngineHolder = client.app.state.engine
        deadline = time.monotonic() + 60
        while holder.engine is None:
            assert holder.error is None and time.monotonic() < deadline, holder.error or "aiogram did not load"
            client.wait(0.05)
        response = client.post("/alerts", json=notification(alert("PostgresDown")), headers=AUTH)
        assert response.status_code == 200 and response.json()["delivery"] == "sent"
        assert outcome(client, "sent") == 1
    # (GET /metrics probes the dependencies too: getMe.)
    [form] = [form for path, form in bot_api.calls if path == f"/bot{BOT_TOKEN}/sendMessage"]
    assert form["chat_id"] == str(CHAT)
    assert form["text"].startswith("FIRING critical PostgresDown: PostgresDown summary (since ")
