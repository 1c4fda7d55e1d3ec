"""The one rule for a template's stand-in value (change_me, your_token, xxx, <token>): the services refuse
such a secret outside development, and the toolkit refuses to write one. Standard library only, so that
the toolkit loads this very file (analyticbot_ops/secrets/values.py) instead of keeping a second copy."""

from __future__ import annotations

import re

# Words of six letters or more: a random secret (even a 350-character Telethon session) contains one by chance
# with negligible probability, so a substring match is safe.
_WORDS = ("changeme", "change_me", "change-me", "replace_me", "placeholder", "example", "password", "secret", "your_")
# Shorter ones only count as the whole value (a 43-character random token contains "xxx" about once in a
# thousand), optionally followed by digits ("todo1"); 123456 only as itself, since real API ids are digits.
_WHOLE = re.compile(r"(todo|tbd|fixme|dummy|test|none|null|x{3,}|\*+|<[^>]*>|\.\.\.)\d*|123456", re.IGNORECASE)
# Eight x in a row is how templates blank a key ("sk-xxxxxxxx..."); in a random token it is ~1e-11 likely.
_X_RUN = "x" * 8


def is_placeholder(value: str) -> bool:
    """Whether a value is a template's stand-in rather than a secret."""
    folded = value.strip().lower()
    if any(word in folded for word in _WORDS) or _WHOLE.fullmatch(folded) or _X_RUN in folded:
        return True
    if len(folded) >= 3 and len(set(folded)) == 1:  # "000000", "aaaa"
        return True
    return folded.startswith("<") and folded.endswith(">")
