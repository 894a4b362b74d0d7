"""After a framing fault both drivers keep one contract, held by one test.

The messages before the fault come first; then the peer's error, on that
receive and on every later one (the peer stays the one at fault), its
``messages`` empty since they were delivered. Sending goes on until the
connection is closed, so that the peer can be told what went wrong.
``aiosock.Connection`` and ``aiosock.sync.Connection`` both run the same
steps here.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

import aiosock
from aiosock import FrameTooLarge, IncompleteFrame, LengthPrefixed, sync


def frame(message: bytes) -> bytes:
    """``message`` as LengthPrefixed() frames it: a 4-byte big-endian length."""
    return struct.pack(">I", len(message)) + message


Receive = Callable[[], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]
Close = Callable[[], Awaitable[None]]


async def open_driver(
    driver: str, sock: socket.socket, codec: LengthPrefixed
) -> tuple[Receive, Send, Close]:
    """receive, send and close for ``sock`` through the async or blocking driver."""
    address = f"fd://{sock.detach()}"
    if driver == "async":
        conn = await aiosock.connect(address, codec=codec)
        return conn.receive, conn.send, conn.aclose
    blocking = sync.connect(address, codec=codec, timeout=10)

    async def receive() -> bytes:
        return await asyncio.to_thread(blocking.receive)

    async def send(message: bytes) -> None:
        await asyncio.to_thread(blocking.send, message)

    async def close() -> None:
        blocking.close()

    return receive, send, close


async def answer_then_close(send: Send, close: Close, peer: socket.socket) -> None:
    """After the fault: an error reply still reaches the peer, then EOF."""
    await send(b"-ERR framing")
    await close()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    received = b""
    while chunk := await loop.sock_recv(peer, 4096):
        received += chunk
    assert received == frame(b"-ERR framing")


@pytest.mark.parametrize("driver", ["async", "blocking"])
async def test_an_oversize_frame_is_raised_again_on_every_receive(
    driver: str,
) -> None:
    codec = LengthPrefixed(max_size=16)
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(frame(b"first") + frame(b"second"))
        theirs.sendall(struct.pack(">I", 1000))  # a header past the limit
        receive, send, close = await open_driver(driver, ours, codec)
        async with asyncio.timeout(10):
            assert await receive() == b"first"
            assert await receive() == b"second"
            with pytest.raises(FrameTooLarge) as caught:
                await receive()
            assert (caught.value.size, caught.value.limit) == (1000, 16)
            assert caught.value.messages == []  # both were returned already
            for _ in range(2):
                with pytest.raises(FrameTooLarge) as later:
                    await receive()
                assert later.value is caught.value
            await answer_then_close(send, close, theirs)


@pytest.mark.parametrize("driver", ["async", "blocking"])
async def test_a_stream_cut_inside_a_frame_is_raised_again_on_every_receive(
    driver: str,
) -> None:
    codec = LengthPrefixed()
    ours, theirs = socket.socketpair()
    cut = struct.pack(">I", 10) + b"abc"
    theirs.sendall(frame(b"whole") + cut)
    theirs.shutdown(socket.SHUT_WR)  # the stream ends inside a frame
    receive, send, close = await open_driver(driver, ours, codec)
    async with asyncio.timeout(10):
        assert await receive() == b"whole"
        with pytest.raises(IncompleteFrame) as caught:
            await receive()
        assert caught.value.partial == cut
        with pytest.raises(IncompleteFrame) as later:
            await receive()
        assert later.value is caught.value
        with theirs:
            await answer_then_close(send, close, theirs)
