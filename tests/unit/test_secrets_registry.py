"""Unit tests of the secrets registry: names, kinds, where each is required, who reads it (from the model), uids."""

from __future__ import annotations

import re

import pytest

from analyticbot_ops import model
from analyticbot_ops import secrets as sec
from analyticbot_ops.errors import EXIT_BAD_INPUT, BadInput

# --- registry ----------------------------------------------------------------------------------------------------


def test_registry_declares_the_expected_secrets_and_kinds() -> None:
    kinds = {spec.name: spec.kind for spec in sec.SECRETS}
    assert kinds == {
        "postgres_password": "generated",
        "postgres_api_password": "generated",
        "postgres_collector_password": "generated",
        "redis_password": "generated",
        "redis_admin_password": "generated",
        "redis_monitor_password": "generated",
        "redis_acl": "derived",
        "redis_monitor_auth": "derived",
        "postgres_monitor_password": "generated",
        "prometheus_password": "generated",
        "prometheus_web_config": "derived",
        "pgbackrest_cipher_pass": "generated",
        "pgbackrest_db_conf": "derived",
        "pgbackrest_repo_conf": "derived",
        "alert_webhook_token": "generated",
        "jwt_secret_key": "generated",
        "api_read_token": "derived",
        "telegram_webhook_secret": "generated",
        "bot_token": "user",
        "alert_chat_id": "user",
        "stripe_secret_key": "user",
        "openai_api_key": "user",
        "telegram_api_id": "user",
        "telegram_api_hash": "user",
        "telegram_session": "user",
    }
    assert sec.get_spec("bot_token").required_in == frozenset({"staging", "prod"})
    assert sec.get_spec("postgres_password").required_in == frozenset({"dev", "staging", "prod"})
    assert sec.get_spec("stripe_secret_key").required_in == frozenset()
    assert sec.get_spec("alert_chat_id").required_in == frozenset()
    for name in ("redis_monitor_password", "postgres_monitor_password", "prometheus_password", "alert_webhook_token"):
        assert sec.get_spec(name).required_in == frozenset({"dev", "staging", "prod"}), name
    assert sec.get_spec("redis_acl").derived_from == tuple(sec.REDIS_USERS)
    assert tuple(sec.REDIS_USERS) == ("redis_password", "redis_admin_password", "redis_monitor_password")
    assert sec.get_spec("redis_monitor_auth").derived_from == ("redis_monitor_password",)
    assert sec.get_spec("prometheus_web_config").derived_from == ("prometheus_password",)
    assert sec.REDIS_USERS["redis_monitor_password"] == "monitor"
    assert sec.POSTGRES_ROLES["postgres_monitor_password"] == "analyticbot_monitor"
    assert sec.get_spec("postgres_password").consumers == ("postgres", "migrate")
    assert sec.get_spec("postgres_api_password").consumers == ("migrate", "api")  # the model's service order
    assert sec.get_spec("redis_acl").consumers == ("redis",)
    assert sec.get_spec("telegram_session").consumers == ("mtproto",)
    assert sec.get_spec("redis_monitor_auth").consumers == ("redis-exporter",)
    assert sec.get_spec("postgres_monitor_password").consumers == ("migrate", "postgres-exporter")
    assert sec.get_spec("prometheus_web_config").consumers == ("prometheus", "alertmanager")
    assert sec.get_spec("alert_webhook_token").consumers == ("bot", "alertmanager")
    assert sec.get_spec("alert_chat_id").consumers == ("bot",)


def test_the_backup_secrets_are_one_key_and_the_settings_files_made_from_it() -> None:
    for name in ("pgbackrest_cipher_pass", "pgbackrest_db_conf", "pgbackrest_repo_conf"):
        assert sec.get_spec(name).required_in == frozenset({"dev", "staging", "prod"}), name
    for name in ("pgbackrest_db_conf", "pgbackrest_repo_conf"):
        assert sec.get_spec(name).derived_from == ("pgbackrest_cipher_pass",), name
    # The database side holds both repositories' key, the repository host only its own.
    assert sec.get_spec("pgbackrest_db_conf").consumers == ("postgres", "backup-agent")
    assert sec.get_spec("pgbackrest_repo_conf").consumers == ("backup-repo",)
    # No container mounts the key itself: its file is owned for those that read what is made from it.
    assert model.readers("pgbackrest_cipher_pass") == ()
    assert sec.get_spec("pgbackrest_cipher_pass").consumers == ("postgres", "backup-agent", "backup-repo")
    cipher = sec.get_spec("pgbackrest_cipher_pass")
    assert cipher.strength_checked and cipher.generate_bytes == 48


def test_only_the_backup_cipher_key_is_not_rotatable() -> None:
    # The repositories were encrypted with it: a new key would leave every backup unreadable.
    assert [spec.name for spec in sec.SECRETS if not spec.rotatable] == ["pgbackrest_cipher_pass"]
    assert "Not rotatable" in sec.get_spec("pgbackrest_cipher_pass").rotation
    assert "\n" not in sec.get_spec("pgbackrest_cipher_pass").rotation  # an error line quotes it


def test_consumers_are_the_services_that_mount_the_secret_in_the_model() -> None:
    for spec in sec.SECRETS:
        if model.readers(spec.name):
            assert spec.consumers == model.readers(spec.name), spec.name
    # No container mounts the Redis admin password: its file is owned for redis, which reads its hash in redis_acl.
    assert model.readers("redis_admin_password") == ()
    assert sec.get_spec("redis_admin_password").consumers == ("redis",)
    # Nor the monitor's: redis reads its hash in redis_acl, the Redis exporter reads it in redis_monitor_auth.
    assert model.readers("redis_monitor_password") == ()
    assert sec.get_spec("redis_monitor_password").consumers == ("redis", "redis-exporter")
    assert all(spec.consumers for spec in sec.SECRETS)


def test_environments_and_uids_come_from_the_model() -> None:
    assert sec.APP_UID == model.APP_UID
    assert dict(sec.SERVICE_UIDS) == {service.name: service.uid for service in model.SERVICES}


def test_swarm_names_match_registry_and_docker_rules() -> None:
    names = sec.swarm_secret_names()
    assert names == tuple(spec.name for spec in sec.SECRETS)
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z0-9_]{1,63}", name), name


def test_every_consumer_has_a_uid_and_shares_it() -> None:
    assert set(sec.SERVICE_UIDS) == {
        "api",
        "bot",
        "mtproto",
        "migrate",
        "postgres",
        "redis",
        "proxy",
        "backup-agent",
        "backup-repo",
        "prometheus",
        "alertmanager",
        "postgres-exporter",
        "redis-exporter",
        "nginx-exporter",
        "blackbox-exporter",
    }
    for spec in sec.SECRETS:
        assert sec.consumer_uid(spec) == 10001


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(BadInput) as info:
        sec.get_spec("nope")
    assert "nope" in str(info.value)
    assert "postgres_password" in str(info.value) and "telegram_session" in str(info.value)
    assert info.value.code == EXIT_BAD_INPUT
