"""The collection loop: subscriber counts of channels, fetched over MTProto with Telethon, into channel_stats.

States, as the health report shows them through the `telegram` dependency:
- disabled: no credentials; the loop never starts and nothing connects to Telegram.
- down: connecting, session not authorized, Telegram unreachable, or the last cycle failed (with the reason);
  retried with exponential backoff.
- up: connected and authorized, and the last cycle did not fail as a whole.
A cycle completes when it did not fail as a whole: at least one channel collected, or none to collect. Only
then do the cycle counter and the last cycle's time move, so a collector that connects but collects nothing
shows as stalled. The session is a StringSession held in memory: nothing is written to the (read-only)
filesystem, and no interactive login is ever attempted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analyticbot_common.health import DependencyDisabled, DependencyDown
from analyticbot_common.scrub import SCRUBBER, Scrubber
from prometheus_client import Counter

from .settings import MtprotoSecrets, MtprotoSettings
from .store import StatsStore

log = logging.getLogger("analyticbot.mtproto.collector")
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 600.0
MAX_FLOOD_WAIT = 3600.0
SCHEMA_RETRY = 10.0


class CollectorError(Exception):
    """A reason to stop this cycle and retry later; str(exc) is shown as the telegram dependency's reason."""


@dataclass(frozen=True)
class CollectorTotals:
    """The collector's running totals: counters on the service's registry, made with the app, not the loop."""

    cycles: Counter
    channel_errors: Counter


class Collector:
    def __init__(
        self,
        settings: MtprotoSettings,
        secrets: MtprotoSecrets,
        store: StatsStore,
        totals: CollectorTotals,
        scrubber: Scrubber = SCRUBBER,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._store = store
        self._totals = totals
        self._scrubber = scrubber
        self._wall_clock = wall_clock
        self._client: Any = None  # telethon.TelegramClient, imported only when credentials exist
        self._task: asyncio.Task[None] | None = None
        self.problem: str | None = "connecting to Telegram"
        self.last_cycle_channels: int | None = None
        # Unix time, not monotonic: an alert compares it with Prometheus's time().
        self.last_cycle_completed: float | None = None

    @property
    def enabled(self) -> bool:
        return self._secrets.telegram is not None

    def start(self) -> None:
        if not self.enabled:
            log.warning("collector disabled: %s", self._secrets.disabled_reason)
            return
        self._task = asyncio.create_task(self._run(), name="collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._disconnect()

    async def probe(self) -> DependencyDisabled | None:
        """The `telegram` health probe: reports the loop's state, without a network call of its own."""
        if not self.enabled:
            return DependencyDisabled(self._secrets.disabled_reason or "disabled")
        if self.problem:
            raise DependencyDown(self.problem)
        return None

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        while True:
            try:
                client = await self._connect()
                if not await self._store.schema_ready():
                    # Not a Telegram problem: the `schema` dependency reports it; check again soon.
                    self.problem = None
                    log.info("waiting for the api's migrations (table channel_stats does not exist yet)")
                    await asyncio.sleep(SCHEMA_RETRY)
                    continue
                await self._cycle(client)
                self.problem, backoff = None, FIRST_BACKOFF
                await asyncio.sleep(self._settings.collect_interval_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.problem = self._reason(exc)
                log.warning("collection failed, retrying in %.0f s: %s", backoff, self.problem)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _reason(self, exc: Exception) -> str:
        text = str(exc) if isinstance(exc, CollectorError) else f"{type(exc).__name__}: {exc}"
        return self._scrubber.error_text(text)

    async def _cycle(self, client: Any) -> None:
        channels = await self._store.channels(self._settings.channel_list)
        collected = 0
        for channel_id, username in channels:
            if await self._collect_one(client, channel_id, username):
                collected += 1
        self.last_cycle_channels = collected
        if channels and not collected:
            raise CollectorError(f"no channel could be collected ({len(channels)} tried)")
        self._totals.cycles.inc()
        self.last_cycle_completed = self._wall_clock()
        log.info("collected %d of %d channels", collected, len(channels))

    async def _collect_one(self, client: Any, channel_id: int, username: str) -> bool:
        from telethon import errors, functions

        try:
            entity = await client.get_entity(username)
            full = await client(functions.channels.GetFullChannelRequest(channel=entity))
            count = full.full_chat.participants_count
            if count is None:
                raise CollectorError("participants count is hidden")
            await self._store.record(channel_id, int(count), getattr(entity, "title", None))
            return True
        except errors.FloodWaitError as exc:
            # Telegram says how long to wait; waiting is the only thing that helps, and the cycle goes on after.
            wait = min(float(exc.seconds), MAX_FLOOD_WAIT)
            log.warning("flood wait of %d s at @%s", exc.seconds, username)
            await asyncio.sleep(wait)
        except (errors.RPCError, ValueError, TypeError, CollectorError) as exc:
            # One channel's problem (unknown username, private channel, not a channel): skip it this cycle.
            self._totals.channel_errors.inc()
            log.warning("@%s skipped: %s", username, self._reason(exc))
        return False

    async def _connect(self) -> Any:
        if self._client is not None and self._client.is_connected():
            return self._client
        await self._disconnect()
        from telethon import TelegramClient
        from telethon.sessions import StringSession

        credentials = self._secrets.telegram
        assert credentials is not None
        timeout = self._settings.telegram_timeout
        client = TelegramClient(
            StringSession(credentials.session),
            credentials.api_id,
            credentials.api_hash,
            timeout=timeout,
            connection_retries=1,
            request_retries=2,
            # Reconnection is this loop's job, with backoff: Telethon's own retries at once, forever, and a
            # peer that accepts and drops connections turns that into a busy loop.
            auto_reconnect=False,
            receive_updates=False,  # a collector issues requests; it needs no update stream
        )
        try:
            async with asyncio.timeout(timeout * 2):
                await client.connect()
                authorized = await client.is_user_authorized()
            if not authorized:
                raise CollectorError("session not authorized: create a new StringSession and replace the secret")
        except TimeoutError:
            await _quietly_disconnect(client)
            raise CollectorError(f"Telegram did not answer within {timeout * 2} s") from None
        except BaseException:
            await _quietly_disconnect(client)
            raise
        self._client = client
        log.info("connected to Telegram")
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_disconnect(client)


async def _quietly_disconnect(client: Any) -> None:
    try:
        await client.disconnect()
    except Exception as exc:  # disconnecting a broken connection may fail; it is gone either way
        log.debug("disconnect: %s", type(exc).__name__)
