"""The task tree and the names it replaced.

Tasks live in namespaces (`invoke secrets.check`, `invoke stack.up`); the flat names of the first
release (`invoke secrets-check`, `invoke deploy-prod`) keep working as hidden aliases, some with options
preset (`health-check-verbose` is `health.check --verbose`). The Makefile's targets are these same names
(scripts/gen-makefile), so `make docker-secrets-check` keeps working too."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from invoke import Collection, Exit, Task
from invoke.exceptions import ParseError
from invoke.program import Program

from ..errors import EXIT_BAD_INPUT


@dataclass(frozen=True)
class Legacy:
    """An old flat name: the task it runs now, with options fixed (`preset`) or defaulted differently."""

    target: str  # dotted: "health.check"
    preset: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def command(self) -> str:
        """The namespaced command line this name stands for: `invoke health.check --service api`."""
        flags = []
        for key, value in self.preset.items():
            flag = "--" + key.replace("_", "-")
            values = value if isinstance(value, list) else [value]
            flags += [flag if v is True else f"{flag} {v}" for v in values]
        defaults = [f"--{k.replace('_', '-')} {v}" for k, v in self.defaults.items()]
        by_default = f" ({', '.join(defaults)} by default)" if defaults else ""
        return " ".join(["invoke", self.target, *flags]) + by_default


def legacy_task(name: str, legacy: Legacy, target: Task[Any]) -> Task[Any]:
    """A hidden task under the old name that runs `target` with the legacy presets."""
    signature = inspect.signature(target.body)
    params = [
        p.replace(default=legacy.defaults[p.name]) if p.name in legacy.defaults else p
        for p in signature.parameters.values()
        if p.name not in legacy.preset
    ]

    def run(c: Any, *args: Any, **kwargs: Any) -> Any:
        return target.body(c, *args, **{**kwargs, **legacy.preset})

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]  # inspect and invoke read it
    run.__doc__ = f"Old name of `{legacy.command()}`."
    run.__name__ = name.replace("-", "_")
    return Task(
        run,
        name=name,
        help={k: v for k, v in target.help.items() if k not in legacy.preset},
        positional=[p for p in target.positional if p not in legacy.preset],
        iterable=[p for p in target.iterable if p not in legacy.preset],
    )


class TaskTree(Collection):
    """The root collection: namespaces for `invoke --list`, and the old flat names resolved but not listed."""

    def __init__(self, *collections: Collection, legacy: Mapping[str, Legacy | Task[Any]]) -> None:
        super().__init__(*collections)
        # Every old name, with the command it stands for (the Makefile's targets and `make help`).
        self.legacy_commands: dict[str, str] = {}
        self.legacy: dict[str, Task[Any]] = {}
        for name, entry in sorted(legacy.items()):
            if isinstance(entry, Task):  # an old name whose arguments differ (service-logs' positional)
                said = re.search(r"`(invoke [^`]+)`", entry.__doc__ or "")  # its docstring names the new command
                self.legacy[name], self.legacy_commands[name] = entry, said.group(1) if said else name
                continue
            self.legacy_commands[name] = entry.command()
            if name not in self.collections:  # `invoke audit` already runs the audit namespace's default task
                task = super().task_with_config(entry.target)[0]
                self.legacy[name] = legacy_task(name, entry, task)  # type: ignore[arg-type]  # invoke annotates the Task as str

    def legacy_task(self, name: str) -> Task[Any]:
        """The task an old name runs (the namespace's default task for `audit`)."""
        return self.legacy.get(name) or self[name]

    @property
    def task_names(self) -> dict[str, list[str]]:
        # What the parser accepts: the namespaced names, and the old ones.
        return {**super().task_names, **{name: [] for name in self.legacy}}

    def task_with_config(self, name: str | None) -> tuple[Any, dict[str, Any]]:
        if name in self.legacy:
            return self.legacy[name], self.configuration()
        return super().task_with_config(name)


_original_parse_tasks = Program.parse_tasks
# Invoke's function under the classmethod, called with our cls.
_original_from_module: Callable[..., Collection] = Collection.from_module.__func__  # type: ignore[attr-defined]  # typed as bound


def _from_module(cls: type[Collection], module: Any, *args: Any, **kwargs: Any) -> Collection:
    # Invoke copies a module's `ns` into a plain Collection, which would drop the old names: keep ours.
    tree = getattr(module, "ns", None)
    if not isinstance(tree, TaskTree):
        return _original_from_module(cls, module, *args, **kwargs)
    tree.loaded_from = kwargs.get("loaded_from")  # where Invoke looks for invoke.yaml
    if kwargs.get("config"):
        tree.configure(kwargs["config"])
    return tree


def _parse_tasks(self: Program) -> None:
    try:
        _original_parse_tasks(self)
    except ParseError as exc:
        # Invoke prints its parser's complaint and exits 1, the code of a failed check. A missing argument or
        # an unknown option is bad input: one line, exit 2.
        raise Exit(f"error: {exc}", code=EXIT_BAD_INPUT) from None


def install() -> None:
    """Teach the `invoke` program our tree (Invoke would copy it into a plain Collection) and make its parse
    errors (unknown task or option, missing argument) one `error:` line and exit 2."""
    Program.parse_tasks = _parse_tasks  # type: ignore[method-assign]  # patching invoke on purpose
    Collection.from_module = classmethod(_from_module)  # type: ignore[method-assign,assignment]  # patching invoke
