"""The task surface: every task documented, every option helped, the Makefile in step."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import tasks
from analyticbot_ops.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from makefile import render

# Every name the parser takes: the namespaced tasks and the old flat names.
TASKS = sorted(tasks.ns.task_names)
OLD_NAMES = sorted(tasks.ns.legacy_commands)


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


def test_every_old_name_has_a_target_and_every_target_is_an_old_name() -> None:
    assert _makefile_targets() == set(OLD_NAMES)
    # The 44 flat tasks from before the namespaces, every one kept, and the swarm-* names the Swarm issue gave.
    assert len(OLD_NAMES) == 51 and sum(n.startswith("swarm-") for n in OLD_NAMES) == 7


@pytest.mark.parametrize("name", OLD_NAMES)
def test_every_old_name_resolves_to_its_namespaced_task(name: str) -> None:
    task = tasks.ns.legacy_task(name)
    target = tasks.ns.legacy_commands[name].split()[1]
    assert (name in tasks.ns.task_names or name in tasks.ns.collections) and task.__doc__
    assert target in tasks.ns.task_names


def test_namespaces_each_have_a_default_task() -> None:
    namespaces = {
        "stack",
        "images",
        "secrets",
        "tls",
        "health",
        "monitoring",
        "schedule",
        "env",
        "audit",
        "swarm",
        "k8s",
    }
    assert set(tasks.ns.collections) == namespaces
    assert all(collection.default for collection in tasks.ns.collections.values())


def test_an_old_name_with_presets_runs_the_new_task_with_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyticbot_ops.cli import health as health_cli

    seen = {}
    tree = type(tasks.ns)(health_cli.ns, legacy=health_cli.LEGACY)
    monkeypatch.setattr(health_cli.check, "body", lambda c, **kw: seen.update(kw))
    tree.legacy_task("health-check-api").body(None, env="prod")
    assert seen == {"env": "prod", "service": ["api"]}
    # The preset option is not offered under the old name; the others are.
    assert {a.name for a in tree.legacy_task("health-check-api").get_arguments()} == {"env", "json", "verbose"}


def test_legacy_docker_prefix_reaches_the_same_task() -> None:
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "docker-secrets-init", "FORCE=1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert "invoke secrets-init" in dry.stdout and "--force" in dry.stdout


def test_make_help_lists_every_old_name_with_its_command() -> None:
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    for name in OLD_NAMES:
        assert re.search(rf"^  {re.escape(name)} +{re.escape(tasks.ns.legacy_commands[name])}$", shown.stdout, re.M)
    assert "stack.up (stack)" in shown.stdout


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


def test_readme_task_and_exit_code_tables_match_the_code() -> None:
    from readme_tables import render as render_readme

    readme = (REPO_ROOT / "README.md").read_text()
    assert render_readme(readme, tasks.ns) == readme, "run scripts/gen-readme"


def test_exit_codes_are_distinct_and_no_task_writes_one_by_hand() -> None:
    from analyticbot_ops.errors import EXIT_CODES

    codes = [e.code for e in EXIT_CODES]
    assert len(set(codes)) == len(codes) and {0, 1, 2, 3, 4, 5, 130} == set(codes)
    # Tasks raise the error classes of errors.py; only the task decorator turns them into Invoke's Exit.
    package = REPO_ROOT / "analyticbot_ops"
    by_hand = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in package.rglob("*.py")
        if path.name not in ("_task.py", "legacy.py", "errors.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bExit\(|code=\d", line)
    ]
    assert by_hand == []
