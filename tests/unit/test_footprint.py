"""analyticbot_common.footprint: what a running service loads (the benchmark's lower bound), on small inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from analyticbot_common import footprint


def test_each_file_is_sorted_by_kind() -> None:
    stdlib = "/usr/lib/python3.11/"
    assert footprint.kind(os.path.realpath(sys.executable), stdlib) == "interpreter"
    assert footprint.kind("/opt/app/src/analyticbot_api/main.py", stdlib) == "code"
    assert footprint.kind("/opt/app/common/pydantic/main.pyc", stdlib) == "dependencies"
    assert footprint.kind("/opt/app/deps/asyncpg/protocol/protocol.so", stdlib) == "dependencies"
    assert footprint.kind("/usr/lib/python3.11/json/decoder.pyc", stdlib) == "standard library"
    assert footprint.kind("/usr/lib/x86_64-linux-gnu/libssl.so.3", stdlib) == "system libraries"


def test_imports_in_functions_count_and_relative_ones_do_not(tmp_path: Path) -> None:
    package = tmp_path / "svc"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "collector.py").write_text(
        "import asyncio\nfrom . import store\n\ndef connect():\n    from telethon import TelegramClient\n"
    )
    assert footprint.imported_anywhere([str(package)]) == {"asyncio", "telethon"}


def test_mapped_files_are_the_regular_files_in_the_memory_map() -> None:
    files = footprint.mapped_files(os.getpid())
    assert os.path.realpath(sys.executable) in files or any("libpython" in f for f in files)
    assert all(os.path.isfile(f) and f.startswith("/") for f in files)


def test_a_module_counts_its_bytecode_where_it_has_some() -> None:
    import json.decoder

    loaded = footprint.module_files()
    spec = json.decoder.__spec__
    assert spec is not None and spec.origin is not None
    expected = spec.cached if spec.cached and os.path.isfile(spec.cached) else spec.origin
    assert os.path.realpath(expected) in loaded


def test_the_server_processes_are_a_process_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert footprint.server_processes(os.getpid())[0] == os.getpid()
        assert child.pid in footprint.server_processes(os.getpid())
    finally:
        child.kill()
        child.wait()
