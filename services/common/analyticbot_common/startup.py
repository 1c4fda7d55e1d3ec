"""Startup helpers: waiting for a dependency with a deadline, and the one exception that aborts startup.

A service that cannot start must exit (a restart policy acts on exit only) with one line saying why.
`StartupAborted` carries that line; the lifespan logs it, and `logs.configure_logging` drops the traceback
that the ASGI server would print after it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .scrub import SCRUBBER, Scrubber

T = TypeVar("T")


class StartupAborted(Exception):
    """Startup cannot complete; str(exc) is the single line the operator needs."""


async def retry_until(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float,
    log: logging.Logger,
    first_delay: float = 0.5,
    max_delay: float = 5.0,
    scrubber: Scrubber = SCRUBBER,
) -> T:
    """Call `action` until it succeeds or `timeout` seconds have passed; then raise StartupAborted."""
    deadline = time.monotonic() + timeout
    delay = first_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            return await action()
        except Exception as exc:
            reason = scrubber.error_text(f"{type(exc).__name__}: {exc}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartupAborted(f"{what} unreachable after {timeout:g} s ({attempt} attempts): {reason}") from None
            log.info("waiting for %s (attempt %d): %s", what, attempt, reason)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, max_delay)
