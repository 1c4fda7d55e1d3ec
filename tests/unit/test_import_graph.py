"""The toolkit's layers, read from its imports (every import, a lazy one inside a function too): a module imports
only from its own layer or those below, and no two modules import each other, directly or round a loop.

    cli         parses options, calls one operation, prints
    operations  does a job against the engine: deploys, rollouts, backups, audits, clusters
    material    what the jobs are made of: secrets, certificates, rules, renderers, specs
    engine      processes, the Docker Engine API, Compose
    ground      errors, paths, the model, files, settings files, invoke.yaml's section"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "analyticbot_ops"

LAYERS: dict[str, tuple[str, ...]] = {
    "ground": ("errors", "paths", "model", "files", "envfile", "stack_settings", "config", "tokens", "timings"),
    "engine": ("runner", "engine", "docker", "compose", "layers"),
    "material": (
        "secrets", "tls", "imagespec", "monitoring.config", "monitoring.rules", "monitoring.tools", "k8s.render",
        "k8s.network", "k8s.validate", "k8s.policy", "swarm.render", "audit", "access_audit", "recovery.catalog",
        "recovery.target",
    ),
    "operations": (
        "deploy", "rollout", "releases", "backups", "recovery", "health", "acme", "maintenance", "guard",
        "preflight", "environment", "monitoring", "swarm", "k8s", "schedule", "registry", "build", "baseimages",
    ),
    "cli": ("cli",),
}  # fmt: skip
ORDER = tuple(LAYERS)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer_of(module: str) -> str | None:
    """The layer of a module (dotted, without the package): its longest matching prefix's."""
    best: tuple[int, str] | None = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return best[1] if best else None


def imports(module: str, source: str, modules: set[str], *, is_package: bool = False) -> set[str]:
    """The package's modules that `source` (the text of `module`, an __init__ when `is_package`) imports, anywhere
    in it. Names are dotted without the package: `secrets.batch`, "" for the package itself."""
    package = [p for p in module.split(".") if p] if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("analyticbot_ops"):
                target = node.module.removeprefix("analyticbot_ops").lstrip(".")
            else:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("analyticbot_ops.") for a in node.names if a.name.startswith("analyticbot_ops.")
            )
    return {m for m in found if m in modules and m and m != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    return {
        name: imports(name, path.read_text(), names, is_package=path.name == "__init__.py")
        for name, path in modules.items()
    }


def test_every_module_has_a_layer() -> None:
    assert [m for m in _graph() if m and layer_of(m) is None] == []


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if module and ORDER.index(layer_of(target) or "ground") > ORDER.index(layer_of(module) or "cli")
    ]
    assert upward == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_modules_import_each_other_even_round_a_loop() -> None:
    assert cycles(_graph()) == []


@pytest.mark.parametrize(
    ("source", "module", "caught"),
    [
        ("from . import deploy\n", "compose", "deploy"),  # the engine importing an operation
        ("def later():\n    from . import releases\n", "compose", "releases"),  # a lazy import counts too
        ("from analyticbot_ops.cli import stack\n", "secrets.batch", "cli.stack"),
    ],
)
def test_an_import_from_above_is_seen(source: str, module: str, caught: str) -> None:
    found = imports(module, source, set(_modules()))
    assert caught in found
    assert ORDER.index(layer_of(caught) or "ground") > ORDER.index(layer_of(module) or "cli")


def test_a_loop_is_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
