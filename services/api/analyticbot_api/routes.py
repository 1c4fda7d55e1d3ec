"""The channel endpoints: create and list channels, record and correct post views, read a channel's cached summary.

Reads need a token with the `read` scope, writes one with `write` (see auth.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from .auth import Reader, Writer
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


@router.get("/channels/{username}/summary")
async def channel_summary(username: UsernamePath, service: Service, _: Reader) -> SummaryOut:
    username = username.lower()
    found = await service.summary(username)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown channel {username}")
    summary, cached = found
    return SummaryOut(**asdict(summary), cached=cached)
