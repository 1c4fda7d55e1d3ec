"""Request and response bodies of the channel endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,64}$"
BIGINT_MAX = 2**63 - 1  # PostgreSQL bigint
# No post has more views than Telegram has had users, by two orders of magnitude: a larger figure is an error,
# and because recorded views only grow, one such report would otherwise stick forever.
VIEWS_MAX = 100_000_000_000
# Telegram usernames are case-insensitive: one spelling is stored, so @Durov and @durov are one channel.
Username = Annotated[str, Field(pattern=USERNAME_PATTERN), AfterValidator(str.lower)]


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    title: str | None = Field(default=None, max_length=256)


class ChannelOut(BaseModel):
    id: int
    username: str
    title: str | None
    created_at: datetime


class ViewsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    post_id: int = Field(ge=1, le=BIGINT_MAX)
    views: int = Field(ge=0, le=VIEWS_MAX)


class CorrectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    views: int = Field(ge=0, le=VIEWS_MAX)


class ViewsOut(BaseModel):
    username: str
    post_id: int
    views: int  # the figure stored, which is never lowered by a smaller report


class SummaryOut(BaseModel):
    username: str
    title: str | None
    posts: int
    total_views: int
    max_views: int
    cached: bool
