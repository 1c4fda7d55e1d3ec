"""Unit tests of secret rotation on a (fake) live stack: SCRAM verifiers, ALTER ROLE, swaps, rollback, masking."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from pathlib import Path

import bcrypt
import pytest

from analyticbot_ops import secrets as sec
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.secrets import rotation

from .secrets_support import BOT_TOKEN, mode, populate


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    """A secrets folder that does not exist yet, as on a fresh checkout."""
    return tmp_path / "secrets"


# --- rotation ----------------------------------------------------------------------------------------------------


class FakeStack:
    """Records every call in order; fails the steps it is told to fail, a given number of times."""

    def __init__(self, fail: dict[str, int] | None = None, leak: str = "") -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail = dict(fail or {})
        self.leak = leak  # text a failing step puts in its error, to check it is masked

    def _maybe_fail(self, step: str) -> None:
        if self.fail.get(step, 0) > 0:
            self.fail[step] -= 1
            raise OpsError(f"{step} broke {self.leak}".strip())

    def exec_postgres_sql(self, sql: str) -> None:
        self.calls.append(("sql", sql))
        self._maybe_fail("sql")

    def redis_acl_setpass(self, user: str, new_password: str) -> None:
        assert user == "analyticbot"
        self.calls.append(("setpass", new_password))
        self._maybe_fail("setpass")

    def restart(self, services: list[str]) -> None:
        self.calls.append(("restart", list(services)))
        self._maybe_fail("restart")

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        self.calls.append(("wait", list(services)))
        self._maybe_fail("wait")


def verifies(verifier: str, password: str) -> bool:
    """Check a PostgreSQL SCRAM verifier against a password, as the server does at login."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    assert match, verifier
    iterations, salt, stored_key = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest() == stored_key


def sql_verifier(sql: str) -> str:
    match = re.fullmatch(r"ALTER ROLE \"analyticbot(?:_api|_collector)?\" WITH PASSWORD '(SCRAM-SHA-256\$[^']+)';", sql)
    assert match, sql
    return match[1]


def test_scram_verifier_matches_rfc_7677_example() -> None:
    # RFC 7677 section 3: user "user", password "pencil"; the client proof and server signature follow from the keys.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = sec.scram_verifier("pencil", salt=salt, iterations=4096)
    prefix, keys = verifier.rsplit("$", 1)
    assert prefix == "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    auth = (
        b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    server_signature = hmac.digest(server_key, auth, "sha256")
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.digest(stored_key, auth, "sha256"), strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_alter_role_sql_quotes_safely() -> None:
    assert rotation._quote_literal("it's") == "'it''s'"
    sql = sec.alter_role_sql("analyticbot", "pa'ss")
    assert verifies(sql_verifier(sql), "pa'ss")
    assert "pa'ss" not in sql
    with pytest.raises(BadInput, match="invalid database role name"):
        sec.alter_role_sql('x"; DROP ROLE postgres; --', "pw")


def test_rotate_postgres_happy_path(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("postgres_api_password", sdir)
    stack = FakeStack()
    result = sec.rotate("postgres_api_password", sdir, stack)
    new = sec.read_secret("postgres_api_password", sdir)
    assert new != old and sec.validate_value("postgres_api_password", new) == ()
    assert [c[0] for c in stack.calls] == ["sql", "restart", "wait"]
    assert verifies(sql_verifier(stack.calls[0][1]), new)
    assert new not in stack.calls[0][1]
    assert stack.calls[1] == ("restart", ["api"])
    assert stack.calls[2] == ("wait", ["api"])
    assert result.restarted == ("api",)
    assert result.files == ("postgres_api_password",)
    assert result.backups[0].read_text() == old
    assert mode(result.backups[0]) == 0o600
    assert mode(sdir / "postgres_api_password") == 0o600


def test_rotate_postgres_alters_the_services_own_role_and_the_owner_restarts_nothing(sdir: Path) -> None:
    populate(sdir)
    stack = FakeStack()
    sec.rotate("postgres_api_password", sdir, stack)
    assert stack.calls[0][1].startswith('ALTER ROLE "analyticbot_api"')
    owner = FakeStack()
    sec.rotate("postgres_password", sdir, owner)
    assert [c[0] for c in owner.calls] == ["sql"]  # no running service reads the owner's password
    assert owner.calls[0][1].startswith('ALTER ROLE "analyticbot" ')
    collector = FakeStack()
    sec.rotate("postgres_collector_password", sdir, collector)
    assert collector.calls[0][1].startswith('ALTER ROLE "analyticbot_collector"')
    assert collector.calls[1] == ("restart", ["mtproto"])


def test_rotate_postgres_uses_the_given_role(sdir: Path) -> None:
    populate(sdir)
    stack = FakeStack()
    sec.rotate("postgres_password", sdir, stack, role="app_owner")
    assert stack.calls[0][1].startswith('ALTER ROLE "app_owner" WITH PASSWORD \'SCRAM-SHA-256$')


def test_rotate_postgres_rolls_back_when_services_stay_unhealthy(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("postgres_api_password", sdir)
    stack = FakeStack(fail={"wait": 1})
    with pytest.raises(OpsError, match="rotation of postgres_api_password failed and was rolled back: wait broke"):
        sec.rotate("postgres_api_password", sdir, stack, timeout=5)
    assert sec.read_secret("postgres_api_password", sdir) == old
    assert [c[0] for c in stack.calls] == ["sql", "restart", "wait", "sql", "restart", "wait"]
    new_verifier, back_verifier = sql_verifier(stack.calls[0][1]), sql_verifier(stack.calls[3][1])
    assert not verifies(new_verifier, old)
    assert verifies(back_verifier, old)
    backups = list((sdir / ".backup").iterdir())
    assert len(backups) == 1 and backups[0].read_text() == old


def test_rotate_fails_cleanly_when_the_first_step_fails(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("postgres_password", sdir)
    stack = FakeStack(fail={"sql": 1})
    with pytest.raises(OpsError, match="failed before anything changed: sql broke"):
        sec.rotate("postgres_password", sdir, stack)
    assert sec.read_secret("postgres_password", sdir) == old
    assert [c[0] for c in stack.calls] == ["sql", "sql"]  # the quiet undo, in case the change landed
    assert verifies(sql_verifier(stack.calls[1][1]), old)
    assert not (sdir / ".backup").exists()


def test_rotate_reports_an_incomplete_rollback(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("postgres_api_password", sdir)
    stack = FakeStack(fail={"restart": 2})
    with pytest.raises(OpsError) as info:
        sec.rotate("postgres_api_password", sdir, stack)
    message = str(info.value)
    assert "rollback incomplete: services not healthy after restoring (restart broke)" in message
    assert str(sdir / ".backup") in message
    assert sec.read_secret("postgres_api_password", sdir) == old


def test_rotate_redis_happy_path(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("redis_password", sdir)
    stack = FakeStack()
    result = sec.rotate("redis_password", sdir, stack)
    new = sec.read_secret("redis_password", sdir)
    assert new != old
    assert stack.calls == [("setpass", new), ("restart", ["api"]), ("wait", ["api"])]
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        new, sec.read_secret("redis_admin_password", sdir), sec.read_secret("redis_monitor_password", sdir)
    )
    assert result.files == ("redis_password", "redis_acl")
    assert sorted(b.name.split(".")[0] for b in result.backups) == ["redis_acl", "redis_password"]


def test_rotate_redis_rolls_back_both_files_and_the_live_password(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("redis_password", sdir)
    old_acl = (sdir / "redis_acl").read_text()
    stack = FakeStack(fail={"wait": 1})
    with pytest.raises(OpsError, match="rolled back"):
        sec.rotate("redis_password", sdir, stack)
    assert sec.read_secret("redis_password", sdir) == old
    assert (sdir / "redis_acl").read_text() == old_acl
    assert [c[0] for c in stack.calls] == ["setpass", "restart", "wait", "setpass", "restart", "wait"]
    assert stack.calls[3] == ("setpass", old)


@pytest.mark.parametrize(
    ("name", "services"), [("jwt_secret_key", ["api", "bot"]), ("telegram_webhook_secret", ["bot"])]
)
def test_rotate_file_only_secrets(sdir: Path, name: str, services: list[str]) -> None:
    populate(sdir)
    old = sec.read_secret(name, sdir)
    stack = FakeStack()
    sec.rotate(name, sdir, stack)
    assert sec.read_secret(name, sdir) != old
    assert stack.calls == [("restart", services), ("wait", services)]


def test_rotate_file_only_secret_rolls_back(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("jwt_secret_key", sdir)
    stack = FakeStack(fail={"wait": 1})
    with pytest.raises(OpsError, match="rotation of jwt_secret_key failed and was rolled back"):
        sec.rotate("jwt_secret_key", sdir, stack)
    assert sec.read_secret("jwt_secret_key", sdir) == old
    both = ["api", "bot"]
    assert stack.calls == [("restart", both), ("wait", both), ("restart", both), ("wait", both)]


def test_rotate_refuses_user_and_derived_secrets(sdir: Path) -> None:
    populate(sdir, "prod", BOT_TOKEN=BOT_TOKEN)
    stack = FakeStack()
    with pytest.raises(BadInput, match=r"`invoke secrets\.from-env --force`"):
        sec.rotate("bot_token", sdir, stack)
    with pytest.raises(BadInput, match=r"rotate that: `invoke secrets\.rotate redis_password`"):
        sec.rotate("redis_acl", sdir, stack)
    assert stack.calls == []
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN


def test_the_backup_cipher_key_cannot_be_rotated_and_nothing_is_touched(sdir: Path) -> None:
    populate(sdir)
    before = {p.name: p.read_bytes() for p in sdir.iterdir() if p.is_file()}
    stack = FakeStack()
    with pytest.raises(BadInput) as refused:
        sec.rotate("pgbackrest_cipher_pass", sdir, stack)
    message = str(refused.value)
    # One line, that says why (the repositories were encrypted with it).
    assert message.startswith("pgbackrest_cipher_pass cannot be rotated: ") and "\n" not in message
    assert "the repositories were encrypted with it" in message
    assert stack.calls == []
    assert {p.name: p.read_bytes() for p in sdir.iterdir() if p.is_file()} == before
    assert not (sdir / sec.BACKUP_DIR_NAME).exists() or not any((sdir / sec.BACKUP_DIR_NAME).iterdir())


@pytest.mark.parametrize("name", ["pgbackrest_db_conf", "pgbackrest_repo_conf"])
def test_the_backup_settings_files_are_refused_without_sending_you_to_rotate_the_key(sdir: Path, name: str) -> None:
    populate(sdir)
    stack = FakeStack()
    with pytest.raises(BadInput) as refused:
        sec.rotate(name, sdir, stack)
    message = str(refused.value)
    assert message.startswith(f"{name} is derived from pgbackrest_cipher_pass, which cannot be rotated: ")
    assert "secrets-rotate" not in message and "\n" not in message
    assert stack.calls == []


def test_rotate_a_missing_secret_is_bad_input(sdir: Path) -> None:
    stack = FakeStack()
    with pytest.raises(BadInput, match="jwt_secret_key is missing"):
        sec.rotate("jwt_secret_key", sdir, stack)
    assert stack.calls == []


def test_rotate_checks_the_folder_before_touching_the_stack(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    populate(sdir)
    monkeypatch.setattr(os, "access", lambda path, flags: False)
    stack = FakeStack()
    with pytest.raises(BadInput, match="not writable"):
        sec.rotate("postgres_password", sdir, stack)
    assert stack.calls == []


def test_rotation_errors_mask_secret_values_quoted_by_the_stack(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("redis_password", sdir)
    stack = FakeStack(fail={"wait": 1}, leak=f"(AUTH {old} rejected)")
    with pytest.raises(OpsError) as info:
        sec.rotate("redis_password", sdir, stack)
    assert old not in str(info.value)
    assert "(AUTH *** rejected)" in str(info.value)


def test_unknown_name_in_read_and_rotate(sdir: Path) -> None:
    with pytest.raises(BadInput, match="unknown secret 'nope'"):
        sec.read_secret("nope", sdir)
    with pytest.raises(BadInput, match="unknown secret 'nope'"):
        sec.rotate("nope", sdir, FakeStack())


# --- derived secrets rotate with their source --------------------------------------------------------------------


def test_the_bots_read_token_is_minted_from_the_jwt_key_and_renewed_with_it(sdir: Path) -> None:
    import jwt

    populate(sdir)
    token = sec.read_secret("api_read_token", sdir)
    key = sec.read_secret("jwt_secret_key", sdir)
    claims = jwt.decode(token, key, algorithms=["HS256"], audience="analyticbot-api")
    assert claims["scope"] == "read" and claims["sub"] == "bot"
    assert all(row.valid for row in sec.check("dev", sdir) if row.name == "api_read_token")
    sec.rotate("jwt_secret_key", sdir, FakeStack())
    new_key = sec.read_secret("jwt_secret_key", sdir)
    assert jwt.decode(
        sec.read_secret("api_read_token", sdir), new_key, algorithms=["HS256"], audience="analyticbot-api"
    )


def test_rotating_the_redis_admin_password_changes_the_ops_user_and_restarts_nothing(sdir: Path) -> None:
    populate(sdir)
    calls: list[tuple[str, str]] = []

    class AdminStack(FakeStack):
        def redis_acl_setpass(self, user: str, new_password: str) -> None:
            calls.append((user, new_password))

    stack = AdminStack()
    sec.rotate("redis_admin_password", sdir, stack)
    new = sec.read_secret("redis_admin_password", sdir)
    assert calls == [("ops", new)] and stack.calls == []
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        sec.read_secret("redis_password", sdir), new, sec.read_secret("redis_monitor_password", sdir)
    )


def test_rotating_the_redis_monitor_password_rewrites_the_acl_and_the_exporters_file(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("redis_monitor_password", sdir)
    calls: list[tuple[str, str]] = []

    class MonitorStack(FakeStack):
        def redis_acl_setpass(self, user: str, new_password: str) -> None:
            calls.append((user, new_password))

    stack = MonitorStack()
    result = sec.rotate("redis_monitor_password", sdir, stack)
    new = sec.read_secret("redis_monitor_password", sdir)
    assert new != old
    assert calls == [("monitor", new)]
    assert stack.calls == [("restart", ["redis-exporter"]), ("wait", ["redis-exporter"])]
    assert result.files == ("redis_monitor_password", "redis_acl", "redis_monitor_auth")
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        sec.read_secret("redis_password", sdir), sec.read_secret("redis_admin_password", sdir), new
    )
    assert json.loads((sdir / "redis_monitor_auth").read_text()) == {"redis://redis:6379": new}


def test_rotating_the_prometheus_password_renews_the_web_config_and_restarts_both_servers(sdir: Path) -> None:
    populate(sdir)
    old = sec.read_secret("prometheus_password", sdir)
    stack = FakeStack()
    result = sec.rotate("prometheus_password", sdir, stack)
    new = sec.read_secret("prometheus_password", sdir)
    both = ["prometheus", "alertmanager"]
    assert new != old and stack.calls == [("restart", both), ("wait", both)]
    assert result.files == ("prometheus_password", "prometheus_web_config")
    config = (sdir / "prometheus_web_config").read_text()
    hashed = config.split("'")[1].encode()
    assert bcrypt.checkpw(new.encode(), hashed) and not bcrypt.checkpw(old.encode(), hashed)
    assert new not in config
