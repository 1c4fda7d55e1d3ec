"""The images themselves: offline bases that work, services that pass their own
HEALTHCHECK, non-root users, and nothing secret in their history."""

from __future__ import annotations

import json
import re

import pytest

from analyticbot_ops import build, docker, model, runner
from analyticbot_ops.paths import SERVICES_DIR

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


# --- the pruned images (services/build/closure.py) ------------------------------------------------------------

CLOSURE = SERVICES_DIR / "build" / "closure.py"


def _import_failures(image: str, modules: list[str]) -> dict[str, str]:
    """Import every module in `modules` inside `image`; the failures with their errors."""
    result = docker.docker(
        ["run", "--rm", "-i", "--network=none", "-v", f"{CLOSURE}:/tmp/closure.py:ro", image,
         "python3", "/tmp/closure.py", "import-all"],
        input_bytes="\n".join(modules).encode(),
        timeout=600,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])  # the last line: a module may print on import


@pytest.mark.parametrize("service", model.APPS)
def test_every_module_of_the_pruned_image_imports_as_it_did_unpruned(service: str, run_id: str) -> None:
    """The static closure kept each module's imports: every module left in the image (stdlib and
    dependencies) imports there, unless it failed the same way before pruning (a Windows-only module, an
    optional dependency nobody installs). The integration suite exercises every route besides."""
    pruned = require_image(SERVICE_TAGS[service])
    unpruned = f"abtest-unpruned-{service}:{run_id}"
    command = build.build_command(service, unpruned, BASE_TAGS, no_cache=False, target="unpruned")
    built = runner.run([docker.buildkit_client().path, *command], check=False, env={"DOCKER_BUILDKIT": "1"})
    assert built.returncode == 0, built.stderr[-2000:]
    try:
        listed = docker.docker(
            ["run", "--rm", "--network=none", "-v", f"{CLOSURE}:/tmp/closure.py:ro", pruned,
             "python3", "/tmp/closure.py", "modules", "/opt/app/common", "/opt/app/deps"]
        ).stdout.split()  # fmt: skip
        assert len(listed) > 500, listed  # the stdlib alone has hundreds
        after, before = _import_failures(pruned, listed), _import_failures(unpruned, listed)
        assert {m: e for m, e in after.items() if m not in before} == {}
        assert len(after) < len(listed) / 20  # the few that fail everywhere, not most of them
    finally:
        docker.docker(["rmi", unpruned], check=False)


LAZY_TYPES_CHECK = """
import json
import analyticbot_bot.engine  # installs the lazy types, loads aiogram, builds what every update needs
from aiogram import methods, types
from pydantic import BaseModel
from pydantic._internal._mock_val_ser import MockValSer
from analyticbot_bot import lazy_types
models = [m for mod in (types, methods) for n in mod.__all__
          if isinstance(m := getattr(mod, n), type) and issubclass(m, BaseModel)]
deferred = sum(isinstance(m.__dict__.get("__pydantic_validator__"), MockValSer) for m in models)
failed = []
for model in models:
    try:  # first use builds the validator and the serializer
        model.__pydantic_validator__.validate_python
        model.__pydantic_serializer__.to_python
        assert not isinstance(model.__pydantic_validator__, MockValSer)
    except Exception as exc:
        failed.append(f"{model.__name__}: {exc!r}"[:160])
print(json.dumps({"active": lazy_types.active(), "models": len(models), "deferred": deferred, "failed": failed}))
"""


def test_the_bot_builds_aiogram_s_types_on_first_use_and_every_one_builds() -> None:
    """The bot's idle memory depends on aiogram's types staying unbuilt until used (lazy_types): they are,
    and each of them (every Telegram type and method) still builds when first used."""
    tag = require_image(SERVICE_TAGS["bot"])
    result = docker.docker(["run", "--rm", "--network=none", tag, "python3", "-c", LAZY_TYPES_CHECK], timeout=300)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["active"] is True
    assert report["models"] > 500
    assert report["deferred"] > report["models"] / 2  # most were never built until now
    assert report["failed"] == []
