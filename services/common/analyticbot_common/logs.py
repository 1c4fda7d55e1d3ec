"""Process-wide logging: one stderr handler, one format, secrets scrubbed from every record.

Installed by `serve` before the app is imported, so the app's loggers and third-party ones (uvicorn, aiogram,
asyncpg, telethon) all go through the scrubbing filter."""

from __future__ import annotations

import logging
import sys

from .scrub import SCRUBBER, Scrubber, ScrubFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DropAbortTraceback(logging.Filter):
    """Drop the traceback the ASGI server logs for a StartupAborted: the lifespan already logged its one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("uvicorn") and "StartupAborted" in record.getMessage())


def configure_logging(level: str = "INFO", scrubber: Scrubber = SCRUBBER) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(DropAbortTraceback())
    handler.addFilter(ScrubFilter(scrubber))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")
