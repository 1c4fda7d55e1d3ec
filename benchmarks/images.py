"""Image benchmarks, in one run: each image's size against its budget, and the
code-only rebuild time as a ratio of the cold build time (target: at most 10 %).

    python benchmarks/images.py [--service api]

The cold build is the baseline measured in the same run: what a fresh clone
does, building the wheelhouse (pip's cache off) and the image with --no-cache.
The --no-cache build with the wheelhouse already there is shown beside it. The code
change is real (a comment appended to a source file, then restored), because
BuildKit keys its cache on content: touching a file's mtime rebuilds nothing."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from analyticbot_ops import baseimages, build, layers
from analyticbot_ops.config import DEFAULTS

REBUILD_TARGET = 0.10
console = Console()


def sizes_table(namespace: str, budgets: dict[str, float]) -> bool:
    images = {r.name: r.tag(namespace) for r in baseimages.RECIPES}
    images.update({s: build.service_tag(s, namespace) for s in build.SERVICES})
    stack = layers.analyze(images, budgets)
    table = Table("image", "size MB", "budget MB", "size / budget", "result", title="Image sizes")
    for image in stack.images:
        budget = image.budget or 0
        ratio = image.size / budget if budget else 0
        table.add_row(
            image.name,
            f"{image.size / 1e6:.1f}",
            f"{budget / 1e6:.0f}",
            f"{ratio:.2f}",
            "MISS" if image.over_budget else "ok",
        )
    console.print(table)
    console.print(
        f"shared bytes {stack.shared_bytes / 1e6:.1f} MB, unique bytes of the set {stack.unique_bytes / 1e6:.1f} MB"
    )
    return not layers.over_budget(stack)


def fresh_clone_build(service: str, refs: dict[str, str]) -> float:
    """Seconds for what a fresh clone does: build the wheelhouse (pip's cache off)
    and the image with no BuildKit cache."""
    wheels = build.WHEELS_DIR / service
    aside = wheels.with_name(f"{service}.bench-aside")
    shutil.rmtree(aside, ignore_errors=True)
    wheels.rename(aside)
    os.environ["PIP_NO_CACHE_DIR"] = "1"
    started = time.monotonic()
    try:
        build.build_service(service, base_images=refs, no_cache=True, progress=lambda _m: None)
        return time.monotonic() - started
    except BaseException:
        shutil.rmtree(wheels, ignore_errors=True)
        aside.rename(wheels)  # put the known-good wheelhouse back
        raise
    finally:
        os.environ.pop("PIP_NO_CACHE_DIR", None)
        shutil.rmtree(aside, ignore_errors=True)


def rebuild_table(service: str, refs: dict[str, str]) -> bool:
    source = build.SERVICES_DIR / service / f"analyticbot_{service}" / "main.py"
    original = source.read_bytes()
    quiet = lambda _msg: None  # noqa: E731
    fresh = fresh_clone_build(service, refs)
    no_cache = build.build_service(service, base_images=refs, no_cache=True, progress=quiet)
    warm = build.build_service(service, base_images=refs, progress=quiet)
    try:
        # Unique per run: BuildKit's cache is content-addressed, so a change that an
        # earlier run already built would come back from the cache.
        source.write_bytes(original + f"\n# benchmark: a code-only change {time.time_ns()}\n".encode())
        code_only = build.build_service(service, base_images=refs, progress=quiet)
    finally:
        source.write_bytes(original)
    build.build_service(service, base_images=refs, progress=quiet)  # leave the image matching the tree
    ratio = code_only.seconds / fresh
    table = Table("build", "seconds", "cached steps", "ratio to cold", title=f"Rebuild times ({service})")
    table.add_row("cold: fresh clone (wheelhouse + --no-cache), baseline", f"{fresh:.2f}", "0", "1.000")
    for label, result in (("docker build --no-cache, wheelhouse present", no_cache), ("no change", warm),
                          ("code-only change", code_only)):  # fmt: skip
        table.add_row(
            label, f"{result.seconds:.2f}", f"{result.cached}/{result.steps}", f"{result.seconds / fresh:.3f}"
        )
    console.print(table)
    verdict = "ok" if ratio <= REBUILD_TARGET else "MISS"
    console.print(f"code-only rebuild / cold build = {ratio:.3f} (target <= {REBUILD_TARGET:.2f}): {verdict}")
    second_ratio = code_only.seconds / no_cache.seconds
    console.print(f"code-only rebuild / docker --no-cache with the wheelhouse present = {second_ratio:.3f}")
    return ratio <= REBUILD_TARGET


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="api", choices=build.PYTHON_SERVICES)
    args = parser.parse_args(argv)
    namespace = DEFAULTS["ops"]["namespace"]
    refs = baseimages.image_refs(baseimages.build_base_images(namespace=namespace))
    for service in build.SERVICES:
        if build.docker.inspect("image", build.service_tag(service, namespace)) is None:
            build.build_service(service, base_images=refs, progress=lambda _m: None)
    rebuild_ok = rebuild_table(args.service, refs)
    sizes_ok = sizes_table(namespace, DEFAULTS["ops"]["budgets_mb"])
    return 0 if rebuild_ok and sizes_ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
