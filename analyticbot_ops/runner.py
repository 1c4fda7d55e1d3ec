"""The one door to child processes: every docker, docker-compose, mmdebstrap, git, pip or hadolint call
starts here, so a missing program, a timeout, an unreachable daemon and a failure's first line are each
handled once. Unit tests swap the real runner for a FakeRunner (`with runner.use(fake):`) and assert on
the command lines, as invocations' MockContext does for `c.run`."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import DockerUnavailable, OpsError

Completed = subprocess.CompletedProcess
# What the Docker CLI and Compose print when no daemon answers, whatever the command.
_NO_DAEMON = ("cannot connect to the docker daemon", "is the docker daemon running", "error while fetching server api")
_DOCKER_TOOLS = ("docker", "docker-compose")


def first_line(text: str | bytes | None) -> str:
    """The first non-empty line of a command's output, for a one-line error."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "(no output)"


def _is_docker(argv: Sequence[str]) -> bool:
    return Path(argv[0]).name in _DOCKER_TOOLS


def daemon_unreachable(argv: Sequence[str], stderr: str | bytes | None) -> bool:
    """Whether a failed docker or compose call failed for want of a daemon."""
    if not _is_docker(argv):
        return False
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr or ""
    return any(marker in text.lower() for marker in _NO_DAEMON)


def _no_daemon(stderr: str | bytes | None, env: Mapping[str, str] | None = None) -> DockerUnavailable:
    where = (env or {}).get("DOCKER_HOST") or os.environ.get("DOCKER_HOST", "the default socket")
    return DockerUnavailable(f"Docker daemon is not reachable at {where}: {first_line(stderr)}")


@dataclass(frozen=True)
class Call:
    """One command as the runner was asked to run it (what a FakeRunner records)."""

    argv: tuple[str, ...]
    input: str | bytes | None = None
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    timeout: float | None = None
    stdin: IO[bytes] | None = None  # another process's output, piped in (mmdebstrap | docker import)


class SubprocessRunner:
    """Runs commands for real."""

    def run(self, call: Call, *, capture: bool, text: bool) -> Completed[Any]:
        return subprocess.run(
            call.argv,
            input=call.input,
            stdin=call.stdin,
            capture_output=capture,
            text=text,
            env=None if call.env is None else {**os.environ, **call.env},
            cwd=call.cwd,
            timeout=call.timeout,
        )

    def start(self, call: Call, *, stdout: int | None, stderr: int | None, text: bool) -> Any:
        return subprocess.Popen(
            call.argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=text,
            env=None if call.env is None else {**os.environ, **call.env},
            cwd=call.cwd,
        )


@dataclass
class FakeRunner:
    """Answers commands from a script instead of running them, and records every call.

    `answers` maps an argv prefix (a tuple of words) to a Completed, or to a function of the Call; the
    longest matching prefix wins; unmatched commands answer `default`."""

    answers: dict[tuple[str, ...], Completed[Any] | Callable[[Call], Completed[Any]]] = field(default_factory=dict)
    default: Completed[Any] = field(default_factory=lambda: Completed([], 0, "", ""))
    calls: list[Call] = field(default_factory=list)

    def answer(self, *prefix: str, stdout: str = "", stderr: str = "", returncode: int = 0) -> None:
        self.answers[prefix] = Completed(list(prefix), returncode, stdout, stderr)

    def run(self, call: Call, *, capture: bool, text: bool) -> Completed[Any]:
        self.calls.append(call)
        words = (Path(call.argv[0]).name, *call.argv[1:])
        for prefix in sorted(self.answers, key=len, reverse=True):
            if words[: len(prefix)] == prefix:
                found = self.answers[prefix]
                return self._shaped(call, found(call) if callable(found) else found, text)
        return self._shaped(call, self.default, text)

    @staticmethod
    def _shaped(call: Call, result: Completed[Any], text: bool) -> Completed[Any]:
        """The answer as the real runner would give it: bytes when no text was asked for."""

        def shape(value: Any) -> Any:
            if text or value is None or isinstance(value, bytes):
                return value
            return str(value).encode()

        return Completed(list(call.argv), result.returncode, shape(result.stdout), shape(result.stderr))

    def start(self, call: Call, *, stdout: Any, stderr: Any, text: bool) -> Any:
        result = self.run(call, capture=True, text=text)
        return _FinishedProcess(result)

    def commands(self) -> list[str]:
        """Each call as one line: `docker compose -p x up -d`."""
        return [" ".join((Path(c.argv[0]).name, *c.argv[1:])) for c in self.calls]


class _FinishedProcess:
    """What FakeRunner.start returns: a process that has already exited."""

    def __init__(self, result: Completed[Any]) -> None:
        import io

        self.returncode = result.returncode
        as_bytes = isinstance(result.stdout, bytes) or isinstance(result.stderr, bytes)
        stream: Callable[[Any], Any] = io.BytesIO if as_bytes else io.StringIO
        self.stdout = stream(result.stdout or (b"" if as_bytes else ""))
        self.stderr = stream(result.stderr or (b"" if as_bytes else ""))

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode

    def __enter__(self) -> _FinishedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_active: SubprocessRunner | FakeRunner = SubprocessRunner()


@contextlib.contextmanager
def use(fake: FakeRunner) -> Iterator[FakeRunner]:
    """Run every command through `fake` inside the block."""
    global _active
    previous, _active = _active, fake
    try:
        yield fake
    finally:
        _active = previous


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    what: str | None = None,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    capture: bool = True,
    text: bool | None = None,
    stdin: IO[bytes] | None = None,
) -> Completed[Any]:
    """Run a command and return what it printed; bytes in, bytes out (a secret on stdin), else text.

    A missing program, a timeout and (for docker and compose) an unreachable daemon raise OpsError or
    DockerUnavailable with one line; with `check`, so does a non-zero exit, with the first line it
    printed. `env` is added to this process's environment."""
    call = Call(tuple(map(str, argv)), input, env, cwd, timeout, stdin)
    name = what or " ".join(call.argv[:2])
    try:
        result = _active.run(call, capture=capture, text=not isinstance(input, bytes) if text is None else text)
    except FileNotFoundError:
        if cwd is not None and not Path(cwd).is_dir():
            raise OpsError(f"{name}: the working directory {cwd} does not exist") from None
        if _is_docker(call.argv):
            raise DockerUnavailable(f"{call.argv[0]} is not installed; install docker.io") from None
        raise OpsError(f"{call.argv[0]} is not installed") from None
    except PermissionError:
        raise OpsError(f"{call.argv[0]} cannot be run: permission denied") from None
    except subprocess.TimeoutExpired:
        raise OpsError(f"{name} timed out after {timeout:g} s") from None
    if result.returncode != 0 and daemon_unreachable(call.argv, result.stderr):
        raise _no_daemon(result.stderr, env)
    if check and result.returncode != 0:
        raise OpsError(f"{name} failed: {first_line(result.stderr or result.stdout)}")
    return result


def start(
    argv: Sequence[str],
    *,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    text: bool = True,
) -> Any:
    """Start a command that runs beside us (compose up while we watch health, one end of a pipe); the
    caller waits for it. Its output is text unless `text=False` (a tar stream)."""
    call = Call(tuple(map(str, argv)), None, env, cwd, None)
    try:
        return _active.start(call, stdout=stdout, stderr=stderr, text=text)
    except FileNotFoundError:
        raise OpsError(f"{call.argv[0]} is not installed") from None
    except PermissionError:
        raise OpsError(f"{call.argv[0]} cannot be run: permission denied") from None


def failed(argv: Sequence[str], returncode: int, stderr: str | bytes | None, what: str | None = None) -> OpsError:
    """The one-line error for a started command that exited non-zero."""
    if daemon_unreachable(argv, stderr):
        return _no_daemon(stderr)
    return OpsError(f"{what or ' '.join(map(str, argv[:2]))} failed (exit code {returncode}): {first_line(stderr)}")
