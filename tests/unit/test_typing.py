"""The `# type: ignore` comments left in the toolkit and the services: each names its error code and says why,
and their number is the one README.md states (so it may only fall, with the README). mypy itself runs in lint."""

from __future__ import annotations

import io
import re
import tokenize

from analyticbot_ops.paths import REPO_ROOT

CHECKED = (REPO_ROOT / "analyticbot_ops", REPO_ROOT / "services")
IGNORE = re.compile(r"#\s*type:\s*ignore\b")
# `# type: ignore[code, code]  # the reason`
EXPLAINED = re.compile(r"#\s*type:\s*ignore\[[a-z-]+(?:,\s*[a-z-]+)*\]\s+#\s*\S.*")
STATED = re.compile(r"(\d+) `# type: ignore` comments\s+remain")


def _ignores() -> list[tuple[str, str]]:
    """Every `# type: ignore` comment (comments only, not strings) as (file:line, comment)."""
    found = []
    for root in CHECKED:
        for path in sorted(root.rglob("*.py")):
            tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
            for token in tokens:
                if token.type == tokenize.COMMENT and IGNORE.search(token.string):
                    found.append((f"{path.relative_to(REPO_ROOT)}:{token.start[0]}", token.string))
    return found


def test_every_ignore_names_its_code_and_a_reason() -> None:
    unexplained = [f"{where}: {comment}" for where, comment in _ignores() if not EXPLAINED.fullmatch(comment)]
    assert unexplained == []


def test_the_number_of_ignores_is_the_one_the_readme_states() -> None:
    stated = STATED.findall((REPO_ROOT / "README.md").read_text())
    assert len(stated) == 1, "README.md states the number of `# type: ignore` comments once"
    assert len(_ignores()) == int(stated[0]), [where for where, _ in _ignores()]
