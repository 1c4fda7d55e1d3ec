"""API bearer tokens: HS256 JSON Web Tokens signed with the stack's jwt_secret_key.

The claims are a contract with the API (`services/api/analyticbot_api/auth.py` verifies them): audience
`analyticbot-api`, a space-separated `scope` of `read` and/or `write`, `iat` and `exp`. A unit test mints
here and verifies there, so the two cannot drift apart."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from .errors import BadInput

AUDIENCE = "analyticbot-api"
ISSUER = "analyticbot-ops"
ALGORITHM = "HS256"
SCOPES = ("read", "write")
MAX_TTL = dt.timedelta(days=366)
# The bot's own read token (the api_read_token secret) lives this long; secrets.check warns before it ends.
SERVICE_TOKEN_TTL = dt.timedelta(days=365)
RENEW_WITHIN = dt.timedelta(days=30)
_TTL = re.compile(r"([0-9]+)([smhd]?)", re.ASCII)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> dt.timedelta:
    """`90`, `90s`, `15m`, `1h`, `7d` as a duration; BadInput for anything else, zero, or over a year."""
    match = _TTL.fullmatch(text.strip())
    if not match:
        raise BadInput(f"--ttl must be a number with an optional unit s, m, h or d (like 1h or 7d), got {text!r}")
    ttl = dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if not dt.timedelta(0) < ttl <= MAX_TTL:
        raise BadInput(f"--ttl must be more than 0 and at most 366d, got {text!r}")
    return ttl


def parse_scopes(scopes: Sequence[str] | str) -> tuple[str, ...]:
    """Scopes from `read`, `write`, `read,write` or a list of those; write implies read."""
    names = [s for part in ([scopes] if isinstance(scopes, str) else scopes) for s in re.split(r"[,\s]+", part) if s]
    unknown = [s for s in names if s not in SCOPES]
    if unknown or not names:
        raise BadInput(f"--scope must be read or write, got {', '.join(unknown) or 'nothing'}")
    if "write" in names and "read" not in names:
        names.append("read")  # whoever may write may read what they wrote
    return tuple(s for s in SCOPES if s in names)


@dataclass(frozen=True)
class Token:
    value: str
    subject: str
    scopes: tuple[str, ...]
    expires: dt.datetime


def mint(
    key: str, scopes: Sequence[str], ttl: dt.timedelta, subject: str = "operator", now: dt.datetime | None = None
) -> Token:
    """Sign a token for `subject` with these scopes, valid for `ttl` from `now`."""
    if not subject or len(subject) > 64 or not subject.isprintable():
        raise BadInput("--subject must be 1 to 64 printable characters")
    issued = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    expires = issued + ttl
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return Token(jwt.encode(claims, key, algorithm=ALGORITHM), subject, tuple(scopes), expires)


def service_token(key: str, subject: str) -> str:
    """A read token for one of our own services (the bot), as the api_read_token secret holds it."""
    return mint(key, ("read",), SERVICE_TOKEN_TTL, subject=subject).value


def check_service_token(value: str, key: str, now: dt.datetime | None = None) -> tuple[str, ...]:
    """The problems of a stored service token against the current key, worded without either."""
    try:
        claims = jwt.decode(value, key, algorithms=[ALGORITHM], audience=AUDIENCE, options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        return ("has expired; run `invoke secrets.rotate jwt_secret_key` to issue a new one",)
    except jwt.InvalidTokenError:
        return ("is not signed with the current jwt_secret_key",)
    left = dt.datetime.fromtimestamp(claims["exp"], dt.UTC) - (now or dt.datetime.now(dt.UTC))
    if left < RENEW_WITHIN:
        return (f"expires in {left.days} days; run `invoke secrets.rotate jwt_secret_key` to issue a new one",)
    if "read" not in str(claims.get("scope", "")).split():
        return ("lacks the read scope",)
    return ()
