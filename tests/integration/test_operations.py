"""Operations on the prod-mode stack: a deploy with a broken service fails fast and
says which and why; a backup restores the same rows; a restore never loses data:
damaged, foreign or unappliable dumps change nothing, and a forced one keeps a safety copy."""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from analyticbot_ops import backups, compose, deploy, docker
from analyticbot_ops.errors import BadInput, OpsError
from tests.sandbox import RunningStack


def _api(stack: RunningStack, path: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(
        f"{stack.base_url}/api{path}",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {stack.token('write')}"},
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


def _broken_deploy(stack: RunningStack, overrides: dict[str, str]) -> str:
    """Deploy the stack with `overrides`, which must fail fast (well inside its timeout); its message.
    The stack is deployed as it was afterwards, whatever happened."""
    broken = stack.reloaded(**overrides)
    started = time.monotonic()
    try:
        with pytest.raises(OpsError) as failure:
            deploy.up(broken, timeout=120)
        elapsed = time.monotonic() - started
        assert elapsed < 60, f"took {elapsed:.0f} s: it should fail fast, not wait out the timeout"
        return str(failure.value)
    finally:
        deploy.up(stack.stack, timeout=180)


def test_a_deploy_with_a_broken_service_fails_fast_naming_it_with_its_logs(prod_stack: RunningStack) -> None:
    # The API's image in the collector's place: it refuses to start without the
    # API's secrets (one log line, a non-zero exit), as a misconfigured service would.
    message = _broken_deploy(prod_stack, {"MTPROTO_IMAGE": "analyticbot/api:latest"})
    assert message.startswith("mtproto did not become healthy")
    assert "REDIS_PASSWORD_FILE" in message  # its own log line explains why


def test_a_failing_migrate_job_stops_the_deploy_naming_it_with_its_logs(prod_stack: RunningStack) -> None:
    # A release whose image cannot migrate (the bot's image has no analyticbot_api): the API and the
    # collector, which need the schema, must not start on it, and the deploy must say why.
    message = _broken_deploy(prod_stack, {"API_IMAGE": "analyticbot/bot:latest"})
    assert message.startswith("the migrate job failed"), message
    assert "analyticbot_api" in message  # its own log line: No module named analyticbot_api


def _seed(stack: RunningStack, posts: int = 20_000) -> str:
    """A channel with `posts` rows of views, written straight into PostgreSQL (fast, and big enough that
    the middle of a dump is table data)."""
    channel = f"backup_{uuid.uuid4().hex[:8]}"
    _psql(
        stack,
        f"INSERT INTO channels (username, title) VALUES ('{channel}', 'backup');"
        f"INSERT INTO post_views (channel_id, post_id, views) SELECT c.id, g, g * 7"
        f" FROM channels c, generate_series(1, {posts}) g WHERE c.username = '{channel}';",
    )
    return channel


ROWS_SQL = "SELECT count(*), sum(views) FROM post_views;"


def test_backup_then_restore_gives_back_the_same_rows(prod_stack: RunningStack, tmp_path: Path) -> None:
    channel = f"backup_{uuid.uuid4().hex[:8]}"
    assert _api(prod_stack, "/channels", f'{{"username": "{channel}", "title": "backup"}}'.encode()) == 201
    for post in range(1, 4):
        assert (
            _api(prod_stack, f"/channels/{channel}/views", f'{{"post_id": {post}, "views": {post * 7}}}'.encode())
            == 201
        )
    before = _psql(prod_stack, ROWS_SQL)

    backup = backups.backup(prod_stack.stack, tmp_path)
    assert backup.path.is_file() and backup.entries > 0
    assert backup.path.stat().st_mode & 0o777 == 0o600
    assert backups.verify(prod_stack.stack, backup.path) == backup.entries

    # Restore never overwrites a database that has tables, unless forced.
    with pytest.raises(BadInput, match="not empty"):
        backups.restore(prod_stack.stack, backup.path, backup_dir=tmp_path)
    assert _psql(prod_stack, ROWS_SQL) == before

    _psql(prod_stack, "TRUNCATE post_views, channel_stats, channels CASCADE;")
    assert _psql(prod_stack, ROWS_SQL).startswith("0|")
    backups.restore(prod_stack.stack, backup.path, force=True, backup_dir=tmp_path)
    assert _psql(prod_stack, ROWS_SQL) == before
    assert _psql(prod_stack, f"SELECT count(*) FROM channels WHERE username = '{channel}';") == "1"


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _overwritten(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(range(256)) * 8 + data[middle + 2048 :]


def test_a_dump_into_a_full_folder_says_where_what_it_needs_and_what_is_free(
    prod_stack: RunningStack, tmp_path: Path
) -> None:
    """A folder on a filesystem of 64 KiB (a tmpfs; the dump of even an empty database needs more, with the
    margin): refused before anything is written, in one line, never `[Errno 28] No space left on device`."""
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(full)], check=True)
    try:
        with pytest.raises(OpsError) as refused:
            backups.backup(prod_stack.stack, full)
        message = str(refused.value)
        assert "\n" not in message and "Errno" not in message, message
        assert message.startswith(f"no space for the dump in {full}: it needs "), message
        assert " MB is free; nothing was written" in message, message
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)], check=False)


@pytest.mark.parametrize("damage", [_truncated, _overwritten], ids=["truncated", "overwritten-2k"])
def test_a_damaged_dump_restored_with_force_fails_and_every_row_stays(
    prod_stack: RunningStack, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    _seed(prod_stack)
    good = backups.backup(prod_stack.stack, tmp_path / "good")
    before = _psql(prod_stack, ROWS_SQL)
    broken = tmp_path / "broken.dump"
    broken.write_bytes(damage(good.path.read_bytes()))
    # With its record beside it, the checksum gives it away at once.
    backups.origin_path(good.path).rename(backups.origin_path(broken))
    with pytest.raises(BadInput, match="checksum"):
        backups.restore(prod_stack.stack, broken, force=True, backup_dir=tmp_path / "safety")
    # Without one (a file copied from elsewhere), reading every data block does.
    backups.origin_path(broken).unlink()
    with pytest.raises(BadInput, match="is damaged"):
        backups.restore(prod_stack.stack, broken, force=True, allow_foreign=True, backup_dir=tmp_path / "safety")
    with pytest.raises(BadInput, match="is damaged"):
        backups.verify(prod_stack.stack, broken)
    assert _psql(prod_stack, ROWS_SQL) == before
    assert not (tmp_path / "safety").exists()  # refused before even the safety backup


def test_a_restore_that_fails_midway_is_rolled_back_whole(prod_stack: RunningStack, tmp_path: Path) -> None:
    # A whole, readable archive that cannot be applied: it grants to a role this server does not have.
    # Its --clean drops run first; one transaction must take them back with everything else.
    _seed(prod_stack, posts=100)
    before = _psql(prod_stack, ROWS_SQL)
    scratch = f"scratch_{uuid.uuid4().hex[:6]}"
    _psql(prod_stack, f"CREATE DATABASE {scratch};")
    container = compose.service_states(prod_stack.project)["postgres"].container
    database = compose.InContainer(container)
    try:
        database.run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-U", "analyticbot", "-d", scratch, "-q"],
            stdin=b"CREATE ROLE ghost; CREATE TABLE channels (id int); CREATE TABLE post_views (views int);"
            b"CREATE TABLE channel_stats (subscribers int);"
            b"GRANT SELECT ON post_views TO ghost;",
        )
        dump = database.run(["pg_dump", "-U", "analyticbot", "-d", scratch, "--format=custom", "--no-owner"])
    finally:
        _psql(prod_stack, f"DROP DATABASE IF EXISTS {scratch}; DROP ROLE IF EXISTS ghost;")
    archive = tmp_path / "unappliable.dump"
    archive.write_bytes(dump)
    with pytest.raises(OpsError, match="rolled back"):
        backups.restore(prod_stack.stack, archive, force=True, allow_foreign=True, backup_dir=tmp_path / "safety")
    assert _psql(prod_stack, ROWS_SQL) == before
    assert _psql(prod_stack, "SELECT count(*) FROM schema_migrations;") != "0"


def test_a_dump_of_another_project_is_refused(prod_stack: RunningStack, tmp_path: Path) -> None:
    postgres = backups.database_of(prod_stack.stack)
    other = compose.Stack("prod", "someone-elses-project", {})
    foreign = backups.backup(other, tmp_path, database=postgres)
    before = _psql(prod_stack, ROWS_SQL)
    with pytest.raises(BadInput, match="backup of someone-elses-project"):
        backups.restore(prod_stack.stack, foreign.path, force=True, backup_dir=tmp_path / "safety")
    assert _psql(prod_stack, ROWS_SQL) == before and not (tmp_path / "safety").exists()


def test_a_forced_restore_keeps_a_safety_backup_that_restores(prod_stack: RunningStack, tmp_path: Path) -> None:
    _seed(prod_stack, posts=10)
    old = backups.backup(prod_stack.stack, tmp_path / "old")
    newer = _seed(prod_stack, posts=10)
    with_newer = _psql(prod_stack, ROWS_SQL)
    result = backups.restore(prod_stack.stack, old.path, force=True, backup_dir=tmp_path / "safety")
    assert result.safety_backup is not None and result.safety_backup.path.is_file()
    assert _psql(prod_stack, f"SELECT count(*) FROM channels WHERE username = '{newer}';") == "0"
    # The safety copy is an ordinary backup of this project: it brings the newer rows back.
    backups.restore(prod_stack.stack, result.safety_backup.path, force=True, backup_dir=tmp_path / "safety")
    assert _psql(prod_stack, ROWS_SQL) == with_newer
    assert _psql(prod_stack, f"SELECT count(*) FROM channels WHERE username = '{newer}';") == "1"
