"""Redis's word that a cached summary changed: one connection per process in RESP3 client tracking.

`CLIENT TRACKING ON BCAST PREFIX summary:` makes Redis push an `invalidate` message naming every summary key
that any client changes, deletes, or that expires or is evicted (and a null one for a flush). The process
drops its copies of those keys (cache.LocalCopies) in the I/O callback that reads the message, before any
request task that the same loop turn starts: a write this api made, or another replica, is never answered
from an older copy once Redis has said so.

While the connection is not tracking (connecting, lost, refused) the process keeps no copies at all, so a
lost message can never leave one stale. The parser is a small RESP3 reader written here: redis-py's asyncio
client hands invalidations only to a handler on a private attribute of its connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .cache import LOCAL_COPY_SECONDS, SUMMARY_PREFIX

log = logging.getLogger("analyticbot.api.tracking")
RETRY_SECONDS = 2.0
# How often an idle tracking connection must prove it is alive: as often as a copy may live.
PING_SECONDS = LOCAL_COPY_SECONDS


class Incomplete(Exception):
    """The buffer ends inside a frame: wait for more bytes."""


class RedisReplyError(Exception):
    """An error reply (`-ERR ...`, `-NOPERM ...`)."""


@dataclass(frozen=True)
class Push:
    """An out-of-band message (RESP3 `>`): its kind and the rest."""

    kind: str
    data: list[object]


def _line(buffer: bytes, position: int) -> tuple[bytes, int]:
    end = buffer.find(b"\r\n", position)
    if end < 0:
        raise Incomplete
    return buffer[position:end], end + 2


def parse(buffer: bytes, position: int = 0) -> tuple[object, int]:
    """One RESP3 frame from `buffer` at `position`: (value, position after it); raises Incomplete.

    Strings are decoded (UTF-8, replacement for bad bytes): what this connection reads are key names and the
    handshake's fields. Error replies come back as RedisReplyError values, pushes as Push."""
    if position >= len(buffer):
        raise Incomplete
    kind = buffer[position : position + 1]
    text, position = _line(buffer, position + 1)
    if kind in (b"+", b"(", b","):
        return text.decode("utf-8", "replace"), position
    if kind == b"-":
        return RedisReplyError(text.decode("utf-8", "replace")), position
    if kind == b":":
        return int(text), position
    if kind == b"_":
        return None, position
    if kind == b"#":
        return text == b"t", position
    if kind in (b"$", b"=", b"!"):
        size = int(text)
        if size < 0:
            return None, position
        if len(buffer) < position + size + 2:
            raise Incomplete
        value = buffer[position : position + size].decode("utf-8", "replace")
        if kind == b"=":
            value = value[4:]  # a verbatim string's "txt:" format prefix
        return (RedisReplyError(value) if kind == b"!" else value), position + size + 2
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(text)
        if count < 0:
            return None, position
        items: list[object] = []
        for _ in range(count * (2 if kind in (b"%", b"|") else 1)):
            item, position = parse(buffer, position)
            items.append(item)
        if kind == b">":
            return Push(str(items[0]) if items else "", items[1:]), position
        if kind == b"%":
            return dict(zip(items[::2], items[1::2], strict=True)), position
        if kind == b"|":  # attributes describe the next reply: skip them
            return parse(buffer, position)
        return items, position
    raise ValueError(f"not a RESP3 frame: type byte {kind!r}")


def encode(*words: str) -> bytes:
    """A command as RESP's array of bulk strings."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class TrackingProtocol(asyncio.Protocol):
    """Replies resolve the commands' futures in order; `invalidate` pushes call `on_invalidate` at once, and a
    lost connection calls `on_lost` at once: not a loop turn or two later in a task, while requests could still
    be served copies an undelivered message would have dropped."""

    def __init__(
        self, on_invalidate: Callable[[list[str] | None], None], on_lost: Callable[[], None] = lambda: None
    ) -> None:
        self._on_invalidate = on_invalidate
        self._on_lost = on_lost
        self._buffer = bytearray()
        self._waiting: list[asyncio.Future[object]] = []
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # create_connection makes a stream transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        received = bytes(self._buffer)  # one copy per read, parsed forward: a backlog costs linear time
        position = 0
        try:
            while True:
                value, position = parse(received, position)
                self._dispatch(value)
        except Incomplete:
            pass
        finally:
            del self._buffer[:position]  # what was read whole, dispatched or not: never twice

    def _dispatch(self, value: object) -> None:
        if isinstance(value, Push):
            if value.kind == "invalidate":
                keys = value.data[0] if value.data else None
                self._on_invalidate([str(key) for key in keys] if isinstance(keys, list) else None)
            return
        if self._waiting:
            future = self._waiting.pop(0)
            if not future.done():
                future.set_result(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()
        for future in self._waiting:
            if not future.done():
                future.set_exception(ConnectionError("the tracking connection closed"))
        self._waiting.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    async def command(self, *words: str) -> object:
        assert self.transport is not None
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self.transport.write(encode(*words))
        reply = await future
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    timeout: float
    client_name: str = "analyticbot-api-tracking"


class InvalidationTracker:
    """Keeps one tracking connection up (reconnecting every RETRY_SECONDS) while `run()` runs.

    `on_tracking(True)` once Redis has agreed to track; `on_tracking(False)` when the connection is lost or
    could not be made; `on_invalidate(keys)` for each message (None: every key)."""

    def __init__(
        self,
        address: RedisAddress,
        on_invalidate: Callable[[list[str] | None], None],
        on_tracking: Callable[[bool], None],
        retry_seconds: float = RETRY_SECONDS,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        self.address = address
        self._on_invalidate = on_invalidate
        self._on_tracking = on_tracking
        self._retry = retry_seconds
        self._ping_seconds = ping_seconds
        self._tracked = False

    async def _track_once(self) -> None:
        address = self.address
        loop = asyncio.get_running_loop()
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that meets its result in
        # the same loop turn, and the api's shutdown would wait for this task for ever.
        async with asyncio.timeout(address.timeout):
            transport, protocol = await loop.create_connection(
                lambda: TrackingProtocol(self._on_invalidate, on_lost=lambda: self._on_tracking(False)),
                address.host,
                address.port,
            )
        try:
            hello = ["HELLO", "3"]
            if address.password:
                hello += ["AUTH", address.username or "default", address.password]
            async with asyncio.timeout(address.timeout):
                await protocol.command(*hello, "SETNAME", address.client_name)
                await protocol.command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", SUMMARY_PREFIX)
            self._on_tracking(True)
            self._tracked = True
            log.info("tracking changes to Redis's %s* keys: summaries are kept in this process", SUMMARY_PREFIX)
            # A connection that died without closing (a partition, a paused server) would keep this process
            # taking copies that nobody invalidates: it must answer a PING every ping_seconds.
            while not protocol.lost.done():
                await asyncio.wait([protocol.lost], timeout=self._ping_seconds)
                if not protocol.lost.done():
                    async with asyncio.timeout(address.timeout):
                        await protocol.command("PING")
        finally:
            self._on_tracking(False)
            transport.close()

    async def run(self) -> None:
        """Until cancelled. Each new reason is logged once, not every retry."""
        said = ""
        while True:
            self._tracked = False
            try:
                await self._track_once()
                reason = "the connection closed"
            except RedisReplyError as exc:  # Redis's own words: NOPERM (an ACL without +client|tracking), WRONGPASS
                reason = f"Redis refused it: {exc}"
            except Exception as exc:  # OSError, TimeoutError, a garbled reply: this loop must outlive any of them
                reason = type(exc).__name__
            if self._tracked:
                said = ""  # a loss after tracking worked is news again
            if reason != said:
                log.warning("no Redis tracking connection (%s); summaries are read from Redis each time", reason)
                said = reason
            await asyncio.sleep(self._retry)
