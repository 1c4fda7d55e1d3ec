"""Unit tests of secret batches: secrets-from-env and secrets-init, all-or-nothing writes, force, backups, owners."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import bcrypt
import pytest

from analyticbot_ops import secrets as sec
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.secrets import folder

from .secrets_support import (
    API_ID,
    BOT_TOKEN,
    MADE_WITHOUT_INPUT,
    OPENAI,
    SENSITIVE,
    STRIPE,
    STRONG_PW,
    mode,
    populate,
    write_raw,
)


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    """A secrets folder that does not exist yet, as on a fresh checkout."""
    return tmp_path / "secrets"


# --- from_env: creation, modes, derived --------------------------------------------------------------------------


def test_from_env_creates_files_with_strict_modes(sdir: Path) -> None:
    report = populate(sdir, "prod", BOT_TOKEN=BOT_TOKEN)
    statuses = {o.name: o.status for o in report.outcomes}
    assert statuses["postgres_password"] == "created"
    assert statuses["redis_acl"] == "created"
    assert statuses["bot_token"] == "created"
    assert statuses["stripe_secret_key"] == "missing"
    assert report.outcome("stripe_secret_key").detail.startswith("optional")
    assert mode(sdir) == 0o700
    for name in ("postgres_password", "redis_password", "redis_acl", "jwt_secret_key", "bot_token"):
        assert mode(sdir / name) == 0o600, name
    assert not (sdir / "stripe_secret_key").exists()
    assert (sdir / "bot_token").read_text() == BOT_TOKEN
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    # No temporary files are left behind.
    assert sorted(p.name for p in sdir.iterdir() if p.name.startswith(".")) == []


def test_from_env_tightens_an_existing_open_folder(sdir: Path) -> None:
    sdir.mkdir(mode=0o755)
    sdir.chmod(0o755)
    populate(sdir)
    assert mode(sdir) == 0o700


def test_redis_acl_holds_the_sha256_never_the_password(sdir: Path) -> None:
    populate(sdir)
    passwords = {name: sec.read_secret(name, sdir) for name in sec.REDIS_USERS}
    assert set(passwords) == {"redis_password", "redis_admin_password", "redis_monitor_password"}
    digest = {name: hashlib.sha256(password.encode()).hexdigest() for name, password in passwords.items()}
    acl = (sdir / "redis_acl").read_text()
    assert acl == (
        f"user default on nopass resetchannels -@all +ping\nuser analyticbot on #{digest['redis_password']} "
        "resetkeys ~summary:* ~health:* resetchannels -@all -@dangerous +get +set +del +ping +client|setname "
        "+client|tracking\n"
        f"user ops on #{digest['redis_admin_password']} ~* &* +@all\n"
        f"user monitor on #{digest['redis_monitor_password']} resetkeys resetchannels -@all +ping +info "
        "+config|get +slowlog|get +slowlog|len +latency|latest +client|setname\n"
    )
    for name, password in passwords.items():
        assert password not in acl, name
    assert sec.validate_value("redis_acl", sec.read_secret("redis_acl", sdir)) == ()


def test_redis_acl_is_derived_from_a_supplied_redis_password(sdir: Path) -> None:
    populate(sdir, REDIS_PASSWORD=STRONG_PW)
    assert sec.read_secret("redis_password", sdir) == STRONG_PW
    assert hashlib.sha256(STRONG_PW.encode()).hexdigest() in (sdir / "redis_acl").read_text()


def test_missing_redis_acl_is_recreated_from_the_kept_password(sdir: Path) -> None:
    populate(sdir)
    password = sec.read_secret("redis_password", sdir)
    (sdir / "redis_acl").unlink()
    report = populate(sdir)
    assert report.outcome("redis_password").status == "kept"
    assert report.outcome("redis_acl").status == "created"
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        password, sec.read_secret("redis_admin_password", sdir), sec.read_secret("redis_monitor_password", sdir)
    )


def test_environ_wins_over_env_file_and_empty_means_unset(sdir: Path, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"BOT_TOKEN=111:{'B' * 34}x\nTELEGRAM_API_ID={API_ID}\nOPENAI_API_KEY={OPENAI}\n")
    sec.from_env("prod", sdir, env_file=env_file, environ={"BOT_TOKEN": BOT_TOKEN, "OPENAI_API_KEY": ""})
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    assert sec.read_secret("telegram_api_id", sdir) == API_ID
    assert sec.read_secret("openai_api_key", sdir) == OPENAI


def test_env_file_quoting_and_comments_are_understood(sdir: Path, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f'# Telegram\nexport BOT_TOKEN="{BOT_TOKEN}"\n\nSTRIPE_SECRET_KEY={STRIPE} # test key\n')
    sec.from_env("prod", sdir, env_file=env_file, environ={})
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    assert sec.read_secret("stripe_secret_key", sdir) == STRIPE


def test_derived_secret_is_never_taken_from_input(sdir: Path) -> None:
    populate(sdir, REDIS_ACL="user default on nopass ~* +@all")
    assert "~* +@all\n" not in (sdir / "redis_acl").read_text()
    assert (sdir / "redis_acl").read_text().endswith(f"{sec.REDIS_MONITOR_RULES}\n")
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        *(sec.read_secret(name, sdir) for name in ("redis_password", "redis_admin_password", "redis_monitor_password"))
    )


def test_derived_monitoring_files_are_never_taken_from_input(sdir: Path) -> None:
    auth_input = '{"redis://redis:6379": "' + SENSITIVE + '"}'
    populate(sdir, REDIS_MONITOR_AUTH=auth_input, PROMETHEUS_WEB_CONFIG=f"basic_auth_users:\n  ops: '{SENSITIVE}'")
    assert json.loads((sdir / "redis_monitor_auth").read_text()) == {
        "redis://redis:6379": sec.read_secret("redis_monitor_password", sdir)
    }
    assert SENSITIVE not in (sdir / "prometheus_web_config").read_text()
    assert web_config_hash(sdir) is not None


# --- monitoring secrets: the exporter's password file and the Prometheus web config ------------------------------


def web_config_hash(sdir: Path) -> bytes | None:
    """The bcrypt hash in prometheus_web_config, or None when the file is not the expected one line of basic auth."""
    match = re.fullmatch(
        r"basic_auth_users:\n  ops: '(\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53})'\n",
        (sdir / "prometheus_web_config").read_text(),
    )
    return match[1].encode() if match else None


def test_prometheus_web_config_holds_a_bcrypt_hash_of_the_password_never_the_password(sdir: Path) -> None:
    populate(sdir)
    password = sec.read_secret("prometheus_password", sdir)
    config = (sdir / "prometheus_web_config").read_text()
    hashed = web_config_hash(sdir)
    assert hashed is not None, "not the basic auth web config"
    assert bcrypt.checkpw(password.encode(), hashed)
    assert not bcrypt.checkpw(STRONG_PW.encode(), hashed)
    assert password not in config
    assert mode(sdir / "prometheus_web_config") == 0o600
    assert sec.validate_value("prometheus_web_config", sec.read_secret("prometheus_web_config", sdir)) == ()


def test_prometheus_web_config_is_renewed_when_prometheus_password_changes(sdir: Path) -> None:
    populate(sdir)
    old_password = sec.read_secret("prometheus_password", sdir)
    old_config = (sdir / "prometheus_web_config").read_text()
    report = sec.from_env("dev", sdir, env_file=None, environ={"PROMETHEUS_PASSWORD": STRONG_PW}, force=True)
    outcome = report.outcome("prometheus_web_config")
    assert (outcome.status, outcome.detail) == ("created", "derived from the new prometheus_password")
    assert outcome.backup is not None and outcome.backup.read_text() == old_config
    hashed = web_config_hash(sdir)
    assert hashed is not None
    assert bcrypt.checkpw(STRONG_PW.encode(), hashed)
    assert not bcrypt.checkpw(old_password.encode(), hashed)
    assert STRONG_PW not in (sdir / "prometheus_web_config").read_text()
    # Nothing else derived changed with it.
    assert report.outcome("redis_acl").status == report.outcome("redis_monitor_auth").status == "kept"


def test_redis_monitor_auth_is_json_naming_the_redis_address(sdir: Path) -> None:
    populate(sdir)
    password = sec.read_secret("redis_monitor_password", sdir)
    assert json.loads((sdir / "redis_monitor_auth").read_text()) == {"redis://redis:6379": password}
    assert mode(sdir / "redis_monitor_auth") == 0o600
    assert sec.validate_value("redis_monitor_auth", sec.read_secret("redis_monitor_auth", sdir)) == ()


def test_a_new_redis_monitor_password_rewrites_its_auth_file_and_the_acl(sdir: Path) -> None:
    populate(sdir)
    old_auth = (sdir / "redis_monitor_auth").read_text()
    report = sec.from_env("dev", sdir, env_file=None, environ={"REDIS_MONITOR_PASSWORD": STRONG_PW}, force=True)
    for name in ("redis_monitor_auth", "redis_acl"):
        assert report.outcome(name).status == "created", name
        assert report.outcome(name).detail == "derived from the new redis_monitor_password", name
    assert report.outcome("redis_monitor_auth").backup.read_text() == old_auth
    assert json.loads((sdir / "redis_monitor_auth").read_text()) == {"redis://redis:6379": STRONG_PW}
    acl = (sdir / "redis_acl").read_text()
    assert acl == sec.redis_acl_line(
        sec.read_secret("redis_password", sdir), sec.read_secret("redis_admin_password", sdir), STRONG_PW
    )
    assert f"user monitor on #{hashlib.sha256(STRONG_PW.encode()).hexdigest()} " in acl
    assert STRONG_PW not in acl


# The files that came with the monitoring overlay; a folder made before it has none of them.
MONITORING_SECRETS = (
    "redis_monitor_password",
    "redis_monitor_auth",
    "postgres_monitor_password",
    "prometheus_password",
    "prometheus_web_config",
    "alert_webhook_token",
)


def test_a_folder_made_before_the_monitoring_secrets_gets_them_without_losing_a_value(sdir: Path) -> None:
    populate(sdir, "prod", BOT_TOKEN=BOT_TOKEN)
    for name in MONITORING_SECRETS:
        (sdir / name).unlink()
    # The ACL as it was then: no `monitor` user.
    app, admin = (
        hashlib.sha256(sec.read_secret(name, sdir).encode()).hexdigest()
        for name in ("redis_password", "redis_admin_password")
    )
    old_acl = (
        "user default on nopass resetchannels -@all +ping\n"
        f"user analyticbot on #{app} {sec.REDIS_APP_RULES}\nuser ops on #{admin} {sec.REDIS_ADMIN_RULES}\n"
    )
    write_raw(sdir, "redis_acl", old_acl)
    before = {p.name: p.read_bytes() for p in sdir.iterdir() if not p.name.startswith(".")}

    report = sec.from_env("prod", sdir, env_file=None, environ={})

    # Every secret that was there keeps its value, byte for byte; the ACL alone is made again (it is derived).
    assert {name: (sdir / name).read_bytes() for name in before if name != "redis_acl"} == {
        name: value for name, value in before.items() if name != "redis_acl"
    }
    for name in before.keys() - {"redis_acl"}:
        assert report.outcome(name).status == "kept", name
        assert report.outcome(name).backup is None, name
    for name in MONITORING_SECRETS:
        assert report.outcome(name).status == "created", name
        assert mode(sdir / name) == 0o600, name
    assert report.outcome("redis_monitor_password").detail == "generated"
    acl = report.outcome("redis_acl")
    assert (acl.status, acl.detail) == ("created", "derived from the new redis_monitor_password")
    assert acl.backup is not None and acl.backup.read_text() == old_acl
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        *(sec.read_secret(name, sdir) for name in ("redis_password", "redis_admin_password", "redis_monitor_password"))
    )
    assert json.loads((sdir / "redis_monitor_auth").read_text()) == {
        "redis://redis:6379": sec.read_secret("redis_monitor_password", sdir)
    }
    assert bcrypt.checkpw(sec.read_secret("prometheus_password", sdir).encode(), web_config_hash(sdir) or b"")
    assert not sec.check_failed(sec.check("prod", sdir), "prod")
    # Run again: nothing left to make, nothing changes.
    after = {p.name: p.read_bytes() for p in sdir.iterdir() if not p.name.startswith(".")}
    again = sec.from_env("prod", sdir, env_file=None, environ={})
    assert all(o.status in ("kept", "missing") for o in again.outcomes)
    assert {p.name: p.read_bytes() for p in sdir.iterdir() if not p.name.startswith(".")} == after


# --- backup secrets: pgBackRest's cipher key and the settings files made from it --------------------------------

KEY = "K"


def test_each_sides_settings_file_holds_the_key_of_the_repositories_it_reaches() -> None:
    sources = {"pgbackrest_cipher_pass": KEY}
    # The database side reaches both repositories, the repository host only its own (repository 2).
    assert sec.DERIVATIONS["pgbackrest_db_conf"].derive(sources) == (
        "[global]\nrepo1-cipher-pass=K\nrepo2-cipher-pass=K\n"
    )
    assert sec.DERIVATIONS["pgbackrest_repo_conf"].derive(sources) == "[global]\nrepo2-cipher-pass=K\n"


def test_a_settings_file_with_another_key_is_a_problem_named_without_a_key() -> None:
    derivation = sec.DERIVATIONS["pgbackrest_db_conf"]
    current = {"pgbackrest_cipher_pass": SENSITIVE}
    assert derivation.problems(derivation.derive(current), current) == ()
    problems = derivation.problems(derivation.derive({"pgbackrest_cipher_pass": KEY}), current)
    assert problems == ("does not hold the current pgbackrest_cipher_pass",)
    assert not any(SENSITIVE in p for p in problems)


def test_the_cipher_key_is_generated_and_both_settings_files_hold_it(sdir: Path) -> None:
    populate(sdir)
    key = sec.read_secret("pgbackrest_cipher_pass", sdir)
    assert len(key) == 64 and sec.validate_value("pgbackrest_cipher_pass", key) == ()  # 48 random bytes
    assert (sdir / "pgbackrest_db_conf").read_text() == f"[global]\nrepo1-cipher-pass={key}\nrepo2-cipher-pass={key}\n"
    assert (sdir / "pgbackrest_repo_conf").read_text() == f"[global]\nrepo2-cipher-pass={key}\n"
    for name in ("pgbackrest_cipher_pass", "pgbackrest_db_conf", "pgbackrest_repo_conf"):
        assert mode(sdir / name) == 0o600, name
        assert sec.validate_value(name, sec.read_secret(name, sdir)) == (), name


def test_the_settings_files_are_never_taken_from_input(sdir: Path) -> None:
    populate(sdir, PGBACKREST_DB_CONF=f"[global]\nrepo1-cipher-pass={SENSITIVE}\n")
    assert SENSITIVE not in (sdir / "pgbackrest_db_conf").read_text()
    assert sec.read_secret("pgbackrest_cipher_pass", sdir) in (sdir / "pgbackrest_db_conf").read_text()


def test_a_settings_file_that_lost_the_key_is_made_again_and_the_key_is_kept(sdir: Path) -> None:
    populate(sdir)
    key = (sdir / "pgbackrest_cipher_pass").read_bytes()
    stale = "[global]\nrepo2-cipher-pass=" + "x" * 40 + "\n"
    write_raw(sdir, "pgbackrest_repo_conf", stale)
    report = sec.from_env("dev", sdir, env_file=None, environ={})
    outcome = report.outcome("pgbackrest_repo_conf")
    assert (outcome.status, outcome.detail) == ("created", "renewed from pgbackrest_cipher_pass")
    assert outcome.backup is not None and outcome.backup.read_text() == stale
    assert (sdir / "pgbackrest_cipher_pass").read_bytes() == key
    assert (sdir / "pgbackrest_repo_conf").read_text() == f"[global]\nrepo2-cipher-pass={key.decode().strip()}\n"
    assert report.outcome("pgbackrest_cipher_pass").status == report.outcome("pgbackrest_db_conf").status == "kept"


# --- refusal: nothing changed ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (f'BOT_TOKEN={BOT_TOKEN}\nOK=1\n"broken {SENSITIVE}\nLATER=2\n', 3),
        (f"A=1\n\n\n\nSTRIPE_SECRET_KEY='{SENSITIVE}\n", 5),  # blank lines before the bad line still count
        (f'A=1\nB = {SENSITIVE} junk\nC="unterminated\n', 3),
    ],
)
def test_malformed_env_line_is_named_by_number_and_nothing_is_written(
    sdir: Path, tmp_path: Path, content: str, line: int
) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text(content)
    with pytest.raises(BadInput) as info:
        sec.from_env("prod", sdir, env_file=env_file, environ={})
    message = str(info.value)
    assert f"{env_file}:{line}:" in message
    assert SENSITIVE not in message
    assert not sdir.exists()


def test_missing_env_file_is_bad_input(sdir: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not found"):
        sec.from_env("dev", sdir, env_file=tmp_path / "absent.env", environ={})
    assert not sdir.exists()


def test_invalid_value_rejects_the_whole_batch(sdir: Path) -> None:
    bad_key = "sk_test_" + SENSITIVE[:5]  # too short for the rule
    with pytest.raises(sec.SecretsRejected) as info:
        populate(sdir, "prod", BOT_TOKEN=BOT_TOKEN, STRIPE_SECRET_KEY=bad_key)
    message = str(info.value)
    assert "stripe_secret_key" in message and "nothing was written" in message
    assert bad_key not in message
    assert {o.name: o.status for o in info.value.outcomes}["stripe_secret_key"] == "invalid"
    assert not sdir.exists()


def test_placeholder_and_weak_values_are_rejected_by_name(sdir: Path) -> None:
    with pytest.raises(sec.SecretsRejected) as info:
        populate(sdir, "dev", POSTGRES_PASSWORD="change_me", JWT_SECRET_KEY="Wq3rtyuiop")
    message = str(info.value)
    assert "postgres_password (looks like a placeholder" in message
    assert "jwt_secret_key (is too weak" in message
    assert "change_me" not in message and "Wq3rtyuiop" not in message
    assert not sdir.exists()


def test_required_user_secret_missing_in_prod(sdir: Path) -> None:
    with pytest.raises(sec.SecretsRejected) as info:
        populate(sdir, "prod")
    assert "missing but required in prod: bot_token" in str(info.value)
    assert not sdir.exists()


def test_bot_token_is_optional_in_dev(sdir: Path) -> None:
    report = populate(sdir, "dev")
    assert report.outcome("bot_token").status == "missing"
    assert "degraded" in report.outcome("bot_token").detail
    assert report.outcome("telegram_session").detail == "optional: the mtproto collector is disabled"


def test_unknown_environment_is_refused(sdir: Path) -> None:
    with pytest.raises(BadInput, match="unknown environment 'qa'"):
        populate(sdir, "qa")


def test_directory_in_place_of_a_secret_is_refused(sdir: Path) -> None:
    (sdir / "postgres_password").mkdir(parents=True)
    with pytest.raises(BadInput, match="is a directory"):
        populate(sdir)
    assert sorted(p.name for p in sdir.iterdir()) == ["postgres_password"]
    with pytest.raises(BadInput, match="is a directory"):
        sec.read_secret("postgres_password", sdir)


def test_symlink_leading_outside_is_refused(sdir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.write_text("do not touch")
    sdir.mkdir()
    (sdir / "bot_token").symlink_to(outside)
    with pytest.raises(BadInput, match="outside"):
        populate(sdir, "prod", BOT_TOKEN=BOT_TOKEN)
    with pytest.raises(BadInput, match="outside"):
        sec.read_secret("bot_token", sdir)
    assert outside.read_text() == "do not touch"
    assert sorted(p.name for p in sdir.iterdir()) == ["bot_token"]


def test_symlink_inside_the_folder_is_followed(sdir: Path) -> None:
    write_raw(sdir, "token.real", BOT_TOKEN)
    (sdir / "bot_token").symlink_to(sdir / "token.real")
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN


def test_unwritable_folder_is_refused_by_mode(sdir: Path) -> None:
    # Works as root too: root passes os.access, so the mode bits are checked as well.
    sdir.mkdir()
    sdir.chmod(0o500)
    try:
        with pytest.raises(BadInput, match="not writable"):
            populate(sdir)
        assert list(sdir.iterdir()) == []
        assert mode(sdir) == 0o500
    finally:
        sdir.chmod(0o700)


def test_unwritable_folder_is_refused_by_os_access(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdir.mkdir(mode=0o700)
    calls: list[str] = []

    def no_access(path: object, flags: int) -> bool:
        calls.append(str(path))
        return False

    monkeypatch.setattr(os, "access", no_access)
    with pytest.raises(BadInput, match="not writable"):
        populate(sdir)
    assert calls == [str(sdir)]
    assert list(sdir.iterdir()) == []


def test_root_honours_a_read_only_mode(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdir.mkdir()
    sdir.chmod(0o500)
    monkeypatch.setattr(os, "access", lambda path, flags: True)  # what root sees
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    try:
        with pytest.raises(BadInput, match="not writable"):
            populate(sdir)
    finally:
        sdir.chmod(0o700)
    assert list(sdir.iterdir()) == []


def test_a_failed_write_undoes_the_batch(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = folder.create
    count = {"n": 0}

    def flaky(secrets_dir: Path, spec: sec.SecretSpec, content: bytes) -> None:
        count["n"] += 1
        if count["n"] == 3:
            raise OSError(28, "No space left on device")
        real(secrets_dir, spec, content)

    monkeypatch.setattr(folder, "create", flaky)
    with pytest.raises(OpsError, match=r"No space left on device.*undone"):
        populate(sdir)
    assert [p.name for p in sdir.iterdir()] == []


# --- no overwrite, force and backups -----------------------------------------------------------------------------


def test_existing_secrets_are_never_overwritten(sdir: Path) -> None:
    write_raw(sdir, "bot_token", BOT_TOKEN)
    populate(sdir, "prod")
    first = sec.read_secret("postgres_password", sdir)
    other = "987654321:ZyXwVuTsRqPoNmLkJiHgFeDcBa987654321"
    report = populate(sdir, "prod", BOT_TOKEN=other, POSTGRES_PASSWORD=STRONG_PW)
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    assert sec.read_secret("postgres_password", sdir) == first
    assert report.outcome("bot_token").status == "kept"
    assert "differs" in report.outcome("bot_token").detail
    assert report.outcome("postgres_password").status == "kept"
    assert not (sdir / ".backup").exists()


def test_force_backs_up_the_old_value_then_replaces(sdir: Path) -> None:
    write_raw(sdir, "bot_token", BOT_TOKEN)
    other = "987654321:ZyXwVuTsRqPoNmLkJiHgFeDcBa987654321"
    report = sec.from_env("prod", sdir, env_file=None, environ={"BOT_TOKEN": other}, force=True)
    outcome = report.outcome("bot_token")
    assert outcome.status == "created"
    assert outcome.backup is not None
    assert outcome.backup.parent == sdir / ".backup"
    assert re.fullmatch(r"bot_token\.\d{8}T\d{6}Z", outcome.backup.name)
    assert outcome.backup.read_text() == BOT_TOKEN
    assert mode(outcome.backup) == 0o600
    assert mode(sdir / ".backup") == 0o700
    assert sec.read_secret("bot_token", sdir) == other
    assert mode(sdir / "bot_token") == 0o600


def test_force_without_a_new_value_keeps_generated_secrets(sdir: Path) -> None:
    populate(sdir)
    before = sec.read_secret("jwt_secret_key", sdir)
    report = sec.from_env("dev", sdir, env_file=None, environ={}, force=True)
    assert report.outcome("jwt_secret_key").status == "kept"
    assert sec.read_secret("jwt_secret_key", sdir) == before


def test_force_with_a_new_redis_password_rewrites_the_acl(sdir: Path) -> None:
    populate(sdir)
    old_acl = (sdir / "redis_acl").read_text()
    report = sec.from_env("dev", sdir, env_file=None, environ={"REDIS_PASSWORD": STRONG_PW}, force=True)
    assert report.outcome("redis_acl").status == "created"
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(
        STRONG_PW, sec.read_secret("redis_admin_password", sdir), sec.read_secret("redis_monitor_password", sdir)
    )
    assert report.outcome("redis_acl").backup is not None
    assert report.outcome("redis_acl").backup.read_text() == old_acl


def test_force_replacing_postgres_password_warns_about_the_database(sdir: Path) -> None:
    populate(sdir)
    report = sec.from_env("dev", sdir, env_file=None, environ={"POSTGRES_PASSWORD": STRONG_PW}, force=True)
    assert "`invoke secrets.rotate`" in report.outcome("postgres_password").detail


def test_two_backups_in_one_second_are_both_kept(sdir: Path) -> None:
    sdir.mkdir(mode=0o700)
    first = folder.backup(sdir, "jwt_secret_key", b"one")
    second = folder.backup(sdir, "jwt_secret_key", b"two")
    assert first != second
    assert first.parent == second.parent == sdir / ".backup"
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")


# --- ownership ---------------------------------------------------------------------------------------------------


def test_files_are_chowned_to_the_consumer_uid_as_root(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chowned: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: chowned.append((Path(path).name, uid, gid)))
    populate(sdir)
    # The chown happens on the temporary file, before it appears under its name.
    owners = {(re.sub(r"^\.(.+?)\..*\.tmp$", r"\1", name), uid, gid) for name, uid, gid in chowned}
    assert owners == {(name, 10001, 10001) for name in MADE_WITHOUT_INPUT}


def test_files_are_not_chowned_when_not_root(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chowned: list[object] = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "chown", lambda *args: chowned.append(args))
    populate(sdir)
    assert chowned == []
    assert (sdir / "postgres_password").is_file()


# --- init_interactive --------------------------------------------------------------------------------------------


class ScriptedPrompt:
    """A getpass stand-in: answers per secret name, records every prompt text."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.prompts: list[str] = []

    def __call__(self, text: str) -> str:
        self.prompts.append(text)
        for name, queue in self.answers.items():
            if f"{name} - " in text:
                return queue.pop(0)
        return ""


def test_init_refuses_without_a_terminal(sdir: Path) -> None:
    prompt = ScriptedPrompt({})
    with pytest.raises(BadInput, match=r"needs a terminal; use `invoke secrets\.from-env`"):
        sec.init_interactive("dev", sdir, prompt=prompt, is_tty=lambda: False)
    assert prompt.prompts == []
    assert not sdir.exists()


def test_init_asks_for_user_secrets_and_generates_the_rest(sdir: Path) -> None:
    prompt = ScriptedPrompt({"bot_token": [BOT_TOKEN], "telegram_api_id": [API_ID]})
    report = sec.init_interactive("prod", sdir, prompt=prompt, is_tty=lambda: True)
    asked = [re.match(r"(\w+) - ", p).group(1) for p in prompt.prompts]
    assert asked == [
        "bot_token",
        "alert_chat_id",
        "stripe_secret_key",
        "openai_api_key",
        "telegram_api_id",
        "telegram_api_hash",
        "telegram_session",
    ]
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    assert sec.read_secret("telegram_api_id", sdir) == API_ID
    assert report.outcome("openai_api_key").status == "missing"
    assert report.outcome("alert_chat_id").status == "missing"
    assert report.outcome("postgres_password").status == "created"
    assert (sdir / "redis_acl").is_file()


def test_init_does_not_ask_for_present_secrets(sdir: Path) -> None:
    write_raw(sdir, "bot_token", BOT_TOKEN)
    prompt = ScriptedPrompt({})
    report = sec.init_interactive("prod", sdir, prompt=prompt, is_tty=lambda: True)
    assert not any(p.startswith("bot_token") for p in prompt.prompts)
    assert report.outcome("bot_token").status == "kept"


def test_init_asks_again_after_an_invalid_value_without_echoing_it(sdir: Path) -> None:
    prompt = ScriptedPrompt({"bot_token": [SENSITIVE, "", BOT_TOKEN]})
    sec.init_interactive("prod", sdir, prompt=prompt, is_tty=lambda: True)
    bot_prompts = [p for p in prompt.prompts if "bot_token - " in p]
    assert len(bot_prompts) == 3
    assert bot_prompts[1].startswith("That bot_token does not match")
    assert bot_prompts[2].startswith("bot_token is required in prod.")
    assert all(SENSITIVE not in p for p in prompt.prompts)
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN


def test_init_gives_up_after_three_bad_values_and_writes_nothing(sdir: Path) -> None:
    prompt = ScriptedPrompt({"bot_token": [SENSITIVE, SENSITIVE, SENSITIVE]})
    with pytest.raises(BadInput, match="no valid bot_token after 3 attempts") as info:
        sec.init_interactive("prod", sdir, prompt=prompt, is_tty=lambda: True)
    assert SENSITIVE not in str(info.value)
    assert not sdir.exists()


def test_init_checks_the_folder_before_asking(sdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdir.mkdir(mode=0o700)
    monkeypatch.setattr(os, "access", lambda path, flags: False)
    prompt = ScriptedPrompt({})
    with pytest.raises(BadInput, match="not writable"):
        sec.init_interactive("dev", sdir, prompt=prompt, is_tty=lambda: True)
    assert prompt.prompts == []


def test_init_force_replaces_a_typed_value_and_keeps_on_enter(sdir: Path) -> None:
    write_raw(sdir, "bot_token", BOT_TOKEN)
    write_raw(sdir, "openai_api_key", OPENAI)
    other = "987654321:ZyXwVuTsRqPoNmLkJiHgFeDcBa987654321"
    prompt = ScriptedPrompt({"bot_token": [other], "openai_api_key": [""]})
    report = sec.init_interactive("prod", sdir, prompt=prompt, is_tty=lambda: True, force=True)
    assert sec.read_secret("bot_token", sdir) == other
    assert report.outcome("bot_token").backup.read_text() == BOT_TOKEN
    assert sec.read_secret("openai_api_key", sdir) == OPENAI
    assert report.outcome("openai_api_key").status == "kept"


# --- empty placeholders for optional secrets ---------------------------------------------------------------------


def test_a_placeholder_is_filled_without_force_and_without_a_backup(sdir: Path) -> None:
    sec.from_env("dev", sdir, environ={})
    sec.ensure_optional_placeholders(sdir)
    report = sec.from_env("dev", sdir, environ={"BOT_TOKEN": BOT_TOKEN})
    assert report.outcome("bot_token").status == "created"
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    assert not (sdir / ".backup").exists() or not list((sdir / ".backup").glob("bot_token*"))


def test_a_name_without_equals_is_refused_by_its_line_not_skipped(tmp_path: Path) -> None:
    env_file = tmp_path / "bare.env"
    env_file.write_text("A=1\n\n# a comment\nBOT_TOKEN\nB=2\n")
    with pytest.raises(BadInput, match=r"bare\.env:4: BOT_TOKEN has no '=' \(expected NAME=value\)"):
        sec.read_env_file(env_file)
    # An empty value is a value: NAME= stays allowed (it means "unset" for optional secrets).
    env_file.write_text("A=\n")
    assert sec.read_env_file(env_file) == {"A": ""}


def test_a_prometheus_password_past_bcrypts_limit_is_invalid_and_nothing_is_written(tmp_path: Path) -> None:
    """bcrypt reads at most 72 bytes: a longer password is refused by the registry's rule, not by a traceback."""
    sdir = tmp_path / "secrets"
    with pytest.raises(sec.SecretsRejected, match="prometheus_password"):
        sec.from_env("dev", sdir, environ={"PROMETHEUS_PASSWORD": "Aa1-" * 20})
    assert not (sdir / "prometheus_web_config").exists()
