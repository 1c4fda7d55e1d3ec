"""The channel endpoints: create and list channels, record and correct post views, read a channel's cached summary.

Reads need a token with the `read` scope, writes one with `write` (see auth.py)."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import TypeAdapter
from starlette.routing import Match, Route
from starlette.types import Scope

from .auth import InvalidToken, Reader, TokenVerifier, Writer
from .models import BIGINT_MAX, USERNAME_PATTERN, ChannelIn, ChannelOut, CorrectionIn, SummaryOut, ViewsIn, ViewsOut
from .service import ChannelService

router = APIRouter(tags=["channels"])
UsernamePath = Annotated[str, Path(pattern=USERNAME_PATTERN)]
PostPath = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


async def channel_service(request: Request) -> ChannelService:
    """The service the lifespan built; absent only while the app is starting or stopping.
    async, as every dependency here: a plain `def` would run in FastAPI's thread pool."""
    service: ChannelService | None = getattr(request.app.state, "channels", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service is starting")
    return service


Service = Annotated[ChannelService, Depends(channel_service)]


@router.post("/channels", status_code=status.HTTP_201_CREATED)
async def create_channel(body: ChannelIn, service: Service, _: Writer) -> ChannelOut:
    channel = await service.create_channel(body.username, body.title)
    if channel is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"channel {body.username} exists already")
    return ChannelOut(**asdict(channel))


@router.get("/channels")
async def list_channels(
    service: Service,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ChannelOut]:
    return [ChannelOut(**asdict(channel)) for channel in await service.list_channels(limit, offset)]


@router.post("/channels/{username}/views", status_code=status.HTTP_201_CREATED)
async def record_views(username: UsernamePath, body: ViewsIn, service: Service, _: Writer) -> ViewsOut:
    username = username.lower()
    stored = await service.record_views(username, body.post_id, body.views)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown channel {username}")
    return ViewsOut(username=username, post_id=body.post_id, views=stored)


@router.put("/channels/{username}/views/{post_id}")
async def correct_views(
    username: UsernamePath, post_id: PostPath, body: CorrectionIn, service: Service, _: Writer
) -> ViewsOut:
    """Set a post's view count to exactly this figure: the way to lower one that was reported too high."""
    username = username.lower()
    stored = await service.correct_views(username, post_id, body.views)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown channel {username}")
    return ViewsOut(username=username, post_id=post_id, views=stored)


SUMMARY_PATH = "/channels/{username}/summary"


@router.get(SUMMARY_PATH)
async def channel_summary(username: UsernamePath, service: Service, _: Reader) -> SummaryOut:
    return await _summary(service, username)


async def _summary(service: ChannelService, username: str) -> SummaryOut:
    username = username.lower()
    found = await service.summary(username)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown channel {username}")
    summary, cached = found
    return SummaryOut(**asdict(summary), cached=cached)


_USERNAME = re.compile(USERNAME_PATTERN)
_SUMMARY_JSON = TypeAdapter(SummaryOut)


class SummaryFastPath(Route):
    """The summary route above for its common request alone, without FastAPI's dependency solving: a token
    the verifier accepts (remembered) with the read scope, a well-formed name, a started service. That
    solving (a parse of the cookies every request pays, three dependencies and the security scheme) was a third
    of the CPU of a cached summary under load (py-spy, 2026-12-07), and the summary's p99 is judged against
    nginx's static page. Any other request does not match here and goes on to the FastAPI route, which answers
    it as before (401, 403, 422, 503). The answers given here, 200, 404 and the store's 503, are that route's
    own bodies and headers; tests/unit/test_api_app.py holds the two equal."""

    def __init__(self) -> None:
        super().__init__(SUMMARY_PATH, self._answer, methods=["GET"], include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.FULL or not self._answerable(scope, child["path_params"]["username"]):
            return Match.NONE, {}
        child["route"] = self  # as FastAPI's routes do: the metrics label requests by the route's template
        return match, child

    @staticmethod
    def _answerable(scope: Scope, username: str) -> bool:
        state: Any = scope["app"].state
        verifier: TokenVerifier | None = getattr(state, "tokens", None)
        if verifier is None or getattr(state, "channels", None) is None or not _USERNAME.fullmatch(username):
            return False
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token:
                    return False
                try:
                    return "read" in verifier.verify(token).scopes
                except InvalidToken:
                    return False
        return False

    @staticmethod
    async def _answer(request: Request) -> Response:
        summary = await _summary(await channel_service(request), request.path_params["username"])
        return Response(_SUMMARY_JSON.dump_json(summary), media_type="application/json")
