"""Unit tests of the secrets lifecycle: registry, validation, files, batches, check, list and rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
import time
from pathlib import Path

import pytest

from analyticbot_ops import secrets as sec
from analyticbot_ops.errors import EXIT_BAD_INPUT, BadInput, OpsError

BOT_TOKEN = "123456789:AbCdEfGhIjKlMnOpQrStUvWxYz012345678"
STRIPE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
OPENAI = "sk-proj-abcdefghij1234567890ABCD"
API_ID = "1234567"
API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = "1BVtsOKABu3fJ2kX9qLmNoPqRsTuVwXyZ0123456789-_="
# Distinctive, valid-looking values so that "the message never contains it" is a meaningful assertion.
STRONG_PW = "Kj4#mQ9zLp2!vX7wRt5Y"
SENSITIVE = "Zq8Wm3Rt6Yp1Ls9Kd4Fg"


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    """A secrets folder that does not exist yet, as on a fresh checkout."""
    return tmp_path / "secrets"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# What `populate` writes with no input: every generated secret and what derives from them, in registry order.
MADE_WITHOUT_INPUT = (
    "postgres_password",
    "postgres_api_password",
    "postgres_collector_password",
    "redis_password",
    "redis_admin_password",
    "redis_acl",
    "jwt_secret_key",
    "api_read_token",
    "telegram_webhook_secret",
)


def write_raw(directory: Path, name: str, value: str, file_mode: int = 0o600) -> Path:
    """Put a secret file in place by hand, as an operator would."""
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    path = directory / name
    path.write_text(value)
    path.chmod(file_mode)
    return path


def populate(sdir: Path, env: str = "dev", **environ: str) -> sec.ApplyReport:
    return sec.from_env(env, sdir, env_file=None, environ=environ)


# --- registry ---------------------------------------------------------------------------------------------------


def test_registry_declares_the_expected_secrets_and_kinds() -> None:
    kinds = {spec.name: spec.kind for spec in sec.SECRETS}
    assert kinds == {
        "postgres_password": "generated",
        "postgres_api_password": "generated",
        "postgres_collector_password": "generated",
        "redis_password": "generated",
        "redis_admin_password": "generated",
        "redis_acl": "derived",
        "jwt_secret_key": "generated",
        "api_read_token": "derived",
        "telegram_webhook_secret": "generated",
        "bot_token": "user",
        "stripe_secret_key": "user",
        "openai_api_key": "user",
        "telegram_api_id": "user",
        "telegram_api_hash": "user",
        "telegram_session": "user",
    }
    assert sec.get_spec("bot_token").required_in == frozenset({"staging", "prod"})
    assert sec.get_spec("postgres_password").required_in == frozenset({"dev", "staging", "prod"})
    assert sec.get_spec("stripe_secret_key").required_in == frozenset()
    assert sec.get_spec("postgres_password").consumers == ("postgres", "migrate")
    assert sec.get_spec("postgres_api_password").consumers == ("api", "migrate")
    assert sec.get_spec("redis_acl").consumers == ("redis",)
    assert sec.get_spec("telegram_session").consumers == ("mtproto",)


def test_swarm_names_match_registry_and_docker_rules() -> None:
    names = sec.swarm_secret_names()
    assert names == tuple(spec.name for spec in sec.SECRETS)
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z0-9_]{1,63}", name), name


def test_every_consumer_has_a_uid_and_shares_it() -> None:
    assert set(sec.SERVICE_UIDS) == {"api", "bot", "mtproto", "migrate", "postgres", "redis", "proxy"}
    for spec in sec.SECRETS:
        assert sec.consumer_uid(spec) == 10001


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(BadInput) as info:
        sec.get_spec("nope")
    assert "nope" in str(info.value)
    assert "postgres_password" in str(info.value) and "telegram_session" in str(info.value)
    assert info.value.code == EXIT_BAD_INPUT


def test_unknown_name_in_read_and_rotate(sdir: Path) -> None:
    with pytest.raises(BadInput, match="unknown secret 'nope'"):
        sec.read_secret("nope", sdir)
    with pytest.raises(BadInput, match="unknown secret 'nope'"):
        sec.rotate("nope", sdir, FakeStack())


# --- validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("bot_token", BOT_TOKEN),
        ("stripe_secret_key", STRIPE),
        ("stripe_secret_key", "sk_live_" + "A1b2C3d4E5f6G7h8"),
        ("openai_api_key", OPENAI),
        ("telegram_api_id", API_ID),
        ("telegram_api_hash", API_HASH),
        ("telegram_api_hash", API_HASH.upper()),
        ("telegram_session", SESSION),
        ("telegram_webhook_secret", "Abc_def-123_GHI-456_jkl"),
        ("postgres_password", STRONG_PW),
        ("redis_password", "correct-horse-battery-staple-z"),
        ("jwt_secret_key", "Zr7_Vb2-Qw9_Lk4-Np8_Ys1"),
    ],
)
def test_valid_values_pass(name: str, value: str) -> None:
    assert sec.validate_value(name, value) == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("bot_token", "123456789:short"),
        ("bot_token", "abc:AbCdEfGhIjKlMnOpQrStUvWxYz012345678"),
        ("bot_token", BOT_TOKEN + "\n"),  # `$` would accept this; the rule must not
        ("bot_token", "١٢٣:AbCdEfGhIjKlMnOpQrStUvWxYz012345678"),  # Arabic-Indic digits are not \d here
        ("bot_token", "123456789:AbCdEfGhIjKlMnOpQrStUvWxYz01234567!"),
        ("stripe_secret_key", "sk_prod_4eC39HqLyjWDarjtT1zdp7dc"),
        ("stripe_secret_key", "sk_test_short"),
        ("stripe_secret_key", "pk_test_4eC39HqLyjWDarjtT1zdp7dc"),
        ("openai_api_key", "sk-short"),
        ("openai_api_key", "pk-abcdefghij1234567890ABCD"),
        ("telegram_api_id", "12a34"),
        ("telegram_api_id", "-1234"),
        ("telegram_api_hash", "0123456789abcdef"),
        ("telegram_api_hash", "0123456789abcdef0123456789abcdeg"),
        ("telegram_session", "1BVts OKABu3f"),
        ("telegram_session", "1BVts\tOKABu3f"),
        ("telegram_webhook_secret", "Abc def 123 GHI 456 jkl xyz"),
        ("telegram_webhook_secret", "Kj4#mQ9zLp2!vX7wRt5YaB"),
        ("telegram_webhook_secret", "A" * 200 + "b1_" * 20),
        ("postgres_password", "pass word with spaces 12345"),
    ],
)
def test_invalid_values_are_reported_without_the_value(name: str, value: str) -> None:
    problems = sec.validate_value(name, value)
    assert problems, f"{name} accepted {value!r}"
    assert any("does not match" in p for p in problems)
    assert all(value.strip() not in p for p in problems)


def test_empty_value_is_invalid() -> None:
    assert sec.validate_value("bot_token", "") == ("is empty",)


@pytest.mark.parametrize(
    "value",
    [
        "change_me",
        "CHANGE_ME",
        "changeme",
        "Change-Me",
        "password",
        "secret",
        "example",
        "placeholder",
        "xxx",
        "XXXXXXXXXX",
        "todo",
        "TEST",
        "123456",
        "dummy",
        "please_change_me_now",
        "your_bot_token_here",
        "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
        "<your token>",
        "00000000000000000000000000000000",
    ],
)
def test_placeholders_are_detected(value: str) -> None:
    assert sec.is_placeholder(value)


@pytest.mark.parametrize("value", [BOT_TOKEN, STRIPE, OPENAI, API_ID, API_HASH, SESSION, STRONG_PW, "testing123"])
def test_real_values_are_not_placeholders(value: str) -> None:
    assert not sec.is_placeholder(value)


def test_placeholder_makes_a_user_secret_invalid() -> None:
    assert "looks like a placeholder" in sec.validate_value("openai_api_key", "sk-your_key_goes_here_1234")
    assert "looks like a placeholder" in sec.validate_value("telegram_api_id", "123456")


@pytest.mark.parametrize(
    ("value", "strong"),
    [
        ("Abcdef12!", False),  # 4 classes but short
        ("abcdefghijklmnop", False),  # 16 characters, one class
        ("abcdefgh12345678", False),  # 16 characters, two classes
        ("Abcdefgh12345678", True),  # 16 characters, three classes
        ("abcdefghijklmnopqrstuvw", False),  # 23 characters, one class
        ("abcdefghijklmnopqrstuvwx", True),  # 24 characters are enough on their own
    ],
)
def test_password_strength_rule(value: str, strong: bool) -> None:
    assert sec.is_strong_password(value) is strong


@pytest.mark.parametrize("name", ["postgres_password", "redis_password", "jwt_secret_key", "telegram_webhook_secret"])
def test_weak_password_is_invalid_and_not_echoed(name: str) -> None:
    weak = "Wq3rtyuiop"
    problems = sec.validate_value(name, weak)
    assert any("too weak" in p for p in problems)
    assert all(weak not in p for p in problems)


def test_strength_is_not_applied_to_user_api_keys() -> None:
    assert sec.validate_value("telegram_api_id", "98765") == ()


# --- generation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["postgres_password", "redis_password", "jwt_secret_key", "telegram_webhook_secret"])
def test_generated_values_are_long_unique_and_valid(name: str) -> None:
    values = {sec.generate_value(name) for _ in range(50)}
    assert len(values) == 50
    for value in values:
        assert len(value) >= 43  # token_urlsafe(32)
        assert sec.validate_value(name, value) == ()
        assert re.fullmatch(r"[A-Za-z0-9_-]+", value)


def test_generated_webhook_secret_meets_telegram_rule_and_jwt_is_longer() -> None:
    assert re.fullmatch(r"^[A-Za-z0-9_-]{1,256}$", sec.generate_value("telegram_webhook_secret"))
    assert len(sec.generate_value("jwt_secret_key")) >= 86  # token_urlsafe(64)


def test_user_secrets_cannot_be_generated() -> None:
    with pytest.raises(BadInput, match="not a generated secret"):
        sec.generate_value("bot_token")


# --- from_env: creation, modes, derived -------------------------------------------------------------------------


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
    password = sec.read_secret("redis_password", sdir)
    acl = (sdir / "redis_acl").read_text()
    digest = hashlib.sha256(password.encode()).hexdigest()
    assert acl == (
        f"user default on nopass resetchannels -@all +ping\nuser analyticbot on #{digest} "
        "resetkeys ~summary:* ~health:* resetchannels -@all -@dangerous +get +set +del +ping +client|setname\n"
        f"user ops on #{hashlib.sha256(sec.read_secret('redis_admin_password', sdir).encode()).hexdigest()} "
        "~* &* +@all\n"
    )
    assert password not in acl
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
        password, sec.read_secret("redis_admin_password", sdir)
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
    assert (sdir / "redis_acl").read_text().endswith(f"{sec.REDIS_ADMIN_RULES}\n")


# --- refusal: nothing changed -----------------------------------------------------------------------------------


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
    real = sec._create_exclusive
    count = {"n": 0}

    def flaky(path: Path, content: bytes, owner: int | None) -> None:
        count["n"] += 1
        if count["n"] == 3:
            raise OSError(28, "No space left on device")
        real(path, content, owner)

    monkeypatch.setattr(sec, "_create_exclusive", flaky)
    with pytest.raises(OpsError, match=r"No space left on device.*undone"):
        populate(sdir)
    assert [p.name for p in sdir.iterdir()] == []


# --- no overwrite, force and backups ----------------------------------------------------------------------------


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


def test_exclusive_create_refuses_an_existing_file(sdir: Path) -> None:
    path = write_raw(sdir, "jwt_secret_key", "old-value")
    with pytest.raises(BadInput, match="left as it is"):
        sec._create_exclusive(path, b"new-value", None)
    assert path.read_text() == "old-value"
    assert [p.name for p in sdir.iterdir()] == ["jwt_secret_key"]


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
        STRONG_PW, sec.read_secret("redis_admin_password", sdir)
    )
    assert report.outcome("redis_acl").backup is not None
    assert report.outcome("redis_acl").backup.read_text() == old_acl


def test_force_replacing_postgres_password_warns_about_the_database(sdir: Path) -> None:
    populate(sdir)
    report = sec.from_env("dev", sdir, env_file=None, environ={"POSTGRES_PASSWORD": STRONG_PW}, force=True)
    assert "secrets-rotate" in report.outcome("postgres_password").detail


def test_two_backups_in_one_second_are_both_kept(sdir: Path) -> None:
    sdir.mkdir(mode=0o700)
    first = sec._backup(sdir, "jwt_secret_key", b"one")
    second = sec._backup(sdir, "jwt_secret_key", b"two")
    assert first != second
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")


# --- ownership --------------------------------------------------------------------------------------------------


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


# --- init_interactive -------------------------------------------------------------------------------------------


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
    with pytest.raises(BadInput, match=r"needs a terminal; use `invoke secrets-from-env`"):
        sec.init_interactive("dev", sdir, prompt=prompt, is_tty=lambda: False)
    assert prompt.prompts == []
    assert not sdir.exists()


def test_init_asks_for_user_secrets_and_generates_the_rest(sdir: Path) -> None:
    prompt = ScriptedPrompt({"bot_token": [BOT_TOKEN], "telegram_api_id": [API_ID]})
    report = sec.init_interactive("prod", sdir, prompt=prompt, is_tty=lambda: True)
    asked = [re.match(r"(\w+) - ", p).group(1) for p in prompt.prompts]
    assert asked == [
        "bot_token",
        "stripe_secret_key",
        "openai_api_key",
        "telegram_api_id",
        "telegram_api_hash",
        "telegram_session",
    ]
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    assert sec.read_secret("telegram_api_id", sdir) == API_ID
    assert report.outcome("openai_api_key").status == "missing"
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


# --- check, list, read ------------------------------------------------------------------------------------------


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
    assert "does not match the current redis_password and redis_admin_password" in rows["redis_acl"].problems
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
    with pytest.raises(BadInput, match="secret bot_token is missing; run `invoke secrets-init`"):
        sec.read_secret("bot_token", sdir)


# --- rotation ---------------------------------------------------------------------------------------------------


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
    assert sec._quote_literal("it's") == "'it''s'"
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
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(new, sec.read_secret("redis_admin_password", sdir))
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
    with pytest.raises(BadInput, match=r"secrets-from-env --force"):
        sec.rotate("bot_token", sdir, stack)
    with pytest.raises(BadInput, match="rotate that: `invoke secrets-rotate redis_password`"):
        sec.rotate("redis_acl", sdir, stack)
    assert stack.calls == []
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN


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


# --- empty placeholders for optional secrets ----------------------------------------------------------------------


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


def test_a_placeholder_is_filled_without_force_and_without_a_backup(sdir: Path) -> None:
    sec.from_env("dev", sdir, environ={})
    sec.ensure_optional_placeholders(sdir)
    report = sec.from_env("dev", sdir, environ={"BOT_TOKEN": BOT_TOKEN})
    assert report.outcome("bot_token").status == "created"
    assert sec.read_secret("bot_token", sdir) == BOT_TOKEN
    assert not (sdir / ".backup").exists() or not list((sdir / ".backup").glob("bot_token*"))


def test_an_empty_required_secret_is_still_a_failure(sdir: Path) -> None:
    sec.from_env("prod", sdir, environ={"BOT_TOKEN": BOT_TOKEN})
    (sdir / "bot_token").write_text("")
    rows = sec.check("prod", sdir)
    assert sec.check_failed(rows, "prod")


# --- derived secrets: the bot's API token, outdated derived files -----------------------------------------------


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
        password, sec.read_secret("redis_admin_password", sdir)
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
    assert (sdir / "redis_acl").read_text() == sec.redis_acl_line(sec.read_secret("redis_password", sdir), new)


def test_an_unreadable_value_is_invalid_with_its_reason(sdir: Path) -> None:
    populate(sdir)
    (sdir / "jwt_secret_key").write_bytes(b"\xff\xfe not utf-8")
    (row,) = [r for r in sec.check("dev", sdir) if r.name == "jwt_secret_key"]
    assert row.valid is False and row.problems == ("secret jwt_secret_key is not UTF-8 text",)
