"""The static import closure of the services, and the image pruning it allows. Runs inside image builds.

    python3 closure.py imports SRC_DIR... > imports.txt
        the top-level modules the services' own code imports (read with ast, never executed)
    python3 closure.py prune --imports imports.txt --deps DIR=PLACE... --out OUT
        copies this image's root filesystem to OUT/layers/rootfs and each DIR to OUT/layers/NAME/PLACE
        (NAME: DIR's name; PLACE: where the image has it), leaving out what no module of the closure can
        import and no kept binary links; writes OUT/closure.json. Each OUT/layers/NAME is one image layer,
        copied to / whole, so that even its folders' times are the same in every build.

The closure is computed over top-level packages: once anything imports a package, the whole package is
kept and every module in it is read (with ast, never run) for what it imports. That keeps the modules a
package loads by name (uvicorn's "uvicorn.protocols.http.h11_impl:H11Protocol", pydantic's lazy
attributes, asyncio's event loops) without tracing any run: a rare code path inside a kept package never
finds a module missing. Code that runs only as a script or a self-test is not followed. Imports made from
compiled code are added two ways: the stdlib's own C modules by a table below, third-party extension
modules by loading them once (Cython 3 compresses the strings it imports by; Rust code imports what its
package's Python code imports already). Shared libraries are kept when a kept binary or extension module
links them, as the dynamic loader itself resolves them (`ld.so --list`), plus those glibc and OpenSSL dlopen.

Only the standard library is built for this Python, so this runs with the runtime image's interpreter:
its stdlib is the one pruned. No third-party import: this file is all it needs."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from glob import glob
from pathlib import Path

# Modules the interpreter imports before any code runs, or on paths no source shows: `python3 -m`
# (runpy), printing a traceback at exit (traceback, linecache), codec lookups by name (encodings).
ALWAYS = frozenset(
    {"encodings", "site", "sitecustomize", "runpy", "traceback", "linecache", "_sitebuiltins", "codecs", "io"}
)
# Imports the stdlib's C modules make with PyImport_ImportModule, which no Python source shows.
C_IMPORTS = {
    "_datetime": ("_strptime", "time"),
    "time": ("_strptime",),
    "_decimal": ("numbers", "collections", "contextvars"),
    "_pickle": ("copyreg", "_compat_pickle"),
    "_elementtree": ("xml",),
    "_asyncio": ("asyncio",),
    "_ssl": ("ssl",),
    "_socket": ("socket",),
    "_ctypes": ("ctypes",),
    "_sqlite3": ("sqlite3",),
    "_io": ("_pyio",),
    "_warnings": ("warnings",),
}
# Shared libraries loaded with dlopen, which no ELF header names: glibc's unwinder for thread
# cancellation, NSS modules, OpenSSL's providers and engines.
DLOPENED = re.compile(r"(^|/)(libgcc_s\.so|libnss_|ossl-modules/|engines-\d+/)")
# Inside a kept package: its own tests are never imported by anything that runs.
TEST_DIRS = frozenset({"tests", "test", "testing"})
# Inside a kept third-party package: its test helpers, which import test tools a service never loads.
TEST_FILES = frozenset({"conftest.py", "pytest_plugin.py", "testing.py", "_testbase.py", "_testbase"})
# Imports that only the interactive prompt makes (help() loads pydoc, and pydoc a web server): no service
# has a prompt.
INTERACTIVE = {"_sitebuiltins": frozenset({"pydoc"}), "site": frozenset({"rlcompleter"})}
# Loaded by a name made at run time: `codecs.lookup("idna")` imports encodings.idna.
WHOLE_PACKAGES = frozenset({"encodings"})
# The stdlib's self-test functions (pickle._test, random._test, ...): never called by a service.
SELF_TESTS = frozenset({"_test", "_main_test"})
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The modification time of everything the pruning writes (2000-01-01 UTC): reproducible layers.
FIXED_MTIME = 946684800.0
ROOT_SKIP = ("/proc", "/sys", "/dev", "/.closure")
# Files the build's own container gets from BuildKit (its name, its DNS servers): never the image's. Docker
# mounts its own over them in every container; the image holds them empty.
RUNTIME_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
# A shared library by its name: libz.so.1.2.13, _ssl.cpython-311-x86_64-linux-gnu.so (not ld.so.cache).
SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")


# --- imports of the services' code -----------------------------------------------------------


def code_imports(sources: Iterable[Path]) -> set[str]:
    """Modules imported by the .py files under `sources` (their own packages excluded)."""
    names: set[str] = set()
    for source in sources:
        for file in sorted(source.rglob("*.py")):
            package = ".".join(file.relative_to(source.parent).parts[:-1])
            names |= module_imports(file, package)
    own = {source.name for source in sources}
    return {n for n in names if n.split(".")[0] not in own}


def module_imports(file: Path, package: str) -> set[str]:
    """Dotted names the module in `file` (inside `package`) imports; `from a import b` gives a and a.b."""
    try:
        tree = ast.parse(file.read_bytes(), str(file))
    except (SyntaxError, ValueError):  # a file no Python 3.11 can import (a py2 example): nothing to follow
        return set()
    return ImportScanner(package).scan(tree)


class ImportScanner(ast.NodeVisitor):
    """Imports and import-by-name strings of one module. Code that only runs when the module is a script
    (`if __name__ == "__main__":`) or is the stdlib's self-test (`def _test()`) is not followed: pickle's
    self-test alone would pull doctest, pdb, pydoc and unittest into every image."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: set[str] = set()

    def scan(self, tree: ast.AST) -> set[str]:
        self.visit(tree)
        return self.found

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name not in SELF_TESTS:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found |= {alias.name for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".") if self.package else []
            base_parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        if not base:
            return
        self.found.add(base)
        self.found |= {f"{base}.{alias.name}" for alias in node.names if alias.name != "*"}

    def visit_Call(self, node: ast.Call) -> None:
        # import_module("a.b"), __import__("a"), find_spec("a"): what code loads by a constant name.
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if called in ("import_module", "__import__", "find_spec") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and not first.value.startswith("."):
                self.found.add(first.value)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # "module:attribute" strings, as uvicorn and entry points name what they import.
        if isinstance(node.value, str):
            module, colon, attribute = node.value.partition(":")
            if colon and NAME.fullmatch(attribute) and all(NAME.fullmatch(p) for p in module.split(".")):
                self.found.add(module)


def only_modules(names: set[str], third_party: list[Path]) -> set[str]:
    """The names that are modules (here, or in `third_party`), and every top-level name: `from a import f`
    yields a.f, which is a function, and a new function imported must not change the list (the pruning
    stage is keyed by it)."""
    stdlib, dynload = stdlib_dirs()
    index = ModuleIndex(third_party, [stdlib, dynload])
    return {n for n in names if "." not in n or n in index.files}


# --- the closure ------------------------------------------------------------------------------


def stdlib_dirs() -> tuple[Path, Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = next((Path(p) for p in sys.path if p.endswith("lib-dynload")), stdlib / "lib-dynload")
    return stdlib, dynload


class ModuleIndex:
    """Every module under some sys.path folders: dotted name -> its file (a package: its __init__.py, or
    its folder for a namespace package), the first folder winning as on sys.path."""

    def __init__(self, third_party: list[Path], stdlib: list[Path]) -> None:
        self.files: dict[str, Path] = {}
        self.packages: dict[str, Path] = {}  # package name -> folder
        self.third_party: set[str] = set()  # top-level names found in the third-party folders
        # Every copy of a module: the services' folders may each hold one (redis for api and bot).
        self.copies: dict[str, list[Path]] = {}
        self.package_copies: dict[str, list[Path]] = {}
        for directory in [*third_party, *stdlib]:
            for name, path, folder in self._walk(directory):
                self.files.setdefault(name, path)
                self.copies.setdefault(name, []).append(path)
                if folder is not None:
                    self.packages.setdefault(name, folder)
                    self.package_copies.setdefault(name, []).append(folder)
                if directory in third_party:
                    self.third_party.add(name.split(".")[0])

    def _walk(self, directory: Path, prefix: str = "") -> Iterator[tuple[str, Path, Path | None]]:
        if not directory.is_dir():
            return
        for entry in sorted(directory.iterdir()):
            name = _module_name(entry)
            if name is None or name in ("__init__", "__pycache__") or entry.name in TEST_FILES:
                continue
            dotted = prefix + name
            if entry.is_dir():
                if name in TEST_DIRS and prefix:
                    continue
                init = entry / "__init__.py"
                yield dotted, init if init.is_file() else entry, entry
                yield from self._walk(entry, dotted + ".")
            elif not (entry.suffix == ".pyc" and (entry.with_suffix(".py")).exists()):
                yield dotted, entry, None

    def resolve(self, name: str) -> str | None:
        """The module that importing `name` loads: itself, or its nearest parent (`os.path` is os's)."""
        while name:
            if name in self.files:
                return name
            name = name.rpartition(".")[0]
        return None

    def package_of(self, name: str) -> str:
        return name if name in self.packages else name.rpartition(".")[0]

    def members(self, top: str) -> list[str]:
        return [n for n in self.files if n == top or n.startswith(top + ".")]


def _module_name(entry: Path) -> str | None:
    if entry.is_dir() and not entry.is_symlink():
        return entry.name if NAME.fullmatch(entry.name) else None
    if entry.suffix in (".py", ".pyc") or entry.name.endswith(".so"):
        stem = entry.name.split(".", 1)[0]
        return stem if NAME.fullmatch(stem) else None
    return None


class Closure:
    """The modules reachable from the roots: third-party packages (and WHOLE_PACKAGES) whole, the rest of
    the standard library module by module."""

    def __init__(self, index: ModuleIndex) -> None:
        self.index = index
        # Why each module is kept: the first thing found to need it.
        self.why: dict[str, str] = {}

    @property
    def kept(self) -> set[str]:
        return set(self.why)

    def add(self, roots: Iterable[str], reason: str = "imported by the services' code") -> None:
        pending = [(r, reason) for r in sorted(roots)]
        while pending:
            wanted, why = pending.pop()
            name = self.index.resolve(wanted)
            if name is None:
                if wanted in sys.builtin_module_names and wanted not in self.why:
                    self.why[wanted] = why
                    pending += [(n, f"imported by the C module {wanted}") for n in C_IMPORTS.get(wanted, ())]
                continue
            if name in self.why:
                continue
            self.why[name] = why
            parts = name.split(".")
            pending += [(".".join(parts[:i]), f"parent of {name}") for i in range(1, len(parts))]
            if parts[0] in self.index.third_party or parts[0] in WHOLE_PACKAGES:
                pending += [(m, f"part of {parts[0]}") for m in self.index.members(parts[0]) if m not in self.why]
            pending += [(n, f"imported by the C module {name}") for n in C_IMPORTS.get(name, ())]
            file = self.index.files[name]
            if file.suffix == ".py":
                found = module_imports(file, self.index.package_of(name)) - INTERACTIVE.get(name, frozenset())
                pending += [(n, f"imported by {name}") for n in sorted(found) if n not in self.why]


def imports_at_load(extensions: Iterable[str], path: Iterable[Path]) -> set[str]:
    """Modules that third-party extension modules import as they load. Cython and Rust code imports by
    strings that no parser reads (Cython 3 even compresses them): what their package's Python code
    imports is followed statically; this adds what their module init imports."""
    names = sorted(extensions)
    if not names:
        return set()
    probe = (
        "import importlib, sys\n"
        "before = set(sys.modules)\n"
        "for name in sys.argv[1:]:\n"
        "    try: importlib.import_module(name)\n"
        "    except Exception: pass\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
    result = subprocess.run([sys.executable, "-c", probe, *names], capture_output=True, text=True, check=False, env=env)
    return set(result.stdout.split())


# --- shared libraries ---------------------------------------------------------------------------


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def dynamic_loader() -> str:
    candidates = sorted(glob("/lib*/ld-linux*.so.*") + glob("/usr/lib*/ld-linux*.so.*"))
    if not candidates:
        raise SystemExit("closure: no dynamic loader (ld-linux*.so) found")
    return candidates[0]


def linked_libraries(binaries: Iterable[Path]) -> set[str]:
    """Every shared library the loader resolves for `binaries`, as real paths."""
    loader = dynamic_loader()
    needed = {os.path.realpath(loader)}
    for binary in binaries:
        listed = subprocess.run([loader, "--list", str(binary)], capture_output=True, text=True, check=False)
        for line in listed.stdout.splitlines():
            match = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
            if match:
                needed.add(os.path.realpath(match.group(1)))
    return needed


# --- pruning ---------------------------------------------------------------------------------------


def walk_root(root: Path, skip: Iterable[str]) -> Iterator[Path]:
    skipped = {str(root / s.lstrip("/")) for s in skip}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if os.path.join(directory, d) not in skipped]
        for name in subdirs + files:
            yield Path(directory, name)


def copy_tree(
    source: Path, target: Path, drop: set[Path], skip: Iterable[str] = (), moves: dict[Path, Path] | None = None
) -> int:
    """Copy `source` to `target` keeping owners, modes and symlinks, leaving out `drop` (and below);
    a file in `moves` is copied to its new place (under `source`) even when its folder is dropped."""
    moves = moves or {}
    target.mkdir(parents=True, exist_ok=True)
    shutil.copystat(source, target)
    copied = 0
    for path in walk_root(source, skip):
        moved = moves.get(path)
        if moved is None and _dropped(path, drop):
            continue
        destination = target / (moved or path).relative_to(source)
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(path), destination)
        elif stat.S_ISDIR(info.st_mode):
            destination.mkdir(exist_ok=True)
            shutil.copystat(path, destination, follow_symlinks=False)
        elif stat.S_ISREG(info.st_mode):
            shutil.copy2(path, destination, follow_symlinks=False)
            copied += info.st_size
        else:
            continue  # sockets, devices: nothing an image carries
        os.lchown(destination, info.st_uid, info.st_gid)
    return copied


def import_closure(imports: set[str], deps: list[Path]) -> Closure:
    """The closure of `imports` over the third-party folders `deps` and this interpreter's stdlib."""
    stdlib, dynload = stdlib_dirs()
    index = ModuleIndex(deps, [stdlib, dynload])
    closure = Closure(index)
    closure.add(ALWAYS, "loaded by the interpreter itself")
    closure.add(imports)
    probed: set[str] = set()
    while True:  # what kept extension modules import as they load, until nothing new comes
        extensions = {
            n for n in closure.kept if n not in probed and n in index.files
            and index.files[n].name.endswith(".so") and n.split(".")[0] in index.third_party
        }  # fmt: skip
        probed |= extensions
        loaded = {n for n in imports_at_load(extensions, deps) if index.resolve(n) not in closure.why}
        if not loaded:
            break
        closure.add(loaded, "imported by an extension module as it loads")
    return closure


def prune(imports: set[str], deps: list[Path], out: Path, places: dict[Path, Path] | None = None) -> dict[str, object]:
    """Prune to the closure of `imports`; each folder of `deps` lands at its place (itself by default)."""
    places = places or {}
    closure = import_closure(imports, deps)
    index = closure.index
    dropped = sorted(n for n in index.files if n not in closure.why)
    drop: set[Path] = set()
    for name in dropped:
        drop |= set(index.package_copies.get(name) or index.copies[name])
        for file in index.copies[name]:
            drop |= _bytecode_of(file)
    for directory in deps:
        drop |= {p for p in directory.rglob("*") if p.name in TEST_FILES or (p.is_dir() and p.name in TEST_DIRS)}
        drop |= _orphan_dist_info(directory, drop)

    skip = (*ROOT_SKIP, str(out), *map(str, deps))
    present = [p for p in walk_root(Path("/"), (*ROOT_SKIP, str(out))) if not _dropped(p, drop)]
    linked = linked_libraries(p for p in present if _loader_root(p, deps))
    unlinked = {
        p
        for p in present
        if _is_system_library(p, deps) and not DLOPENED.search(str(p)) and os.path.realpath(p) not in linked
    }
    drop |= unlinked
    moves = sourceless(closure, drop)

    drop |= {Path(name) for name in RUNTIME_FILES}
    copy_tree(Path("/"), out / "layers" / "rootfs", drop, skip, moves)
    for name in RUNTIME_FILES:
        (out / "layers" / "rootfs" / name.lstrip("/")).write_bytes(b"")
    for dep in deps:
        copy_tree(dep, out / "layers" / dep.name / places.get(dep, dep).relative_to("/"), drop, moves=moves)
    fixed_times(out)
    report = {
        "kept": dict(sorted(closure.why.items())),
        "dropped_modules": dropped,
        "dropped_libraries": sorted(str(p) for p in unlinked),
    }
    (out / "closure.json").write_text(json.dumps(report, indent=1))
    return report


def sourceless(closure: Closure, drop: set[Path]) -> dict[Path, Path]:
    """Keep each kept module of the stdlib and the dependencies as bytecode alone: NAME.pyc in place of
    NAME.py (Python's sourceless loader), the source and __pycache__ dropped. The interpreter reads only
    the bytecode; the source is read to print a line in a traceback, and the services' own code (not
    pruned here) keeps its source for that. This halves the bytes of every Python module shipped."""
    moves: dict[Path, Path] = {}
    for name in closure.kept:
        for file in closure.index.copies.get(name, []):
            if file.suffix != ".py":
                continue
            cache = file.parent / "__pycache__"
            compiled = sorted(cache.glob(f"{file.stem}.{sys.implementation.cache_tag}.pyc"))
            if compiled:
                moves[compiled[0]] = file.with_suffix(".pyc")
                drop.add(file)
                drop.add(cache)
    return moves


def fixed_times(root: Path, when: float = FIXED_MTIME) -> None:
    """Every file and folder under `root` stamped with one time: the layers built from them are then
    the same bytes in every build (mount points and install times made them differ), so an image
    rebuilt with --no-cache still shares its runtime layer with the others."""
    for folder, subfolders, files in os.walk(root, topdown=False):
        for name in [*files, *subfolders]:
            os.utime(os.path.join(folder, name), (when, when), follow_symlinks=False)
        os.utime(folder, (when, when))


def _bytecode_of(file: Path) -> set[Path]:
    """A source file's compiled bytecode in __pycache__ (every optimization level)."""
    if file.suffix != ".py":
        return set()
    return set((file.parent / "__pycache__").glob(f"{file.stem}.cpython-*.pyc"))


def _orphan_dist_info(directory: Path, drop: set[Path]) -> set[Path]:
    """.dist-info folders whose every top-level module is dropped."""
    orphans = set()
    for info in directory.glob("*.dist-info"):
        record = info / "RECORD"
        if not record.is_file():
            continue
        tops = {line.split(",", 1)[0].split("/", 1)[0] for line in record.read_text().splitlines()}
        tops = {t for t in tops if not t.endswith((".dist-info", ".data")) and t != ".."}
        if tops and all(directory / t in drop or not (directory / t).exists() for t in tops):
            orphans.add(info)
    return orphans


def _dropped(path: Path, drop: set[Path]) -> bool:
    return path in drop or any(parent in drop for parent in path.parents)


def _is_extension_or_dep(path: Path, deps: list[Path]) -> bool:
    return "/python3" in str(path) or any(dep in path.parents for dep in deps)


def _loader_root(path: Path, deps: list[Path]) -> bool:
    """Programs, and Python's extension modules: what the loader starts from."""
    if path.is_symlink() or not path.is_file() or not is_elf(path):
        return False
    return ".so" not in path.name or _is_extension_or_dep(path, deps)


def _is_system_library(path: Path, deps: list[Path]) -> bool:
    """A shared library outside Python's folders (a symlink to one counts: it goes with its target)."""
    if not SHARED_OBJECT.search(path.name) or path.is_dir() or _is_extension_or_dep(path, deps):
        return False
    return is_elf(path)  # follows a symlink: a dangling one is no library either


# --- checking a pruned image -----------------------------------------------------------------


def present_modules(third_party: list[Path]) -> list[str]:
    """Every module in this interpreter's stdlib and in `third_party`, as the closure indexes them; no
    `__main__` (importing one runs a program)."""
    stdlib, dynload = stdlib_dirs()
    index = ModuleIndex(third_party, [stdlib, dynload])
    return sorted(n for n in index.files if n.rpartition(".")[2] != "__main__")


def import_all(names: Iterable[str]) -> dict[str, str]:
    """Import each module in turn: the ones that fail, with the error."""
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit too: the point is to record every failure
            failed[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imports = sub.add_parser("imports")
    imports.add_argument("sources", nargs="+", type=Path)
    imports.add_argument(
        "--known", nargs="*", type=Path, default=None, help="dependency folders: keep only names that are modules"
    )
    pruning = sub.add_parser("prune")
    pruning.add_argument("--imports", type=Path, required=True)
    pruning.add_argument("--roots", nargs="*", default=[], help="more modules to start from (an entry point)")
    pruning.add_argument("--deps", nargs="*", default=[], help="DIR=PLACE: a dependency folder, where the image has it")
    pruning.add_argument("--out", type=Path, required=True)
    listing = sub.add_parser("modules", help="the modules present here (stdlib and DIRS), one per line")
    listing.add_argument("dirs", nargs="*", type=Path)
    sub.add_parser("import-all", help="import the modules named on stdin; print the failures as JSON")
    args = parser.parse_args(argv)
    if args.command == "modules":
        print("\n".join(present_modules(args.dirs)))
        return 0
    if args.command == "import-all":
        print(json.dumps(import_all(sys.stdin.read().split())))
        return 0
    if args.command == "imports":
        names = code_imports(args.sources)
        if args.known is not None:
            names = only_modules(names, args.known)
        print("\n".join(sorted(names)))
        return 0
    wanted = set(args.imports.read_text().split()) | set(args.roots)
    places = {Path(d.partition("=")[0]): Path(d.partition("=")[2] or d.partition("=")[0]) for d in args.deps}
    report = prune(wanted, list(places), args.out, places)
    print(f"closure: kept {len(report['kept'])} top-level modules, dropped {len(report['dropped_modules'])} "
          f"and {len(report['dropped_libraries'])} unlinked libraries")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
