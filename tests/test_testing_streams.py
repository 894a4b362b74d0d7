"""The stream conformance suite over every kind of stream socket on both loops,
and that each check can fail."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

import aiosock
from aiosock import Codec, Connection, Limits
from aiosock.aio._waiting import WaitingLine
from aiosock.aio.connection import ConnectionProtocol, protocol_of
from aiosock.core.codecs import Buffer
from aiosock.testing import memory, streams
from aiosock.testing.memory import _MemoryTransport, memory_connection_pair
from aiosock.testing.streams import (
    STREAM_CHECKS,
    Pair,
    PairMaker,
    check_a_woken_receiver_cancelled_passes_the_message_on,
    check_aclose_is_idempotent_and_safe_under_cancellation,
    check_backpressure_on_a_peer_that_does_not_read,
    check_closing_wakes_a_blocked_peer,
    check_concurrent_receives_get_different_messages,
    check_full_duplex_in_random_chunks,
    check_half_close,
    check_messages_both_ways,
    check_use_after_close,
)

Check = Callable[[PairMaker], Awaitable[None]]


def served_pair(address: Callable[[], str]) -> PairMaker:
    """Pairs made by aiosock's own server and client on ``address()``."""

    @asynccontextmanager
    async def make(codec: Codec) -> AsyncIterator[Pair]:
        accepted: asyncio.Queue[Connection] = asyncio.Queue()
        release = asyncio.Event()

        async def handler(connection: Connection) -> None:
            await accepted.put(connection)
            await release.wait()

        server = await aiosock.serve(handler, address(), codec=codec)
        try:
            client = await aiosock.connect(server.addresses[0], codec=codec)
            try:
                yield client, await accepted.get()
            finally:
                await client.aclose()
        finally:
            release.set()
            await server.aclose(grace=5)

    return make


@asynccontextmanager
async def socketpair_pair(codec: Codec) -> AsyncIterator[Pair]:
    """Both ends of socket.socketpair(), adopted through fd:// addresses."""
    left, right = socket.socketpair()
    a = await aiosock.connect(f"fd://{left.detach()}", codec=codec)
    b = await aiosock.connect(f"fd://{right.detach()}", codec=codec)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


def unix_path() -> str:
    # A short directory of its own: sun_path holds 107 bytes at most.
    return f"unix://{tempfile.mkdtemp(prefix='aiosock-')}/s.sock"


PAIRS: dict[str, PairMaker] = {
    "tcp4": served_pair(lambda: "tcp://127.0.0.1:0"),
    "tcp6": served_pair(lambda: "tcp://[::1]:0"),
    "unix": served_pair(unix_path),
    "abstract": served_pair(
        lambda: f"unix:@aiosock-test-{os.getpid()}-{os.urandom(4).hex()}"
    ),
    "socketpair": socketpair_pair,
    "memory": memory_connection_pair,
}


@pytest.mark.parametrize("check", STREAM_CHECKS, ids=lambda check: check.__name__[6:])
@pytest.mark.parametrize("transport", PAIRS)
async def test_stream_conformance(transport: str, check: Check) -> None:
    await check(PAIRS[transport])


def test_every_check_is_listed_once() -> None:
    checks = {
        getattr(streams, name) for name in streams.__all__ if name[:6] == "check_"
    }
    assert checks == set(STREAM_CHECKS)
    assert len(STREAM_CHECKS) == len(checks)


# ---------------------------------------------- each check can fail
#
# Each self-test below breaks the in-memory pair in one small way and
# shows the check it names failing; the unbroken pair passes every check
# (test_stream_conformance[memory-...]).


Fault = type[_MemoryTransport] | type[Connection] | type[ConnectionProtocol]


def broken(
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
    *,
    limits: Limits | None = None,
) -> PairMaker:
    """Memory pairs with ``fault`` in place of the transport, the Connection
    or the protocol behind it."""
    if issubclass(fault, ConnectionProtocol):
        monkeypatch.setattr(Connection, "_protocol_class", fault)
    elif issubclass(fault, Connection):
        monkeypatch.setattr(memory, "Connection", fault)
    else:
        monkeypatch.setattr(memory, "_MemoryTransport", fault)

    def make(codec: Codec) -> AbstractAsyncContextManager[Pair]:
        return memory_connection_pair(codec, limits=limits)

    return make


class Reordering(_MemoryTransport):
    """Puts each write ahead of those still buffered: later messages overtake."""

    def write(self, data: Buffer) -> None:
        super().write(data)
        self._outgoing.rotate(1)  # the newest chunk to the front


async def test_the_suite_sees_messages_reordered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AssertionError, match="messages changed on the way"):
        await check_messages_both_ways(broken(monkeypatch, Reordering))


class Corrupting(_MemoryTransport):
    """Flips one bit of one byte: the first of its third write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.writes = 0

    def write(self, data: Buffer) -> None:
        self.writes += 1
        if self.writes == 3:
            data = bytes([data[0] ^ 1]) + bytes(data[1:])
        super().write(data)


class Dropping(_MemoryTransport):
    """Loses its third write, as a buffer overwritten too early would."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.writes = 0

    def write(self, data: Buffer) -> None:
        self.writes += 1
        if self.writes != 3:
            super().write(data)


@pytest.mark.parametrize("fault", [Corrupting, Dropping], ids=["corrupt", "drop"])
async def test_the_suite_sees_a_byte_corrupted_or_a_chunk_dropped(
    monkeypatch: pytest.MonkeyPatch, fault: type[_MemoryTransport]
) -> None:
    with pytest.raises(AssertionError, match="a -> b corrupted"):
        await check_full_duplex_in_random_chunks(broken(monkeypatch, fault))


class NoEof(_MemoryTransport):
    """write_eof() does nothing: the peer never hears the end."""

    def write_eof(self) -> None:
        pass


async def test_the_suite_sees_an_eof_never_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AssertionError, match="after the peer's EOF never returned"):
        await check_half_close(broken(monkeypatch, NoEof))


class DeafToEof(_MemoryTransport):
    """Never hears its peer's EOF: a receive waits on after the peer closed."""

    def _deliver_eof(self) -> None:
        pass


class Unwaking(ConnectionProtocol[bytes]):
    """Forgets the receivers waiting when the connection is lost."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.receivers = WaitingLine(self._loop)  # a new line: nobody in it
        super().connection_lost(exc)


@pytest.mark.parametrize(
    ("fault", "blocked"),
    [(DeafToEof, "when the peer closed"), (Unwaking, "when its side closed")],
    ids=["peer", "own"],
)
async def test_the_suite_sees_a_close_that_wakes_no_receiver(
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
    blocked: str,
) -> None:
    with pytest.raises(AssertionError, match=f"{blocked} never returned"):
        await check_closing_wakes_a_blocked_peer(broken(monkeypatch, fault))


class Heedless(Connection):
    """send() after aclose() returns quietly instead of raising."""

    async def send(self, message: bytes) -> None:
        if not protocol_of(self).closed:
            await super().send(message)


async def test_the_suite_sees_a_send_after_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AssertionError, match=r"send\(\) after aclose\(\) gave None"):
        await check_use_after_close(broken(monkeypatch, Heedless))


class Peeking(ConnectionProtocol[bytes]):
    """receive() gives the head of the queue and takes it off a turn later."""

    def take(self) -> bytes:
        message = self.queue[0]
        self._loop.call_soon(super().take)
        return message


async def test_the_suite_sees_one_message_given_to_two_receivers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AssertionError, match=r"got \[b'one', b'one'\]"):
        await check_concurrent_receives_get_different_messages(
            broken(monkeypatch, Peeking)
        )


class Unpassing(WaitingLine):
    """Drops the wake-up of a waiter woken, then cancelled before it ran."""

    __slots__ = ()

    def leave(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled() or not waiter.done():
            super().leave(waiter)


class Blind(WaitingLine):
    """Wakes the first waiter even if it was cancelled: nobody then wakes."""

    __slots__ = ()

    def wake_one(self) -> None:
        if self:
            waiter = self.popleft()
            with contextlib.suppress(asyncio.InvalidStateError):  # cancelled
                waiter.set_result(None)


def receivers_in(line: type[WaitingLine]) -> type[ConnectionProtocol[bytes]]:
    """A Connection's protocol whose receivers wait in a ``line``."""

    class Lined(ConnectionProtocol[bytes]):
        def __init__(self, limits: Limits) -> None:
            super().__init__(limits)
            self.receivers = line(self._loop)

    return Lined


@pytest.mark.parametrize("line", [Unpassing, Blind], ids=["woken", "cancelled"])
async def test_the_suite_sees_a_wake_up_lost_with_a_cancelled_receiver(
    monkeypatch: pytest.MonkeyPatch, line: type[WaitingLine]
) -> None:
    with pytest.raises(AssertionError, match="the second never got the message"):
        await check_a_woken_receiver_cancelled_passes_the_message_on(
            broken(monkeypatch, receivers_in(line))
        )


class Lingering(Connection):
    """aclose() gives the last writes a turn first; cancelled then, it never closes."""

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        await super().aclose()


async def test_the_suite_sees_a_cancelled_aclose_that_does_not_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AssertionError, match="left the connection open"):
        await check_aclose_is_idempotent_and_safe_under_cancellation(
            broken(monkeypatch, Lingering)
        )


class Unbounded(_MemoryTransport):
    """Buffers whatever it is given and never pauses writing."""

    def write(self, data: Buffer) -> None:
        self._outgoing.append(bytes(data))
        self._buffered += len(data)
        self._schedule_flush()


async def test_the_suite_sees_a_write_buffer_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The peer is left unread: closing waits close_timeout, then aborts.
    limits = Limits(close_timeout=0.01)
    with pytest.raises(AssertionError, match=r"send\(\) never waited"):
        await check_backpressure_on_a_peer_that_does_not_read(
            broken(monkeypatch, Unbounded, limits=limits)
        )


def test_every_check_has_a_self_test() -> None:
    """A check no self-test shows failing could be passing everything."""
    called = set()
    for name, test in globals().items():
        if name.startswith("test_the_suite_sees_"):
            called.update(test.__code__.co_names)
    missing = [c.__name__ for c in STREAM_CHECKS if c.__name__ not in called]
    assert not missing, f"no self-test shows these checks failing: {missing}"
