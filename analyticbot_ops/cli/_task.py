"""The task decorator and output helpers every task module shares."""

from __future__ import annotations

import functools
import inspect
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from invoke import Exit, task
from rich.console import Console
from rich.table import Table

from .. import compose, releases, timings
from ..config import ops, validate
from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, BadInput, OpsError, os_error_line

# Tables and results on stdout; progress and warnings on stderr, so `--json`
# output stays machine-readable.
# Without a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


_NUMBERS = {"int": int, "float": float}


def _numbers_as_text(body: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, type]]:
    """The task's signature with its numeric options taken as text. Invoke would convert them itself,
    and `--timeout abc` would end in int()'s traceback; converted here, a bad number is one line."""
    signature = inspect.signature(body)
    numeric = {
        name: _NUMBERS[str(p.annotation)]
        for name, p in signature.parameters.items()
        if str(p.annotation) in _NUMBERS and p.default is not inspect.Parameter.empty
    }
    params = [p.replace(default=str(p.default)) if p.name in numeric else p for p in signature.parameters.values()]
    return signature.replace(parameters=params), numeric


def _number(name: str, kind: type, text: Any) -> Any:
    if not isinstance(text, str):
        return text  # called from Python with a number already
    option = "--" + name.replace("_", "-")
    try:
        value = kind(text.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise BadInput(f"{option} must be {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise BadInput(f"{option} must be a finite number, got {text!r}")
    return value


def ops_task(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """`invoke.task` that turns an OpsError into one clear line and its exit code."""

    def decorate(body: Callable[..., Any]) -> Any:
        signature, numeric = _numbers_as_text(body)

        @functools.wraps(body)
        def run(c: Any, *a: Any, **kw: Any) -> Any:
            try:
                config = getattr(c, "config", None)
                if config is not None and "ops" in config:
                    validate(config["ops"])  # invoke.yaml's settings, before any task acts on them
                kw = {k: _number(k, numeric[k], v) if k in numeric else v for k, v in kw.items()}
                return body(c, *a, **kw)
            except OpsError as exc:
                raise Exit(f"error: {exc}", code=exc.code) from None
            except OSError as exc:
                # The filesystem said no (a full disk, a path that is a file, a file gone): still one line,
                # in words, never a traceback or an `[Errno N]`.
                raise Exit(f"error: {os_error_line(exc)}", code=EXIT_FAILED) from None
            except subprocess.SubprocessError as exc:  # a hung child process
                raise Exit(f"error: {exc}", code=EXIT_FAILED) from None
            except KeyboardInterrupt:
                raise Exit("interrupted", code=EXIT_INTERRUPTED) from None

        run.__signature__ = signature  # type: ignore[attr-defined]  # inspect and invoke read it
        return task(*args, **kwargs)(run)

    return decorate


def stack_of(c: Any, env: str, *, pinned: bool = False, **kwargs: Any) -> compose.Stack:
    """The environment's stack, its image names under invoke.yaml's namespace, with the monitoring overlay
    unless ops.monitoring is false and the backup overlay unless ops.backup is false. `pinned`: what runs is
    this checkout's build, by immutable tags, whatever another checkout built."""
    settings = ops(c.config)
    kwargs.setdefault("monitoring", settings.monitoring)
    kwargs.setdefault("backup", settings.backup)
    stack = compose.load_stack(env, namespace=settings.namespace, **kwargs)
    return releases.pin(stack) if pinned else stack


TIMINGS = "Print where the seconds went: each phase of the task, timed as it ran (on stderr)."


@contextmanager
def timed(show: bool) -> Iterator[None]:
    """Record the task's phases (timings.phase); with `show`, print them on stderr when it ends, failed or not."""
    timings.reset()
    try:
        yield
    finally:
        if show:
            phases, total = timings.report()
            table = Table("phase", "seconds", title=f"timings: {total:.2f} s in all", title_justify="left")
            for p in phases:
                table.add_row("  " * p.depth + p.name, f"{p.seconds:.2f}")
            err.print(table)


def progress(message: str) -> None:
    err.print(message, markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
