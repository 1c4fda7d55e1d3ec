"""Image benchmarks, in one run: each image's size against its budget, the unique bytes of the
runtime set (target: at most 250 MB), and the code-only rebuild time as a ratio of the cold build
time (target: at most 10 %, for every one of three code changes).

    python benchmarks/images.py [--service api]

The cold build is the baseline measured in the same run: what a fresh clone does, from caches
private to the benchmark and empty: every wheelhouse the image needs built by pip with a new,
empty cache folder, and the image built with --no-cache (BuildKit reads no cached step; the
Dockerfile has no cache mounts that would survive it). The --no-cache build with the wheelhouses
already there is shown beside it. The code change is real (a comment appended to a source file,
then restored), because BuildKit keys its cache on content: touching a file's mtime rebuilds
nothing."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from analyticbot_ops import baseimages, build, docker, layers, model
from analyticbot_ops.config import DEFAULTS

REBUILD_TARGET = 0.10
UNIQUE_TARGET_MB = 250
CODE_CHANGES = 3
# What a production stack runs (no build or test images): the services and certbot, which renews.
RUNTIME_SET = ("api", "bot", "mtproto", "proxy", "certbot", "postgres", "redis")
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
    runtime = layers.analyze({name: images[name] for name in RUNTIME_SET}, budgets)
    unique_ok = runtime.unique_bytes <= UNIQUE_TARGET_MB * 1e6
    console.print(
        f"all images: shared bytes {stack.shared_bytes / 1e6:.1f} MB, unique bytes {stack.unique_bytes / 1e6:.1f} MB"
    )
    console.print(
        f"runtime set ({', '.join(RUNTIME_SET)}): unique bytes {runtime.unique_bytes / 1e6:.1f} MB, "
        f"of which shared by two or more {runtime.shared_bytes / 1e6:.1f} MB "
        f"(target <= {UNIQUE_TARGET_MB} MB): {'ok' if unique_ok else 'MISS'}"
    )
    return not layers.over_budget(stack) and unique_ok


def fresh_clone_build(service: str, refs: dict[str, str]) -> float:
    """Seconds for what a fresh clone does, from empty caches private to this run: every wheelhouse
    the image needs (pip with a new, empty cache folder), then the image with no BuildKit cache."""
    names = build.IMAGES[service].wheelhouses
    aside = {name: (build.WHEELS_DIR / name).with_name(f"{name}.bench-aside") for name in names}
    for name, folder in aside.items():
        shutil.rmtree(folder, ignore_errors=True)
        if (build.WHEELS_DIR / name).is_dir():
            (build.WHEELS_DIR / name).rename(folder)
    pip_cache = Path(tempfile.mkdtemp(prefix="abbench-pip-"))
    os.environ["PIP_CACHE_DIR"] = str(pip_cache)
    started = time.monotonic()
    try:
        build.build_service(service, base_images=refs, no_cache=True, progress=lambda _m: None)
        return time.monotonic() - started
    except BaseException:
        for name, folder in aside.items():  # put the known-good wheelhouses back
            if folder.is_dir():
                shutil.rmtree(build.WHEELS_DIR / name, ignore_errors=True)
                folder.rename(build.WHEELS_DIR / name)
        raise
    finally:
        os.environ.pop("PIP_CACHE_DIR", None)
        shutil.rmtree(pip_cache, ignore_errors=True)
        for folder in aside.values():
            shutil.rmtree(folder, ignore_errors=True)


def rebuild_table(service: str, refs: dict[str, str]) -> bool:
    source = build.SERVICES_DIR / service / f"analyticbot_{service}" / "main.py"
    original = source.read_bytes()
    quiet = lambda _msg: None  # noqa: E731
    tag = build.service_tag(service)
    before = docker.inspect("image", tag)["Id"]
    fresh = fresh_clone_build(service, refs)
    no_cache = build.build_service(service, base_images=refs, no_cache=True, progress=quiet)
    warm = build.build_service(service, base_images=refs, progress=quiet)
    changes = []
    try:
        for _ in range(CODE_CHANGES):
            # Unique per change: BuildKit's cache is content-addressed, so a change that an
            # earlier run already built would come back from the cache.
            source.write_bytes(original + f"\n# benchmark: a code-only change {time.time_ns()}\n".encode())
            changes.append(build.build_service(service, base_images=refs, progress=quiet))
    finally:
        source.write_bytes(original)
    # Leave the image built before: it matches the tree, and its runtime layer is the one the other images
    # share (a --no-cache build writes the same files as new layer bytes; BuildKit's cache keys ignore that).
    docker.docker(["tag", before, tag])
    table = Table("build", "seconds", "cached steps", "ratio to cold", title=f"Rebuild times ({service})")
    table.add_row("cold: fresh clone (empty pip and BuildKit caches), baseline", f"{fresh:.2f}", "0", "1.000")
    rows = [("docker build --no-cache, wheelhouses present", no_cache), ("no change", warm)]
    rows += [(f"code-only change {n}", result) for n, result in enumerate(changes, 1)]
    for label, result in rows:
        table.add_row(
            label, f"{result.seconds:.2f}", f"{result.cached}/{result.steps}", f"{result.seconds / fresh:.3f}"
        )
    console.print(table)
    worst = max(result.seconds for result in changes) / fresh
    verdict = "ok" if worst <= REBUILD_TARGET else "MISS"
    console.print(f"slowest code-only rebuild / cold build = {worst:.3f} (target <= {REBUILD_TARGET:.2f}): {verdict}")
    second_ratio = max(result.seconds for result in changes) / no_cache.seconds
    console.print(f"slowest code-only rebuild / docker --no-cache with the wheelhouses present = {second_ratio:.3f}")
    return worst <= REBUILD_TARGET


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="api", choices=model.APPS)
    args = parser.parse_args(argv)
    namespace = DEFAULTS["ops"]["namespace"]
    refs = baseimages.image_refs(baseimages.build_base_images(namespace=namespace))
    for service in build.SERVICES:
        if docker.inspect("image", build.service_tag(service, namespace)) is None:
            build.build_service(service, base_images=refs, progress=lambda _m: None)
    sizes_ok = sizes_table(namespace, DEFAULTS["ops"]["budgets_mb"])
    rebuild_ok = rebuild_table(args.service, refs)
    return 0 if rebuild_ok and sizes_ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
