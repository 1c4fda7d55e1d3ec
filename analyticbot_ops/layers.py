"""What the images are made of: each layer's size and origin, the bytes images share,
the unique bytes of the whole stack, and each image's size budget."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from . import docker
from .errors import OpsError

# The diff id of an empty tar: a layer that adds nothing (kept by some builders).
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
MB = 1_000_000  # docker reports sizes in decimal units


@dataclass
class Layer:
    diff_id: str
    size: int
    created_by: str


@dataclass
class ImageLayers:
    name: str
    tag: str
    size: int
    budget: int | None
    layers: list[Layer] = field(default_factory=list)

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.size > self.budget


@dataclass
class StackLayers:
    images: list[ImageLayers]
    shared_bytes: int
    unique_bytes: int

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        for image, source in zip(data["images"], self.images, strict=True):
            image["over_budget"] = source.over_budget
        return data


def _short(created_by: str) -> str:
    text = created_by.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").strip()
    return " ".join(text.split())[:120]


def image_layers(name: str, tag: str, budget: int | None) -> ImageLayers:
    """Pair the layer-creating history entries with the image's diff ids, oldest first."""
    info = docker.inspect("image", tag)
    if info is None:
        raise OpsError(f"image {tag} does not exist; run `invoke images.build` first")
    diff_ids = [d for d in info.get("RootFS", {}).get("Layers", []) if d != EMPTY_LAYER]
    history = [h for h in reversed(docker.image_history(tag)) if _bytes(h.get("Size", "0")) > 0]
    layers: list[Layer] = []
    if len(history) == len(diff_ids):
        layers = [
            Layer(d, _bytes(h["Size"]), _short(h.get("CreatedBy", ""))) for d, h in zip(diff_ids, history, strict=True)
        ]
    else:
        # History and layers disagree (squashed or imported images): sizes by
        # history alone, each layer unique to its image.
        layers = [Layer(f"{tag}#{i}", _bytes(h["Size"]), _short(h.get("CreatedBy", ""))) for i, h in enumerate(history)]
    return ImageLayers(name, tag, int(info["Size"]), budget, layers)


_UNITS = {"B": 1, "kB": 1000, "KB": 1000, "MB": MB, "GB": 1000 * MB}


def _bytes(text: str | int) -> int:
    """docker history's human sizes ('36.1MB') back to bytes."""
    if isinstance(text, int):
        return text
    text = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * _UNITS[unit])
    return int(float(text or 0))


def analyze(images: Mapping[str, str], budgets_mb: Mapping[str, float]) -> StackLayers:
    """Layers of each image (name -> tag), with shared and unique bytes across them."""
    analysed = [
        image_layers(name, tag, int(budgets_mb[name] * MB) if name in budgets_mb else None)
        for name, tag in images.items()
    ]
    owners: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    for image in analysed:
        for layer in image.layers:
            owners.setdefault(layer.diff_id, set()).add(image.name)
            sizes[layer.diff_id] = layer.size
    shared = sum(sizes[d] for d, names in owners.items() if len(names) > 1)
    return StackLayers(analysed, shared_bytes=shared, unique_bytes=sum(sizes.values()))


def over_budget(stack: StackLayers) -> list[ImageLayers]:
    return [image for image in stack.images if image.over_budget]


def budget_failures(stack: StackLayers) -> Iterable[str]:
    for image in over_budget(stack):
        assert image.budget is not None
        yield f"{image.name} is {image.size / MB:.1f} MB, over its budget of {image.budget / MB:.0f} MB"
