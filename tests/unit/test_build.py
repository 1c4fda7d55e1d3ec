"""Service builds: the BuildKit command line and the step accounting."""

from __future__ import annotations

import pytest

from analyticbot_ops import build
from analyticbot_ops.errors import BadInput

PLAIN = """#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#5 [deps 1/3] COPY services/api/requirements.txt /tmp/requirements.txt
#5 CACHED
#6 [deps 2/3] RUN --mount=type=bind,source=.cache/wheels,target=/wheels python3 -m pip install
#6 CACHED
#7 [code 2/3] COPY services/common/analyticbot_common /opt/app/src/analyticbot_common
#7 DONE 0.1s
#8 [stage-2 2/3] COPY --from=deps /opt/app/deps /opt/app/deps
#8 CACHED
"""


def test_count_steps_counts_numbered_steps_and_cached_ones() -> None:
    assert build.count_steps(PLAIN) == (4, 3)


def test_build_command_has_no_network_labels_and_base_args() -> None:
    command = build.build_command("api", "ns/api:latest", {"python-runtime": "rt:1", "python-build": "bd:1"}, False)
    assert "--network=none" in command
    assert "SERVICE=api" in command
    assert "PYTHON_RUNTIME_IMAGE=rt:1" in command and "PYTHON_BUILD_IMAGE=bd:1" in command
    labels = [command[i + 1] for i, arg in enumerate(command) if arg == "--label"]
    assert {label.split("=", 1)[0] for label in labels} >= {
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
    }
    assert "--no-cache" not in command
    assert "--no-cache" in build.build_command("api", "t", {}, True)


def test_unknown_service_is_bad_input() -> None:
    with pytest.raises(BadInput, match="known: api, bot, mtproto, proxy"):
        build.check_service("frontend")


def test_every_service_has_a_fully_pinned_lock() -> None:
    for service in build.PYTHON_SERVICES:
        lines = [
            line.strip()
            for line in build.requirements_file(service).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert lines, service
        assert all("==" in line for line in lines), service


def test_proxy_build_takes_the_nginx_base_and_no_service_arg() -> None:
    command = build.build_command("proxy", "ns/proxy:latest", {"nginx": "ngx:1", "python-runtime": "rt:1"}, False)
    assert "NGINX_IMAGE=ngx:1" in command
    assert not [arg for arg in command if arg.startswith(("SERVICE=", "PYTHON_"))]
    assert str(build.IMAGES["proxy"].dockerfile) in command


def test_labels_come_from_the_inputs_last_commit_never_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as clock

    first = build.build_command("api", "t", {}, False)
    monkeypatch.setattr(clock, "time", lambda: 4_000_000_000.0)  # a wall clock 100 years on changes nothing
    assert build.build_command("api", "t", {}, False) == first
    labels = [first[i + 1] for i, arg in enumerate(first) if arg == "--label"]
    created = next(label for label in labels if label.startswith("org.opencontainers.image.created="))
    revision = next(label for label in labels if label.startswith("org.opencontainers.image.revision="))
    expected = build.source_revision(build.IMAGES["api"].inputs)
    assert created.endswith(expected.created) and revision.endswith(expected.revision)


def test_an_image_is_built_from_its_own_inputs_only() -> None:
    assert build.IMAGES["api"].inputs == ("services/Dockerfile", "services/common", "services/api")
    assert build.IMAGES["proxy"].inputs == ("nginx",)
    assert all(spec.inputs for spec in build.IMAGES.values())
