"""The channel use cases on top of a repository and a summary cache (both injected, both fakeable)."""

from __future__ import annotations

from dataclasses import dataclass

from .cache import SummaryCache
from .repository import Channel, ChannelRepository, Summary


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_ratio(self) -> float | None:
        lookups = self.hits + self.misses
        return round(self.hits / lookups, 4) if lookups else None


class ChannelService:
    def __init__(self, repository: ChannelRepository, cache: SummaryCache) -> None:
        self.repository = repository
        self.cache = cache
        self.stats = CacheStats()

    async def create_channel(self, username: str, title: str | None) -> Channel | None:
        return await self.repository.create_channel(username, title)

    async def list_channels(self, limit: int, offset: int) -> list[Channel]:
        return await self.repository.list_channels(limit, offset)

    async def record_views(self, username: str, post_id: int, views: int) -> int | None:
        stored = await self.repository.record_views(username, post_id, views)
        if stored is not None:
            # After the write, not before: a reader between the two would cache the old figures again.
            await self.cache.invalidate(username)
        return stored

    async def correct_views(self, username: str, post_id: int, views: int) -> int | None:
        stored = await self.repository.correct_views(username, post_id, views)
        if stored is not None:
            await self.cache.invalidate(username)
        return stored

    async def summary(self, username: str) -> tuple[Summary, bool] | None:
        """The channel's summary and whether it came from the cache; None when the channel is unknown."""
        cached = await self.cache.get(username)
        if cached is not None:
            try:
                summary = Summary(**cached)  # type: ignore[arg-type]
            except TypeError:
                summary = None  # an entry of an older shape is a miss
            if summary is not None:
                self.stats.hits += 1
                return summary, True
        self.stats.misses += 1
        summary = await self.repository.summary(username)
        if summary is None:
            return None
        await self.cache.set(username, summary.as_dict())
        return summary, False
