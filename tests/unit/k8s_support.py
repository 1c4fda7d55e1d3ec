"""Shared by the k8s tests: each environment's set as `k8s.render` writes it from the real compose files (merged
by the machine's Compose, which reads files and asks no daemon), with fixed images pinned by digest, and the
golden copies in tests/golden/k8s/ that hold it byte for byte (`scripts/gen-k8s-golden` rewrites them).

`merged` runs Compose once per environment and overlay choice; `render_merged` renders a set from it (or from a
changed copy) with the options `manifests.render_stack` gives (test_k8s_render.py holds the two equal).

`python -m tests.unit.k8s_support` writes the golden sets."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analyticbot_ops import compose, model, stack_settings
from analyticbot_ops.k8s import manifests, render

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "k8s"
# What a registry gives: each image by digest (fixed, so that the golden files do not follow local builds).
IMAGES = {
    variable: f"registry.example.org/analyticbot/{variable.removesuffix('_IMAGE').lower().replace('_', '-')}"
    f"@sha256:{index:02x}{'0' * 62}"
    for index, variable in enumerate(sorted(set(model.IMAGE_VARIABLES.values())), 1)
}

Manifests = dict[str, list[dict[str, Any]]]


def stack(env: str, *, monitoring: bool = True, overrides: Mapping[str, str] | None = None) -> compose.Stack:
    """The environment's stack from its defaults alone (and `overrides`): no .env file and no variable of this
    process counts."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k in stack_settings.SETTINGS}
    real_env_file = stack_settings.env_file
    try:
        stack_settings.env_file = lambda name: Path("/nonexistent") / f".env.{name}"  # type: ignore[assignment]
        return compose.load_stack(env, overrides=overrides, monitoring=monitoring)
    finally:
        stack_settings.env_file = real_env_file  # type: ignore[assignment]
        os.environ.update(saved)


def rendered(env: str) -> Manifests:
    return manifests.render_stack(stack(env), IMAGES)


@functools.cache
def _merged(env: str, monitoring: bool) -> dict[str, Any]:
    return compose.merged_config(stack(env, monitoring=monitoring))


def merged(env: str, *, monitoring: bool = True) -> dict[str, Any]:
    """The environment's merged compose config, a copy of its own to change."""
    return copy.deepcopy(_merged(env, monitoring))


def render_merged(
    env: str, merged_config: Mapping[str, Any] | None = None, *, monitoring: bool = True, **options: Any
) -> Manifests:
    """The set `rendered` gives, from `merged_config` (default the environment's own), `options` changed."""
    the_stack = stack(env, monitoring=monitoring)
    config = merged(env, monitoring=monitoring) if merged_config is None else merged_config
    given = render.Options(namespace=the_stack.project, images=IMAGES, release=render.release_name(IMAGES), **options)
    return render.render(config, given)


def write_golden() -> None:
    for env in model.ENVIRONMENTS:
        folder = GOLDEN_DIR / env
        manifests.write(rendered(env), folder)


if __name__ == "__main__":
    write_golden()
