"""The task decorator and output helpers every task module shares."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from invoke import Exit, task
from rich.console import Console

from ..errors import OpsError

# Tables and results on stdout; progress and warnings on stderr, so `--json`
# output stays machine-readable.
# Without a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


def ops_task(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """`invoke.task` that turns an OpsError into one clear line and its exit code."""

    def decorate(body: Callable[..., Any]) -> Any:
        @functools.wraps(body)
        def run(c: Any, *a: Any, **kw: Any) -> Any:
            try:
                return body(c, *a, **kw)
            except OpsError as exc:
                raise Exit(f"error: {exc}", code=exc.code) from None
            except (OSError, subprocess.SubprocessError) as exc:
                # The filesystem or a child process said no (a full disk, a path
                # that is a file, a hung command): still one line, never a traceback.
                raise Exit(f"error: {exc}", code=1) from None
            except KeyboardInterrupt:
                raise Exit("interrupted", code=130) from None

        return task(*args, **kwargs)(run)

    return decorate


def progress(message: str) -> None:
    err.print(message, markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
