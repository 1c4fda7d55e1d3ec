"""The api's copies of summaries in the process (cache.LocalCopies, TrackedSummaryCache) and the RESP3 tracking
connection that drops them (tracking.py): a copy never outlives Redis's word that its key changed, none is
kept while nothing tracks, and the reader takes Redis's frames whole, split or batched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from analyticbot_api.cache import LocalCopies, TrackedSummaryCache
from analyticbot_api.tracking import (
    Incomplete,
    InvalidationTracker,
    Push,
    RedisAddress,
    RedisReplyError,
    TrackingProtocol,
    encode,
    parse,
)

SUMMARY = {"username": "a", "posts": 1, "total_views": 5}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeRedisCache:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, object]] = {}
        self.gets = 0
        self.during_get: list[Callable[[], None]] = []
        self.during_invalidate: list[Callable[[], None]] = []

    async def get(self, username: str) -> dict[str, object] | None:
        self.gets += 1
        for action in self.during_get:
            action()
        return self.values.get(username)

    async def set(self, username: str, summary: dict[str, object]) -> None:
        self.values[username] = summary

    async def invalidate(self, username: str) -> None:
        for action in self.during_invalidate:
            action()
        self.values.pop(username, None)


def tracked(clock: Clock | None = None) -> tuple[TrackedSummaryCache, FakeRedisCache]:
    copies = LocalCopies(seconds=5.0, clock=clock or Clock())
    copies.set_tracking(True)
    redis = FakeRedisCache()
    return TrackedSummaryCache(redis, copies), redis


def test_a_summary_read_twice_is_fetched_once_while_tracked() -> None:
    cache, redis = tracked()
    redis.values["a"] = SUMMARY
    assert asyncio.run(cache.get("a")) == SUMMARY
    assert asyncio.run(cache.get("a")) == SUMMARY
    assert redis.gets == 1


def test_an_invalidation_drops_the_copy_and_the_next_read_goes_to_redis() -> None:
    cache, redis = tracked()
    redis.values["a"] = SUMMARY
    asyncio.run(cache.get("a"))
    redis.values["a"] = {**SUMMARY, "total_views": 6}
    cache.copies.drop(["summary:a"])
    assert asyncio.run(cache.get("a")) == {**SUMMARY, "total_views": 6}
    assert redis.gets == 2


def test_a_flush_drops_every_copy() -> None:
    cache, redis = tracked()
    redis.values.update(a=SUMMARY, b=SUMMARY)
    asyncio.run(cache.get("a"))
    asyncio.run(cache.get("b"))
    cache.copies.drop(None)
    assert len(cache.copies) == 0


def test_nothing_is_kept_while_untracked_and_losing_tracking_drops_all() -> None:
    cache, redis = tracked()
    redis.values["a"] = SUMMARY
    asyncio.run(cache.get("a"))
    cache.copies.set_tracking(False)
    assert len(cache.copies) == 0
    asyncio.run(cache.get("a"))
    asyncio.run(cache.get("a"))
    assert redis.gets == 3 and len(cache.copies) == 0


def test_a_change_that_raced_the_read_is_not_papered_over() -> None:
    """Redis said the key changed while this process's GET was on its way: what the GET brought may be the old
    value, so it is served once but not kept."""
    cache, redis = tracked()
    redis.values["a"] = SUMMARY
    redis.during_get.append(lambda: cache.copies.drop(["summary:a"]))
    asyncio.run(cache.get("a"))
    assert len(cache.copies) == 0


def test_a_copy_lives_at_most_its_seconds() -> None:
    clock = Clock()
    cache, redis = tracked(clock)
    redis.values["a"] = SUMMARY
    asyncio.run(cache.get("a"))
    clock.now += 5.0
    asyncio.run(cache.get("a"))
    assert redis.gets == 2


def test_copies_are_bounded_expired_ones_going_first_then_the_oldest() -> None:
    clock = Clock()
    copies = LocalCopies(seconds=5.0, clock=clock, limit=2)
    copies.set_tracking(True)
    copies.offer("old", SUMMARY, copies.generation)
    clock.now += 5.0
    copies.offer("b", SUMMARY, copies.generation)
    copies.offer("c", SUMMARY, copies.generation)  # "old" had expired: it makes room
    assert (copies.get("b"), copies.get("c")) == (SUMMARY, SUMMARY) and len(copies) == 2
    copies.offer("d", SUMMARY, copies.generation)  # none expired: the oldest, "b", goes
    assert copies.get("b") is None and copies.get("c") == SUMMARY and copies.get("d") == SUMMARY


def test_this_process_s_own_write_drops_its_copy_before_redis_does() -> None:
    cache, redis = tracked()
    redis.values["a"] = SUMMARY
    asyncio.run(cache.get("a"))
    asyncio.run(cache.invalidate("a"))
    assert len(cache.copies) == 0 and "a" not in redis.values


def test_a_read_that_fetched_the_old_value_during_this_process_s_write_keeps_no_copy() -> None:
    """Another task's GET ran before the DEL and took its copy while the DEL was on its way; Redis's message
    about the DEL may come after its reply. The writer's next read must not be answered from that copy."""
    cache, redis = tracked()
    redis.values["a"] = SUMMARY
    redis.during_invalidate.append(lambda: cache.copies.offer("a", SUMMARY, cache.copies.generation))
    asyncio.run(cache.invalidate("a"))
    assert len(cache.copies) == 0


def test_offering_a_copy_again_replaces_it_and_evicts_nothing_else() -> None:
    clock = Clock()
    copies = LocalCopies(seconds=5.0, clock=clock, limit=2)
    copies.set_tracking(True)
    copies.offer("a", SUMMARY, copies.generation)
    copies.offer("b", SUMMARY, copies.generation)
    clock.now += 1
    copies.offer("b", {**SUMMARY, "posts": 2}, copies.generation)  # the newest again: "a" stays
    assert copies.get("a") == SUMMARY and copies.get("b") == {**SUMMARY, "posts": 2}
    clock.now += 4.5  # a's five seconds are up, b's (renewed) are not
    assert copies.get("a") is None and copies.get("b") is not None


def test_other_keys_in_an_invalidation_are_ignored() -> None:
    cache, redis = tracked()
    redis.values["a"] = SUMMARY
    asyncio.run(cache.get("a"))
    cache.copies.drop(["health:api:x", "summary:b"])
    assert len(cache.copies) == 1


# --- the RESP3 reader ---


@pytest.mark.parametrize(
    ("frame", "value"),
    [
        (b"+OK\r\n", "OK"),
        (b":42\r\n", 42),
        (b"_\r\n", None),
        (b"#t\r\n", True),
        (b"$5\r\nhello\r\n", "hello"),
        (b"$-1\r\n", None),
        (b"=8\r\ntxt:abcd\r\n", "abcd"),
        (b"*2\r\n$1\r\na\r\n:1\r\n", ["a", 1]),
        (b"%1\r\n+proto\r\n:3\r\n", {"proto": 3}),
        (b"|1\r\n+ttl\r\n:3\r\n+OK\r\n", "OK"),  # an attribute is skipped
        (b">2\r\n$10\r\ninvalidate\r\n*1\r\n$9\r\nsummary:a\r\n", Push("invalidate", [["summary:a"]])),
        (b">2\r\n$10\r\ninvalidate\r\n_\r\n", Push("invalidate", [None])),
    ],
)
def test_parse_reads_each_frame_kind(frame: bytes, value: object) -> None:
    assert parse(frame) == (value, len(frame))


def test_an_error_reply_comes_back_as_a_value() -> None:
    error, _ = parse(b"-NOPERM no permissions\r\n")
    assert isinstance(error, RedisReplyError) and str(error) == "NOPERM no permissions"


@pytest.mark.parametrize("frame", [b"", b"+OK", b"$5\r\nhel", b"*2\r\n:1\r\n", b">2\r\n$10\r\ninvalidate\r\n"])
def test_a_frame_cut_short_is_incomplete(frame: bytes) -> None:
    with pytest.raises(Incomplete):
        parse(frame)


def test_encode_is_an_array_of_bulk_strings() -> None:
    assert encode("CLIENT", "TRACKING", "ON") == b"*3\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def test_the_protocol_answers_commands_in_order_and_drops_keys_at_once_from_split_frames() -> None:
    seen: list[list[str] | None] = []

    async def main() -> tuple[object, object]:
        protocol = TrackingProtocol(seen.append)
        protocol.connection_made(FakeTransport())  # type: ignore[arg-type]
        first = asyncio.ensure_future(protocol.command("PING"))
        second = asyncio.ensure_future(protocol.command("PING"))
        await asyncio.sleep(0)
        push = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$9\r\nsummary:a\r\n$9\r\nsummary:b\r\n"
        stream = b"+PONG\r\n" + push + b":7\r\n" + b">2\r\n$10\r\ninvalidate\r\n_\r\n"
        for index in range(0, len(stream), 5):  # five bytes at a time: every frame arrives in pieces
            protocol.data_received(stream[index : index + 5])
        return await first, await second

    assert asyncio.run(main()) == ("PONG", 7)
    assert seen == [["summary:a", "summary:b"], None]


def test_a_lost_connection_stops_tracking_in_the_callback_itself() -> None:
    """Not a loop turn later in the tracker's task: a request in between could be served a copy that an
    undelivered message would have dropped."""
    lost: list[str] = []

    async def main() -> None:
        protocol = TrackingProtocol(lambda keys: None, on_lost=lambda: lost.append("lost"))
        protocol.connection_made(FakeTransport())  # type: ignore[arg-type]
        protocol.connection_lost(None)
        assert lost == ["lost"]

    asyncio.run(main())


def test_a_lost_connection_fails_the_commands_waiting_for_replies() -> None:
    async def main() -> None:
        protocol = TrackingProtocol(lambda keys: None)
        protocol.connection_made(FakeTransport())  # type: ignore[arg-type]
        waiting = asyncio.ensure_future(protocol.command("PING"))
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        with pytest.raises(ConnectionError):
            await waiting
        assert protocol.lost.done()

    asyncio.run(main())


def test_the_tracker_tracks_then_reconnects_after_a_loss_and_says_why_redis_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Against a stand-in Redis: the first connection is accepted, tracks, gets an invalidation and is closed;
    the second is refused (NOPERM). The tracker tracks once, stops tracking at the loss, and logs each reason."""
    states: list[bool] = []
    seen: list[list[str] | None] = []
    commands: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await reader.readuntil(b"SETNAME\r\n")
        commands.append(hello)
        if len(commands) > 1:
            writer.write(b"-NOPERM User analyticbot has no permissions to run the 'client|tracking' command\r\n")
            await writer.drain()
            writer.close()
            return
        await reader.readuntil(b"\r\n")  # the client name's length line
        await reader.readuntil(b"\r\n")  # and the name
        writer.write(b"%1\r\n+proto\r\n:3\r\n")
        commands.append(await reader.readuntil(b"summary:\r\n"))
        writer.write(b"+OK\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$9\r\nsummary:a\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        address = RedisAddress("127.0.0.1", port, "analyticbot", "pw", 1.0)
        tracker = InvalidationTracker(address, seen.append, states.append, retry_seconds=0.05)
        task = asyncio.create_task(tracker.run())
        for _ in range(100):
            if len(commands) >= 3:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        task.cancel()
        server.close()

    with caplog.at_level("INFO", logger="analyticbot.api.tracking"):
        asyncio.run(main())
    # The HELLO command up to SETNAME (its name follows): RESP3, and the api's user and password.
    hello = encode("HELLO", "3", "AUTH", "analyticbot", "pw", "SETNAME", "x")
    assert commands[0] == hello[: -len(b"$1\r\nx\r\n")]
    assert commands[1] == encode("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "summary:")
    assert states[:2] == [True, False] and True not in states[2:]
    assert seen == [["summary:a"]]
    messages = [record.getMessage() for record in caplog.records]
    assert any("the connection closed" in m for m in messages)
    assert sum("NOPERM" in m for m in messages) == 1  # said once, not at every retry


def test_a_tracking_connection_that_stops_answering_is_given_up() -> None:
    """A stand-in Redis that tracks, then answers nothing (as a paused server or a partition): the PING the
    tracker sends after ping_seconds times out, and it stops tracking (its copies go) instead of waiting."""
    states: list[bool] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"SETNAME\r\n")
        await reader.readuntil(b"\r\n")
        await reader.readuntil(b"\r\n")
        writer.write(b"%1\r\n+proto\r\n:3\r\n")
        await reader.readuntil(b"summary:\r\n")
        writer.write(b"+OK\r\n")
        await writer.drain()
        await asyncio.sleep(5)  # silent from here on

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        address = RedisAddress("127.0.0.1", server.sockets[0].getsockname()[1], None, None, 0.2)
        tracker = InvalidationTracker(address, lambda keys: None, states.append, retry_seconds=60, ping_seconds=0.1)
        task = asyncio.create_task(tracker.run())
        for _ in range(50):
            if states[-1:] == [False]:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        server.close()

    asyncio.run(main())
    assert states[0] is True and states[1:] and True not in states[1:]  # False from the loss and the cleanup
