"""A container healthcheck without curl: `python3 -m analyticbot_common.probe URL`.

Exits 0 when URL answers 2xx within the timeout, 1 otherwise, so Docker's
HEALTHCHECK and compose healthchecks can use it in images that have no shell."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/health/live"
TIMEOUT_SECONDS = 2.0


def probe(url: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else DEFAULT_URL
    return 0 if probe(url) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
