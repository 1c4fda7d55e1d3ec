"""Bearer-token authorization: HS256 JSON Web Tokens signed with jwt_secret_key, with an expiry and scopes.

Every channel endpoint needs a token: `read` to list channels and read summaries, `write` to create channels
and record or correct views. No token, or a bad or expired one, is 401; a valid token without the scope is
403. Tokens are minted by `invoke api-token` (analyticbot_ops/tokens.py holds the other half of this
contract: audience, algorithm and the `scope` claim)."""

from __future__ import annotations

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
    def __init__(self, key: str) -> None:
        self._key = key

    def verify(self, token: str) -> Principal:
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
        return Principal(str(claims["sub"]), frozenset(str(claims["scope"]).split()))


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="analyticbot"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


def require(scope: str):
    """A dependency that admits only requests whose bearer token carries `scope`."""

    def dependency(
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
