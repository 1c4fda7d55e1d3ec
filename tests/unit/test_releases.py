"""Releases with a fake Docker: immutable tags, pins, the release log, the way back, and pruning."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from analyticbot_ops import releases
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import BadInput


class FakeDocker:
    def __init__(self) -> None:
        self.images = {"analyticbot/api:latest": "sha256:" + "a" * 64, "analyticbot/bot:latest": "sha256:" + "b" * 64}
        self.used: set[str] = set()
        self.calls: list[list[str]] = []

    def inspect(self, kind: str, name: str) -> dict | None:
        return {"Id": self.images[name]} if kind == "image" and name in self.images else None

    def docker(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[0] == "tag":
            self.images[args[2]] = self.images[args[1]]
        if args[0] == "rmi":
            self.images.pop(args[1], None)
        out = "1234\n" if args[0] == "ps" and args[-1].removeprefix("ancestor=") in self.used else ""
        return subprocess.CompletedProcess(args, 0, out, "")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    docker = FakeDocker()
    monkeypatch.setattr(releases.docker, "inspect", docker.inspect)
    monkeypatch.setattr(releases.docker, "docker", docker.docker)
    return docker


def test_a_build_is_tagged_by_its_id_and_pinned_where_no_setting_names_an_image(
    fake: FakeDocker, tmp_path: Path
) -> None:
    pinned = releases.record_build(
        {"api": "analyticbot/api:latest", "bot": "analyticbot/bot:latest"}, state_dir=tmp_path
    )
    assert pinned == {"api": "analyticbot/api:" + "a" * 12, "bot": "analyticbot/bot:" + "b" * 12}
    unnamed = {"API_IMAGE", "BOT_IMAGE", "MTPROTO_IMAGE"}
    assert releases.pinned_settings(unnamed, tmp_path) == {"API_IMAGE": pinned["api"], "BOT_IMAGE": pinned["bot"]}
    # An image the settings or the environment name (not unnamed) wins; a recorded image that is gone is not pinned.
    assert releases.pinned_settings({"MTPROTO_IMAGE"}, tmp_path) == {}
    del fake.images[pinned["bot"]]
    assert releases.pinned_settings(unnamed, tmp_path) == {"API_IMAGE": pinned["api"]}


def _stack(api: str) -> Stack:
    return Stack("prod", "abrel", {"API_IMAGE": api})


def test_the_release_log_keeps_the_last_n_and_skips_a_rerun(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for n in range(7):
        releases.record_release(_stack(f"api:{n}"), f"rev{n}", keep=5, state_dir=tmp_path, now=now)
    again = releases.record_release(_stack("api:6"), "rev6", keep=5, state_dir=tmp_path, now=now)
    log = releases.history("abrel", tmp_path)
    assert [r.number for r in log] == [3, 4, 5, 6, 7] and again.number == 7
    assert releases.choose("abrel", None, tmp_path).number == 6
    assert releases.choose("abrel", "4", tmp_path).images == {"API_IMAGE": "api:3"}
    assert releases.choose("abrel", "rev5", tmp_path).number == 6
    with pytest.raises(BadInput, match="no release '1' of abrel is recorded; known: #3"):
        releases.choose("abrel", "1", tmp_path)
    with pytest.raises(BadInput, match="no release of other is recorded"):
        releases.choose("other", None, tmp_path)


def test_pruning_removes_only_tags_this_checkout_made_that_nothing_uses(fake: FakeDocker, tmp_path: Path) -> None:
    first = releases.record_build({"api": "analyticbot/api:latest"}, state_dir=tmp_path)["api"]
    fake.images["analyticbot/api:latest"] = "sha256:" + "c" * 64
    second = releases.record_build({"api": "analyticbot/api:latest"}, state_dir=tmp_path)["api"]
    fake.images["analyticbot/api:latest"] = "sha256:" + "d" * 64
    third = releases.record_build({"api": "analyticbot/api:latest"}, state_dir=tmp_path)["api"]
    fake.images["someone/else:" + "e" * 12] = "sha256:" + "e" * 64  # not ours: never touched
    releases.record_release(_stack(second), "r2", state_dir=tmp_path)
    fake.used.add(first)
    assert releases.prune(tmp_path) == []  # first is in use, second is released, third is the build
    fake.used.clear()
    assert releases.prune(tmp_path) == [first]
    assert second in fake.images and third in fake.images and "someone/else:" + "e" * 12 in fake.images
