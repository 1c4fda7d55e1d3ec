"""Make the services' code importable in unit tests, as the image's PYTHONPATH does (/opt/app/src)."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"

for name in ("common", "api", "bot", "mtproto"):
    path = str(SERVICES / name)
    if path not in sys.path:
        sys.path.insert(0, path)
