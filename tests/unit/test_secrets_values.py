"""Unit tests of secret values: format rules, placeholders, strength, and generation."""

from __future__ import annotations

import re

import pytest

from analyticbot_ops import secrets as sec
from analyticbot_ops.errors import BadInput

from .secrets_support import (
    API_HASH,
    API_ID,
    BOT_TOKEN,
    OPENAI,
    SESSION,
    STRIPE,
    STRONG_PW,
)

# --- validation --------------------------------------------------------------------------------------------------


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


# --- generation --------------------------------------------------------------------------------------------------


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
