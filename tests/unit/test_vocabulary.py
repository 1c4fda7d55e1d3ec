"""One vocabulary: every `invoke NAME` that the toolkit says (an error, a help text, a docstring) or README.md
shows names a task of the real tree by its namespaced name, with options that task has. The first release's
flat names (`invoke secrets-rotate`) are hidden aliases, named only where the aliases are explained:
cli/legacy.py, and README lines that say "alias" or "Makefile"."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Task
from invoke.parser.context import translate_underscores

import tasks
from analyticbot_ops.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "analyticbot_ops"
README = REPO_ROOT / "README.md"
# Where the old flat names are the subject: the alias table itself, and README lines about aliases or make.
ALIAS_MODULES = {PACKAGE / "cli" / "legacy.py"}
ALIAS_LINE = re.compile(r"alias|Makefile", re.IGNORECASE)
# "read by invoke with python-dotenv": the word after "invoke" that is prose, not a task.
PROSE = {"with"}

# `invoke NAME`, then its options: `--flag`, `--flag VALUE`, `[--flag VALUE]` (values may be placeholders).
MENTION = re.compile(r"\binvoke\s+([A-Za-z][\w.-]*)((?:\s+\[?--[a-z][\w-]*(?:[ =](?!--)[^\s`'\"\],;)]+)?\]?)*)")
FLAG = re.compile(r"--([a-z][\w-]*)")

# The real tree: namespace.task for every task, and the options of each (the old names are not in it).
TREE: dict[str, Task] = {
    f"{namespace}.{name}": task
    for namespace, collection in tasks.ns.collections.items()
    for name, task in collection.tasks.items()
}
OLD_NAMES = set(tasks.ns.legacy_commands)


def options(task: Task) -> set[str]:
    """A task's long options, as its --help names them (`for_` is --for). From its signature: get_arguments()
    would use up the help texts (Invoke pops each as it reads it)."""
    return {translate_underscores(name) for name in task.argspec(task.body).parameters}


def problems(text: str, *, aliases_allowed: bool = False) -> Iterator[str]:
    """What is wrong with each `invoke NAME` in `text`: an old flat name, an unknown task or an unknown option."""
    for mention in MENTION.finditer(text):
        name, flags = mention.group(1), FLAG.findall(mention.group(2))
        said = " ".join(mention.group(0).split())
        if name in PROSE:
            continue
        if name in OLD_NAMES:
            if not aliases_allowed:
                yield f"{said!r}: an old flat name; say `{tasks.ns.legacy_commands[name]}`"
        elif name not in TREE:
            yield f"{said!r}: no task {name!r} (the tasks: `invoke --list`)"
        elif unknown := [f for f in flags if f not in options(TREE[name])]:
            yield f"{said!r}: {name} has no option {', '.join('--' + f for f in unknown)}"


def strings(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal of a module, with its line. An f-string is read whole, its constant parts joined with
    `{}` where a value goes, so that `invoke stack.down --env {env} --volume` is read up to its last option."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            yield node.lineno, node.value


def package_problems() -> Iterator[str]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in strings(path):
            for problem in problems(text, aliases_allowed=path in ALIAS_MODULES):
                yield f"{path.relative_to(REPO_ROOT)}:{line}: {problem}"


def readme_problems(text: str) -> Iterator[str]:
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        # A mention wrapped over two lines ("`invoke" at the end of one) is read with the next line's start.
        following = (
            lines[number].split(maxsplit=1)[0] if line.rstrip().endswith("invoke") and number < len(lines) else ""
        )
        for problem in problems(f"{line} {following}", aliases_allowed=bool(ALIAS_LINE.search(line))):
            yield f"README.md:{number}: {problem}"


def test_the_tree_is_what_the_check_reads() -> None:
    assert {"stack.up", "secrets.rotate", "tls.dev", "images.build", "env.preflight"} <= set(TREE)
    assert not OLD_NAMES & set(TREE) and {"secrets-rotate", "up", "ssl-dev"} <= OLD_NAMES
    assert {"--env", "--volumes"} <= {"--" + o for o in options(TREE["stack.down"])}


def test_every_invoke_in_the_package_names_a_namespaced_task() -> None:
    assert list(package_problems()) == []


def test_every_invoke_in_the_readme_names_a_namespaced_task() -> None:
    assert list(readme_problems(README.read_text())) == []


@pytest.mark.parametrize(
    "text",
    [
        'raise BadInput("the key has expired; run `invoke secrets-rotate` to issue a new one")',
        'help = "Where base images come from (run invoke base-images first)."',
        'raise BadInput(f"start it first (`invoke up --env {env}`)")',
        'raise BadInput(f"start over with `invoke stack.down --env {env} --volume`")',
        '"""Check the certificate (`invoke tls.stats`)."""',
    ],
)
def test_a_flat_name_or_a_wrong_task_in_a_message_is_caught(text: str, tmp_path: Path) -> None:
    module = tmp_path / "message.py"
    module.write_text(text + "\n")
    found = [problem for _, literal in strings(module) for problem in problems(literal)]
    assert len(found) == 1, found


@pytest.mark.parametrize(
    ("line", "caught"),
    [
        ("`invoke secrets-rotate --name jwt_secret_key` swaps the key.", True),
        ("Then `invoke\nup --env prod`.", True),
        ("The flat names still work as aliases: `invoke secrets-rotate` runs `invoke secrets.rotate`.", False),
        ("`make docker-secrets-init` (a Makefile target) runs `invoke secrets-init`.", False),
        ("`invoke stack.up --env prod [--timeout 60]`, then `invoke secrets.rotate --name X`.", False),
        ("The alias is fine, but `invoke stack.up --volumes` is not an option of stack.up.", True),
    ],
)
def test_readme_lines_may_name_old_names_only_where_they_explain_the_aliases(line: str, caught: bool) -> None:
    assert bool(list(readme_problems(line))) is caught
