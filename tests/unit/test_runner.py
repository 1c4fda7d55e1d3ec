"""The one door to child processes: one-line errors, the daemon check, and the FakeRunner tests swap in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analyticbot_ops import runner
from analyticbot_ops.errors import EXIT_NO_DOCKER, DockerUnavailable, OpsError

NO_DAEMON = "Cannot connect to the Docker daemon at unix:///x. Is the docker daemon running?"
PY = sys.executable


@pytest.fixture(autouse=True)
def no_real_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def _python(code: str) -> list[str]:
    return [PY, "-c", code]


# --- first_line and daemon_unreachable --------------------------------------------------


def test_first_line_skips_blank_lines_and_decodes_bytes() -> None:
    assert runner.first_line("\n  \n  boom: it broke  \nsecond\n") == "boom: it broke"
    assert runner.first_line(b"\n\xff oops\n") == "\ufffd oops"
    assert runner.first_line("") == runner.first_line(None) == runner.first_line(" \n\t\n") == "(no output)"


@pytest.mark.parametrize(
    ("argv0", "stderr", "expected"),
    [
        ("docker", NO_DAEMON, True),
        ("/usr/local/bin/docker", NO_DAEMON.encode(), True),
        ("docker-compose", "ERROR: Is the docker daemon running?", True),
        ("docker", "error during connect: Error while fetching server API version: EOF", True),
        ("docker", "Error response from daemon: No such container: x", False),
        ("docker", None, False),
        ("git", NO_DAEMON, False),  # only docker and compose speak of the daemon
        ("/opt/docker-helper", NO_DAEMON, False),
    ],
)
def test_daemon_unreachable_is_read_only_from_docker_tools(
    argv0: str, stderr: str | bytes | None, expected: bool
) -> None:
    assert runner.daemon_unreachable([argv0, "ps"], stderr) is expected


# --- run, for real ----------------------------------------------------------------------


def test_run_returns_text_output() -> None:
    result = runner.run(_python("print('hello')"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello\n", "")


def test_text_input_goes_to_stdin_as_text() -> None:
    result = runner.run(_python("import sys; print(sys.stdin.read().upper())"), input="abc")
    assert result.stdout == "ABC\n"


def test_bytes_in_bytes_out() -> None:
    secret = b"\x00\xffs3cr3t\n"
    result = runner.run(_python("import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"), input=secret)
    assert result.stdout == secret[::-1]
    assert isinstance(result.stderr, bytes)


def test_a_failure_raises_with_the_first_line_it_printed() -> None:
    argv = _python("import sys; sys.stderr.write('\\n\\nboom: bad thing\\ndetail\\n'); sys.exit(3)")
    with pytest.raises(OpsError, match=r"^frobnicate failed: boom: bad thing$") as raised:
        runner.run(argv, what="frobnicate")
    assert raised.value.code == 1 and not isinstance(raised.value, DockerUnavailable)


def test_a_failure_without_stderr_quotes_stdout_and_names_the_command_by_its_first_words() -> None:
    argv = _python("print('only on stdout'); raise SystemExit(1)")
    with pytest.raises(OpsError, match=r"failed: only on stdout$") as raised:
        runner.run(argv)
    assert str(raised.value).startswith(f"{PY} -c failed")


def test_check_false_returns_the_failure() -> None:
    result = runner.run(_python("import sys; sys.stderr.write('nope'); sys.exit(7)"), check=False)
    assert (result.returncode, result.stderr) == (7, "nope")


def test_env_is_added_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABOT_INHERITED", "kept")
    code = "import os; print(os.environ['ABOT_ADDED'], os.environ['ABOT_INHERITED'])"
    assert runner.run(_python(code), env={"ABOT_ADDED": "new"}).stdout.split() == ["new", "kept"]


def test_cwd_is_where_the_command_runs(tmp_path: Path) -> None:
    assert runner.run(_python("import os; print(os.getcwd())"), cwd=tmp_path).stdout.strip() == str(tmp_path)


def test_uncaptured_output_is_not_returned() -> None:
    result = runner.run(_python("pass"), capture=False)
    assert result.returncode == 0 and result.stdout is None and result.stderr is None


def test_a_command_that_hangs_times_out_with_one_line() -> None:
    with pytest.raises(OpsError, match=r"^sleeper timed out after 0.5 s$"):
        runner.run(_python("import time; time.sleep(30)"), timeout=0.5, what="sleeper")


def test_a_missing_program_is_an_ops_error() -> None:
    with pytest.raises(OpsError, match=r"^abot-no-such-program-4711 is not installed$") as raised:
        runner.run(["abot-no-such-program-4711", "--version"])
    assert not isinstance(raised.value, DockerUnavailable)


def test_a_missing_docker_is_docker_unavailable() -> None:
    with pytest.raises(DockerUnavailable, match=r"install docker\.io") as raised:
        runner.run(["/nonexistent/bin/docker", "version"])
    assert raised.value.code == EXIT_NO_DOCKER


def test_a_real_docker_that_finds_no_daemon_is_docker_unavailable(tmp_path: Path) -> None:
    fake_docker = tmp_path / "docker"
    fake_docker.write_text(f"#!/bin/sh\necho '{NO_DAEMON}' >&2\nexit 1\n")
    fake_docker.chmod(0o755)
    with pytest.raises(DockerUnavailable) as raised:
        runner.run([str(fake_docker), "ps"], check=False)  # even unchecked: nothing else can follow
    assert raised.value.code == EXIT_NO_DOCKER
    assert str(raised.value) == f"Docker daemon is not reachable at unix:///nonexistent/docker.sock: {NO_DAEMON}"


def test_a_program_that_cannot_be_executed_is_a_one_line_ops_error(tmp_path: Path) -> None:
    not_executable = tmp_path / "tool"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(OpsError, match="tool"):
        runner.run([str(not_executable)])


def test_a_missing_working_directory_is_not_reported_as_a_missing_program(tmp_path: Path) -> None:
    with pytest.raises(OpsError) as raised:
        runner.run(_python("pass"), cwd=tmp_path / "gone")
    assert "not installed" not in str(raised.value)


# --- run through a FakeRunner -----------------------------------------------------------


def test_the_daemon_check_applies_to_fake_answers_too(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "ps", stderr=f"\n{NO_DAEMON}\n", returncode=1)
    fake.answer("git", "status", stderr=NO_DAEMON, returncode=1)
    monkeypatch.delenv("DOCKER_HOST")
    with runner.use(fake):
        with pytest.raises(DockerUnavailable, match=r"at the default socket: Cannot connect"):
            runner.run(["/usr/bin/docker", "ps", "-a"], check=False)
        assert runner.run(["git", "status"], check=False).returncode == 1  # not docker: just a failure
        with pytest.raises(OpsError, match=r"^git status failed: Cannot connect") as raised:
            runner.run(["git", "status"])
    assert not isinstance(raised.value, DockerUnavailable)


def test_a_fake_answers_the_longest_matching_prefix_and_records_each_call(tmp_path: Path) -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", stdout="any docker")
    fake.answer("docker", "compose", "version", stdout="v2.30.0")
    fake.answer("docker", "compose", stdout="compose", returncode=0)
    with runner.use(fake) as used:
        assert used is fake
        assert runner.run(["/usr/bin/docker", "compose", "version", "--short"]).stdout == "v2.30.0"
        assert runner.run(["docker", "compose", "ps"]).stdout == "compose"
        assert runner.run(["docker", "images"]).stdout == "any docker"
        result = runner.run(["git", "log"], env={"A": "1"}, cwd=tmp_path, timeout=5, input="x")
    assert (result.args, result.returncode, result.stdout) == (["git", "log"], 0, "")  # the default answer
    assert fake.commands() == [
        "docker compose version --short",
        "docker compose ps",
        "docker images",
        "git log",
    ]
    assert fake.calls[0].argv == ("/usr/bin/docker", "compose", "version", "--short")
    last = fake.calls[-1]
    assert (last.env, last.cwd, last.timeout, last.input) == ({"A": "1"}, tmp_path, 5, "x")


def test_a_fake_answer_may_be_a_function_of_the_call() -> None:
    fake = runner.FakeRunner(default=runner.Completed([], 9, "", "unscripted"))
    fake.answers[("docker", "inspect")] = lambda call: runner.Completed([], 0, call.argv[-1].upper(), "")
    with runner.use(fake):
        assert runner.run(["docker", "inspect", "abc"]).stdout == "ABC"
        with pytest.raises(OpsError, match=r"^docker run failed: unscripted$"):
            runner.run(["docker", "run", "x"])


def test_arguments_are_made_strings(tmp_path: Path) -> None:
    fake = runner.FakeRunner()
    with runner.use(fake):
        runner.run(["docker", "logs", "--tail", 40, tmp_path])
    assert fake.calls[0].argv == ("docker", "logs", "--tail", "40", str(tmp_path))


def test_use_puts_the_previous_runner_back_even_after_an_error() -> None:
    outer, inner = runner.FakeRunner(), runner.FakeRunner()
    with runner.use(outer):
        with pytest.raises(RuntimeError), runner.use(inner):
            runner.run(["inner"])
            raise RuntimeError
        runner.run(["outer"])
    assert inner.commands() == ["inner"] and outer.commands() == ["outer"]
    assert runner.run(_python("print('real')")).stdout == "real\n"  # the real runner again


def test_a_fake_timeout_is_reported_like_a_real_one() -> None:
    def hang(call: runner.Call) -> runner.Completed[str]:
        raise subprocess.TimeoutExpired(list(call.argv), call.timeout or 0)

    fake = runner.FakeRunner(answers={("docker", "buildx"): hang})
    with runner.use(fake), pytest.raises(OpsError, match=r"^docker buildx timed out after 20 s$"):
        runner.run(["docker", "buildx", "version"], check=False, timeout=20)


def test_a_fake_answers_bytes_where_the_real_runner_would() -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "exec", stdout="secret-out", stderr="")
    with runner.use(fake):
        result = runner.run(["docker", "exec", "-i", "db", "cat"], input=b"secret-in")
    assert result.stdout == b"secret-out"


# --- start and failed -------------------------------------------------------------------


def test_start_runs_beside_us_with_text_output() -> None:
    with runner.start(_python("import sys; print('out'); sys.stderr.write('err'); sys.exit(4)")) as process:
        out, err = process.communicate(timeout=10)
    assert (process.returncode, out, err) == (4, "out\n", "err")


def test_start_with_bytes_output_and_env(tmp_path: Path) -> None:
    code = "import os, sys; sys.stdout.buffer.write(os.environ['ABOT_X'].encode() + b'\\x00' + os.getcwd().encode())"
    with runner.start(_python(code), text=False, env={"ABOT_X": "y"}, cwd=tmp_path) as process:
        out = process.stdout.read()
        assert process.wait(timeout=10) == 0
    assert out == b"y\x00" + str(tmp_path).encode()


def test_start_of_a_missing_program_is_an_ops_error() -> None:
    with pytest.raises(OpsError, match=r"^abot-no-such-program-4711 is not installed$"):
        runner.start(["abot-no-such-program-4711"])


def test_a_fake_start_is_a_process_that_has_already_exited() -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "compose", stdout="created", stderr="warn", returncode=1)
    fake.answers[("mmdebstrap",)] = lambda call: runner.Completed([], 0, b"tar bytes", None)
    with runner.use(fake):
        with runner.start(["docker", "compose", "up"], env={"K": "v"}) as up:
            assert (up.poll(), up.wait(timeout=1), up.returncode) == (1, 1, 1)
            assert (up.stdout.read(), up.stderr.read()) == ("created", "warn")
        debstrap = runner.start(["mmdebstrap", "bookworm"], text=False)
    assert (debstrap.stdout.read(), debstrap.stderr.read()) == (b"tar bytes", b"")
    assert fake.commands() == ["docker compose up", "mmdebstrap bookworm"]
    assert fake.calls[0].env == {"K": "v"}


def test_failed_names_the_command_its_exit_code_and_first_line() -> None:
    error = runner.failed(["mmdebstrap", "--variant=minbase", "bookworm"], 2, b"\nE: no mirror\nmore\n")
    assert type(error) is OpsError
    assert str(error) == "mmdebstrap --variant=minbase failed (exit code 2): E: no mirror"
    assert str(runner.failed(["x"], 1, None, what="import")) == "import failed (exit code 1): (no output)"


def test_failed_of_a_docker_without_daemon_is_docker_unavailable() -> None:
    error = runner.failed(["/usr/bin/docker", "import", "-"], 1, NO_DAEMON)
    assert isinstance(error, DockerUnavailable) and error.code == EXIT_NO_DOCKER
    assert "unix:///nonexistent/docker.sock" in str(error)
