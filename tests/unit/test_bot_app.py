"""The bot's HTTP side without aiogram: the webhook secret check and the engine's
"starting" state while aiogram loads in the background."""

from __future__ import annotations

import asyncio

import pytest
from analyticbot_bot.main import EngineHolder, secret_matches
from analyticbot_common.health import DependencyDown


@pytest.mark.parametrize(
    ("given", "expected", "ok"),
    [
        ("s3cret", "s3cret", True),
        ("s3cret", "other", False),
        (None, "s3cret", False),
        ("", "", False),
        ("x", None, False),
    ],
)
def test_webhook_secret_must_match_and_must_exist(given: str | None, expected: str | None, ok: bool) -> None:
    assert secret_matches(given, expected) is ok


def test_telegram_is_down_as_starting_until_the_engine_has_loaded() -> None:
    holder = EngineHolder()
    with pytest.raises(DependencyDown, match="starting"):
        asyncio.run(holder.probe())


def test_a_failed_engine_load_is_reported_not_raised() -> None:
    holder = EngineHolder()
    holder.error = "ImportError: no aiogram"
    with pytest.raises(DependencyDown, match="ImportError"):
        asyncio.run(holder.probe())
