"""What a running service loads from its image: the lower bound of the image's size.

    docker exec CONTAINER python3 -m analyticbot_common.footprint

Prints JSON: the bytes of every file the service needs to run, by kind (interpreter, system libraries,
standard library, dependencies, code). Shared objects (the interpreter's libraries and the extension modules)
are read from the server's own memory maps (/proc/1/maps, PID 1 being the server, and those of the workers
it forked when it runs several). Python modules are read in
this process, which loads the service as serve.py does (the app module, uvicorn's protocol and loop), every
module of the service's own package (the bot loads its engine in the background) and every module its code
imports inside a function (the collector imports Telethon only once it has credentials). For each module it
counts the one file Python reads: its bytecode, or its source where no bytecode exists. What those modules
import lazily in turn is not counted, so this is a lower bound."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

APP_ROOT = "/opt/app/"


def mapped_files(pid: int = 1) -> set[str]:
    """Regular files mapped into `pid`'s memory (the interpreter and every shared object it loaded)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        lines = Path("/proc/self/maps").read_text().splitlines()
    files = set()
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/") and os.path.isfile(fields[5]):
            files.add(os.path.realpath(fields[5]))
    return files


def load_service() -> None:
    """Import what the service's process imports: its app, uvicorn's machinery, its whole package."""
    import uvicorn

    from .serve import import_app

    target = os.environ.get("APP_MODULE", "")
    app = import_app(target)
    uvicorn.Config(app, lifespan="on", log_config=None).load()
    package = importlib.import_module(target.partition(":")[0].split(".")[0])
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
    for name in sorted(imported_anywhere(package.__path__)):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional import the code guards itself
            continue


def imported_anywhere(paths: Iterable[str]) -> set[str]:
    """Absolute imports in the package's source, function bodies included."""
    names: set[str] = set()
    for folder in paths:
        for file in Path(folder).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_bytes())):
                if isinstance(node, ast.Import):
                    names |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
    return names


def module_files() -> set[str]:
    files = set()
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.has_location or not spec.origin:
            continue
        cached = spec.cached if spec.cached and os.path.isfile(spec.cached) else None
        files.add(os.path.realpath(cached or spec.origin))
    return files


def kind(path: str, stdlib: str) -> str:
    if path == os.path.realpath(sys.executable):
        return "interpreter"
    if path.startswith(APP_ROOT + "src/"):
        return "code"
    if path.startswith(APP_ROOT):
        return "dependencies"
    if path.startswith(stdlib):
        return "standard library"
    return "system libraries"


def server_processes(pid: int = 1) -> list[int]:
    """The server (PID 1) and the workers it forked, if any (serve.py with several processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def footprint() -> dict[str, object]:
    load_service()
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    files = set().union(*(mapped_files(pid) for pid in server_processes())) | module_files()
    by_kind: dict[str, int] = {}
    for path in files:
        which = kind(path, stdlib)
        by_kind[which] = by_kind.get(which, 0) + os.path.getsize(path)
    return {"bytes": sum(by_kind.values()), "files": len(files), "by_kind": dict(sorted(by_kind.items()))}


if __name__ == "__main__":
    print(json.dumps(footprint()))
