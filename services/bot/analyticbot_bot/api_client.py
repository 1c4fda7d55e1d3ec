"""The bot's client of the AnalyticBot API (aiohttp, which aiogram already brings)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp


class ApiUnavailable(Exception):
    """The API could not answer (down, timing out, or answering 5xx)."""


@dataclass(frozen=True)
class ChannelSummary:
    username: str
    title: str | None
    posts: int
    total_views: int
    max_views: int


class ApiClient:
    def __init__(self, base_url: str, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        # The bot's read-scope bearer token; set from the secret once the lifespan has read it.
        self.token: str | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, and reused: one connection pool to the API.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, raise_for_status=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def summary(self, channel: str) -> ChannelSummary | None:
        """The channel's summary, or None when the API does not know the channel."""
        try:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            async with self._client().get(f"{self._base_url}/channels/{channel}/summary", headers=headers) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise ApiUnavailable(f"HTTP {response.status}")
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiUnavailable(type(exc).__name__) from exc
        return ChannelSummary(
            username=body["username"],
            title=body.get("title"),
            posts=int(body["posts"]),
            total_views=int(body["total_views"]),
            max_views=int(body["max_views"]),
        )

    async def live(self, timeout: float = 1.0) -> None:
        """Raise unless GET /health/live answers 200 within `timeout` (the `api` health probe)."""
        url = f"{self._base_url}/health/live"
        async with self._client().get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                raise ApiUnavailable(f"HTTP {response.status}")
