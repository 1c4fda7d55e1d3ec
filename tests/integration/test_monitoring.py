"""The monitoring overlay on a prod-mode stack of its own: every target scraped, only Watchdog firing at rest,
real faults (postgres killed, the api stopped) turned into alerts that reach the bot within the promised
seconds, and the overlay as locked down as the rest (its logins, its networks, its users' rights)."""

from __future__ import annotations

import base64
import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from analyticbot_ops import compose, deploy, docker, secrets
from analyticbot_ops.errors import EXIT_OK
from analyticbot_ops.monitoring import client
from tests.integration.browser import chromium
from tests.sandbox import RunningStack, create_channel, make_stack

TARGETS_UP_WITHIN = 60.0
FIRES_WITHIN = 30.0
REACHES_THE_BOT_WITHIN = 45.0
RESOLVES_WITHIN = 60.0
JOBS = {"prometheus", "alertmanager", "api", "bot", "mtproto", "postgres", "redis", "nginx", "edge"}


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[tuple[RunningStack, float]]:
    """A prod-mode stack with the monitoring overlay; the seconds until every target was up after the deploy."""
    running = make_stack(tmp_path_factory.mktemp("monitored"), f"abmon-{run_id}", monitoring=True)
    try:
        deploy.up(running.stack, timeout=240, progress=print)
        monitoring = client.for_stack(running.stack)
        up_after = _until(lambda: _all_up(monitoring), TARGETS_UP_WITHIN, "every target up")
        yield running, up_after
    finally:
        deploy.down(running.stack, volumes=True)


def _all_up(monitoring: client.Monitoring) -> bool:
    targets = monitoring.targets()
    return {t.job for t in targets} == JOBS and all(t.health == "up" for t in targets)


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _firing(stack: RunningStack, name: str) -> bool:
    return any(a.name == name and a.state == "firing" for a in client.for_stack(stack.stack).alerts())


def _container(stack: RunningStack, service: str) -> str:
    return compose.service_states(stack.project)[service].container


def _bot_logged(stack: RunningStack, line: str, since: float) -> bool:
    logs = docker.docker(["logs", "--since", str(int(since) - 1), _container(stack, "bot")], check=False)
    return line in logs.stdout + logs.stderr


def _settled(stack: RunningStack) -> None:
    """Every service healthy again and every target up, before the next test."""
    compose.wait_healthy(stack.stack, stack.stack.running, 120, fail_fast=False)
    _until(lambda: _all_up(client.for_stack(stack.stack)), 60, "every target up again")


def test_every_target_is_up_within_60_s_of_a_deploy(watched: tuple[RunningStack, float]) -> None:
    stack, seconds = watched
    print(f"every target up {seconds:.1f} s after the deploy")
    targets = client.for_stack(stack.stack).targets()
    assert {t.job for t in targets} == JOBS and {t.health for t in targets} == {"up"}


def test_at_rest_only_the_watchdog_fires(watched: tuple[RunningStack, float]) -> None:
    """Now, and at any moment since the deploy: no other alert fired. (One may be pending while the stack
    starts: an app's first scrape can come before it answers.)"""
    stack, _ = watched
    monitoring = client.for_stack(stack.stack)
    found = monitoring.alerts()
    assert client.verdict(found) == (EXIT_OK, "only Watchdog fires"), found
    assert [a.name for a in found if a.state == "firing"] == ["Watchdog"]
    since_deploy = 'max_over_time(ALERTS{alertname!="Watchdog", alertstate="firing"}[10m])'
    ever = monitoring.prometheus.request(f"/api/v1/query?query={quote(since_deploy, safe='')}")["data"]["result"]
    assert [r["metric"] for r in ever] == []


def _status(url: str, user: str | None, password: str | None, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("service", ["prometheus", "alertmanager"])
def test_every_path_needs_the_password(watched: tuple[RunningStack, float], service: str) -> None:
    stack, _ = watched
    port = stack.stack.settings["PROMETHEUS_PORT" if service == "prometheus" else "ALERTMANAGER_PORT"]
    password = stack.secret("prometheus_password")
    for path in ("/", "/metrics", "/-/healthy", "/-/ready", "/api/v1/status/buildinfo", "/api/v2/status"):
        url = f"http://127.0.0.1:{port}{path}"
        assert _status(url, None, None) == 401, path
        assert _status(url, "ops", password + "x") == 401, path
        assert _status(url, "admin", password) == 401, path
    assert _status(f"http://127.0.0.1:{port}/-/healthy", "ops", password) == 200


def test_prometheus_admin_and_lifecycle_endpoints_are_off(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    base, password = f"http://127.0.0.1:{stack.stack.settings['PROMETHEUS_PORT']}", stack.secret("prometheus_password")
    assert _status(f"{base}/api/v1/admin/tsdb/snapshot", "ops", password, "POST") not in (200, 204)
    assert _status(f"{base}/api/v1/admin/tsdb/delete_series?match[]=up", "ops", password, "POST") not in (200, 204)
    assert _status(f"{base}/-/reload", "ops", password, "POST") == 403
    assert _status(f"{base}/-/quit", "ops", password, "POST") == 403


def test_prometheus_and_alertmanager_publish_on_loopback_only(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    for service in ("prometheus", "alertmanager"):
        info = docker.inspect("container", _container(stack, service)) or {}
        bindings = [b for port in (info["NetworkSettings"]["Ports"] or {}).values() for b in port or []]
        assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}, service
    for service in ("postgres-exporter", "redis-exporter", "nginx-exporter", "blackbox-exporter"):
        info = docker.inspect("container", _container(stack, service)) or {}
        assert not any((info["NetworkSettings"]["Ports"] or {}).values()), service


def test_each_exporter_sits_on_the_network_of_what_it_watches(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    expected = {
        "prometheus": {"monitoring", "frontend", "backend"},
        "alertmanager": {"monitoring", "frontend"},
        "postgres-exporter": {"monitoring", "database"},
        "redis-exporter": {"monitoring", "database"},
        "nginx-exporter": {"monitoring", "frontend"},
        "blackbox-exporter": {"monitoring", "frontend"},
    }
    for service, networks in expected.items():
        info = docker.inspect("container", _container(stack, service)) or {}
        found = {name.removeprefix(f"{stack.project}_") for name in info["NetworkSettings"]["Networks"]}
        assert found == networks, service
        assert not {"frontend", "backend", "database"} <= found, service


def test_the_public_proxy_never_routes_to_the_alerts_webhook(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    token = stack.secret("alert_webhook_token")
    for method, path in (
        ("POST", "/bot/alerts"),
        ("GET", "/bot/alerts"),
        ("POST", "/bot//alerts"),
        ("POST", "/bot/alerts/"),
    ):
        connection = stack.connection()
        try:
            connection.request(method, path, body=b'{"alerts": []}', headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            assert response.status == 404, (method, path, response.status)
        finally:
            connection.close()


def test_stub_status_answers_the_exporter_only(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    url = "http://proxy:8082/stub_status"
    from_exporter = docker.docker(["exec", _container(stack, "nginx-exporter"), "wget", "-q", "-O", "-", url])
    assert "Active connections" in from_exporter.stdout
    # The blackbox exporter is on the same frontend network, at another address.
    other = docker.docker(["exec", _container(stack, "blackbox-exporter"), "wget", "-q", "-O", "-", url], check=False)
    assert other.returncode != 0 and "403" in other.stderr


def test_the_redis_exporters_user_reads_no_key(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    password = stack.secret("redis_monitor_password")

    def as_monitor(*command: str) -> str:
        result = docker.docker(
            ["exec", "-i", _container(stack, "redis"), "redis-cli", "--user", "monitor", "--askpass", *command],
            input_bytes=(password + "\n").encode(),
            check=False,
        )
        return str(result.stdout) + str(result.stderr)

    assert "redis_version" in as_monitor("INFO", "server")
    for command in (
        ("GET", "summary:x"),
        ("SET", "x", "1"),
        ("KEYS", "*"),
        ("FLUSHALL",),
        ("CONFIG", "SET", "maxmemory", "1"),
    ):
        assert "NOPERM" in as_monitor(*command), command


def test_the_postgres_exporters_role_has_pg_monitor_and_no_table(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    owner = compose.InContainer(_container(stack, "postgres"))
    sql = (
        "SELECT rolsuper, rolcreaterole, rolcreatedb, pg_has_role('analyticbot_monitor', 'pg_monitor', 'member'),"
        " has_table_privilege('analyticbot_monitor', 'channels', 'SELECT'),"
        " has_table_privilege('analyticbot_monitor', 'post_views', 'SELECT')"
        " FROM pg_roles WHERE rolname = 'analyticbot_monitor'"
    )
    row = (
        # Over the socket, as the owner: local connections are trusted inside the container.
        owner.run(["psql", "-U", secrets.DEFAULT_DB_ROLE, "-d", "analyticbot", "-tAc", sql]).decode().strip()
    )
    assert row == "f|f|f|t|f|f"


def test_postgres_killed_fires_postgres_down_reaches_the_bot_and_resolves(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    postgres = _container(stack, "postgres")
    killed = time.time()
    docker.docker(["kill", postgres])
    try:
        fired = _until(lambda: _firing(stack, "PostgresDown"), FIRES_WITHIN, "PostgresDown firing")
        reached = _until(
            lambda: _bot_logged(stack, "alert: FIRING critical PostgresDown", killed),
            REACHES_THE_BOT_WITHIN - (time.time() - killed),
            "PostgresDown at the bot's webhook",
        )
        print(f"PostgresDown fired {fired:.1f} s after the kill and reached the bot {time.time() - killed:.1f} s after")
    finally:
        docker.docker(["start", postgres])
    started = time.time()
    resolved = _until(lambda: not _firing(stack, "PostgresDown"), RESOLVES_WITHIN, "PostgresDown resolved")
    print(f"PostgresDown resolved {resolved:.1f} s after postgres started again (fired after {fired:.1f} s)")
    # Alertmanager sends the resolution too (send_resolved), within its group interval.
    _until(
        lambda: _bot_logged(stack, "alert: RESOLVED critical PostgresDown", started),
        RESOLVES_WITHIN,
        "PostgresDown's resolution at the bot's webhook",
    )
    assert reached <= REACHES_THE_BOT_WITHIN
    _settled(stack)


def test_the_api_stopped_fires_service_down_within_30_s(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    api = _container(stack, "api")
    docker.docker(["stop", "--time", "5", api])
    try:
        fired = _until(lambda: _firing(stack, "ServiceDown"), FIRES_WITHIN, "ServiceDown firing")
        print(f"ServiceDown fired {fired:.1f} s after the api stopped")
        assert [a.labels.get("job") for a in client.for_stack(stack.stack).alerts() if a.name == "ServiceDown"] == [
            "api"
        ]
    finally:
        docker.docker(["start", api])
    _settled(stack)


def test_a_silence_is_kept_with_who_and_why(watched: tuple[RunningStack, float]) -> None:
    stack, _ = watched
    monitoring = client.for_stack(stack.stack)
    silence_id = monitoring.silence("RedisDown", client.parse_duration("10m"), "integration test", "tests")
    connection = http.client.HTTPConnection("127.0.0.1", int(stack.stack.settings["ALERTMANAGER_PORT"]), timeout=10)
    token = base64.b64encode(f"ops:{stack.secret('prometheus_password')}".encode()).decode()
    connection.request("GET", f"/api/v2/silence/{silence_id}", headers={"Authorization": f"Basic {token}"})
    body = connection.getresponse().read().decode()
    assert '"state":"active"' in body.replace(" ", "") and "integration test" in body


def test_the_operators_page_shows_each_service_over_the_last_hour(
    watched: tuple[RunningStack, float], tmp_path: Path
) -> None:
    """Prometheus's console page in the real browser, logged in: a row per app with its rate, 5xx share and
    p95, and Watchdog among the firing alerts; the page's own scripts and styles load."""
    stack, _ = watched
    # Real requests for the api's row: a channel and reads of its summary, through the proxy, while the page is
    # reloaded: a rate needs an increase between two scrapes.
    create_channel(stack, "monitored")
    reader = stack.token("read")

    def read_summaries(count: int) -> None:
        for _ in range(count):
            connection = stack.connection()
            try:
                connection.request(
                    "GET", "/api/channels/monitored/summary", headers={"Authorization": f"Bearer {reader}"}
                )
                assert connection.getresponse().status == 200
            finally:
                connection.close()

    page = f"http://127.0.0.1:{stack.stack.settings['PROMETHEUS_PORT']}/consoles/analyticbot.html"
    browser = chromium(tmp_path / "profile")
    try:
        token = base64.b64encode(f"ops:{stack.secret('prometheus_password')}".encode()).decode()
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})

        def api_rate_shown(driver: Any) -> bool:
            """Reads between scrapes, and the page reloaded until the api's rate is above zero."""
            read_summaries(10)
            driver.get(page)
            cells = driver.find_elements(By.CSS_SELECTOR, "#services tr[data-service='api'] td.rate")
            return bool(cells) and cells[0].text.replace(".", "").isdigit() and float(cells[0].text) > 0

        WebDriverWait(browser, 40, poll_frequency=2).until(api_rate_shown)
        rows = {
            row.get_attribute("data-service"): {
                cell: row.find_element(By.CSS_SELECTOR, f"td.{cell}").text for cell in ("up", "rate", "errors", "p95")
            }
            for row in browser.find_elements(By.CSS_SELECTOR, "#services tr[data-service]")
        }
        assert set(rows) == {"api", "bot", "mtproto"}
        assert {r["up"] for r in rows.values()} == {"yes"}
        assert all(r["rate"] and r["errors"] and r["p95"] for r in rows.values()), rows
        # Reads, none failed, each well under a second.
        assert rows["api"]["errors"] == "0%" and rows["api"]["p95"].endswith("ms"), rows["api"]
        alerts = [
            row.get_attribute("data-alert") for row in browser.find_elements(By.CSS_SELECTOR, "#alerts tr[data-alert]")
        ]
        assert "Watchdog" in alerts
        severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert severe == [], severe
    finally:
        browser.quit()
