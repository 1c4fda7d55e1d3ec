"""README's task table and exit-code table, generated from the task tree and errors.EXIT_CODES.

`scripts/gen-readme` rewrites the parts of README.md between the `<!-- NAME:begin -->` and
`<!-- NAME:end -->` markers; tests/unit/test_tasks.py fails when README and the code disagree."""

from __future__ import annotations

import re
from typing import Any

from analyticbot_ops.errors import EXIT_CODES


def task_table(tree: Any) -> str:
    old: dict[str, list[str]] = {}
    for name, command in tree.legacy_commands.items():
        old.setdefault(command.split()[1], []).append(name)
    rows = ["| task | what it does | old names |", "|---|---|---|"]
    for namespace in sorted(tree.collections):
        collection = tree.collections[namespace]
        for name in sorted(collection.tasks, key=lambda n: (n != collection.default, n)):
            dotted = f"{namespace}.{name}"
            shown = f"`{dotted}`" + (f" (`{namespace}`)" if name == collection.default else "")
            help_line = (collection.tasks[name].__doc__ or "").strip().splitlines()[0]
            names = ", ".join(f"`{n}`" for n in sorted(old.get(dotted, [])))
            rows.append(f"| {shown} | {help_line.replace('|', '/')} | {names} |")
    return "\n".join(rows)


def exit_code_table() -> str:
    rows = ["| code | means |", "|---|---|"]
    rows += [f"| {e.code} {e.name} | {e.meaning} |" for e in EXIT_CODES]
    return "\n".join(rows)


def tables(tree: Any) -> dict[str, str]:
    return {"tasks": task_table(tree), "exit-codes": exit_code_table()}


def render(readme: str, tree: Any) -> str:
    """README with each marked part replaced by its generated table."""
    for name, table in tables(tree).items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- {name}:begin --> ... <!-- {name}:end --> part")
        readme = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), readme)
    return readme
