"""Unit tests of what the secrets folder holds: secrets-check, secrets-list, optional placeholders, read_secret."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import bcrypt
import pytest

from analyticbot_ops import secrets as sec
from analyticbot_ops.errors import BadInput

from .secrets_support import (
    API_ID,
    BOT_TOKEN,
    MADE_WITHOUT_INPUT,
    OPENAI,
    SENSITIVE,
    STRONG_PW,
    populate,
    write_raw,
)


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    """A secrets folder that does not exist yet, as on a fresh checkout."""
    return tmp_path / "secrets"


# --- check, list, read -------------------------------------------------------------------------------------------


def test_check_on_a_missing_folder_reports_everything_missing(sdir: Path) -> None:
    rows = sec.check("prod", sdir)
    assert [r.name for r in rows] == list(sec.swarm_secret_names())
    assert all(not r.present and r.valid is None and r.readable_by_consumer == "-" for r in rows)
    assert sec.check_failed(rows, "prod") is True
    assert not sdir.exists()


def test_check_passes_on_a_fresh_dev_folder(sdir: Path) -> None:
    populate(sdir, "dev")
    rows = {r.name: r for r in sec.check("dev", sdir)}
    assert rows["postgres_password"].present and rows["postgres_password"].valid
    assert rows["postgres_password"].mode_ok is True
    assert rows["postgres_password"].strength == "ok"
    assert rows["postgres_password"].placeholder is False
    assert rows["postgres_password"].age_days == 0
    assert rows["redis_acl"].valid is True
    assert rows["bot_token"].present is False
    assert rows["telegram_api_id"].strength == "-"
    assert sec.check_failed(list(rows.values()), "dev") is False
    # The same folder is not enough for prod, where bot_token is required.
    assert sec.check_failed(sec.check("prod", sdir), "prod") is True


def test_check_flags_modes_placeholders_weakness_and_age(sdir: Path) -> None:
    populate(sdir, "dev")
    (sdir / "jwt_secret_key").chmod(0o644)
    write_raw(sdir, "openai_api_key", "sk-your_key_goes_here_123")
    (sdir / "postgres_password").write_text("Short1!")
    old = time.time() - 10 * 86400 - 60
    os.utime(sdir / "telegram_webhook_secret", (old, old))
    rows = {r.name: r for r in sec.check("dev", sdir)}
    assert rows["jwt_secret_key"].mode_ok is False
    assert "file mode 0644, expected 0600" in rows["jwt_secret_key"].problems
    assert rows["jwt_secret_key"].valid is True
    assert rows["openai_api_key"].placeholder is True and rows["openai_api_key"].valid is False
    assert rows["postgres_password"].strength == "weak" and rows["postgres_password"].valid is False
    assert rows["telegram_webhook_secret"].age_days == 10
    assert sec.check_failed(list(rows.values()), "dev") is True
    # No row carries a value.
    assert all("Short1!" not in " ".join(r.problems) for r in rows.values())


def test_check_flags_an_open_folder(sdir: Path) -> None:
    populate(sdir, "dev")
    sdir.chmod(0o755)
    row = next(r for r in sec.check("dev", sdir) if r.name == "redis_password")
    assert row.mode_ok is False
    assert "folder mode 0755, expected 0700" in row.problems


def test_check_flags_an_acl_that_no_longer_matches_the_password(sdir: Path) -> None:
    populate(sdir, "dev")
    (sdir / "redis_password").write_text(STRONG_PW)
    rows = {r.name: r for r in sec.check("dev", sdir)}
    assert rows["redis_acl"].format_ok is True
    assert rows["redis_acl"].valid is False
    assert "does not match the current passwords of the Redis users" in rows["redis_acl"].problems
    assert sec.check_failed(list(rows.values()), "dev") is True


def test_check_reports_owner_as_unknown_when_not_root(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # files stay owned by whoever runs the test
    populate(sdir, "dev")
    if (sdir / "jwt_secret_key").stat().st_uid == 10001:
        pytest.skip("the test runs as uid 10001")
    row = next(r for r in sec.check("dev", sdir) if r.name == "jwt_secret_key")
    assert row.readable_by_consumer == "unknown"
    assert row.problems == ()


def test_check_reports_wrong_owner_as_root(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # write without chown
    populate(sdir, "dev")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    row = next(r for r in sec.check("dev", sdir) if r.name == "jwt_secret_key")
    if (sdir / "jwt_secret_key").stat().st_uid == 10001:
        pytest.skip("the test runs as uid 10001")
    assert row.readable_by_consumer == "no"
    assert any("run as uid 10001" in p for p in row.problems)


def test_check_reports_owner_yes_when_chowned(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # no real chown: the fake stat below supplies the owner
    populate(sdir, "dev")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_stat = Path.stat

    class Owned:
        def __init__(self, result: os.stat_result) -> None:
            self._result = result

        def __getattr__(self, attr: str) -> object:
            return 10001 if attr == "st_uid" else getattr(self._result, attr)

    def fake_stat(self: Path, *, follow_symlinks: bool = True) -> object:
        result = real_stat(self, follow_symlinks=follow_symlinks)
        return Owned(result) if self.name == "jwt_secret_key" else result

    monkeypatch.setattr(Path, "stat", fake_stat)
    row = next(r for r in sec.check("dev", sdir) if r.name == "jwt_secret_key")
    assert row.readable_by_consumer == "yes"


def test_check_reports_a_directory_secret_instead_of_crashing(sdir: Path) -> None:
    (sdir / "jwt_secret_key").mkdir(parents=True)
    row = next(r for r in sec.check("dev", sdir) if r.name == "jwt_secret_key")
    assert row.present is True and row.valid is False
    assert "is a directory" in row.problems[0]


def test_list_shows_names_sizes_consumers_and_strays_never_values(sdir: Path) -> None:
    populate(sdir, "dev", OPENAI_API_KEY=OPENAI)
    write_raw(sdir, "leftover", SENSITIVE)
    infos = sec.list_secrets(sdir)
    names = [i.name for i in infos]
    assert names == [*MADE_WITHOUT_INPUT, "openai_api_key", "leftover"]
    by_name = {i.name: i for i in infos}
    assert by_name["openai_api_key"].size == len(OPENAI)
    assert by_name["openai_api_key"].consumers == ("api",)
    assert by_name["leftover"].known is False
    assert by_name["jwt_secret_key"].age_days == 0
    assert OPENAI not in repr(infos) and SENSITIVE not in repr(infos)


def test_list_on_a_missing_folder_is_empty(sdir: Path) -> None:
    assert sec.list_secrets(sdir) == []


def test_list_skips_repository_files_and_backups(sdir: Path) -> None:
    write_raw(sdir, "README.md", "docs")
    write_raw(sdir, ".gitignore", "*")
    (sdir / ".backup").mkdir()
    assert sec.list_secrets(sdir) == []


def test_read_secret_strips_one_trailing_newline(sdir: Path) -> None:
    write_raw(sdir, "telegram_api_id", API_ID + "\n")
    assert sec.read_secret("telegram_api_id", sdir) == API_ID


def test_read_missing_secret_says_how_to_create_it(sdir: Path) -> None:
    with pytest.raises(BadInput, match=r"secret bot_token is missing; run `invoke secrets\.init`"):
        sec.read_secret("bot_token", sdir)


# --- empty placeholders for optional secrets ---------------------------------------------------------------------


def test_placeholders_are_created_only_for_absent_user_secrets_and_count_as_not_set(sdir: Path) -> None:
    sec.from_env("dev", sdir, environ={"BOT_TOKEN": BOT_TOKEN})
    created = sec.ensure_optional_placeholders(sdir)
    assert "bot_token" not in created and "telegram_api_hash" in created
    assert (sdir / "telegram_api_hash").read_bytes() == b""
    assert stat.S_IMODE((sdir / "telegram_api_hash").stat().st_mode) == 0o600
    assert sec.ensure_optional_placeholders(sdir) == []  # idempotent
    rows = {row.name: row for row in sec.check("dev", sdir)}
    assert rows["telegram_api_hash"].present is False
    assert not sec.check_failed(rows.values(), "dev")


def test_an_empty_required_secret_is_still_a_failure(sdir: Path) -> None:
    sec.from_env("prod", sdir, environ={"BOT_TOKEN": BOT_TOKEN})
    (sdir / "bot_token").write_text("")
    rows = sec.check("prod", sdir)
    assert sec.check_failed(rows, "prod")


# --- derived secrets: outdated or unreadable files ---------------------------------------------------------------


def test_a_token_signed_with_another_key_is_reported_and_renewed(sdir: Path) -> None:
    from analyticbot_ops import tokens

    populate(sdir)
    stale = tokens.service_token("some-other-key-" + "q" * 40, subject="bot")
    write_raw(sdir, "api_read_token", stale)
    (row,) = [r for r in sec.check("dev", sdir) if r.name == "api_read_token"]
    assert row.valid is False and "is not signed with the current jwt_secret_key" in row.problems
    report = sec.from_env("dev", sdir, environ={})
    assert report.outcome("api_read_token").detail == "renewed from jwt_secret_key"
    assert sec.read_secret("api_read_token", sdir) != stale


def test_an_acl_with_the_old_broad_rules_is_renewed_to_the_narrow_ones(sdir: Path) -> None:
    populate(sdir)
    password = sec.read_secret("redis_password", sdir)
    digest = hashlib.sha256(password.encode()).hexdigest()
    write_raw(
        sdir,
        "redis_acl",
        f"user default on nopass resetchannels -@all +ping\nuser analyticbot on #{digest} ~* &* +@all\n",
    )
    (row,) = [r for r in sec.check("dev", sdir) if r.name == "redis_acl"]
    assert row.valid is False
    sec.from_env("dev", sdir, environ={})
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        password, sec.read_secret("redis_admin_password", sdir), sec.read_secret("redis_monitor_password", sdir)
    )


def test_an_unreadable_value_is_invalid_with_its_reason(sdir: Path) -> None:
    populate(sdir)
    (sdir / "jwt_secret_key").write_bytes(b"\xff\xfe not utf-8")
    (row,) = [r for r in sec.check("dev", sdir) if r.name == "jwt_secret_key"]
    assert row.valid is False and row.problems == ("secret jwt_secret_key is not UTF-8 text",)


def test_a_web_config_of_another_prometheus_password_is_reported_and_renewed(sdir: Path) -> None:
    populate(sdir)
    old_config = (sdir / "prometheus_web_config").read_text()
    (sdir / "prometheus_password").write_text(STRONG_PW)  # changed by hand, the web config left behind
    rows = {r.name: r for r in sec.check("dev", sdir)}
    row = rows["prometheus_web_config"]
    assert row.format_ok is True and row.valid is False
    assert "does not hold the hash of the current prometheus_password" in row.problems
    assert sec.check_failed(list(rows.values()), "dev") is True
    assert STRONG_PW not in repr(rows)
    report = sec.from_env("dev", sdir, environ={})
    assert report.outcome("prometheus_web_config").detail == "renewed from prometheus_password"
    assert report.outcome("prometheus_web_config").backup.read_text() == old_config
    assert sec.read_secret("prometheus_password", sdir) == STRONG_PW  # the password is kept, never overwritten
    config = (sdir / "prometheus_web_config").read_text()
    assert STRONG_PW not in config
    hashed = config.split("'")[1]
    assert bcrypt.checkpw(STRONG_PW.encode(), hashed.encode())
    assert all(r.valid for r in sec.check("dev", sdir) if r.name == "prometheus_web_config")


def test_a_redis_monitor_auth_of_another_password_is_reported_and_renewed_with_the_acl(sdir: Path) -> None:
    populate(sdir)
    (sdir / "redis_monitor_password").write_text(STRONG_PW)  # changed by hand, its derived files left behind
    rows = {r.name: r for r in sec.check("dev", sdir)}
    assert rows["redis_monitor_auth"].valid is False
    assert "does not hold the current redis_monitor_password" in rows["redis_monitor_auth"].problems
    assert rows["redis_acl"].valid is False
    assert "does not match the current passwords of the Redis users" in rows["redis_acl"].problems
    assert STRONG_PW not in repr(rows)
    report = sec.from_env("dev", sdir, environ={})
    assert report.outcome("redis_monitor_password").status == "kept"
    assert report.outcome("redis_monitor_auth").detail == "renewed from redis_monitor_password"
    assert report.outcome("redis_acl").detail == (
        "renewed from redis_password and redis_admin_password and redis_monitor_password"
    )
    assert sec.read_secret("redis_monitor_password", sdir) == STRONG_PW
    assert json.loads((sdir / "redis_monitor_auth").read_text()) == {"redis://redis:6379": STRONG_PW}
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        sec.read_secret("redis_password", sdir), sec.read_secret("redis_admin_password", sdir), STRONG_PW
    )
    rows = {r.name: r for r in sec.check("dev", sdir)}
    assert rows["redis_monitor_auth"].valid is True and rows["redis_acl"].valid is True


def test_an_acl_from_before_client_tracking_is_reported_and_renewed(sdir: Path) -> None:
    """A folder made before the api kept summary copies has the API user's rules without +client|tracking:
    check says so, and the next from_env rewrites the file from the same passwords (Redis takes it at its
    next start; until then the api reads every summary from Redis and logs Redis's NOPERM once)."""
    populate(sdir)
    acl = (sdir / "redis_acl").read_text()
    (sdir / "redis_acl").write_text(acl.replace(" +client|tracking", ""))
    rows = {r.name: r for r in sec.check("dev", sdir)}
    assert rows["redis_acl"].valid is False
    report = sec.from_env("dev", sdir, environ={})
    assert report.outcome("redis_acl").detail == (
        "renewed from redis_password and redis_admin_password and redis_monitor_password"
    )
    assert (sdir / "redis_acl").read_text() == acl
