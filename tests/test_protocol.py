"""The callback API: Protocol and Transport over real sockets, on both loops."""

from __future__ import annotations

import asyncio
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

import aiosock
from aiosock import (
    BrokenResourceError,
    ClosedResourceError,
    Codec,
    FrameTooLarge,
    IncompleteFrame,
    LengthPrefixed,
    Limits,
    Lines,
    Protocol,
    Transport,
)
from aiosock.aio.loops import is_uvloop
from aiosock.aio.protocol import (
    LOOP_READ_MAX,
    BufferedPassThroughAdapter,
    BufferedStreamAdapter,
    PassThroughAdapter,
    StreamAdapter,
    adapter_for,
)
from aiosock.testing.streams import turns_until

# What send() says once the connection is closed, but for send_eof().
CLOSED = r"^the connection was closed$"


class Recorder(Protocol):
    """Writes down every callback; resolves futures the tests wait on."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: Transport | None = None
        self.messages: list[bytes] = []
        self.events: list[str] = []
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.got: asyncio.Queue[bytes] = asyncio.Queue()
        self.keep_open_on_eof: bool | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.events.append("made")

    def message_received(self, message: bytes) -> None:
        self.messages.append(message)
        self.got.put_nowait(message)

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return self.keep_open_on_eof

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


class Echo(Protocol):
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def message_received(self, message: bytes) -> None:
        self.transport.send(message)


@pytest.fixture
async def echo_server() -> AsyncIterator[aiosock.Server]:
    server = await aiosock.create_server(Echo, "tcp://127.0.0.1:0", codec=Lines())
    async with server:
        yield server


async def adopt(
    sock: socket.socket, limits: Limits | None = None, *, codec: Codec | None = None
) -> Recorder:
    """A Recorder connected over ``sock``, which it takes over."""
    _, recorder = await aiosock.create_connection(
        Recorder, f"fd://{sock.detach()}", codec=codec, limits=limits
    )
    return recorder


def connected(recorder: Recorder) -> Transport:
    assert recorder.transport is not None, "connection_made() was not called"
    return recorder.transport


FILLER = bytes(64 * 1024)


def fill_write_buffer(transport: Transport) -> int:
    """Send FILLER until bytes wait in the process, the kernel's buffers full.

    Returns how many were sent. The peer must not be reading.
    """
    for count in range(1, 1001):  # 64 MiB at most: far past any socket buffer
        transport.send(FILLER)
        if transport.get_write_buffer_size() > 0:
            return count
    raise AssertionError("the kernel took 64 MiB from a peer that does not read")


async def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from the non-blocking ``sock``, or fail within 10 s."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(10):
        while len(data) < size:
            chunk = await loop.sock_recv(sock, size - len(data))
            assert chunk, f"EOF after {len(data)} of {size} bytes"
            data += chunk
    return bytes(data)


def frame(payload: bytes) -> bytes:
    """``payload`` as LengthPrefixed() frames it."""
    return struct.pack(">I", len(payload)) + payload


async def test_messages_are_framed_both_ways(echo_server: aiosock.Server) -> None:
    transport, client = await aiosock.create_connection(
        Recorder, echo_server.addresses[0], codec=Lines()
    )
    transport.send(b"one")
    transport.send(b"")
    transport.send(b"three")
    assert [await client.got.get() for _ in range(3)] == [b"one", b"", b"three"]
    assert transport.peer_address == echo_server.addresses[0]
    local = transport.local_address
    assert isinstance(local, aiosock.TCPAddress)
    assert local.host == "127.0.0.1"
    transport.close()
    assert await client.lost is None
    assert client.events == ["made", "lost"]


async def test_send_after_close_raises(echo_server: aiosock.Server) -> None:
    transport, client = await aiosock.create_connection(
        Recorder, echo_server.addresses[0], codec=Lines()
    )
    transport.close()
    transport.close()  # idempotent
    with pytest.raises(ClosedResourceError, match=CLOSED):
        transport.send(b"late")
    await client.lost
    transport.abort()  # idempotent too, after the end


async def test_eof_closes_unless_the_protocol_keeps_it_open() -> None:
    left, right = socket.socketpair()
    _, keeper = await aiosock.create_connection(Recorder, f"fd://{left.detach()}")
    keeper.keep_open_on_eof = True
    with right:
        right.sendall(b"bye")
        right.shutdown(socket.SHUT_WR)
        assert await keeper.got.get() == b"bye"
        for _ in range(100):  # bounded: the EOF is already in the socket
            if "eof" in keeper.events:
                break
            await asyncio.sleep(0)
        assert keeper.events == ["made", "eof"]
        assert keeper.transport is not None
        keeper.transport.send(b"still here")  # half-closed: sending works
        assert await asyncio.get_running_loop().sock_recv(right, 100) == b"still here"
        keeper.transport.close()
        assert await keeper.lost is None


async def test_eof_closes_a_protocol_that_does_not_keep_it_open() -> None:
    left, right = socket.socketpair()
    recorder = await adopt(left)
    with right:
        right.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(10):
            assert await recorder.lost is None
    assert recorder.events == ["made", "eof", "lost"]
    with pytest.raises(ClosedResourceError, match=CLOSED):
        connected(recorder).send(b"late")


async def test_send_after_send_eof_says_why_it_cannot() -> None:
    left, right = socket.socketpair()
    recorder = await adopt(left)
    transport = connected(recorder)
    with right:
        transport.send_eof()
        transport.send_eof()  # idempotent
        with pytest.raises(
            ClosedResourceError, match=r"^cannot send after send_eof\(\)$"
        ):
            transport.send(b"late")
        right.setblocking(False)
        assert await asyncio.get_running_loop().sock_recv(right, 100) == b""
        transport.close()
        async with asyncio.timeout(10):
            assert await recorder.lost is None


async def test_send_after_close_says_closed_even_once_the_close_broke() -> None:
    left, right = socket.socketpair()
    recorder = await adopt(left)
    transport = connected(recorder)
    fill_write_buffer(transport)
    transport.close()  # it waits for the peer to read the rest...
    right.close()  # ...which the peer never does: the connection breaks
    async with asyncio.timeout(10):
        assert isinstance(await recorder.lost, BrokenResourceError)
    # Closed here first: using it is the caller's mistake, not the network's.
    with pytest.raises(ClosedResourceError, match=CLOSED):
        transport.send(b"late")


async def test_eof_inside_a_frame_is_an_incomplete_frame() -> None:
    left, right = socket.socketpair()
    _, client = await aiosock.create_connection(
        Recorder, f"fd://{left.detach()}", codec=LengthPrefixed()
    )
    with right:
        right.sendall(b"\x00\x00\x00\x02ok\x00\x00\x00\x09cut")
        right.shutdown(socket.SHUT_WR)
        error = await client.lost
    assert isinstance(error, IncompleteFrame)
    assert error.partial == b"\x00\x00\x00\x09cut"
    assert client.messages == [b"ok"]
    assert "eof" not in client.events


async def test_an_oversize_frame_ends_the_connection_after_the_valid_ones() -> None:
    left, right = socket.socketpair()
    _, client = await aiosock.create_connection(
        Recorder, f"fd://{left.detach()}", codec=Lines(max_length=8)
    )
    with right:
        right.sendall(b"fine\nalso fine\nmuch too long for it\nnever\n")
        error = await client.lost
    assert isinstance(error, FrameTooLarge)
    assert error.limit == 8
    assert client.messages == [b"fine"]  # "also fine" is 9 bytes: too long


async def test_a_large_message_arrives_whole(
    echo_server: aiosock.Server, abstract_name: str
) -> None:
    codec = LengthPrefixed(max_size=8 * 1024 * 1024)
    server = await aiosock.create_server(Echo, f"unix:@{abstract_name}", codec=codec)
    async with server:
        transport, client = await aiosock.create_connection(
            Recorder, server.addresses[0], codec=codec
        )
        big = bytes(range(256)) * (4 * 4096)  # 4 MiB: a gather write
        transport.send(big)
        assert await client.got.get() == big
        transport.close()
        await client.lost


class Replier(Recorder):
    """Answers each message from a table; notes the write buffer size after each."""

    def __init__(self, replies: dict[bytes, bytes]) -> None:
        super().__init__()
        self.replies = replies
        self.buffered: list[int] = []

    def message_received(self, message: bytes) -> None:
        super().message_received(message)
        transport = connected(self)
        transport.send(self.replies[message])
        self.buffered.append(transport.get_write_buffer_size())


async def test_replies_to_messages_that_arrived_together_all_leave() -> None:
    left, right = socket.socketpair()
    replies = {b"one": b"1", b"two": b"2"}
    with right:
        right.sendall(b"one\ntwo\n")  # before the connection: one read, two messages
        _, replier = await aiosock.create_connection(
            lambda: Replier(replies), f"fd://{left.detach()}", codec=Lines()
        )
        right.setblocking(False)
        assert await read_exactly(right, 4) == b"1\n2\n"
        connected(replier).close()
        async with asyncio.timeout(10):
            assert await replier.lost is None


async def test_the_write_buffer_size_counts_every_byte_not_yet_sent() -> None:
    # 3000 bytes: past GATHER_THRESHOLD, the codec frames it as two buffers.
    replies = {b"a": b"s" * 10, b"b": b"l" * 3000, b"c": b"t" * 20}
    framed = [frame(reply) for reply in replies.values()]
    left, right = socket.socketpair()
    right.setblocking(False)
    with right:
        _, replier = await aiosock.create_connection(
            lambda: Replier(replies), f"fd://{left.detach()}", codec=LengthPrefixed()
        )
        transport = connected(replier)
        sent = fill_write_buffer(transport) * len(frame(FILLER))
        waiting = transport.get_write_buffer_size()
        right.sendall(b"".join(map(frame, replies)))  # one read, three requests
        async with asyncio.timeout(10):
            assert [await replier.got.get() for _ in replies] == list(replies)
        # After each reply, the size counts it and every reply before it.
        counted = [waiting + len(b"".join(framed[: i + 1])) for i in range(3)]
        assert replier.buffered == counted
        assert transport.get_write_buffer_size() == counted[-1]
        # Every byte counted arrives, the replies whole and in order.
        data = await read_exactly(right, sent + len(b"".join(framed)))
        assert data[sent:] == b"".join(framed)
        transport.close()
        async with asyncio.timeout(10):
            assert await replier.lost is None


async def test_a_buffer_changed_after_send_is_sent_as_it_was() -> None:
    left, right = socket.socketpair()
    recorder = await adopt(left)  # Raw: bytes are written as they are
    transport = connected(recorder)
    right.setblocking(False)
    with right:
        sent = fill_write_buffer(transport) * len(FILLER)  # the rest waits
        message = bytearray(b"before")
        transport.send(cast(bytes, message))  # any buffer, at run time
        message[:] = b"after!"
        assert (await read_exactly(right, sent + 6))[sent:] == b"before"
        transport.close()
        async with asyncio.timeout(10):
            assert await recorder.lost is None


async def test_write_buffer_limits_come_from_limits(
    echo_server: aiosock.Server,
) -> None:
    # Not the loops' own low water for 4096, which is a quarter of it.
    limits = Limits(write_high_water=4096, write_low_water=1000)
    transport, client = await aiosock.create_connection(
        Recorder, echo_server.addresses[0], codec=Lines(), limits=limits
    )
    assert transport.get_write_buffer_limits() == (1000, 4096)
    assert transport.get_write_buffer_size() == 0
    transport.pause_reading()
    assert not transport.is_reading()
    transport.resume_reading()
    assert transport.is_reading()
    assert transport.get_extra_info("socket").family == socket.AF_INET
    assert transport.get_extra_info("no such thing", "default") == "default"
    transport.set_write_buffer_limits(high=8192, low=2000)
    assert transport.get_write_buffer_limits() == (2000, 8192)
    transport.abort()
    assert await client.lost is None


async def test_idle_connections_are_closed_with_a_timeout_error() -> None:
    left, right = socket.socketpair()
    limits = Limits(idle_timeout=0.05)
    _, client = await aiosock.create_connection(
        Recorder, f"fd://{left.detach()}", limits=limits
    )
    with right:
        error = await client.lost
    assert isinstance(error, aiosock.DeadlineExceeded)
    assert isinstance(error, TimeoutError)  # what code before deadlines caught
    assert error.deadline == "idle"
    assert str(error) == "idle deadline of 0.05 s: no bytes either way"


async def test_a_connection_that_never_speaks_gets_one_idle_timeout() -> None:
    idle = 0.05
    left, right = socket.socketpair()
    recorder = await adopt(left, Limits(idle_timeout=idle))
    with right:
        # Time is the point. Timers run in the order of their deadlines, on
        # a loop however late: the idle timer's comes first.
        await asyncio.sleep(1.5 * idle)
        assert connected(recorder).is_closing(), "silent, yet given a second period"
        async with asyncio.timeout(10):
            assert isinstance(await recorder.lost, TimeoutError)


async def test_a_half_closed_connection_still_times_out() -> None:
    left, right = socket.socketpair()
    recorder = await adopt(left, Limits(idle_timeout=0.05))
    recorder.keep_open_on_eof = True
    with right:
        right.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(10):
            error = await recorder.lost
    assert recorder.events == ["made", "eof", "lost"]
    assert isinstance(error, TimeoutError)


@pytest.mark.parametrize(
    ("ending", "why"),
    [(b"", type(None)), (b"\x00\x00\x00\x09cut", IncompleteFrame)],
    ids=["eof", "eof-inside-a-frame"],
)
async def test_a_close_waiting_on_the_peer_is_not_an_idle_timeout(
    ending: bytes, why: type[Exception | None]
) -> None:
    idle = 0.05
    left, right = socket.socketpair()
    recorder = await adopt(left, Limits(idle_timeout=idle), codec=LengthPrefixed())
    transport = connected(recorder)
    right.setblocking(False)
    with right:
        sent = fill_write_buffer(transport) * len(frame(FILLER))
        right.sendall(ending)
        right.shutdown(socket.SHUT_WR)  # the connection closes after its buffer
        assert await turns_until(transport.is_closing)
        # Time is the point: the idle timeout runs out twice while the close
        # waits for a peer that does not read.
        await asyncio.sleep(4 * idle)
        assert not recorder.lost.done()
        assert len(await read_exactly(right, sent)) == sent
        async with asyncio.timeout(10):
            error = await recorder.lost
    assert isinstance(error, why), f"the close was reported as {error!r}"


# Seconds: long enough that traffic every tenth of it survives a loaded
# machine's hiccups, short enough to let a test outlive a few of them.
IDLE = 0.25


# Raw passes chunks through; Lines decodes and encodes them.
@pytest.mark.parametrize("codec", [None, Lines()], ids=["raw", "lines"])
async def test_traffic_either_way_holds_off_the_idle_timeout(
    codec: Codec | None,
) -> None:
    limits = Limits(idle_timeout=IDLE)
    pairs = [socket.socketpair() for _ in range(3)]
    inbound, outbound, silent = [
        await adopt(left, limits, codec=codec) for left, _ in pairs
    ]
    peer = pairs[0][1]
    assert outbound.transport is not None
    try:
        for _ in range(30):  # three idle periods, traffic ten times in each
            assert not inbound.lost.done(), "closed although data came in"
            assert not outbound.lost.done(), "closed although data went out"
            peer.send(b"in\n")
            outbound.transport.send(b"out")
            await asyncio.sleep(IDLE / 10)  # the pace of the traffic is the point
        assert silent.lost.done(), "a silent connection outlived the idle timeout"
        assert isinstance(silent.lost.result(), TimeoutError)
        async with asyncio.timeout(10):  # once the traffic stops, they go too
            for recorder in (inbound, outbound):
                assert isinstance(await recorder.lost, TimeoutError)
    finally:
        for _, right in pairs:
            right.close()


async def test_a_peer_gone_before_the_connection_was_made_has_no_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
    # SO_LINGER 0: close() sends a reset instead of a FIN.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    sock.settimeout(10)
    with pytest.raises(ConnectionResetError):  # the reset has arrived
        sock.recv(1)
    recorder = await adopt(sock)
    transport = connected(recorder)
    assert transport.peer_address is None
    assert isinstance(transport.local_address, aiosock.TCPAddress)
    async with asyncio.timeout(10):
        assert await recorder.lost is None  # the reset was reported: now EOF


def test_an_adapter_aborted_before_its_connection_was_made_does_nothing() -> None:
    # A server aborts the adapters of connections it is still accepting.
    adapter = StreamAdapter(Protocol(), aiosock.Raw(), Limits())
    adapter.abort()
    adapter.abort()


async def test_connections_on_one_loop_share_one_read_buffer() -> None:
    # On asyncio's loop aiosock reads into a buffer of read_size bytes: one
    # per thread, not per connection. (uvloop reads into its own.)
    read_size = 2 * 1024 * 1024 + 1  # a size no other test asked for
    limits = Limits(read_size=read_size)
    pairs = [socket.socketpair() for _ in range(4)]
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        recorders = [await adopt(left, limits) for left, _ in pairs]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
        for _, right in pairs:
            right.close()
    assert grown < 2 * read_size, f"{grown} bytes for {len(pairs)} connections"
    async with asyncio.timeout(10):
        for recorder in recorders:
            await recorder.lost


async def test_closing_a_server_aborts_what_is_open_after_the_grace_period() -> None:
    accepted: asyncio.Queue[Recorder] = asyncio.Queue()

    def track() -> Recorder:
        recorder = Recorder()
        accepted.put_nowait(recorder)
        return recorder

    server = await aiosock.create_server(track, "tcp://127.0.0.1:0")
    _, client = await aiosock.create_connection(Recorder, server.addresses[0])
    async with asyncio.timeout(10):
        served = await accepted.get()
        assert await turns_until(lambda: served.transport is not None)
        await server.aclose(grace=0.01)
        assert await served.lost is None
        assert await client.lost is None  # the client saw the end


async def test_an_exception_in_a_callback_closes_the_connection_with_it() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []

    def report(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        reported.append(context)

    loop.set_exception_handler(report)

    class Faulty(Recorder):
        def message_received(self, message: bytes) -> None:
            raise ValueError(f"cannot handle {message!r}")

    left, right = socket.socketpair()
    _, faulty = await aiosock.create_connection(Faulty, f"fd://{left.detach()}")
    with right:
        right.sendall(b"boom")
        async with asyncio.timeout(10):
            error = await faulty.lost
    assert isinstance(error, ValueError)
    assert str(error) == "cannot handle b'boom'"
    assert [context.get("exception") for context in reported] == [error]


def no_delay(transport: Transport) -> tuple[socket.AddressFamily, int]:
    sock = transport.get_extra_info("socket")
    return sock.family, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize(
    ("host", "family"),
    [("127.0.0.1", socket.AF_INET), ("[::1]", socket.AF_INET6)],
)
async def test_tcp_nodelay_is_on_at_both_ends(
    host: str, family: socket.AddressFamily
) -> None:
    server_side: asyncio.Future[tuple[socket.AddressFamily, int]]
    server_side = asyncio.get_running_loop().create_future()

    async def look(connection: aiosock.Connection) -> None:
        server_side.set_result(no_delay(connection.transport))

    # uvloop sets it on every TCP transport; asyncio only where the socket's
    # proto is IPPROTO_TCP, which a socket from accept() does not say: on
    # asyncio's loop the server side has it from aiosock alone.
    async with (
        await aiosock.serve(look, f"tcp://{host}:0") as server,
        await aiosock.connect(server.addresses[0]) as client,
    ):
        assert no_delay(client.transport) == (family, 1)
        async with asyncio.timeout(10):
            assert await server_side == (family, 1)


async def test_the_adapter_fits_the_loop_and_the_codec() -> None:
    loop = asyncio.get_running_loop()
    limits = Limits()
    uv = is_uvloop(loop)
    decoding = StreamAdapter if uv else BufferedStreamAdapter
    passing = PassThroughAdapter if uv else BufferedPassThroughAdapter
    assert adapter_for(aiosock.Raw(), limits, loop) is passing
    assert adapter_for(aiosock.Raw(max_size=4), limits, loop) is decoding  # splits
    assert adapter_for(Lines(), limits, loop) is decoding
    # Chunks as large as one read (both loops' default) pass through whole.
    most = aiosock.Raw(max_size=LOOP_READ_MAX)
    assert adapter_for(most, limits, loop) is passing
    less = aiosock.Raw(max_size=LOOP_READ_MAX - 1)
    assert adapter_for(less, limits, loop) is decoding
    # On asyncio's loop aiosock reads limits.read_size at a time itself.
    small_reads = Limits(read_size=4)
    expected = decoding if uv else passing
    assert adapter_for(aiosock.Raw(max_size=4), small_reads, loop) is expected


async def test_connections_sharing_a_read_buffer_keep_their_own_bytes() -> None:
    # On asyncio every connection of the thread reads into one buffer: a
    # frame left half-done by one read must not see the next read's bytes.
    pairs = [socket.socketpair() for _ in range(8)]
    clients = []
    for left, _ in pairs:
        _, client = await aiosock.create_connection(
            Recorder, f"fd://{left.detach()}", codec=Lines()
        )
        clients.append(client)
    for i, (_, right) in enumerate(pairs):
        right.sendall(b"head-%d-" % i)  # half a line, on every connection
    for i, (_, right) in enumerate(pairs):
        right.sendall(b"tail-%d\nsecond-%d\n" % (i, i))
        right.close()
    for i, client in enumerate(clients):
        assert await client.lost is None
        assert client.messages == [b"head-%d-tail-%d" % (i, i), b"second-%d" % i]


async def test_small_reads_pass_raw_chunks_through() -> None:
    left, right = socket.socketpair()
    _, client = await aiosock.create_connection(
        Recorder, f"fd://{left.detach()}", limits=Limits(read_size=16)
    )
    with right:
        right.sendall(bytes(range(100)))
        right.shutdown(socket.SHUT_WR)
        assert await client.lost is None
    assert b"".join(client.messages) == bytes(range(100))
    if is_uvloop(asyncio.get_running_loop()):
        # read_size cannot apply: uvloop reads any asyncio.Protocol, as every
        # adapter is, into a buffer of its own (LOOP_READ_MAX), never through
        # get_buffer(); the 100 bytes waiting are one read, one message.
        assert client.messages == [bytes(range(100))]
    else:
        # aiosock reads read_size bytes a call itself: a message each.
        assert list(map(len, client.messages)) == [16] * 6 + [4]


@pytest.mark.parametrize("max_size", [4, 1024 * 1024])
async def test_raw_chunks_either_way(max_size: int) -> None:
    left, right = socket.socketpair()
    codec = aiosock.Raw(max_size=max_size)
    transport, client = await aiosock.create_connection(
        Recorder, f"fd://{left.detach()}", codec=codec
    )
    with right:
        right.setblocking(False)
        transport.send(cast(bytes, bytearray(b"x")))  # not bytes: through the codec
        assert await asyncio.get_running_loop().sock_recv(right, 10) == b"x"
        right.sendall(b"0123456789")
        right.shutdown(socket.SHUT_WR)
        assert await client.lost is None
    assert b"".join(client.messages) == b"0123456789"
    assert all(len(m) <= max_size for m in client.messages)


class CloseOnFirst(Recorder):
    """Closes (or aborts) its transport on the first message."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def message_received(self, message: bytes) -> None:
        super().message_received(message)
        getattr(connected(self), self.how)()


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_a_protocol_that_closes_mid_batch_gets_no_more_messages(
    how: str,
) -> None:
    left, right = socket.socketpair()
    with right:
        right.sendall(b"one\ntwo\nthree\n")  # before the connection: one read
        _, closer = await aiosock.create_connection(
            lambda: CloseOnFirst(how), f"fd://{left.detach()}", codec=Lines()
        )
        async with asyncio.timeout(10):
            await closer.lost
    assert closer.messages == [b"one"]


async def test_only_a_read_that_completes_messages_batches_the_replies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The adapter holds the replies of one read itself and flushes before
    # it returns: no end-of-turn flush is scheduled (Transport.batch).
    batches = 0
    hold = Transport._hold

    def counting(self: Transport) -> None:
        nonlocal batches
        batches += 1
        hold(self)

    def scheduling(self: Transport) -> None:
        raise AssertionError("a read scheduled a flush")

    monkeypatch.setattr(Transport, "_hold", counting)
    monkeypatch.setattr(Transport, "batch", scheduling)
    left, right = socket.socketpair()
    recorder = Recorder()
    adapter = StreamAdapter(recorder, Lines(), Limits())
    with right:
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: adapter, left)
        # Reads as the loop hands them over, without the socket's timing.
        adapter.data_received(b"no end ")  # a partial line: no work at all
        assert batches == 0
        adapter.data_received(b"yet\n")  # one message: nothing to batch
        assert batches == 0
        adapter.data_received(b"two\nthree\n")
        assert batches == 1
        assert recorder.messages == [b"no end yet", b"two", b"three"]
        connected(recorder).close()


class ReplyOnFault(Recorder):
    """Answers a framing fault, then closes, as a Redis server does."""

    def framing_error(self, exc: aiosock.RemoteProtocolError) -> bool:
        self.events.append(f"fault: {type(exc).__name__}")
        transport = connected(self)
        transport.send(b"-ERR bad")
        transport.close()
        return True


async def test_a_protocol_can_answer_a_framing_fault_before_closing() -> None:
    left, right = socket.socketpair()
    with right:
        right.sendall(b"fine\nmuch too long\nnever\n")
        _, replier = await aiosock.create_connection(
            ReplyOnFault, f"fd://{left.detach()}", codec=Lines(max_length=8)
        )
        right.setblocking(False)
        assert await read_exactly(right, 9) == b"-ERR bad\n"
        async with asyncio.timeout(10):
            assert isinstance(await replier.lost, FrameTooLarge)
    assert replier.messages == [b"fine"]
    assert replier.events == ["made", "fault: FrameTooLarge", "lost"]


async def test_a_transport_says_what_it_is() -> None:
    left, right = socket.socketpair()
    with right:
        recorder = await adopt(left, codec=Lines())
        transport = connected(recorder)
        assert repr(transport) == "<Transport unnamed -> unnamed open>"
        fill_write_buffer(transport)  # so that closing takes a while
        transport.close()
        assert repr(transport) == "<Transport unnamed -> unnamed closing>"
        right.close()  # the bytes can never leave now
        async with asyncio.timeout(10):
            await recorder.lost
        assert repr(transport) == "<Transport unnamed -> unnamed closed>"


async def test_a_tcp_transport_names_both_ends(echo_server: aiosock.Server) -> None:
    transport, _ = await aiosock.create_connection(
        Recorder, echo_server.addresses[0], codec=Lines()
    )
    local, peer = transport.local_address, transport.peer_address
    assert repr(transport) == f"<Transport {local} -> {peer} open>"
    assert str(peer) == str(echo_server.addresses[0])
    transport.abort()


class PreEncoded(Recorder):
    """Answers each line with bytes it framed itself, two replies per write."""

    def message_received(self, message: bytes) -> None:
        super().message_received(message)
        assert self.transport is not None
        self.transport.write(memoryview(b"one\ntwo\n"))


async def test_write_sends_framed_bytes_as_they_are_and_counts_them() -> None:
    left, right = socket.socketpair()
    recorder = PreEncoded()
    await aiosock.create_connection(
        lambda: recorder, f"fd://{left.detach()}", codec=Lines()
    )
    right.setblocking(False)
    transport = connected(recorder)
    with right:
        await asyncio.get_running_loop().sock_sendall(right, b"a\nb\n")
        assert await read_exactly(right, 16) == b"one\ntwo\none\ntwo\n"
        assert (transport.messages_out, transport.bytes_out) == (2, 16)
        transport.close()
        with pytest.raises(aiosock.ClosedResourceError):
            transport.write(b"late\n")
        async with asyncio.timeout(10):
            assert await recorder.lost is None
