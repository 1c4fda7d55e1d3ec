"""promtool and amtool: the Debian packages' checkers, unpacked into .venv/bin by scripts/bootstrap (no daemon
is installed). The rule tests and the configuration checks run them on the host."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import OpsError
from ..paths import REPO_ROOT

TOOLS_DIR = REPO_ROOT / ".venv" / "bin"


def tool(name: str) -> Path:
    """The path of promtool or amtool: .venv/bin first (bootstrap puts them there), then PATH."""
    local = TOOLS_DIR / name
    if local.is_file():
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    raise OpsError(f"{name} is not installed: run scripts/bootstrap (it unpacks it from Debian's package)")
