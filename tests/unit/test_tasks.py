"""The task surface: every task documented, every option helped, the Makefile in step."""

from __future__ import annotations

import re
import subprocess

import pytest

import tasks
from analyticbot_ops.makefile import render
from analyticbot_ops.paths import REPO_ROOT

TASKS = sorted(tasks.ns.task_names)


@pytest.mark.parametrize("name", TASKS)
def test_every_task_has_a_one_line_help_and_help_for_each_option(name: str) -> None:
    task = tasks.ns[name]
    first_line = (task.__doc__ or "").strip().splitlines()[0] if task.__doc__ else ""
    assert len(first_line) > 20, f"{name} needs a docstring whose first line is its --list help"
    undocumented = [argument.name for argument in task.get_arguments() if not argument.help]
    assert undocumented == [], f"{name}: options without help: {undocumented}"


def _makefile_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z][a-z0-9-]*):", text, re.MULTILINE)} - {"help"}


def test_committed_makefile_is_generated_from_the_tasks() -> None:
    assert (REPO_ROOT / "Makefile").read_text() == render(tasks.ns), "run scripts/gen-makefile"


def test_every_task_has_a_target_and_every_target_a_task() -> None:
    assert _makefile_targets() == set(TASKS)


def test_legacy_docker_prefix_reaches_the_same_task() -> None:
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "docker-secrets-init", "FORCE=1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert "invoke secrets-init" in dry.stdout and "--force" in dry.stdout


def test_make_variables_become_options() -> None:
    dry = subprocess.run(
        ["make", "-n", "service-logs", "SERVICE=api", "FOLLOW=1", "ENV=prod"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert '--service "api"' in dry.stdout and "--follow" in dry.stdout and '--env "prod"' in dry.stdout


def test_numeric_options_arrive_as_text_and_a_bad_number_is_one_line() -> None:
    import pytest
    from invoke import Exit

    from analyticbot_ops.cli import stack as stack_cli
    from analyticbot_ops.cli._task import _number

    # Invoke sees text (so it never runs int() itself); the task body gets the number.
    assert next(a for a in stack_cli.up.get_arguments() if a.name == "timeout").kind is str
    assert _number("timeout", float, "1.5") == 1.5 and _number("keep", int, 3) == 3
    for bad in ("abc", "nan", "1e999"):
        with pytest.raises(Exception, match="--timeout must be a"):
            _number("timeout", float, bad)
    with pytest.raises(Exit) as caught:
        stack_cli.restart.body(object(), timeout="soon")
    assert caught.value.code == 2 and "--timeout must be a number, got 'soon'" in str(caught.value.message)
