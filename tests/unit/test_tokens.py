"""API tokens: durations and scopes as typed, and the claims the API relies on."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from analyticbot_ops import tokens
from analyticbot_ops.errors import BadInput

KEY = "unit-test-key-" + "w" * 40


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)])
def test_durations_parse(text: str, seconds: int) -> None:
    assert tokens.parse_ttl(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "-5m", "1w", "1.5h", "abc", "367d", "١٨h"])
def test_bad_durations_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="--ttl"):
        tokens.parse_ttl(text)


def test_scopes_parse_and_write_implies_read() -> None:
    assert tokens.parse_scopes("write") == ("read", "write")
    assert tokens.parse_scopes("read") == ("read",)
    assert tokens.parse_scopes("write,read") == ("read", "write")
    for bad in ("admin", "", "read,admin"):
        with pytest.raises(BadInput, match="--scope"):
            tokens.parse_scopes(bad)


def test_a_minted_token_carries_audience_scope_subject_and_expiry() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    token = tokens.mint(KEY, ("read", "write"), dt.timedelta(hours=1), subject="ci", now=now)
    claims = jwt.decode(
        token.value, KEY, algorithms=["HS256"], audience="analyticbot-api", options={"verify_exp": False}
    )
    assert claims["scope"] == "read write" and claims["sub"] == "ci"
    assert claims["exp"] - claims["iat"] == 3600 and token.expires == now + dt.timedelta(hours=1)
    with pytest.raises(BadInput, match="--subject"):
        tokens.mint(KEY, ("read",), dt.timedelta(hours=1), subject="")


def test_a_service_token_is_checked_against_the_key_and_its_remaining_life() -> None:
    value = tokens.service_token(KEY, "bot")
    assert tokens.check_service_token(value, KEY) == ()
    assert tokens.check_service_token(value, "other-" + KEY) == ("is not signed with the current jwt_secret_key",)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=350)
    assert "expires in" in tokens.check_service_token(value, KEY, now=later)[0]
    write_only = tokens.mint(KEY, ("write",), dt.timedelta(days=365)).value
    assert tokens.check_service_token(write_only, KEY) == ("lacks the read scope",)
