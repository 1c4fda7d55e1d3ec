"""The one error type a task turns into a single clear line and an exit code."""

from __future__ import annotations

# Exit codes that mean something to a script calling `invoke`.
EXIT_FAILED = 1  # the job ran and the result is bad (a budget exceeded, a check failed)
EXIT_BAD_INPUT = 2  # the user asked for something invalid; nothing was changed
EXIT_NO_DOCKER = 3  # no usable Docker daemon or client


class OpsError(Exception):
    """A failure the user can act on: shown as one line, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class BadInput(OpsError):
    """Invalid input: a malformed file, an unknown name, a bad option."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_BAD_INPUT)


class DockerUnavailable(OpsError):
    """No Docker daemon answers, or no client that can build with BuildKit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_NO_DOCKER)
