"""Error-text scrubbing: the one place that keeps secret values out of health reports and logs.

A `Scrubber` knows the secret values its service read from files and a few shapes of secrets it cannot know
(passwords in URLs or `password=` pairs, Telegram bot tokens). `SCRUBBER` is the process-wide instance that
services register their secrets with and that the log filter uses."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

MASK = "***"
MAX_ERROR_CHARS = 200
# Shorter values would mask ordinary words in messages; real secrets are far longer, and settings refuse
# weak values outside development.
MIN_SECRET_CHARS = 4

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host -> keep the user, which helps debugging, drop the password.
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@\s]*@"), rf"\1:{MASK}@"),
    # password=..., passwd: ..., pwd=... in DSNs, URLs' query strings and messages.
    (re.compile(r"(?i)\b(password|passwd|pwd)(\s*[=:]\s*)[^\s&;,'\"]+"), rf"\1\2{MASK}"),
    # Telegram bot tokens, also inside Bot API URLs (https://api.telegram.org/bot<token>/getMe).
    (re.compile(r"\d+:[A-Za-z0-9_-]{35}", re.ASCII), MASK),
)


class Scrubber:
    """Replaces registered secret values and secret-shaped substrings with `***`."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets: set[str] = set()
        for value in secrets or ():
            self.add(value)

    def add(self, value: str | None) -> None:
        """Register a secret value; its URL-encoded form too, as it appears that way in connection strings."""
        if not value or len(value) < MIN_SECRET_CHARS:
            return
        self._secrets.add(value)
        self._secrets.add(quote(value, safe=""))

    def scrub(self, text: str) -> str:
        # Longest first: a secret that contains another must be masked whole.
        for value in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(value, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def error_text(self, text: str, limit: int = MAX_ERROR_CHARS) -> str:
        """Scrub, then truncate: truncating first could cut a secret in two and let half of it through."""
        cleaned = " ".join(self.scrub(text).split())
        return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


SCRUBBER = Scrubber()


class ScrubFilter(logging.Filter):
    """A handler filter that scrubs every record's rendered message (and traceback) before it is written.

    It sits on the handler, not on a logger, so records propagated from third-party loggers (aiogram, asyncpg,
    uvicorn) are scrubbed too."""

    def __init__(self, scrubber: Scrubber = SCRUBBER) -> None:
        super().__init__()
        self._scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self._scrubber.scrub(message), None
        if record.exc_text:
            record.exc_text = self._scrubber.scrub(record.exc_text)
        return True
