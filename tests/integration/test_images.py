"""The images themselves: offline bases that work, services that pass their own
HEALTHCHECK, non-root users, and nothing secret in their history."""

from __future__ import annotations

import re

import pytest

from analyticbot_ops import docker

from .conftest import BASE_TAGS, SERVICE_TAGS, require_image

PYTHON_BASES = [name for name in BASE_TAGS if name.startswith("python-")]
SECRET_LOOKING = [
    re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key)\s*[=:]\s*\S{6,}"),
    re.compile(r"sk_(live|test)_[A-Za-z0-9]{8,}"),
    re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{35}\b"),
    re.compile(r"BEGIN [A-Z ]*PRIVATE KEY"),
]


@pytest.mark.parametrize("name", PYTHON_BASES)
def test_python_base_runs_the_stdlib_as_non_root(name: str) -> None:
    tag = require_image(BASE_TAGS[name])
    result = docker.docker(
        [
            "run",
            "--rm",
            "--network=none",
            "--user",
            "10001:10001",
            tag,
            "python3",
            "-c",
            "import ssl, sqlite3, asyncio, ctypes, os; "
            "print(os.getuid(), ssl.create_default_context().cert_store_stats()['x509_ca'])",
        ],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    uid, ca_count = result.stdout.split()
    assert uid == "10001"
    assert int(ca_count) > 100  # the CA bundle the hook assembled is there and loads


def test_runtime_base_has_no_shell_and_no_setuid_files() -> None:
    tag = require_image(BASE_TAGS["python-runtime"])
    listing = docker.docker(
        [
            "run",
            "--rm",
            "--network=none",
            tag,
            "python3",
            "-c",
            "import os, stat\n"
            "bad=[os.path.join(r,f) for r,_,fs in os.walk('/usr') for f in fs\n"
            "     if os.path.isfile(os.path.join(r,f)) and not os.path.islink(os.path.join(r,f))\n"
            "     and os.stat(os.path.join(r,f)).st_mode & (stat.S_ISUID|stat.S_ISGID)]\n"
            "print(os.path.exists('/bin/sh'), os.path.exists('/usr/bin/gcc'), len(bad))",
        ],
    ).stdout.split()
    assert listing == ["False", "False", "0"]


@pytest.mark.parametrize("name", ["python-runtime", *SERVICE_TAGS])
def test_image_user_is_neither_empty_nor_root(name: str) -> None:
    tag = require_image({**BASE_TAGS, **SERVICE_TAGS}[name])
    user = docker.inspect("image", tag)["Config"]["User"]
    assert user and user.split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("service", list(SERVICE_TAGS))
def test_image_history_env_and_labels_hold_nothing_secret(service: str) -> None:
    tag = require_image(SERVICE_TAGS[service])
    info = docker.inspect("image", tag)
    texts = [entry.get("CreatedBy", "") for entry in docker.image_history(tag)]
    texts += info["Config"].get("Env") or []
    texts += [f"{k}={v}" for k, v in (info["Config"].get("Labels") or {}).items()]
    leaks = [text for text in texts for pattern in SECRET_LOOKING if pattern.search(text)]
    assert leaks == []


@pytest.mark.parametrize("service", list(SERVICE_TAGS))
def test_service_labels_carry_version_revision_and_date(service: str) -> None:
    labels = docker.image_labels(require_image(SERVICE_TAGS[service])) or {}
    assert labels.get("org.opencontainers.image.version")
    assert re.fullmatch(r"([0-9a-f]{7,}|unknown)(-dirty)?", labels.get("org.opencontainers.image.revision", ""))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels.get("org.opencontainers.image.created", ""))
