"""The `images` namespace: build (the service images), base (their base images) and layers."""

from __future__ import annotations

from typing import Any

from invoke import Collection
from rich.table import Table

from .. import baseimages
from .. import build as building  # aliased: `build` is this namespace's task (images.build)
from .. import layers as layer_analysis  # aliased: `layers` is this namespace's task (images.layers)
from ..config import ops
from ..errors import CheckFailed
from ._task import mb, ops_task, out, print_json, progress
from .legacy import Legacy


def _base_refs(c: Any, source: str | None = None) -> dict[str, str]:
    """Build or keep the bases and return their references for build args."""
    cfg = ops(c.config)
    results = baseimages.build_base_images(source=source or cfg.base_source, namespace=cfg.namespace, progress=progress)
    return baseimages.image_refs(results)


@ops_task(
    help={
        "name": "Build only this base image (python-runtime, python-build, ...). Default: all.",
        "source": "debian (from the host's apt mirror, no registry) or official (pull; falls back to debian).",
        "force": "Rebuild even when the recorded inputs are unchanged.",
    },
    iterable=["name"],
)
def base(c: Any, name: list[str] | None = None, source: str | None = None, force: bool = False) -> None:
    """Build the base images from the host's Debian mirror (skips unchanged ones)."""
    cfg = ops(c.config)
    results = baseimages.build_base_images(
        name or None, source=source or cfg.base_source, namespace=cfg.namespace, force=force, progress=progress
    )
    table = Table("base image", "action", "image", "size", "seconds")
    for r in results:
        table.add_row(r.name, r.action, r.tag, mb(r.size) if r.size else "-", f"{r.seconds:.1f}" if r.seconds else "-")
    out.print(table)


@ops_task(
    help={
        "service": f"Build only this service: {', '.join(building.SERVICES)} (repeatable). Default: all.",
        "no_cache": "Ignore BuildKit's cache (a cold build).",
        "source": "Where base images come from: debian or official (see images.base).",
    },
    iterable=["service"],
)
def build(c: Any, service: list[str] | None = None, no_cache: bool = False, source: str | None = None) -> None:
    """Build the service images with BuildKit: time, size and cached steps of each."""
    services = service or list(building.SERVICES)
    for name in services:
        building.check_service(name)
    refs = _base_refs(c, source)
    results = building.build_services(
        services, base_images=refs, namespace=ops(c.config).namespace, no_cache=no_cache, progress=progress
    )
    table = Table("service", "image", "seconds", "size", "cached steps")
    for r in results:
        table.add_row(r.service, r.tag, f"{r.seconds:.1f}", mb(r.size), "kept" if r.kept else f"{r.cached}/{r.steps}")
    out.print(table)


def stack_images(c: Any, services: list[str] | None) -> dict[str, str]:
    cfg = ops(c.config)
    if services:
        return {building.check_service(s): building.service_tag(s, cfg.namespace) for s in services}
    images = {r.name: r.tag(cfg.namespace) for r in baseimages.RECIPES}
    images.update({s: building.service_tag(s, cfg.namespace) for s in building.SERVICES})
    return images


@ops_task(
    help={
        "service": "Analyse only this service's image. Default: every base and service image.",
        "json": "Print the analysis as JSON.",
    },
    iterable=["service"],
)
def layers(c: Any, service: list[str] | None = None, json: bool = False) -> None:
    """Show each image's layers, shared and unique bytes; fail when over a size budget."""
    stack = layer_analysis.analyze(stack_images(c, service), ops(c.config).budgets_mb)
    if json:
        print_json(stack.to_dict())
    else:
        for image in stack.images:
            table = Table("size", "created by", title=f"{image.name}  {image.tag}", title_justify="left")
            for layer in image.layers:
                table.add_row(mb(layer.size), layer.created_by or "(base filesystem)")
            budget = f"budget {mb(image.budget)}" if image.budget else "no budget"
            table.add_row(
                f"[bold]{mb(image.size)}[/]", f"total ({budget}){'  OVER BUDGET' if image.over_budget else ''}"
            )
            out.print(table)
        out.print(
            f"shared between images: {mb(stack.shared_bytes)}; unique bytes of the whole set: {mb(stack.unique_bytes)}"
        )
    failures = list(layer_analysis.budget_failures(stack))
    if failures:
        raise CheckFailed("; ".join(failures))


ns = Collection("images")
ns.add_task(build, default=True)
ns.add_task(base)
ns.add_task(layers)
LEGACY = {
    "build-optimized": Legacy("images.build"),
    "base-images": Legacy("images.base"),
    "analyze-layers": Legacy("images.layers"),
}
