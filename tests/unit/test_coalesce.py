"""analyticbot_common.coalesce: a response's writes leave as one, nothing is lost or reordered, and a real
uvicorn server on the protocol answers kept-alive, closed and streamed requests whole."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from analyticbot_common.coalesce import CoalescingHttpToolsProtocol, CoalescingTransport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.extra = {"peername": ("10.0.0.1", 1234)}

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> object:
        return self.extra.get(name)


def run_with(check: Callable[[RecordingTransport, CoalescingTransport], Awaitable[None]]) -> RecordingTransport:
    real = RecordingTransport()

    async def main() -> None:
        await check(real, CoalescingTransport(real, asyncio.get_running_loop()))  # type: ignore[arg-type]

    asyncio.run(main())
    return real


def test_writes_in_one_loop_turn_leave_as_one() -> None:
    async def check(real: RecordingTransport, transport: CoalescingTransport) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b'{"a": 1}')
        assert real.writes == []  # held until the task yields
        await asyncio.sleep(0)
        assert real.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"a": 1}']
        transport.write(b"next")
        await asyncio.sleep(0)

    assert run_with(check).writes == [b'HTTP/1.1 200 OK\r\n\r\n{"a": 1}', b"next"]


def test_close_sends_what_is_held_first_and_nothing_after() -> None:
    async def check(real: RecordingTransport, transport: CoalescingTransport) -> None:
        transport.write(b"head")
        transport.write(b"body")
        transport.close()
        assert real.writes == [b"headbody"] and real.closed
        transport.write(b"late")
        await asyncio.sleep(0)  # the scheduled flush finds the transport closing: dropped, as a closed one would

    assert run_with(check).writes == [b"headbody"]


def test_everything_else_is_the_wrapped_transports() -> None:
    async def check(real: RecordingTransport, transport: CoalescingTransport) -> None:
        assert transport.get_extra_info("peername") == ("10.0.0.1", 1234)
        assert transport.is_closing() is False

    run_with(check)


def test_a_half_close_sends_what_is_held_before_uvloop_may_close_the_transport() -> None:
    """uvloop runs I/O callbacks between a response's writes and the turn that flushes them; a client's FIN
    there (eof_received) may end the transport before that turn. The held bytes leave in eof_received."""
    real = RecordingTransport()

    async def main() -> None:
        protocol = CoalescingHttpToolsProtocol(
            uvicorn.Config(app=_json, log_config=None), uvicorn.server.ServerState(), app_state={}
        )
        protocol.connection_made(real)  # type: ignore[arg-type]
        protocol.transport.write(b"head")
        protocol.transport.write(b"body")
        protocol.eof_received()
        assert real.writes == [b"headbody"]

    asyncio.run(main())


async def _json(request: Request) -> Response:
    return JSONResponse({"path": request.url.path})


async def _stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(3):
            yield f"chunk{index};".encode()
            await asyncio.sleep(0.01)  # each chunk in its own loop turn

    return StreamingResponse(chunks(), media_type="text/plain")


def _exchange(port: int, request: bytes, answers: int) -> bytes:
    """Send `request` on one connection; read until `answers` complete responses (or the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request)
        data = b""
        while data.count(b"HTTP/1.1 ") < answers or not data.endswith((b"}", b"0\r\n\r\n")):
            part = client.recv(65536)
            if not part:
                break
            data += part
        return data


def test_a_real_server_answers_kept_alive_closed_and_streamed_requests_whole() -> None:
    app = Starlette(routes=[Route("/json", _json), Route("/stream", _stream)])

    async def main() -> tuple[bytes, bytes, bytes]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(app, http=CoalescingHttpToolsProtocol, log_config=None, lifespan="off")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            kept_alive = await asyncio.to_thread(_exchange, port, b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * 2, 2)
            # HTTP/1.0 without keep-alive: uvicorn closes the connection right after the body.
            closed = await asyncio.to_thread(_exchange, port, b"GET /json HTTP/1.0\r\nHost: x\r\n\r\n", 1)
            streamed = await asyncio.to_thread(_exchange, port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 1)
        finally:
            server.should_exit = True
            await serving
        return kept_alive, closed, streamed

    kept_alive, closed, streamed = asyncio.run(main())
    assert kept_alive.count(b'{"path":"/json"}') == 2
    assert closed.startswith(b"HTTP/1.1 200 OK") and closed.endswith(b'{"path":"/json"}')
    head, _, body = streamed.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"".join(b"7\r\nchunk%d;\r\n" % index for index in range(3)) + b"0\r\n\r\n"
    assert streamed.endswith(b"0\r\n\r\n")
