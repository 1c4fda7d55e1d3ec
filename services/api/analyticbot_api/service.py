"""The channel use cases on top of a repository and a summary cache (both injected, both fakeable)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter

from .cache import SummaryCache
from .repository import Channel, ChannelRepository, Summary


@dataclass
class CacheStats:
    """Summary-cache lookups. `hits` and `misses` are this process's (the hit ratio gauge); the counters, on
    the service's registry when given, are what /metrics adds up across the service's processes."""

    hits: int = 0
    misses: int = 0
    hits_total: Counter | None = None
    misses_total: Counter | None = None

    def hit(self) -> None:
        self.hits += 1
        if self.hits_total is not None:
            self.hits_total.inc()

    def miss(self) -> None:
        self.misses += 1
        if self.misses_total is not None:
            self.misses_total.inc()

    @property
    def hit_ratio(self) -> float | None:
        lookups = self.hits + self.misses
        return round(self.hits / lookups, 4) if lookups else None


class ChannelService:
    def __init__(self, repository: ChannelRepository, cache: SummaryCache, stats: CacheStats | None = None) -> None:
        self.repository = repository
        self.cache = cache
        self.stats = stats if stats is not None else CacheStats()

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
                summary = Summary(**cached)  # type: ignore[arg-type]  # unchecked JSON: a wrong shape raises TypeError
            except TypeError:
                summary = None  # an entry of an older shape is a miss
            if summary is not None:
                self.stats.hit()
                return summary, True
        self.stats.miss()
        summary = await self.repository.summary(username)
        if summary is None:
            return None
        await self.cache.set(username, summary.as_dict())
        return summary, False
