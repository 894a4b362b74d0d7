"""Connection beyond the conformance suite: bounds, timeouts, broken peers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import cast

import pytest
from test_protocol import FILLER, fill_write_buffer, read_exactly  # a sibling

import aiosock
from aiosock import (
    BrokenResourceError,
    ClosedResourceError,
    Connection,
    EndOfStream,
    FrameTooLarge,
    LengthPrefixed,
    Limits,
)
from aiosock.aio.loops import is_uvloop
from aiosock.testing.streams import turns_until

# What receive() and send() say after aclose() or abort().
CLOSED = r"^the connection was closed$"


async def adopt(sock: socket.socket, **options: object) -> Connection:
    return await aiosock.connect(f"fd://{sock.detach()}", **options)  # type: ignore[arg-type]


async def test_reading_pauses_for_a_reader_that_is_behind() -> None:
    left, right = socket.socketpair()
    limits = Limits(read_high_water=64 * 1024)
    conn = await adopt(left, limits=limits)
    loop = asyncio.get_running_loop()
    right.setblocking(False)
    total = 4 * 1024 * 1024
    with right:
        writer = asyncio.create_task(loop.sock_sendall(right, bytes(total)))
        paused = await turns_until(lambda: not conn.transport.is_reading())
        assert paused, "the connection kept reading for a reader that did not"
        assert not writer.done()  # the kernel buffers filled up behind it
        received = 0
        while received < total:
            received += len(await conn.receive())
        await writer
        assert conn.transport.is_reading()
    await conn.aclose()


async def test_reading_resumes_at_half_the_high_water_mark() -> None:
    left, right = socket.socketpair()
    count, size = 64, 256
    with right:
        # In the socket before the connection exists: its first read takes
        # all 16 KiB, twice the high-water mark, and reading pauses.
        right.sendall((struct.pack(">I", size) + bytes(size)) * count)
        limits = Limits(read_high_water=count * size // 2)
        conn = await adopt(left, codec=LengthPrefixed(), limits=limits)
        assert await turns_until(lambda: not conn.transport.is_reading())
        received = 0
        while not conn.transport.is_reading() and received < count:
            await conn.receive()
            received += 1
        # Half the mark is a quarter of the messages: reading resumes with
        # them still queued, not only once the queue is empty.
        assert received == count * 3 // 4
        # A reader that falls behind again pauses reading again.
        right.sendall((struct.pack(">I", size) + bytes(size)) * count)
        assert await turns_until(lambda: not conn.transport.is_reading())
    await conn.aclose()


def frames(*sizes: int) -> bytes:
    """LengthPrefixed() frames of these sizes, full of b"x"."""
    return b"".join(struct.pack(">I", size) + b"x" * size for size in sizes)


async def test_reading_pauses_past_the_high_water_mark_not_at_it() -> None:
    left, right = socket.socketpair()
    high = 1024
    with right:
        right.sendall(frames(1, high - 1))  # one read: both queued, high in all
        conn = await adopt(
            left, codec=LengthPrefixed(), limits=Limits(read_high_water=high)
        )
        assert await conn.receive() == b"x"
        assert conn.transport.is_reading(), "paused at the mark, not past it"
        right.sendall(frames(2))  # high + 1 bytes queued
        assert await turns_until(lambda: not conn.transport.is_reading())
    await conn.aclose()


async def test_receiving_does_not_resume_reading_paused_by_the_application() -> None:
    left, right = socket.socketpair()
    with right:
        right.sendall(frames(1, 1))  # one read: two messages queued
        conn = await adopt(left, codec=LengthPrefixed())
        assert await conn.receive() == b"x"
        conn.transport.pause_reading()
        assert await conn.receive() == b"x"
        assert not conn.transport.is_reading()
    await conn.aclose()


async def test_abort_drops_the_messages_not_yet_received() -> None:
    left, right = socket.socketpair()
    with right:
        right.sendall(frames(1, 1))
        conn = await adopt(left, codec=LengthPrefixed())
        assert await conn.receive() == b"x"
        conn.abort()
        for receive in (conn.receive(), anext(conn)):
            with pytest.raises(ClosedResourceError, match=CLOSED):
                await receive
    await conn.aclose()


async def test_a_cancelled_iteration_loses_nothing() -> None:
    left, right = socket.socketpair()
    conn = await adopt(left)
    with right:
        waiting = asyncio.create_task(anext(conn))
        await asyncio.sleep(0)  # one turn: it is now waiting
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        right.sendall(b"after")
        async with asyncio.timeout(10):
            assert await anext(conn) == b"after"
    await conn.aclose()


async def test_read_timeout_loses_nothing() -> None:
    left, right = socket.socketpair()
    conn = await adopt(left, limits=Limits(read_timeout=0.01))
    with right:
        with pytest.raises(TimeoutError):
            await conn.receive()
        right.sendall(b"late but welcome")
        assert await conn.receive() == b"late but welcome"
    await conn.aclose()


async def test_iteration_honours_the_read_timeout() -> None:
    left, right = socket.socketpair()
    conn = await adopt(left, limits=Limits(read_timeout=0.01))

    async def first() -> bytes | None:
        async for message in conn:
            return message
        return None

    with right:
        waiting = asyncio.create_task(first())
        try:
            await asyncio.wait([waiting], timeout=10)
            assert waiting.done(), "async for waited past the read timeout"
        finally:
            waiting.cancel()
        with pytest.raises(TimeoutError):
            waiting.result()
        right.sendall(b"late but welcome")
        assert await first() == b"late but welcome"  # nothing was lost
    await conn.aclose()


async def test_iteration_ends_at_eof() -> None:
    left, right = socket.socketpair()
    conn = await adopt(left, codec=LengthPrefixed())
    with right:
        right.sendall(struct.pack(">I", 1) + b"a" + struct.pack(">I", 0))
        right.shutdown(socket.SHUT_WR)
        assert [m async for m in conn] == [b"a", b""]
        with pytest.raises(EndOfStream):
            await conn.receive()
    await conn.aclose()


async def test_a_protocol_error_is_raised_after_the_valid_messages() -> None:
    left, right = socket.socketpair()
    conn = await adopt(left, codec=LengthPrefixed(max_size=10))
    with right:
        right.sendall(struct.pack(">I", 2) + b"ok" + struct.pack(">I", 11))
        assert await conn.receive() == b"ok"
        for _ in range(3):  # again and again, with a traceback that does not grow
            with pytest.raises(FrameTooLarge) as info:
                await conn.receive()
            assert len(list(_frames(info.value.__traceback__))) < 10
    await conn.aclose()


def _frames(tb: object) -> list[object]:
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next  # type: ignore[attr-defined]
    return frames


async def tcp_pair(limits: Limits | None = None) -> tuple[Connection, socket.socket]:
    """An aiosock client and the plain socket the server side accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    with listener:
        port = listener.getsockname()[1]
        conn, (peer, _) = await asyncio.gather(
            aiosock.connect(f"tcp://127.0.0.1:{port}", limits=limits),
            loop.sock_accept(listener),
        )
    return conn, peer


def reset(peer: socket.socket) -> None:
    # SO_LINGER 0: close() sends a reset instead of a FIN.
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


async def test_a_reset_wakes_every_waiting_sender() -> None:
    conn, peer = await tcp_pair()
    chunk = bytes(256 * 1024)

    async def flood() -> None:
        for _ in range(1000):  # 256 MiB at most: far past any buffer
            await conn.send(chunk)

    senders = [asyncio.create_task(flood()) for _ in range(2)]
    blocked = await turns_until(
        lambda: conn.transport.get_write_buffer_size() > 64 * 1024, 1_000_000
    )
    assert blocked
    reset(peer)
    async with asyncio.timeout(10):
        results = await asyncio.gather(*senders, return_exceptions=True)
    for result in results:
        assert isinstance(result, BrokenResourceError), results
        assert isinstance(result.__cause__, OSError)
    with pytest.raises(BrokenResourceError):
        await conn.send(b"more")
    await conn.aclose()


async def test_a_cancelled_send_has_handed_its_message_over() -> None:
    conn, peer = await tcp_pair()
    chunk = bytes(256 * 1024)
    sent = 0

    async def flood() -> None:
        nonlocal sent
        for _ in range(1000):  # 256 MiB at most: far past any buffer
            sent += len(chunk)  # counted first: send() writes, then waits
            await conn.send(chunk)

    with peer:
        sender = asyncio.create_task(flood())
        high = conn.transport.get_write_buffer_limits()[1]
        assert await turns_until(
            lambda: conn.transport.get_write_buffer_size() > high, 1_000_000
        )
        sender.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sender
        reading = asyncio.create_task(read_to_the_end(peer))
        await conn.send(b"after")  # the peer reads: sending goes on
        await conn.send_eof()
        assert await reading == sent + len(b"after")
    await conn.aclose()


async def test_a_peer_that_vanishes_breaks_the_receive_side_too() -> None:
    conn, peer = await tcp_pair()
    waiting = asyncio.create_task(conn.receive())
    await turns_until(lambda: False, 5)
    reset(peer)
    with pytest.raises(BrokenResourceError):
        await waiting
    await conn.aclose()


async def test_replies_held_for_a_batch_leave_even_if_the_handler_stops_early() -> None:
    left, right = socket.socketpair()
    conn = await adopt(left, codec=aiosock.Lines())
    right.setblocking(False)
    with right:
        right.sendall(b"first\nsecond\n")  # one read: one batch of two
        assert await conn.receive() == b"first"
        await conn.send(b"reply")  # held: "second" is waiting to be answered
        # The handler now waits on something else; the reply goes anyway.
        reply = await asyncio.get_running_loop().sock_recv(right, 100)
        assert reply == b"reply\n"
        assert await conn.receive() == b"second"
    await conn.aclose()


async def test_messages_keep_their_order_whatever_their_buffer_type() -> None:
    left, right = socket.socketpair()
    # Raw and a small read_size: on asyncio's loop each byte is a message;
    # at most 1 byte queued, then reading pauses.
    limits = Limits(read_size=1, read_high_water=1)
    right.setblocking(False)
    with right:
        right.sendall(b"ab")
        conn = await adopt(left, limits=limits)
        assert await turns_until(lambda: not conn.transport.is_reading())
        uvloop = is_uvloop(asyncio.get_running_loop())  # it reads both at once
        assert await conn.receive() == (b"ab" if uvloop else b"a")
        # Answering with another message queued: the replies may be held
        # back to leave together, and must leave in order.
        # Any buffer, at run time (typed, a Connection[bytes] sends bytes).
        await conn.send(cast(bytes, bytearray(b"1")))
        await conn.send(b"2")
        await conn.send(cast(bytes, memoryview(b"3")))
        assert await read_exactly(right, 3) == b"123"
    await conn.aclose()


async def read_to_the_end(peer: socket.socket) -> int:
    """How many bytes ``peer`` receives before EOF (or a reset)."""
    loop = asyncio.get_running_loop()
    received = 0
    async with asyncio.timeout(10):
        for _ in range(100_000):
            try:
                data = await loop.sock_recv(peer, 1024 * 1024)
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += len(data)
    raise AssertionError(f"no end after {received} bytes")


async def test_aclose_aborts_after_close_timeout_when_the_peer_does_not_read() -> None:
    close_timeout = 0.05
    conn, peer = await tcp_pair(Limits(close_timeout=close_timeout))
    loop = asyncio.get_running_loop()
    with peer:
        sent = fill_write_buffer(conn.transport) * len(FILLER)
        start = loop.time()
        async with asyncio.timeout(10):
            await conn.aclose()
        waited = loop.time() - start
        assert waited > close_timeout / 2, f"aborted after {waited} s, not waiting"
        received = await read_to_the_end(peer)
    assert received < sent, "aclose() did not abort: every byte was delivered"


async def test_a_cancelled_aclose_aborts_at_once() -> None:
    conn, peer = await tcp_pair(Limits(close_timeout=60))
    with peer:
        sent = fill_write_buffer(conn.transport) * len(FILLER)
        closing = asyncio.create_task(conn.aclose())
        await asyncio.sleep(0)  # one turn: aclose() is now waiting
        closing.cancel()
        async with asyncio.timeout(10):  # far less than close_timeout
            with pytest.raises(asyncio.CancelledError):
                await closing
        received = await read_to_the_end(peer)
    assert received < sent, "the cancelled aclose() did not abort"


async def test_a_connection_shows_no_callbacks() -> None:
    # The callbacks belong to the protocol it owns, not to its public face.
    callbacks = {name for name in dir(aiosock.Protocol) if not name.startswith("_")}
    assert callbacks & set(dir(Connection)) == set()
    left, right = socket.socketpair()
    with right:
        conn = await adopt(left)
        assert callbacks & set(dir(conn)) == set()
        await conn.aclose()


async def test_a_connection_says_what_it_is(abstract_name: str) -> None:
    release = asyncio.Event()

    async def stall(conn: Connection) -> None:
        await release.wait()  # reads nothing: a close has to wait

    async with await aiosock.serve(stall, f"unix:@{abstract_name}") as server:
        conn = await aiosock.connect(server.addresses[0])
        name = f"<Connection unnamed -> unix:@{abstract_name}"
        assert repr(conn) == f"{name} open>"
        fill_write_buffer(conn.transport)
        closing = asyncio.create_task(conn.aclose())
        assert await turns_until(lambda: repr(conn) == f"{name} closing>")
        closing.cancel()  # aclose() aborts
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        assert await turns_until(lambda: repr(conn) == f"{name} closed>")
        release.set()
