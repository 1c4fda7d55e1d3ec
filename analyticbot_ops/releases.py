"""Releases: immutable image tags, what this checkout built, what each stack runs, and the way back.

- Every build also tags each image `NAMESPACE/SERVICE:<12 hex of its ID>`: that tag always names the same
  bytes. This checkout records its last build in `.state/builds.json`.
- A deploy pins the stack's images to those immutable tags (unless the settings name an image), so a build
  in another checkout, which moves the shared `:latest`, never changes what this stack runs.
- Each successful deploy records a release in `.state/<project>/releases.json` (newest last, the last
  `keep`). `invoke stack.releases` lists them, `invoke stack.rollback` deploys an earlier one (rolled,
  like any release), and image tags that no kept release or build names are pruned."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import docker, model
from .compose import Stack
from .errors import BadInput
from .paths import STATE_DIR

DEFAULT_KEEP = 5


def id_tag(repository: str, image_id: str) -> str:
    """The immutable tag of an image: its repository and the first 12 hex digits of its ID."""
    return f"{repository}:{image_id.removeprefix('sha256:')[:12]}"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path} is not readable state ({type(exc).__name__}); move it away to start afresh") from None


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    partial.replace(path)


def record_build(tags: Mapping[str, str], state_dir: Path = STATE_DIR) -> dict[str, str]:
    """Tag each built image immutably and remember it as this checkout's build; {service: immutable tag}."""
    pinned = {}
    for service, tag in tags.items():
        image = docker.inspect("image", tag)
        if image is None:
            continue
        immutable = id_tag(tag.rsplit(":", 1)[0], str(image["Id"]))
        docker.docker(["tag", tag, immutable])
        pinned[service] = immutable
    builds = {**(_read(state_dir / "builds.json") or {}), **pinned}
    _write(state_dir / "builds.json", builds)
    # Every tag this checkout made: the only ones it may ever prune.
    made = sorted({*(_read(state_dir / "tagged.json") or []), *pinned.values()})
    _write(state_dir / "tagged.json", made)
    return pinned


def pin(stack: Stack, state_dir: Path = STATE_DIR) -> Stack:
    """The stack running this checkout's build: each image no setting names, by the immutable tag it was built
    under (what deploys run), where that image still exists. Changes `stack` and returns it."""
    stack.settings.update(pinned_settings(stack.unnamed_images, state_dir))
    return stack


def pinned_settings(unnamed: Collection[str], state_dir: Path = STATE_DIR) -> dict[str, str]:
    """The image variables to set so that the stack runs this checkout's build: only for the `unnamed`
    ones (no .env, environment or override names them), and only where the recorded image still exists."""
    builds = _read(state_dir / "builds.json") or {}
    pins = {}
    for service, variable in model.BUILT_VARIABLES.items():
        if variable not in unnamed or service not in builds:
            continue
        if docker.inspect("image", builds[service]) is not None:
            pins[variable] = builds[service]
    return pins


@dataclass(frozen=True)
class Release:
    number: int
    at: str
    revision: str
    images: dict[str, str] = field(default_factory=dict)  # variable -> immutable tag


def _releases_file(project: str, state_dir: Path) -> Path:
    return state_dir / project / "releases.json"


def history(project: str, state_dir: Path = STATE_DIR) -> list[Release]:
    """The project's recorded releases, oldest first."""
    return [Release(**entry) for entry in _read(_releases_file(project, state_dir)) or []]


def record_release(
    stack: Stack,
    revision: str,
    *,
    keep: int = DEFAULT_KEEP,
    state_dir: Path = STATE_DIR,
    now: dt.datetime | None = None,
) -> Release:
    """Remember what the stack runs now (its image variables), unless it is the release already on top."""
    built = model.BUILT_VARIABLES.values()
    images = {variable: stack.settings[variable] for variable in built if variable in stack.settings}
    past = history(stack.project, state_dir)
    if past and past[-1].images == images:
        return past[-1]
    release = Release(
        (past[-1].number + 1) if past else 1, (now or dt.datetime.now(dt.UTC)).isoformat(), revision, images
    )
    kept = [*past, release][-max(keep, 1) :]
    _write(_releases_file(stack.project, state_dir), [asdict(r) for r in kept])
    return release


def choose(project: str, to: str | None, state_dir: Path = STATE_DIR) -> Release:
    """The release to roll back to: the one before the current, or the one numbered or revised `to`."""
    past = history(project, state_dir)
    if not past:
        raise BadInput(f"no release of {project} is recorded here; deploy one first")
    if to is None:
        if len(past) < 2:
            raise BadInput(f"{project} has only one recorded release (#{past[-1].number}): nothing to go back to")
        return past[-2]
    for release in reversed(past):
        if to == str(release.number) or (len(to) >= 4 and release.revision.startswith(to)):
            return release
    known = ", ".join(f"#{r.number} ({r.revision})" for r in past)
    raise BadInput(f"no release {to!r} of {project} is recorded; known: {known}")


def missing_images(release: Release) -> list[str]:
    return [tag for tag in release.images.values() if docker.inspect("image", tag) is None]


def prune(state_dir: Path = STATE_DIR, keep: int = DEFAULT_KEEP) -> list[str]:
    """Remove the immutable tags this checkout made that no kept release (of any project recorded here) and
    no recorded build names, and that no container (running or stopped) uses."""
    wanted = set((_read(state_dir / "builds.json") or {}).values())
    for releases_file in state_dir.glob("*/releases.json"):
        for entry in (_read(releases_file) or [])[-keep:]:
            wanted.update(entry.get("images", {}).values())
    made = _read(state_dir / "tagged.json") or []
    removed, left = [], []
    for tag in made:
        in_use = docker.docker(["ps", "-aq", "--filter", f"ancestor={tag}"], check=False).stdout.strip()
        if tag in wanted or in_use or docker.inspect("image", tag) is None:
            if docker.inspect("image", tag) is not None:
                left.append(tag)
            continue
        if docker.docker(["rmi", tag], check=False).returncode == 0:
            removed.append(tag)
        else:
            left.append(tag)
    _write(state_dir / "tagged.json", left)
    return removed
