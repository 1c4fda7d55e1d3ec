"""services/build/closure.py: the import closure that prunes the service images (run here on small trees)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from analyticbot_ops.paths import SERVICES_DIR


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("closure", SERVICES_DIR / "build" / "closure.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["closure"] = module
    spec.loader.exec_module(module)
    return module


closure = _load()


def scan(source: str, package: str = "pkg") -> set[str]:
    return closure.ImportScanner(package).scan(ast.parse(source))


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# --- reading imports ---------------------------------------------------------------------------------------


def test_imports_absolute_relative_and_from_names() -> None:
    found = scan("import os.path\nfrom json import decoder\nfrom . import sibling\nfrom ..up import x\n", "a.b")
    assert found == {"os.path", "json", "json.decoder", "a.b", "a.b.sibling", "a.up", "a.up.x"}


def test_script_blocks_and_self_tests_are_not_followed() -> None:
    source = (
        "import re\n"
        "def _test():\n    import doctest\n"
        "def helper():\n    import textwrap\n"
        "if __name__ == '__main__':\n    import argparse\nelse:\n    import string\n"
    )
    assert scan(source) == {"re", "textwrap", "string"}


def test_modules_loaded_by_constant_names_are_imports() -> None:
    source = (
        "import importlib\n"
        "importlib.import_module('uvicorn.loops.asyncio')\n"
        "__import__('dbm.dumb')\n"
        "LOOP = 'uvicorn.protocols.http.h11_impl:H11Protocol'\n"
        "TEXT = 'not a module: really'\n"
        "importlib.import_module(name)\n"
    )
    assert scan(source) == {"importlib", "uvicorn.loops.asyncio", "dbm.dumb", "uvicorn.protocols.http.h11_impl"}


def test_code_imports_leave_out_the_code_s_own_packages(tmp_path: Path) -> None:
    write(tmp_path, {"app/__init__.py": "", "app/main.py": "import fastapi\nfrom app import x\nfrom .y import z\n"})
    assert closure.code_imports([tmp_path / "app"]) == {"fastapi"}


def test_a_file_python_cannot_parse_imports_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"old.py": "print 'python 2'\n"})
    assert closure.module_imports(tmp_path / "old.py", "") == set()


# --- the closure -------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    deps, stdlib = tmp_path / "deps", tmp_path / "stdlib"
    write(
        deps,
        {
            "web/__init__.py": "import mail\n",
            "web/lazy.py": "import zipfile\n",  # never imported by name: kept with its package
            "web/tests/test_web.py": "import unittest\n",
            "web/testing.py": "import pdb\n",
            "unused/__init__.py": "",
            "web-1.0.dist-info/RECORD": "web/__init__.py,,\n",
            "unused-2.0.dist-info/RECORD": "unused/__init__.py,,\n",
        },
    )
    write(
        stdlib,
        {
            "mail/__init__.py": "from . import parser\n",
            "mail/parser.py": "import re\n",
            "mail/server.py": "import socketserver\n",  # nothing imports it: dropped
            "re.py": "",
            "zipfile.py": "",
            "socketserver.py": "",
            "unittest/__init__.py": "",
            "pdb.py": "",
            "_sitebuiltins.py": "import pydoc\n",
            "pydoc.py": "",
        },
    )
    return deps, stdlib


def closure_of(tree: tuple[Path, Path], roots: set[str]) -> object:
    deps, stdlib = tree
    found = closure.Closure(closure.ModuleIndex([deps], [stdlib]))
    found.add(roots)
    return found


def test_a_third_party_package_is_kept_whole_and_the_stdlib_by_module(tree: tuple[Path, Path]) -> None:
    kept = closure_of(tree, {"web"}).kept
    assert {"web", "web.lazy", "zipfile", "mail", "mail.parser", "re"} <= kept
    assert not {"mail.server", "socketserver", "unused", "unittest", "pdb"} & kept


def test_test_suites_and_test_helpers_are_neither_indexed_nor_followed(tree: tuple[Path, Path]) -> None:
    index = closure.ModuleIndex([tree[0]], [tree[1]])
    assert "web.tests.test_web" not in index.files
    assert "web.testing" not in index.files


def test_help_s_pydoc_is_not_followed(tree: tuple[Path, Path]) -> None:
    kept = closure_of(tree, {"_sitebuiltins"}).kept
    assert "_sitebuiltins" in kept
    assert "pydoc" not in kept


def test_imports_made_by_c_modules_come_from_the_table(tree: tuple[Path, Path]) -> None:
    write(tree[1], {"_strptime.py": "", "time.py": ""})
    found = closure.Closure(closure.ModuleIndex([tree[0]], [tree[1]]))
    found.add({"_datetime"})  # a builtin here: no file, only its table entry
    assert "_strptime" in found.kept


def test_each_kept_module_says_why(tree: tuple[Path, Path]) -> None:
    why = closure_of(tree, {"web"}).why
    assert why["web"] == "imported by the services' code"
    assert why["mail"] == "imported by web"


# --- pruning -----------------------------------------------------------------------------------------------


def test_sourceless_moves_bytecode_in_place_of_the_source(tmp_path: Path) -> None:
    write(tmp_path, {"lib/mod.py": "X = 1\n", f"lib/__pycache__/mod.{sys.implementation.cache_tag}.pyc": "code"})
    found = closure.Closure(closure.ModuleIndex([tmp_path / "lib"], []))
    found.add({"mod"})
    drop: set[Path] = set()
    moves = closure.sourceless(found, drop)
    assert moves == {tmp_path / f"lib/__pycache__/mod.{sys.implementation.cache_tag}.pyc": tmp_path / "lib/mod.pyc"}
    assert drop == {tmp_path / "lib/mod.py", tmp_path / "lib/__pycache__"}
    closure.copy_tree(tmp_path / "lib", tmp_path / "out", drop, moves=moves)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mod.pyc"]
    assert (tmp_path / "out/mod.pyc").read_text() == "code"


def test_copy_tree_keeps_symlinks_and_leaves_dropped_folders_out(tmp_path: Path) -> None:
    write(tmp_path, {"src/keep/a.txt": "a", "src/gone/b.txt": "b"})
    (tmp_path / "src/link").symlink_to("keep/a.txt")
    closure.copy_tree(tmp_path / "src", tmp_path / "out", {tmp_path / "src/gone"})
    assert (tmp_path / "out/link").is_symlink()
    assert (tmp_path / "out/keep/a.txt").read_text() == "a"
    assert not (tmp_path / "out/gone").exists()


def test_a_dist_info_goes_with_its_dropped_package(tree: tuple[Path, Path]) -> None:
    deps = tree[0]
    orphans = closure._orphan_dist_info(deps, {deps / "unused"})
    assert orphans == {deps / "unused-2.0.dist-info"}


def test_the_dynamic_loader_s_libraries_are_what_it_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    class Listed:
        stdout = "\tlinux-vdso.so.1 (0x1)\n\tlibz.so.1 => /lib/libz.so.1 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n"

    monkeypatch.setattr(closure, "dynamic_loader", lambda: "/lib64/ld-linux-x86-64.so.2")
    monkeypatch.setattr(closure.subprocess, "run", lambda *a, **k: Listed())
    monkeypatch.setattr(closure.os.path, "realpath", lambda p: p)
    assert closure.linked_libraries([Path("/usr/bin/python3")]) == {"/lib/libz.so.1", "/lib64/ld-linux-x86-64.so.2"}


def test_dlopened_libraries_are_never_unlinked() -> None:
    for path in ("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1", "/usr/lib/x86_64-linux-gnu/ossl-modules/legacy.so"):
        assert closure.DLOPENED.search(path)
    assert not closure.DLOPENED.search("/usr/lib/x86_64-linux-gnu/libsqlite3.so.0")


def test_only_names_that_are_modules_stay_listed(tree: tuple[Path, Path]) -> None:
    names = {"web", "web.lazy", "web.make_app", "json", "json.decoder", "json.dumps"}
    kept = closure.only_modules(names, [tree[0]])
    assert kept == {"web", "web.lazy", "json", "json.decoder"}  # json's from this interpreter's stdlib


def test_fixed_times_stamps_every_file_folder_and_link(tmp_path: Path) -> None:
    write(tmp_path, {"out/a/b.txt": "b"})
    (tmp_path / "out/a/link").symlink_to("b.txt")
    closure.fixed_times(tmp_path / "out")
    for path in (tmp_path / "out", tmp_path / "out/a", tmp_path / "out/a/b.txt", tmp_path / "out/a/link"):
        assert path.lstat().st_mtime == closure.FIXED_MTIME


def test_a_block_that_runs_when_imported_is_followed() -> None:
    assert scan("if __name__ != '__main__':\n    import json\n") == {"json"}


def test_only_elf_shared_objects_are_system_libraries(tmp_path: Path) -> None:
    lib = tmp_path / "usr/lib/libz.so.1.2.13"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF" + b"\0" * 60)
    (tmp_path / "usr/lib/libz.so.1").symlink_to("libz.so.1.2.13")
    cache = tmp_path / "etc/ld.so.cache"
    cache.parent.mkdir()
    cache.write_bytes(b"\x7fELF-looking but named as no library is")
    sources = tmp_path / "etc/debian.sources"
    sources.write_text("Types: deb\n")
    assert closure._is_system_library(lib, [])
    assert closure._is_system_library(tmp_path / "usr/lib/libz.so.1", [])
    assert not closure._is_system_library(cache, [])
    assert not closure._is_system_library(sources, [])
    assert not closure._is_system_library(tmp_path / "usr/lib/python3.11/_ssl.cpython-311-x86_64-linux-gnu.so", [])
