"""Bearer-token authorization: HS256 JSON Web Tokens signed with jwt_secret_key, with an expiry and scopes.

Every channel endpoint needs a token: `read` to list channels and read summaries, `write` to create channels
and record or correct views. No token, or a bad or expired one, is 401; a valid token without the scope is
403. Tokens are minted by `invoke api-token` (analyticbot_ops/tokens.py holds the other half of this
contract: audience, algorithm and the `scope` claim)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

AUDIENCE = "analyticbot-api"
ALGORITHMS = ["HS256"]
# Clocks of the minting host and the container may differ a little.
LEEWAY_SECONDS = 10
_bearer = HTTPBearer(auto_error=False)


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired or lacks a required claim; the message says which."""


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]


class TokenVerifier:
    """Checks tokens, and remembers the ones it accepted until they expire: a client sends the same token
    with every request, and checking its HMAC and claims again was a tenth of a cached read's cost. The key is
    the whole token, signature included, so only the exact token that was verified is let through; nothing
    about a token but time changes its verdict, and the remembered verdict ends at its expiry."""

    def __init__(self, key: str, *, remember: int = 1024, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._remember = remember
        self._clock = clock
        self._accepted: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        accepted = self._accepted.get(token)
        if accepted is not None:
            principal, expires = accepted
            if self._clock() < expires:
                return principal
            del self._accepted[token]
        principal, expires = self._check(token)
        if len(self._accepted) >= self._remember:
            del self._accepted[next(iter(self._accepted))]  # the oldest: dicts keep insertion order
        self._accepted[token] = (principal, expires)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=ALGORITHMS,
                audience=AUDIENCE,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "scope"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the token is not valid ({type(exc).__name__})") from None
        expires = int(claims["exp"]) + LEEWAY_SECONDS  # as long as jwt.decode would still accept it (int, as it)
        return Principal(str(claims["sub"]), frozenset(str(claims["scope"]).split())), expires


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="analyticbot"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


def require(scope: str) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A dependency that admits only requests whose bearer token carries `scope`."""

    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request that cost more
    # than the whole check (verify() is CPU work of microseconds and never blocks).
    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        verifier: TokenVerifier | None = getattr(request.app.state, "tokens", None)
        if verifier is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service is starting")
        if credentials is None:
            raise _unauthorized("a bearer token is required")
        try:
            principal = verifier.verify(credentials.credentials)
        except InvalidToken as exc:
            raise _unauthorized(str(exc), "invalid_token") from None
        if scope not in principal.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the token lacks the {scope} scope",
                headers={
                    "WWW-Authenticate": f'Bearer realm="analyticbot", error="insufficient_scope", scope="{scope}"'
                },
            )
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
