"""A conformance suite for connected pairs of :class:`~aiosock.Connection`.

Give it a *pair maker*: a callable that takes a codec and returns an async
context manager yielding two connected connections ``(a, b)``, and it
holds them to the contract every aiosock stream keeps, whatever carries
it (TCP, Unix, a socketpair, memory)::

    @pytest.mark.parametrize("check", STREAM_CHECKS, ids=lambda c: c.__name__)
    async def test_my_transport(check):
        await check(my_pair_maker)

Each check makes its own pairs, bounds its own time (``CHECK_TIMEOUT``)
and raises ``AssertionError`` with a message when the contract is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from aiosock.aio.connection import Connection
from aiosock.core.codecs import Codec, LengthPrefixed, Raw
from aiosock.core.errors import (
    BrokenResourceError,
    ClosedResourceError,
    EndOfStream,
)

__all__ = [
    "CHECK_TIMEOUT",
    "STREAM_CHECKS",
    "Pair",
    "PairMaker",
    "check_aclose_is_idempotent_and_safe_under_cancellation",
    "check_backpressure_on_a_peer_that_does_not_read",
    "check_closing_wakes_a_blocked_peer",
    "check_concurrent_receives_get_different_messages",
    "check_full_duplex_in_random_chunks",
    "check_half_close",
    "check_messages_both_ways",
    "check_use_after_close",
    "turns_until",
]

Pair = tuple[Connection, Connection]
PairMaker = Callable[[Codec], AbstractAsyncContextManager[Pair]]

# Seconds any one check may take: generous for a loaded 2-core machine.
CHECK_TIMEOUT = 30.0
# Yields to the loop while waiting for something that needs no time, only
# turns of the loop (a buffer filling up): a bound, not a clock.
_MAX_TURNS = 100_000
FRAMED = LengthPrefixed()


async def check_messages_both_ways(make_pair: PairMaker) -> None:
    """Messages keep their boundaries and order in both directions, empty ones too."""
    messages = [b"", b"x", b"hello world", bytes(range(256)) * 300, b""]
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        for sender, receiver in ((a, b), (b, a)):
            for message in messages:
                await sender.send(message)
            received = [await receiver.receive() for _ in messages]
            assert received == messages, "messages changed on the way"


async def check_full_duplex_in_random_chunks(make_pair: PairMaker) -> None:
    """1 MiB each way at once, in random chunk sizes, arrives intact."""
    size = 1024 * 1024
    rng = random.Random(2024)
    payloads = (rng.randbytes(size), rng.randbytes(size))

    async def pump(sender: Connection, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 64 * 1024)
            await sender.send(data[pos : pos + step])
            pos += step
        await sender.send_eof()

    async def drain(receiver: Connection) -> bytes:
        return b"".join([chunk async for chunk in receiver])

    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(Raw()) as (a, b):
        async with asyncio.TaskGroup() as group:
            group.create_task(pump(a, payloads[0]))
            group.create_task(pump(b, payloads[1]))
            at_b = group.create_task(drain(b))
            at_a = group.create_task(drain(a))
        assert at_b.result() == payloads[0], "a -> b corrupted"
        assert at_a.result() == payloads[1], "b -> a corrupted"


async def check_half_close(make_pair: PairMaker) -> None:
    """After send_eof the peer reads everything, then EOF, and can still answer."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        await a.send(b"question")
        await a.send_eof()
        await a.send_eof()  # idempotent
        assert await b.receive() == b"question"
        for _ in range(2):  # EndOfStream again and again, not once
            try:
                await b.receive()
            except EndOfStream:
                pass
            else:
                raise AssertionError("no EndOfStream after the peer's send_eof")
        await b.send(b"answer")
        assert await a.receive() == b"answer", "the half-closed side stopped receiving"
        try:
            await a.send(b"late")
        except ClosedResourceError:
            pass
        else:
            raise AssertionError(
                "send after send_eof did not raise ClosedResourceError"
            )


async def check_closing_wakes_a_blocked_peer(make_pair: PairMaker) -> None:
    """A receive blocked on either side ends when either side closes."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        blocked = asyncio.create_task(b.receive())
        await turns_until(lambda: False, 10)  # let it block
        await a.aclose()
        try:
            await blocked
        except (EndOfStream, BrokenResourceError):
            pass
        else:
            raise AssertionError("the peer's receive returned a message after close")
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        blocked = asyncio.create_task(a.receive())
        await turns_until(lambda: False, 10)
        await a.aclose()
        try:
            await blocked
        except ClosedResourceError:
            pass
        else:
            raise AssertionError("closing did not wake its own blocked receive")


async def check_use_after_close(make_pair: PairMaker) -> None:
    """send() and receive() after aclose() raise ClosedResourceError."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        await b.send(b"unread")
        await a.aclose()
        for call in (a.receive, lambda: a.send(b"x"), a.send_eof):
            try:
                await call()
            except ClosedResourceError:
                continue
            raise AssertionError(f"{call} after aclose() did not raise")


async def check_concurrent_receives_get_different_messages(
    make_pair: PairMaker,
) -> None:
    """Two tasks receiving at once get one message each, none twice."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        first = asyncio.create_task(b.receive())
        second = asyncio.create_task(b.receive())
        await turns_until(lambda: False, 10)
        await a.send(b"one")
        await a.send(b"two")
        got = sorted([await first, await second])
        assert got == [b"one", b"two"], f"concurrent receives got {got}"


async def check_aclose_is_idempotent_and_safe_under_cancellation(
    make_pair: PairMaker,
) -> None:
    """aclose() twice is fine; a cancelled aclose() still closes."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        await a.aclose()
        await a.aclose()
        closing = asyncio.create_task(b.aclose())
        await asyncio.sleep(0)  # one turn: aclose() is now waiting
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        try:
            await b.send(b"x")
        except ClosedResourceError:
            pass
        else:
            raise AssertionError("a cancelled aclose() left the connection open")
        await b.aclose()


async def check_backpressure_on_a_peer_that_does_not_read(make_pair: PairMaker) -> None:
    """A sender to a peer that does not read ends up waiting, within bounds.

    Every ``send()`` that returns leaves at most the write high-water mark
    plus one message buffered in the process; once the peer reads, every
    byte arrives.
    """
    message = bytes(64 * 1024)
    limit = 64 * 1024 * 1024  # far beyond any socket buffer: stop a runaway
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(Raw()) as (a, b):
        high = a.transport.get_write_buffer_limits()[1]
        sent = received = 0
        stop = False

        async def flood() -> None:
            nonlocal sent
            while not stop and sent < limit:
                sent += len(message)  # counted first: send() writes, then waits
                await a.send(message)
                buffered = a.transport.get_write_buffer_size()
                assert buffered <= high + len(message), f"{buffered} bytes buffered"

        sender = asyncio.create_task(flood())
        blocked = await turns_until(lambda: a.transport.get_write_buffer_size() > high)
        assert blocked, "send() never waited for a peer that does not read"
        assert not sender.done(), "the sender finished although nobody read"
        stop = True
        while received < sent:
            received += len(await b.receive())
        await sender
        assert received == sent, f"sent {sent} bytes, {received} arrived"


async def turns_until(condition: Callable[[], bool], turns: int = _MAX_TURNS) -> bool:
    """Yield to the loop until ``condition()`` holds, at most ``turns`` times.

    For what needs turns of the loop rather than time (a buffer filling
    up): returns whether the condition came true, never sleeps.
    """
    for _ in range(turns):
        if condition():
            return True
        await asyncio.sleep(0)
    return condition()


STREAM_CHECKS: list[Callable[[PairMaker], Awaitable[None]]] = [
    check_messages_both_ways,
    check_full_duplex_in_random_chunks,
    check_half_close,
    check_closing_wakes_a_blocked_peer,
    check_use_after_close,
    check_concurrent_receives_get_different_messages,
    check_aclose_is_idempotent_and_safe_under_cancellation,
    check_backpressure_on_a_peer_that_does_not_read,
]
