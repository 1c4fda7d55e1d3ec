"""The `images` tasks (cli/images.py): base images and service builds under invoke.yaml's namespace and base
source, the layer analysis and its budgets. Builds and docker inspect are replaced: no Docker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analyticbot_ops import baseimages, build, layers
from analyticbot_ops.cli import images as images_cli
from tests.unit.cli_support import NAMESPACE, fails
from tests.unit.cli_support import namespaced_context as context
from tests.unit.cli_support import no_docker as no_docker  # autouse: each test's tasks run isolated

MB = 1_000_000


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """The base and service builds asked for, recorded; each answers as a real build would."""
    seen: dict[str, list[Any]] = {"bases": [], "services": []}

    def bases(names: Any = None, **kwargs: Any) -> list[baseimages.BaseBuild]:
        seen["bases"].append((names, kwargs))
        return [
            baseimages.BaseBuild("python-runtime", f"{NAMESPACE}/python-runtime:bookworm", "built", 41.25, 48_300_000),
            baseimages.BaseBuild("python-build", f"{NAMESPACE}/python-build:bookworm", "kept", size=0),
        ]

    def services(names: Any, **kwargs: Any) -> list[build.ServiceBuild]:
        seen["services"].append((list(names), kwargs))
        return [build.ServiceBuild(n, build.service_tag(n, NAMESPACE), 12.34, 75_500_000, 14, 9) for n in names]

    monkeypatch.setattr(images_cli.baseimages, "build_base_images", bases)
    monkeypatch.setattr(build, "build_services", services)
    return seen


def test_base_images_builds_every_base_from_the_configured_source(builds: dict[str, list[Any]], capsys: Any) -> None:
    images_cli.base(context(base_source="official"))
    assert builds["bases"] == [
        (None, {"source": "official", "namespace": NAMESPACE, "force": False, "progress": images_cli.progress})
    ]
    lines = capsys.readouterr().out.splitlines()
    runtime = next(line for line in lines if "python-runtime" in line)
    assert "built" in runtime and "48.3 MB" in runtime and "41.2" in runtime
    kept = next(line for line in lines if "python-build" in line)
    assert "kept" in kept and kept.count(" - ") == 2  # no size, no time


def test_base_images_named_forced_and_from_another_source(builds: dict[str, list[Any]]) -> None:
    images_cli.base(context(), name=["python-build"], source="official", force=True)
    assert builds["bases"] == [
        (
            ["python-build"],
            {"source": "official", "namespace": NAMESPACE, "force": True, "progress": images_cli.progress},
        )
    ]


def test_base_images_refuses_an_unknown_base_or_source_before_asking_docker() -> None:
    # The library's own checks, not replaced: they come before any daemon call.
    assert "python-nope" in fails(2, images_cli.base, context(), name=["python-nope"])
    assert "unknown base image source 'ubuntu'" in fails(2, images_cli.base, context(), source="ubuntu")


def test_build_builds_the_bases_then_every_service_with_their_references(
    builds: dict[str, list[Any]], capsys: Any
) -> None:
    images_cli.build(context(), no_cache=True)
    assert builds["bases"] == [(None, {"source": "debian", "namespace": NAMESPACE, "progress": images_cli.progress})]
    assert builds["services"] == [
        (
            list(build.SERVICES),
            {
                "base_images": {
                    "python-runtime": f"{NAMESPACE}/python-runtime:bookworm",
                    "python-build": f"{NAMESPACE}/python-build:bookworm",
                },
                "namespace": NAMESPACE,
                "no_cache": True,
                "progress": images_cli.progress,
            },
        )
    ]
    lines = capsys.readouterr().out.splitlines()
    api = next(line for line in lines if f"{NAMESPACE}/api:latest" in line)
    assert "12.3" in api and "75.5 MB" in api and "9/14" in api


def test_build_of_named_services_from_the_official_bases(builds: dict[str, list[Any]]) -> None:
    images_cli.build(context(), service=["bot", "proxy"], source="official")
    assert builds["bases"][0][1]["source"] == "official"
    assert builds["services"][0][0] == ["bot", "proxy"] and builds["services"][0][1]["no_cache"] is False


def test_build_refuses_an_unknown_service_before_building_anything(builds: dict[str, list[Any]]) -> None:
    message = fails(2, images_cli.build, context(), service=["api", "worker"])
    assert message.startswith("error: unknown service 'worker'; known: api, bot")
    assert builds == {"bases": [], "services": []}


def image(name: str, size_mb: float, budget_mb: int | None, *created: tuple[str, float]) -> layers.ImageLayers:
    found = [layers.Layer(f"sha256:{name}{i}", int(mb * MB), what) for i, (what, mb) in enumerate(created)]
    return layers.ImageLayers(
        name, f"{NAMESPACE}/{name}:latest", int(size_mb * MB), budget_mb and budget_mb * MB, found
    )


class Analysis:
    """layers.analyze answering with `images`; the (images, budgets) it was asked for, recorded."""

    def __init__(self) -> None:
        self.images = [
            image("api", 70.0, 80, ("", 30.0), ("RUN pip install", 40.0)),
            image("bot", 60.0, None, ("COPY src", 60.0)),
        ]
        self.asked: list[tuple[dict[str, str], dict[str, float]]] = []

    def __call__(self, images: dict[str, str], budgets: dict[str, float]) -> layers.StackLayers:
        self.asked.append((images, budgets))
        return layers.StackLayers(self.images, shared_bytes=30 * MB, unique_bytes=150 * MB)


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch) -> Analysis:
    fake = Analysis()
    monkeypatch.setattr(layers, "analyze", fake)
    return fake


def test_layers_of_every_image_under_their_budgets(analysed: Analysis, capsys: Any) -> None:
    images_cli.layers(context(budgets_mb={"api": 80, "bot": 90}))
    ((images, budgets),) = analysed.asked
    assert images == {
        **{r.name: r.tag(NAMESPACE) for r in baseimages.RECIPES},
        **{s: f"{NAMESPACE}/{s}:latest" for s in build.SERVICES},
    }
    assert budgets == {"api": 80, "bot": 90}
    text = capsys.readouterr().out
    assert (
        "api " in text
        and f"{NAMESPACE}/api:latest" in text
        and "(base filesystem)" in text
        and "RUN pip install" in text
    )
    assert "total (budget 80.0 MB)" in text and "total (no budget)" in text and "OVER BUDGET" not in text
    assert "shared between images: 30.0 MB; unique bytes of the whole set: 150.0 MB" in text


def test_layers_of_named_services_and_an_unknown_one(analysed: Analysis) -> None:
    images_cli.layers(context(), service=["bot"])
    assert analysed.asked[0][0] == {"bot": f"{NAMESPACE}/bot:latest"}
    assert "unknown service 'db'" in fails(2, images_cli.layers, context(), service=["db"])
    assert len(analysed.asked) == 1


def test_layers_over_budget_exits_1_after_the_report(analysed: Analysis, capsys: Any) -> None:
    analysed.images[1] = image("bot", 95.5, 90, ("COPY src", 95.5))
    message = fails(1, images_cli.layers, context())
    assert message == "error: bot is 95.5 MB, over its budget of 90 MB"
    assert "total (budget 90.0 MB)  OVER BUDGET" in capsys.readouterr().out


def test_layers_as_json_marks_the_images_over_budget(analysed: Analysis, capsys: Any) -> None:
    analysed.images[0] = image("api", 81.0, 80, ("", 81.0))
    assert "api is 81.0 MB" in fails(1, images_cli.layers, context(), json=True)
    data = json.loads(capsys.readouterr().out)
    assert [(i["name"], i["over_budget"]) for i in data["images"]] == [("api", True), ("bot", False)]
    assert data["shared_bytes"] == 30 * MB
