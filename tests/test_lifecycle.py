"""A server's life: a shutdown that tells handlers, deadlines that abort,
``server.stats``, and how each of them is logged, for both APIs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest
from test_protocol import Echo, Recorder

import aiosock
from aiosock import Connection, DeadlineExceeded, Limits, Lines, Protocol, Transport
from aiosock.testing.streams import turns_until

API = pytest.mark.parametrize("api", ["stream", "protocol"])
LOCAL = "tcp://127.0.0.1:0"


async def echo(connection: Connection[bytes]) -> None:
    async for message in connection:
        await connection.send(message)


async def echo_server(
    api: str, limits: Limits | None = None, codec: Lines | None = None
) -> aiosock.Server:
    codec = codec or Lines()
    if api == "stream":
        return await aiosock.serve(echo, LOCAL, codec=codec, limits=limits)
    return await aiosock.create_server(Echo, LOCAL, codec=codec, limits=limits)


async def served(address: aiosock.Address) -> Connection[bytes]:
    """A client that has been answered once: the server holds its connection."""
    client = await aiosock.connect(address, codec=Lines())
    await client.send(b"hello")
    assert await client.receive() == b"hello"
    return client


# ---------------------------------------------------------------- shutdown


@API
async def test_idle_connections_end_at_once_when_the_server_closes(api: str) -> None:
    server = await echo_server(api)
    clients = [await served(server.addresses[0]) for _ in range(100)]
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.aclose(grace=30)
        # Not the grace period: every handler was told and returned.
        assert loop.time() - started < 10
        for client in clients:
            with pytest.raises(aiosock.EndOfStream):
                await client.receive()
    finally:
        for client in clients:
            client.abort()


async def test_a_handler_gets_what_arrived_then_the_stream_ends() -> None:
    started, go_on = asyncio.Event(), asyncio.Event()
    rest: list[bytes] = []

    async def slow(connection: Connection[bytes]) -> None:
        assert await connection.receive() == b"a"
        started.set()
        await go_on.wait()
        rest.extend([message async for message in connection])

    server = await aiosock.serve(slow, LOCAL, codec=Lines())
    async with await aiosock.connect(server.addresses[0]) as client:
        await client.send(b"a\nb\n")  # one segment: read together
        await started.wait()
        assert server.stats.messages_in == 2
        closing = asyncio.create_task(server.aclose(grace=30))
        await asyncio.sleep(0)  # one turn: aclose() has begun
        await client.send(b"late\n")  # the socket is no longer read
        go_on.set()
        await closing
    assert rest == [b"b"]


class Told(Recorder):
    """Says goodbye when told of the shutdown, if ``keep``; else lets it close."""

    def __init__(self, keep: bool) -> None:
        super().__init__()
        self.keep = keep

    def shutdown_requested(self) -> bool | None:
        self.events.append("shutdown")
        transport = self.transport
        assert transport is not None
        assert transport.shutting_down
        if self.keep:
            transport.send(b"bye")
            asyncio.get_running_loop().call_soon(transport.close)
        return self.keep


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keeps-it-open"])
async def test_a_protocol_is_told_of_the_shutdown(keep: bool) -> None:
    told: list[Told] = []

    def factory() -> Told:
        told.append(Told(keep))
        return told[-1]

    server = await aiosock.create_server(factory, LOCAL, codec=Lines())
    async with await aiosock.connect(server.addresses[0], codec=Lines()) as client:
        await client.send(b"hi")
        await told[0].got.get()
        await server.aclose(grace=30)
        if keep:
            assert await client.receive() == b"bye"
        with pytest.raises(aiosock.EndOfStream):
            await client.receive()
    assert told[0].events == ["made", "shutdown", "lost"]
    assert told[0].lost.result() is None


class Raises(Recorder):
    def shutdown_requested(self) -> bool | None:
        raise RuntimeError("no shutdown for me")


async def test_a_shutdown_callback_that_raises_is_logged_and_aborted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    told: list[Raises] = []

    def factory() -> Raises:
        told.append(Raises())
        return told[-1]

    server = await aiosock.create_server(factory, LOCAL, codec=Lines())
    async with await aiosock.connect(server.addresses[0], codec=Lines()) as client:
        await client.send(b"hi")
        await told[0].got.get()
        with caplog.at_level(logging.ERROR, logger="aiosock.connection"):
            await server.aclose(grace=30)
        with pytest.raises((aiosock.EndOfStream, aiosock.BrokenResourceError)):
            await client.receive()
    [record] = caplog.records
    assert "shutdown_requested() failed" in record.getMessage()
    assert record.exc_info is not None


# --------------------------------------------------------------- deadlines


async def wait_until_cut(client: Connection[bytes]) -> None:
    """Until the server aborts ``client``: a reset, or at least an end."""
    with pytest.raises((aiosock.BrokenResourceError, aiosock.EndOfStream)):
        await client.receive()


async def talk_until(address: aiosock.Address, done: asyncio.Task[None]) -> int:
    """Hold a conversation with the server until ``done``; how many exchanges.

    A message each 20 ms at most (bounded: 10 s): the client another one
    is cut beside, which must be served all the while.
    """
    exchanges = 0
    async with await served(address) as talker:
        while exchanges < 500:
            exchanges += 1
            await talker.send(b"still here")
            assert await talker.receive() == b"still here"
            await asyncio.wait([done], timeout=0.02)
            if done.done():
                break
    await done
    return exchanges


def aborted_line(caplog: pytest.LogCaptureFixture) -> str:
    """The one log line of a deadline; it is at debug level."""
    [record] = [r for r in caplog.records if "aborted" in r.getMessage()]
    assert record.name == "aiosock.connection"
    assert record.levelno == logging.DEBUG
    return record.getMessage()


@API
async def test_a_silent_client_is_cut_by_the_idle_deadline(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiosock.connection")
    async with await echo_server(api, Limits(idle_timeout=0.2)) as server:
        address = server.addresses[0]
        silent = await aiosock.connect(address, codec=Lines())
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with silent:
            assert (
                await talk_until(address, asyncio.create_task(wait_until_cut(silent)))
                > 1
            )
        assert loop.time() - started >= 0.2
        assert server.stats.closed_idle == 1
    line = aborted_line(caplog)
    assert "idle deadline of 0.2 s" in line
    assert str(silent.local_address) in line


@API
async def test_a_slowloris_line_is_cut_by_the_frame_deadline(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A byte each 20 ms: never idle for the idle deadline, never a whole line.
    caplog.set_level(logging.DEBUG, logger="aiosock.connection")
    limits = Limits(idle_timeout=0.5, frame_timeout=0.2)
    async with await echo_server(api, limits) as server:
        address = server.addresses[0]
        slow = await aiosock.connect(address)  # raw bytes: a line never ends
        cut = asyncio.create_task(wait_until_cut(slow))

        async def drip() -> None:
            for _ in range(500):  # bounded: 10 s
                await slow.send(b"x")
                await asyncio.wait([cut], timeout=0.02)
                if cut.done():
                    return

        async with slow:
            dripping = asyncio.create_task(drip())
            await talk_until(address, cut)
            # It stops when it sees the cut, or its last send finds it.
            with contextlib.suppress(
                aiosock.BrokenResourceError, aiosock.ClosedResourceError
            ):
                await dripping
        assert server.stats.closed_frame == 1
        assert server.stats.closed_idle == 0
    assert "frame deadline of 0.2 s: a message begun was not completed" in aborted_line(
        caplog
    )


async def test_a_frame_deadline_does_not_run_while_the_reader_is_behind() -> None:
    # The server's reader stops the socket (read_high_water) with half a
    # line read: the wait is this side's, and the deadline waits with it.
    limits = Limits(read_high_water=8, frame_timeout=0.05)
    got, go_on = asyncio.Event(), asyncio.Event()
    lines: list[bytes] = []

    async def behind(connection: Connection[bytes]) -> None:
        lines.append(await connection.receive())
        got.set()
        await go_on.wait()
        lines.extend([line async for line in connection])

    async with await aiosock.serve(
        behind, LOCAL, codec=Lines(), limits=limits
    ) as server:
        async with await aiosock.connect(server.addresses[0]) as client:
            await client.send(b"first\n" + b"x" * 20 + b"\nhalf a")
            await got.wait()
            await asyncio.sleep(0.25)  # time is the point: five deadlines
            go_on.set()
            await client.send(b" line\n")
            await client.send_eof()
            with pytest.raises(aiosock.EndOfStream):
                await client.receive()
        assert server.stats.closed_frame == 0
    assert lines == [b"first", b"x" * 20, b"half a line"]


def never_reading(address: aiosock.Address) -> socket.socket:
    """A client that connects and never reads, with a small receive buffer."""
    assert isinstance(address, aiosock.TCPAddress)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address.host, address.port))
    return sock


CHUNK = b"x" * 65536
SENDS = 4096  # 256 MiB: far more than any socket buffer holds


class Flood(Protocol[bytes]):
    """Sends until the write buffer is full, then until told to resume."""

    def __init__(self, ended: asyncio.Future[Exception | None]) -> None:
        self.ended = ended

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.resume_writing()

    def resume_writing(self) -> None:
        for _ in range(SENDS):
            self.transport.send(CHUNK)
            if self.transport.get_write_buffer_size() > 1024 * 1024:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended.set_result(exc)


@API
@pytest.mark.parametrize("deadline", ["send", "idle"])
async def test_a_client_that_never_reads_is_cut(
    api: str, deadline: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The send deadline; or, without it, the idle one: nothing moves either
    # way while the server's buffer to the client is full. Either aborts:
    # a close would wait close_timeout (here far longer) for the client.
    caplog.set_level(logging.DEBUG, logger="aiosock.connection")
    limits = (
        Limits(send_timeout=0.2, close_timeout=60)
        if deadline == "send"
        else Limits(send_timeout=None, idle_timeout=0.2, close_timeout=60)
    )
    ended: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    async def flood(connection: Connection[bytes]) -> None:
        try:
            for _ in range(SENDS):
                await connection.send(CHUNK)
        except Exception as exc:
            ended.set_result(exc)
            raise

    if api == "stream":
        server = await aiosock.serve(flood, LOCAL, limits=limits)
    else:
        server = await aiosock.create_server(lambda: Flood(ended), LOCAL, limits=limits)
    async with server:
        with never_reading(server.addresses[0]):
            async with asyncio.timeout(20):
                error = await ended
        assert isinstance(error, DeadlineExceeded)
        assert error.deadline == deadline
        assert server.stats.connections == 0  # gone, not closing for ever
        assert getattr(server.stats, f"closed_{deadline}") == 1
    assert f"{deadline} deadline of 0.2 s" in aborted_line(caplog)


# ------------------------------------------------------------------ stats


async def test_stats_count_what_the_test_did() -> None:
    async def picky(connection: Connection[bytes]) -> None:
        async for message in connection:
            if message == b"crash":
                raise RuntimeError("a bug in the handler")
            await connection.send(message + b"!")

    limits = Limits(max_connections=1, max_frame_size=16)
    server = await aiosock.serve(
        picky, LOCAL, codec=Lines(max_length=16), limits=limits
    )
    async with server:
        address = server.addresses[0]
        assert server.stats == aiosock.ServerStats()
        async with await aiosock.connect(address, codec=Lines()) as client:
            for message in (b"one", b"two", b"three"):
                await client.send(message)
                assert await client.receive() == message + b"!"
            # One too many: the kernel completes it, the server waits.
            waiting = asyncio.create_task(aiosock.connect(address, codec=Lines()))
            stats = server.stats
            assert stats.connections == 1
            assert (stats.messages_in, stats.bytes_in) == (3, len(b"one\ntwo\nthree\n"))
            assert (stats.messages_out, stats.bytes_out) == (
                3,
                len(b"one!\ntwo!\nthree!\n"),
            )
            await client.send(b"crash")
            with pytest.raises(aiosock.EndOfStream):
                await client.receive()
        async with await waiting as second:  # served once the first is done
            await second.send(b"x" * 17)  # longer than the line limit
            with pytest.raises((aiosock.EndOfStream, aiosock.BrokenResourceError)):
                await second.receive()
        assert await turns_until(lambda: server.stats.connections == 0)
        stats = server.stats
    assert stats.accepted == 2
    assert stats.paused_at_limit >= 1
    assert stats.handler_errors == 1
    assert stats.protocol_errors == 1
    assert stats.messages_in == 3 + 1  # and the crash
    assert (stats.closed_idle, stats.closed_frame, stats.closed_send) == (0, 0, 0)
    assert stats.accept_backoffs == 0


@API
async def test_a_peer_breaking_the_protocol_is_logged_once_at_warning(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await echo_server(api, codec=Lines(max_length=16)) as server:
        async with await served(server.addresses[0]) as client:
            with caplog.at_level(logging.DEBUG, logger="aiosock"):
                await client.send(b"y" * 100)
                with pytest.raises((aiosock.EndOfStream, aiosock.BrokenResourceError)):
                    await client.receive()
                assert await turns_until(lambda: server.stats.connections == 0)
        assert server.stats.protocol_errors == 1
    [record] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert record.name == "aiosock.connection"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"connection from {client.local_address} broke the protocol: "
        "frame of 100 bytes is larger than the limit of 16 bytes"
    )


class SaysALotThenCloses(Protocol[bytes]):
    def __init__(self, ended: asyncio.Future[Exception | None]) -> None:
        self.ended = ended

    def connection_made(self, transport: Transport) -> None:
        for _ in range(128):  # 8 MiB: more than the client's socket takes
            transport.send(CHUNK)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended.set_result(exc)


async def test_a_protocols_close_waits_for_a_silent_peer_at_most_close_timeout() -> (
    None
):
    # asyncio's own close would wait for ever for bytes nobody reads.
    limits = Limits(send_timeout=None, close_timeout=0.2)
    ended: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
    server = await aiosock.create_server(
        lambda: SaysALotThenCloses(ended), LOCAL, limits=limits
    )
    async with server:
        with never_reading(server.addresses[0]):
            async with asyncio.timeout(20):
                assert await ended is None  # closed here: not an error
        assert server.stats.connections == 0
