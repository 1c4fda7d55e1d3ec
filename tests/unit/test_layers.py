"""Layer analysis: pairing history with layers, shared bytes, budgets."""

from __future__ import annotations

from typing import Any

import pytest

from analyticbot_ops import layers
from analyticbot_ops.errors import OpsError

IMAGES: dict[str, dict[str, Any]] = {
    "base:1": {"Size": 100, "RootFS": {"Layers": ["sha256:base"]}},
    "api:1": {"Size": 160, "RootFS": {"Layers": ["sha256:base", "sha256:api-deps"]}},
    "bot:1": {"Size": 190, "RootFS": {"Layers": ["sha256:base", layers.EMPTY_LAYER, "sha256:bot-deps"]}},
}
HISTORY: dict[str, list[dict[str, Any]]] = {
    "base:1": [{"Size": 100, "CreatedBy": ""}],
    "api:1": [
        {"Size": 0, "CreatedBy": "CMD"},
        {"Size": 60, "CreatedBy": "COPY deps"},
        {"Size": 100, "CreatedBy": ""},
    ],
    "bot:1": [{"Size": 90, "CreatedBy": "COPY deps"}, {"Size": 100, "CreatedBy": ""}],
}


@pytest.fixture(autouse=True)
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers.docker, "inspect", lambda kind, name: IMAGES.get(name))
    monkeypatch.setattr(layers.docker, "image_history", lambda tag: HISTORY[tag])


def test_shared_and_unique_bytes() -> None:
    stack = layers.analyze({"base": "base:1", "api": "api:1", "bot": "bot:1"}, {})
    assert stack.shared_bytes == 100
    assert stack.unique_bytes == 100 + 60 + 90
    api = stack.images[1]
    assert [(layer.diff_id, layer.size) for layer in api.layers] == [("sha256:base", 100), ("sha256:api-deps", 60)]


def test_budgets_in_decimal_megabytes() -> None:
    stack = layers.analyze({"api": "api:1"}, {"api": 0.0001})  # 100 bytes
    assert [image.name for image in layers.over_budget(stack)] == ["api"]
    assert "over its budget" in next(iter(layers.budget_failures(stack)))
    assert not layers.over_budget(layers.analyze({"api": "api:1"}, {"api": 1}))


def test_missing_image_is_one_clear_error() -> None:
    with pytest.raises(OpsError, match=r"`invoke images\.build`"):
        layers.analyze({"x": "missing:1"}, {})


@pytest.mark.parametrize(("text", "expected"), [("36.1MB", 36_100_000), ("6.8kB", 6_800), ("0B", 0), (123, 123)])
def test_human_sizes(text: str | int, expected: int) -> None:
    assert layers._bytes(text) == expected
