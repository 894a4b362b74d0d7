"""A conformance suite for connected pairs of :class:`~aiosock.Connection`.

Give it a *pair maker*: a callable that takes a codec and returns an async
context manager yielding two connected connections ``(a, b)``, and it
holds them to the contract every aiosock stream keeps, whatever carries
it (TCP, Unix, a socketpair, memory)::

    @pytest.mark.parametrize("check", STREAM_CHECKS, ids=lambda c: c.__name__)
    async def test_my_transport(check):
        await check(my_pair_maker)

Each check makes its own pairs, bounds its own time (``CHECK_TIMEOUT``)
and the turns of the loop it waits for what a broken pair would never
deliver (a message, an EOF, a wake-up), and raises ``AssertionError`` with
a message when the contract is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

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
    "check_a_woken_receiver_cancelled_passes_the_message_on",
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

T = TypeVar("T")
Pair = tuple[Connection, Connection]
PairMaker = Callable[[Codec], AbstractAsyncContextManager[Pair]]

# Seconds any one check may take: generous for a loaded 2-core machine.
CHECK_TIMEOUT = 30.0
# Yields to the loop while waiting for something that needs no time, only
# turns of the loop (a buffer filling up, bytes on loopback or in memory
# arriving): a bound, not a clock. Every turn polls the sockets, and what
# was sent on loopback is already in the peer's buffer, so a few turns
# suffice; 100,000 take a fraction of a second.
_MAX_TURNS = 100_000
FRAMED = LengthPrefixed()


async def check_messages_both_ways(make_pair: PairMaker) -> None:
    """Messages keep their boundaries and order in both directions, empty ones too."""
    messages = [b"", b"x", b"hello world", bytes(range(256)) * 300, b""]
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        for sender, receiver in ((a, b), (b, a)):
            for message in messages:
                await sender.send(message)
            received = [
                await _soon(receiver.receive(), f"message {i} never arrived")
                for i in range(len(messages))
            ]
            assert received == messages, (
                f"messages changed on the way: sent sizes {list(map(len, messages))}, "
                f"received {list(map(len, received))}"
            )


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
        question = await _soon(b.receive(), "the message before EOF never arrived")
        assert question == b"question", f"the peer got {question!r}"
        for _ in range(2):  # EndOfStream again and again, not once
            await _expect(EndOfStream, b.receive(), "receive() after the peer's EOF")
        await b.send(b"answer")
        answer = await _soon(a.receive(), "the half-closed side got no answer")
        assert answer == b"answer", "the half-closed side stopped receiving"
        await _expect(ClosedResourceError, a.send(b"late"), "send() after send_eof()")


async def check_closing_wakes_a_blocked_peer(make_pair: PairMaker) -> None:
    """A receive blocked on either side ends when either side closes."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        blocked = asyncio.create_task(b.receive())
        await turns_until(lambda: False, 10)  # let it block
        await a.aclose()
        ended = (EndOfStream, BrokenResourceError)
        await _expect(ended, blocked, "a receive() blocked when the peer closed")
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        blocked = asyncio.create_task(a.receive())
        await turns_until(lambda: False, 10)
        await a.aclose()
        await _expect(
            ClosedResourceError, blocked, "a receive() blocked when its side closed"
        )


async def check_use_after_close(make_pair: PairMaker) -> None:
    """send() and receive() after aclose() raise ClosedResourceError."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        await b.send(b"unread")
        await a.aclose()
        await _expect(ClosedResourceError, a.receive(), "receive() after aclose()")
        await _expect(ClosedResourceError, a.send(b"x"), "send() after aclose()")
        await _expect(ClosedResourceError, a.send_eof(), "send_eof() after aclose()")


async def check_concurrent_receives_get_different_messages(
    make_pair: PairMaker,
) -> None:
    """Two tasks receiving at once get one message each, none twice."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        receives = [asyncio.create_task(b.receive()) for _ in range(2)]
        await turns_until(lambda: False, 10)
        await a.send(b"one")
        await a.send(b"two")
        try:
            got = sorted(
                [await _soon(task, "a receive() got nothing") for task in receives]
            )
        finally:
            for task in receives:
                task.cancel()  # after a failure: none is left waiting
        assert got == [b"one", b"two"], f"concurrent receives got {got}"


async def check_a_woken_receiver_cancelled_passes_the_message_on(
    make_pair: PairMaker,
) -> None:
    """A receive() cancelled in the turn its message arrives leaves the
    message to the next receive() waiting, whichever came first.

    A timeout in the receiver's caller does this: the message wakes it, the
    timeout cancels it before it runs, and the message must not then sit in
    the queue while another task waits for it. Loops and transports order
    the callbacks of a turn differently, so the cancellation is scheduled
    three ways to land in the arrival's turn: just before the message is
    sent, just after, and as a timer due at once (as a timeout's is).
    Between them the wake-up comes before the cancellation and after it
    (both on asyncio's loop, whatever the transport).
    """
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(FRAMED) as (a, b):
        await _woken_then_cancelled(b.receive, a.send, "message", 10, _MAX_TURNS)


async def _woken_then_cancelled(
    receive: Callable[[], Coroutine[Any, Any, Any]],
    send: Callable[[bytes], Awaitable[None]],
    what: str,
    quiet_turns: int,
    arrival_turns: int,
    payload: Callable[[Any], bytes] = bytes,
) -> None:
    """Two receivers wait; the first is cancelled in the turn ``what``
    arrives (before the send, after it, as a timer); the second must get
    it. Both kits run this: streams and datagrams keep the same promise."""
    loop = asyncio.get_running_loop()
    for schedule in ("before the send", "after the send", "as a timer"):
        first = asyncio.create_task(receive())
        await turns_until(lambda: False, quiet_turns)  # waiting, then the next
        second = asyncio.create_task(receive())
        await turns_until(lambda: False, quiet_turns)
        try:
            if schedule == "before the send":
                loop.call_soon(first.cancel)
            await send(schedule.encode())
            if schedule == "after the send":
                loop.call_soon(first.cancel)
            elif schedule == "as a timer":
                loop.call_later(0, first.cancel)
            got = payload(
                await _soon(
                    second,
                    f"with the first receive() cancelled {schedule}, "
                    f"the second never got the {what}",
                    arrival_turns,
                )
            )
        finally:
            first.cancel()
            second.cancel()  # after a failure: none is left waiting
        assert got == schedule.encode(), f"the second receive() got {got!r}"
        with contextlib.suppress(asyncio.CancelledError):
            taken = await first
            raise AssertionError(f"a cancelled receive() returned {taken!r}")


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
    byte arrives and the sender goes on.
    """
    message = bytes(64 * 1024)
    limit = 64 * 1024 * 1024  # far beyond any socket buffer: stop a runaway
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair(Raw()) as (a, b):
        high = a.transport.get_write_buffer_limits()[1]
        sent = received = most = 0
        stop = False

        async def flood() -> None:
            nonlocal sent, most
            while not stop and sent < limit:
                sent += len(message)  # counted first: send() writes, then waits
                await a.send(message)
                most = max(most, a.transport.get_write_buffer_size())

        sender = asyncio.create_task(flood())
        try:
            blocked = await turns_until(
                lambda: sender.done() or a.transport.get_write_buffer_size() > high
            )
            if sender.done():
                await sender  # raises what broke it, if anything did
                raise AssertionError(
                    f"send() never waited: {sent} bytes went to a peer "
                    "that does not read"
                )
            assert blocked, "send() never waited for a peer that does not read"
            stop = True
            while received < sent:
                chunk = await _soon(
                    b.receive(), f"only {received} of {sent} bytes arrived"
                )
                received += len(chunk)
            await _soon(sender, "the sender never went on once the peer read")
        finally:
            sender.cancel()  # after a failure: it waits no more
        assert received == sent, f"sent {sent} bytes, {received} arrived"
        assert most <= high + len(message), (
            f"send() returned with {most} bytes buffered, "
            f"above high water ({high}) plus one message"
        )


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


async def _soon(awaitable: Awaitable[T], failure: str, turns: int = _MAX_TURNS) -> T:
    """What ``awaitable`` gives, which must be within ``turns`` turns of the loop.

    For a wait that a broken pair leaves waiting for ever (a message, an
    EOF, a wake-up that never comes): the check fails with ``failure``
    instead of running out of ``CHECK_TIMEOUT``, and cancels the wait.
    """
    waiting = asyncio.ensure_future(awaitable)
    if not await turns_until(waiting.done, turns):
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        raise AssertionError(failure)
    return waiting.result()


async def _expect(
    error: type[BaseException] | tuple[type[BaseException], ...],
    call: Awaitable[object],
    what: str,
) -> None:
    """``call`` raises ``error`` within ``_MAX_TURNS`` turns of the loop."""
    names = " or ".join(
        e.__name__ for e in (error if isinstance(error, tuple) else (error,))
    )
    try:
        result = await _soon(call, f"{what} never returned (nor raised {names})")
    except error:
        return
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{what} raised {exc!r}, not {names}") from exc
    raise AssertionError(f"{what} gave {result!r}, not {names}")


STREAM_CHECKS: list[Callable[[PairMaker], Awaitable[None]]] = [
    check_messages_both_ways,
    check_full_duplex_in_random_chunks,
    check_half_close,
    check_closing_wakes_a_blocked_peer,
    check_use_after_close,
    check_concurrent_receives_get_different_messages,
    check_a_woken_receiver_cancelled_passes_the_message_on,
    check_aclose_is_idempotent_and_safe_under_cancellation,
    check_backpressure_on_a_peer_that_does_not_read,
]
