"""Operations on the prod-mode stack: a deploy with a broken service fails fast and
says which and why; a backup restores the same rows; restore never overwrites."""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from analyticbot_ops import compose, deploy, docker, maintenance
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.sandbox import RunningStack


def _api(stack: RunningStack, path: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(
        f"{stack.base_url}/api{path}", data=body, headers={"Content-Type": "application/json"}
    )
    context = ssl.create_default_context(cafile=stack.ca_file)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _psql(stack: RunningStack, sql: str) -> str:
    container = compose.service_states(stack.project)["postgres"].container
    result = subprocess.run(
        [docker.client().path, "exec", "-i", container, "psql", "-U", "analyticbot", "-d", "analyticbot", "-tA"],
        input=sql, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def test_a_deploy_with_a_broken_service_fails_fast_naming_it_with_its_logs(prod_stack: RunningStack) -> None:
    # The API's image in the collector's place: it refuses to start without the
    # API's secrets (one log line, a non-zero exit), as a misconfigured service would.
    broken = compose.load_stack(
        "prod",
        project=prod_stack.project,
        overrides={**prod_stack.stack.settings, "MTPROTO_IMAGE": "analyticbot/api:latest"},
    )
    started = time.monotonic()
    try:
        with pytest.raises(OpsError) as failure:
            deploy.up(broken, timeout=120)
        elapsed = time.monotonic() - started
        message = str(failure.value)
        assert message.startswith("mtproto did not become healthy")
        assert "REDIS_PASSWORD_FILE" in message  # its own log line explains why
        assert elapsed < 60, f"took {elapsed:.0f} s: it should fail fast, not wait out the timeout"
    finally:
        deploy.up(prod_stack.stack, timeout=180)


def test_backup_then_restore_gives_back_the_same_rows(prod_stack: RunningStack, tmp_path: Path) -> None:
    channel = f"backup_{uuid.uuid4().hex[:8]}"
    assert _api(prod_stack, "/channels", f'{{"username": "{channel}", "title": "backup"}}'.encode()) == 201
    for post in range(1, 4):
        assert (
            _api(prod_stack, f"/channels/{channel}/views", f'{{"post_id": {post}, "views": {post * 7}}}'.encode())
            == 201
        )
    rows_sql = "SELECT count(*), sum(views) FROM post_views;"
    before = _psql(prod_stack, rows_sql)

    backup = maintenance.backup(prod_stack.stack, tmp_path)
    assert backup.path.is_file() and backup.entries > 0
    assert backup.path.stat().st_mode & 0o777 == 0o600

    # Restore never overwrites a database that has tables, unless forced.
    with pytest.raises(BadInput, match="not empty"):
        maintenance.restore(prod_stack.stack, backup.path)
    assert _psql(prod_stack, rows_sql) == before

    _psql(prod_stack, "TRUNCATE post_views, channel_stats, channels CASCADE;")
    assert _psql(prod_stack, rows_sql).startswith("0|")
    maintenance.restore(prod_stack.stack, backup.path, force=True)
    assert _psql(prod_stack, rows_sql) == before
    assert _psql(prod_stack, f"SELECT count(*) FROM channels WHERE username = '{channel}';") == "1"
