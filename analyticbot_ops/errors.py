"""The errors a task turns into one clear line, and the one table of exit codes they map to.

Every task exits with one of EXIT_CODES; README's table is checked against it (tests/unit/test_tasks.py).
A script can tell "you asked for something wrong" (2, nothing changed) from "the check ran and failed" (1),
a stack that serves with an optional dependency down (4) from one that does not serve (5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExitCode:
    code: int
    name: str
    meaning: str


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_DOCKER = 3
EXIT_DEGRADED = 4
EXIT_UNHEALTHY = 5
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "ok", "done; for health tasks, every service healthy"),
    ExitCode(EXIT_FAILED, "failed", "the job ran and its result is bad: a check, an audit, a budget, a deploy"),
    ExitCode(
        EXIT_BAD_INPUT, "bad input", "an invalid option, file or setting, or an unmet precondition; nothing changed"
    ),
    ExitCode(EXIT_NO_DOCKER, "no docker", "no Docker daemon answers, or no client that can do the job"),
    ExitCode(EXIT_DEGRADED, "degraded", "the stack serves, but an optional dependency is down or disabled"),
    ExitCode(EXIT_UNHEALTHY, "unhealthy", "a service is unhealthy, missing or not answering"),
    ExitCode(EXIT_INTERRUPTED, "interrupted", "stopped by Ctrl-C; the message says what was left"),
)


class OpsError(Exception):
    """A failure the user can act on: shown as one line, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class CheckFailed(OpsError):
    """The job ran and its result is bad (the details were printed above the line)."""


class BadInput(OpsError):
    """Invalid input: a malformed file, an unknown name, a bad option, a precondition unmet."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_BAD_INPUT)


class DockerUnavailable(OpsError):
    """No Docker daemon answers, or no client that can build with BuildKit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_NO_DOCKER)


class Degraded(OpsError):
    """The stack serves, with an optional dependency down."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_DEGRADED)


class Unhealthy(OpsError):
    """A service is unhealthy, missing or not answering."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_UNHEALTHY)


class Interrupted(OpsError):
    """Ctrl-C: the message says what was done and what was left."""

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message, EXIT_INTERRUPTED)


def os_error_line(exc: OSError) -> str:
    """What the filesystem or the kernel said, in words, with the path it said it about: never Python's
    `[Errno 2] No such file or directory: '...'`."""
    said = exc.strerror or str(exc) or type(exc).__name__
    where = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name)
    return f"{said[:1].lower()}{said[1:]}: {where}" if where else f"{said[:1].lower()}{said[1:]}"
