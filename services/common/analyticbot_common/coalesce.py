"""uvicorn's httptools protocol with a response's writes joined into one send.

uvicorn writes a response's head and its body with one `transport.write` each, and uvloop sends each at once:
two system calls and two TCP segments for every small JSON answer, each of which wakes nginx on the other end
of the Docker bridge. py-spy on an api worker under load (2026-12-07) found about 30 % of its CPU in those
writes. Here the writes a request's task makes before it next yields to the event loop leave as one: the head
and the body of a response (Starlette sends them back to back, with nothing awaited between), or the chunks a
streaming response produces in one go. What is held is sent on the loop's next turn, and before a close."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes wait for the end of the current event-loop turn, then leave as one.

    Everything else (close aside) is the wrapped transport's: flow control, addresses, is_closing."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if not self._held:
            return
        data = b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        # The held bytes first: uvicorn closes a connection right after a response it must not keep alive.
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose requests write through a CoalescingTransport (uvicorn.Config(http=...))."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvicorn reads the addresses and sets up flow control on the real transport (a server's connections
        # are stream transports); the responses write through the wrapper from here on.
        stream = cast(asyncio.Transport, transport)
        super().connection_made(stream)
        # Duck-typed: it has every transport method uvicorn calls (write and close its own, the rest passed on).
        self.transport = cast(asyncio.Transport, CoalescingTransport(stream, self.loop))

    def eof_received(self) -> None:
        # The client half-closed: uvloop may close the transport itself once this returns (uvicorn keeps it
        # no longer), before the turn that would flush. What a response already wrote leaves first.
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()
        super().eof_received()
