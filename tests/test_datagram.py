"""The asyncio datagram transport and the Endpoint over real sockets, on
both loops: what the blocking endpoint does not have (the callback API,
reading in the background, a queue, kept datagrams, cancellation).

What both drivers share is held by one set of tests run against both
(test_datagram_behaviour.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

import aiosock
from aiosock import (
    ClosedResourceError,
    DatagramTooLarge,
    DatagramTruncated,
    Endpoint,
    Limits,
    OverflowPolicy,
    UDPAddress,
    UnixDatagramAddress,
)
from aiosock.aio.datagram import READ_BATCH
from aiosock.aio.endpoint import protocol_of
from aiosock.testing import MemoryNetwork
from aiosock.testing.streams import turns_until


async def endpoint_on(
    sock: socket.socket, limits: Limits, codec: aiosock.Codec | None = None
) -> Endpoint[bytes]:
    """An Endpoint over ``sock``, which it takes over."""
    endpoint = Endpoint[bytes](limits)
    await aiosock.create_datagram_endpoint(
        lambda: protocol_of(endpoint), sock=sock, limits=limits, codec=codec
    )
    return endpoint


async def socketpair_endpoints(
    limits: Limits | None = None, codec: aiosock.Codec | None = None
) -> tuple[Endpoint[bytes], Endpoint[bytes]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ends = []
    for sock in (left, right):
        end = await endpoint_on(sock, limits or Limits(), codec)
        ends.append(end)
    return ends[0], ends[1]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Endpoint[bytes], Endpoint[bytes]]]:
    a, b = await socketpair_endpoints()
    async with a, b:
        yield a, b


def short_tmp(tmp_path: Path) -> Path:
    # Unix paths are limited to 107 bytes; pytest's tmp_path can be longer.
    return tmp_path if len(str(tmp_path)) < 80 else Path("/tmp")


@pytest.fixture
async def loop_failures() -> list[dict[str, object]]:
    """What reaches the running loop's exception handler during the test: an
    exception raised by a callback the loop ran (none should be)."""
    failures: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, c: failures.append(c))
    return failures


async def test_boundaries_are_kept_for_every_size(
    pair: tuple[Endpoint[bytes], Endpoint[bytes]],
) -> None:
    a, b = pair
    assert a.max_datagram_size >= 65_507
    sizes = [0, 1, 2, 1000, 65_507, a.max_datagram_size]
    for size in sizes:
        await a.send(bytes([size % 251]) * size)
    for size in sizes:
        assert await b.receive() == bytes([size % 251]) * size


async def test_a_full_queue_drops_the_newest_and_counts_exactly() -> None:
    limits = Limits(datagram_queue=8)
    a, b = await socketpair_endpoints(limits)
    async with a, b:
        count = 5 * READ_BATCH
        for i in range(count):
            await a.send(b"%d" % i)
        assert await turns_until(lambda: b.stats.received == count)
        kept = [await b.receive() for _ in range(8)]
        assert kept == [b"%d" % i for i in range(8)]
        assert a.stats.sent == count == b.stats.received
        assert b.stats.dropped == count - len(kept)


async def test_a_full_queue_can_drop_the_oldest_instead() -> None:
    limits = Limits(datagram_queue=8, datagram_overflow=OverflowPolicy.DROP_OLDEST)
    a, b = await socketpair_endpoints(limits)
    async with a, b:
        count = 100
        for i in range(count):
            await a.send(b"%d" % i)
        assert await turns_until(lambda: b.stats.received == count)
        kept = [await b.receive() for _ in range(8)]
        assert kept == [b"%d" % i for i in range(count - 8, count)]
        assert b.stats.dropped == count - 8


async def test_icmp_port_unreachable_surfaces_and_the_endpoint_goes_on(
    free_udp_port: Callable[[str], int],
) -> None:
    port = free_udp_port("127.0.0.1")
    async with await aiosock.connect_datagram(f"udp://127.0.0.1:{port}") as client:
        await client.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            await client.receive()
        # Usable afterwards: the next datagram gets its own error, which
        # the next send raises when no receive took it first.
        await client.send(b"still here?")
        assert await turns_until(lambda: client.stats.errors == 2)
        with pytest.raises(ConnectionRefusedError):
            await client.send(b"and now?")
        assert client.stats.sent == 2


async def test_closing_wakes_a_blocked_receiver(
    pair: tuple[Endpoint[bytes], Endpoint[bytes]],
) -> None:
    a, _ = pair
    task = asyncio.create_task(a.receive())
    assert await turns_until(lambda: bool(protocol_of(a).receivers))
    await a.aclose()
    with pytest.raises(ClosedResourceError):
        await task


async def test_cancelled_receive_loses_no_datagram(
    pair: tuple[Endpoint[bytes], Endpoint[bytes]],
) -> None:
    a, b = pair
    task = asyncio.create_task(b.receive())
    assert await turns_until(lambda: bool(protocol_of(b).receivers))
    await a.send(b"kept")
    assert await turns_until(lambda: b.stats.received == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await b.receive() == b"kept"


async def test_the_transport_refuses_an_address_before_anything_is_sent() -> None:
    # What the awaitable send refuses is the same for both drivers (see
    # test_datagram_behaviour.py); the callback API resolves no names.
    async with await aiosock.open_datagram("udp://127.0.0.1:0") as bound:
        with pytest.raises(ValueError, match="from a UDP socket"):
            bound.transport.send(b"x", "unixgram:@x")
        with pytest.raises(ValueError, match="name"):
            bound.transport.send(b"x", "udp://localhost:9")
        assert bound.stats.sent == 0


async def refused(
    opening: Awaitable[object], *, given: int | socket.socket | None = None
) -> str:
    """The message of the ValueError that ``opening`` must raise.

    ``given`` is what the test handed over, a copy of a descriptor or a
    socket: a refusal leaves it open, the caller's, so it is closed here (and
    it fails if the refusal closed it). What is opened instead of refused is
    closed, so that a failing test leaves no descriptor with two owners.
    """
    try:
        opened = await opening
    except ValueError as exc:
        if isinstance(given, socket.socket):
            given.getsockname()  # still open
            given.close()
        elif given is not None:
            os.close(given)
        return str(exc)
    if isinstance(opened, Endpoint):
        await opened.aclose()
    elif isinstance(opened, tuple):
        opened[0].abort()
    raise AssertionError(f"opened, not refused: {opened!r}")


class Recorder(aiosock.DatagramProtocol):
    def __init__(self) -> None:
        self.events: list[object] = []
        self.lost: asyncio.Future[Exception | None] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_made(self, transport: aiosock.DatagramTransport) -> None:
        self.events.append("made")

    def datagram_received(self, data: bytes, address: aiosock.Address | None) -> None:
        self.events.append(data)

    def error_received(self, exc: Exception) -> None:
        self.events.append(type(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


async def test_the_callback_api() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport, protocol = await aiosock.create_datagram_endpoint(
        Recorder, sock=left, limits=Limits(max_frame_size=10)
    )
    with right:
        right.send(b"one")
        right.send(b"x" * 20)
        transport.send(b"back")
        assert right.recv(100) == b"back"
        assert await turns_until(lambda: len(protocol.events) == 3)
        transport.close()
        assert await protocol.lost is None
    assert protocol.events == ["made", b"one", DatagramTruncated, "lost"]
    assert transport.is_closing()
    with pytest.raises(ClosedResourceError):
        transport.send(b"late")


async def test_a_unix_peer_that_is_gone_costs_one_datagram_not_the_endpoint(
    tmp_path: Path, abstract_name: str
) -> None:
    gone = f"unixgram://{short_tmp(tmp_path)}/gone-{os.getpid()}"
    transport, protocol = await aiosock.create_datagram_endpoint(
        Recorder, local=f"unixgram:@{abstract_name}"
    )
    # The callback API reports it, as asyncio's transports do.
    transport.send(b"lost", gone)
    assert protocol.events == ["made", FileNotFoundError]
    assert (transport.stats.sent, transport.stats.errors) == (0, 1)
    transport.close()
    assert await protocol.lost is None
    # The async API raises it from the send that lost it; the next goes on.
    async with await aiosock.open_datagram(f"unixgram:@{abstract_name}-2") as endpoint:
        with pytest.raises(FileNotFoundError):
            await endpoint.send(b"lost", gone)
        await endpoint.send(b"self", endpoint.local_address)
        assert await endpoint.receive() == (b"self", endpoint.local_address)
        assert (endpoint.stats.sent, endpoint.stats.errors) == (1, 1)


@pytest.mark.timeout(120)
async def test_cancelling_anywhere_leaves_no_descriptor_or_file_behind(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    open_sockets: Callable[[], set[str]],
) -> None:
    rng = random.Random(11)
    directory = Path(tempfile.mkdtemp(dir=short_tmp(tmp_path)))

    async def session(round: int) -> None:
        if round % 2:  # a host name: opening awaits the resolver
            server_address, client_address = "udp://:0", "udp://localhost:{port}"
        else:
            server_address = f"unixgram://{directory}/server-{round}"
            client_address = server_address
        async with await aiosock.open_datagram(server_address) as server:
            port = getattr(server.local_address, "port", 0)
            remote = client_address.format(port=port)
            async with await aiosock.connect_datagram(remote) as client:
                for _ in range(5):
                    await client.send(b"x" * rng.randint(0, 2000))
                    data, address = await server.receive()
                    await server.send(data, address)
                    assert await client.receive() == data

    before = open_sockets()
    for round in range(60):  # bounded: 60 cancellations at random points
        task = asyncio.create_task(session(round))
        for _ in range(rng.randint(0, 30)):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert open_sockets() == before, f"descriptors leaked in round {round}"
        assert not os.listdir(directory), f"a socket file left in round {round}"
    assert "Task was destroyed" not in caplog.text
    os.rmdir(directory)


async def fill_until_queued(
    transport: aiosock.DatagramTransport, target: aiosock.Address | None
) -> int:
    """Send until the transport keeps one for later (the peer's queue is full)."""
    for count in range(1, 10_000):
        transport.send(b"filler", target)
        if transport.get_write_buffer_size():
            return count
    raise AssertionError("the peer's queue never filled")


async def test_a_datagram_kept_for_later_is_a_copy_of_the_callers_buffer() -> None:
    a, b = await socketpair_endpoints()
    async with a, b:
        b.transport.pause_reading()
        filled = await fill_until_queued(a.transport, None)
        data = bytearray(b"before")
        # Typed bytes, a datagram without a codec may be any buffer.
        a.transport.send(cast(bytes, data))  # kept: the peer's queue is full
        a.transport.send(cast(bytes, memoryview(b"view")))
        data[:] = b"after!"  # the caller reuses its buffer at once
        b.transport.resume_reading()
        got = [await b.receive() for _ in range(filled + 2)]
        assert got[-2:] == [b"before", b"view"]
        assert a.stats.sent == filled + 2


async def test_a_gather_list_and_wide_memoryviews_are_sized_in_bytes() -> None:
    a, b = await socketpair_endpoints(limits=Limits(max_frame_size=16))
    async with a, b:
        a.transport.send([b"ab", memoryview(b"cd")])  # type: ignore[arg-type]
        assert await b.receive() == b"abcd"
        wide = memoryview(bytes(20)).cast("i")  # 5 items, 20 bytes
        with pytest.raises(DatagramTooLarge):
            await a.send(cast(bytes, wide))  # any buffer, at run time
        await a.send(cast(bytes, wide[:4]))
        assert await b.receive() == bytes(16)


async def test_a_bound_endpoint_receives_on_after_a_queued_send_failed(
    abstract_name: str,
) -> None:
    # A reply kept for a peer whose queue was full, and which is then gone,
    # fails later: the server's next send hears of it, not its receive(),
    # where it would end an `async for` serving everyone else.
    name = abstract_name
    async with (
        await aiosock.open_datagram(f"unixgram:@{name}-server") as server,
        await aiosock.connect_datagram(f"unixgram:@{name}-server") as other,
    ):
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        slow.bind(f"\0{name}-slow")
        slow_address = UnixDatagramAddress(path=f"{name}-slow", abstract=True)
        with slow:
            filled = await fill_until_queued(server.transport, slow_address)
        assert await turns_until(lambda: server.stats.errors > 0)
        await other.send(b"still here")
        assert await server.receive() == (b"still here", other.local_address)
        with pytest.raises(ConnectionRefusedError):
            await server.send(b"hello", other.local_address)
        await server.send(b"hello", other.local_address)
        assert await other.receive() == b"hello"
        stats = server.stats
        assert stats.sent + stats.errors == filled + 1  # every one accounted for
        assert stats.sent >= 1
        assert server.transport.get_write_buffer_size() == 0


async def test_a_protocol_may_abort_from_error_received_while_sends_wait(
    abstract_name: str,
) -> None:
    name = abstract_name
    failures: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, c: failures.append(c))

    class AbortOnError(Recorder):
        def connection_made(self, transport: aiosock.DatagramTransport) -> None:
            super().connection_made(transport)
            self.transport = transport

        def error_received(self, exc: Exception) -> None:
            super().error_received(exc)
            self.transport.abort()

    transport, protocol = await aiosock.create_datagram_endpoint(
        AbortOnError, local=f"unixgram:@{name}-server"
    )
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.bind(f"\0{name}-slow")
    try:
        with slow:
            filled = await fill_until_queued(
                transport, UnixDatagramAddress(path=f"{name}-slow", abstract=True)
            )
            transport.send(b"one more", f"unixgram:@{name}-slow")  # two kept
        assert await closed(protocol) is None
    finally:
        # Lost before the test ends, even when it fails: left to the loop's
        # shutdown, the abort from error_received makes uvloop abort the
        # process, and the failure goes unreported.
        transport.abort()
        await asyncio.wait({protocol.lost}, timeout=5)
    assert failures == []
    assert protocol.events[-2:] == [ConnectionRefusedError, "lost"]
    stats = transport.stats
    # the first kept one failed; the second was given up by the abort
    assert (stats.sent, stats.errors, stats.dropped) == (filled - 1, 1, 1)


async def test_a_receiver_woken_then_cancelled_hands_the_datagram_on(
    pair: tuple[Endpoint[bytes], Endpoint[bytes]],
) -> None:
    a, b = pair
    first = asyncio.create_task(b.receive())
    second = asyncio.create_task(b.receive())
    assert await turns_until(lambda: len(protocol_of(b).receivers) == 2)
    # What the transport does for a datagram, then a timeout in the first
    # receiver's caller, before that receiver has run.
    protocol_of(b).datagram_received(b"one", None)
    first.cancel()
    async with asyncio.timeout(5):  # a failure bound: it comes at once
        assert await second == b"one"
    assert first.cancelled()
    assert b.stats.received == 0  # it came by hand, not from the socket
    await a.send(b"two")
    assert await b.receive() == b"two"


async def test_closing_counts_the_datagrams_it_gives_up(
    pair: tuple[Endpoint[bytes], Endpoint[bytes]],
) -> None:
    a, b = pair
    for data in (b"1", b"2", b"3"):
        await a.send(data)
    assert await turns_until(lambda: b.stats.received == 3)
    assert await b.receive() == b"1"
    await b.aclose()
    assert (b.stats.received, b.stats.dropped) == (3, 2)  # received = 1 + 2


async def test_a_protocol_that_fails_to_start_leaves_nothing_open(
    tmp_path: Path, open_sockets: Callable[[], set[str]]
) -> None:
    class Broken(aiosock.DatagramProtocol):
        def connection_made(self, transport: aiosock.DatagramTransport) -> None:
            raise RuntimeError("no")

    before = open_sockets()
    path = short_tmp(tmp_path) / f"broken-{os.getpid()}.sock"
    with pytest.raises(RuntimeError, match="no"):
        await aiosock.create_datagram_endpoint(Broken, local=f"unixgram://{path}")
    assert open_sockets() == before
    assert not path.exists()


async def test_a_udp_endpoint_binds_the_port_it_is_given(
    free_udp_port: Callable[[str], int],
) -> None:
    port = free_udp_port("127.0.0.1")
    async with await aiosock.open_datagram(f"udp://127.0.0.1:{port}") as server:
        assert server.local_address == UDPAddress(host="127.0.0.1", port=port)


async def test_a_local_host_name_is_resolved_in_the_family_of_the_remote(
    two_family_name: str,
) -> None:
    async with await aiosock.open_datagram("udp://[::1]:0") as server:
        assert server.local_address is not None
        async with await aiosock.connect_datagram(
            server.local_address, local=f"udp://{two_family_name}:0"
        ) as client:
            assert isinstance(client.local_address, UDPAddress)
            assert client.local_address.host == "::1"  # not its IPv4 address
            await client.send(b"v6")
            assert await server.receive() == (b"v6", client.local_address)


class KeepsTransport(Recorder):
    """A :class:`Recorder` that keeps its transport, for callbacks that act."""

    def connection_made(self, transport: aiosock.DatagramTransport) -> None:
        super().connection_made(transport)
        self.transport = transport


async def closed(protocol: Recorder) -> Exception | None:
    """What ``connection_lost`` got; the endpoint must be closing already."""
    async with asyncio.timeout(5):  # a failure bound: it comes in a turn or two
        return await protocol.lost


async def test_pausing_in_datagram_received_stops_delivery_at_once() -> None:
    class OneAtATime(KeepsTransport):
        def datagram_received(
            self, data: bytes, address: aiosock.Address | None
        ) -> None:
            super().datagram_received(data, address)
            self.transport.pause_reading()

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport, protocol = await aiosock.create_datagram_endpoint(OneAtATime, sock=left)
    events = protocol.events
    with right:
        for data in (b"1", b"2", b"3"):
            right.send(data)
        for count in (2, 3):  # "made" and one datagram more each time
            assert await turns_until(lambda: len(events) >= count)  # noqa: B023
            assert not await turns_until(lambda: len(events) > count, 20)  # noqa: B023
            assert transport.is_reading() is False
            transport.resume_reading()
        transport.close()
        assert await closed(protocol) is None
    assert events == ["made", b"1", b"2", "lost"]  # b"3" was never read
    assert transport.stats.received == 2


async def test_closing_in_error_received_delivers_nothing_after(
    free_udp_port: Callable[[str], int],
) -> None:
    class CloseOnError(KeepsTransport):
        def error_received(self, exc: Exception) -> None:
            super().error_received(exc)
            self.transport.close()

    port = free_udp_port("127.0.0.1")
    transport, protocol = await aiosock.create_datagram_endpoint(
        CloseOnError, remote=f"udp://127.0.0.1:{port}"
    )
    transport.send(b"anyone?")  # refused: an ICMP port unreachable comes back
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as late:
        late.bind(("127.0.0.1", port))  # someone there now, who answers
        late.sendto(b"too late", transport.get_extra_info("sockname"))
        # Both wait in the socket: the refusal, read first, closes it.
        assert await closed(protocol) is None
    assert protocol.events == ["made", ConnectionRefusedError, "lost"]
    assert (transport.stats.errors, transport.stats.received) == (1, 0)


async def test_a_connected_endpoint_reads_on_after_every_refusal(
    free_udp_port: Callable[[str], int],
) -> None:
    port = free_udp_port("127.0.0.1")
    async with await aiosock.connect_datagram(f"udp://127.0.0.1:{port}") as client:
        for _ in range(3):
            await client.send(b"anyone?")
            with pytest.raises(ConnectionRefusedError):
                async with asyncio.timeout(5):  # a failure bound
                    await client.receive()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
            server.bind(("127.0.0.1", port))
            server.sendto(b"at last", client.transport.get_extra_info("sockname"))
            async with asyncio.timeout(5):  # a failure bound: it is there
                assert await client.receive() == b"at last"
        assert (client.stats.errors, client.stats.received) == (3, 1)


def read_all(sock: socket.socket) -> int:
    """Read every datagram waiting on a non-blocking ``sock``; how many."""
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(65_536)
            count += 1
    return count


async def test_the_write_buffer_counts_the_bytes_still_kept() -> None:
    # Small frames leave the send buffer at its default size: a read by the
    # peer then makes room for some of what is kept, not for all of it.
    limits = Limits(max_frame_size=64)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    right.setblocking(False)
    transport, protocol = await aiosock.create_datagram_endpoint(
        Recorder, sock=left, limits=limits
    )
    with right:
        await fill_until_queued(transport, None)  # b"filler" is kept
        sent_before = transport.stats.sent
        # Kept behind it: a gather of three parts, then many more; 6 bytes each.
        kept = 402
        transport.send([b"ab", b"cd", b"ef"])  # type: ignore[arg-type]
        for _ in range(kept - 2):
            transport.send(b"later!")
        seen_part_sent = False
        for _ in range(100_000):  # a bound: each turn sends one at least
            still_kept = kept - (transport.stats.sent - sent_before)
            assert transport.get_write_buffer_size() == 6 * still_kept
            if not still_kept:
                break
            seen_part_sent |= still_kept < kept - 1  # the gather went, not all
            with contextlib.suppress(BlockingIOError):
                right.recv(100)  # room for more
            await asyncio.sleep(0)  # a turn of the loop, for the transport
        assert transport.get_write_buffer_size() == 0
        assert seen_part_sent
        transport.close()
        assert await closed(protocol) is None


async def test_each_kept_datagram_that_fails_is_counted_and_the_next_go(
    abstract_name: str, loop_failures: list[dict[str, object]]
) -> None:
    name = abstract_name
    transport, protocol = await aiosock.create_datagram_endpoint(
        Recorder, local=f"unixgram:@{name}-server"
    )
    other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    other.bind(f"\0{name}-other")
    other.setblocking(False)
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.bind(f"\0{name}-slow")
    with other:
        with slow:
            slow_address = UnixDatagramAddress(path=f"{name}-slow", abstract=True)
            filled = await fill_until_queued(transport, slow_address)
            transport.send(b"lost too", slow_address)
            transport.send(b"goes", f"unixgram:@{name}-other")
        # The slow peer is gone: its two kept datagrams fail, the next goes.
        assert await turns_until(lambda: transport.get_write_buffer_size() == 0)
        assert other.recv(100) == b"goes"
    transport.close()
    assert await closed(protocol) is None
    assert protocol.events.count(ConnectionRefusedError) == 2
    assert (transport.stats.sent, transport.stats.errors) == (filled, 2)
    assert loop_failures == []


async def test_pause_and_resume_writing_come_once_per_crossing() -> None:
    class WaterMarks(Recorder):
        def pause_writing(self) -> None:
            self.events.append("pause")

        def resume_writing(self) -> None:
            self.events.append("resume")

    limits = Limits(write_high_water=12, write_low_water=0)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    right.setblocking(False)
    transport, protocol = await aiosock.create_datagram_endpoint(
        WaterMarks, sock=left, limits=limits
    )
    marks: list[object] = []
    with right:
        for _ in range(2):
            await fill_until_queued(transport, None)  # 6 bytes kept
            transport.send(b"123456")  # 12 kept: at high water, not above
            marks.append(protocol.events[-1])
            transport.send(b"1")  # 13 kept: above
            transport.send(b"1")  # still above: no second pause
            assert transport.get_write_buffer_size() == 14
            assert await turns_until(
                lambda: read_all(right) >= 0 and not transport.get_write_buffer_size()
            )
        transport.close()
        assert await closed(protocol) is None
    assert marks == ["made", "resume"]  # no pause at high water itself
    marks = [event for event in protocol.events if event in ("pause", "resume")]
    assert marks == ["pause", "resume", "pause", "resume"]


async def test_abort_closes_at_once() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport, protocol = await aiosock.create_datagram_endpoint(Recorder, sock=left)
    with right:
        assert (transport.is_closing(), transport.is_reading()) == (False, True)
        transport.abort()
        assert (transport.is_closing(), transport.is_reading()) == (True, False)
        with pytest.raises(ClosedResourceError, match=r"^the endpoint was closed$"):
            transport.send(b"x")
        transport.abort()  # idempotent
        assert await closed(protocol) is None
    assert protocol.events == ["made", "lost"]
    assert transport.stats.sent == 0


def assert_closed_under_it(lost: Exception | None) -> None:
    """The endpoint ended as one whose socket the program closed (EBADF)."""
    assert isinstance(lost, ClosedResourceError)
    assert isinstance(lost.__cause__, OSError)
    assert lost.__cause__.errno == errno.EBADF


async def test_a_socket_closed_under_the_endpoint_ends_it_at_the_next_send() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport, protocol = await aiosock.create_datagram_endpoint(Recorder, sock=left)
    with right:
        transport.get_extra_info("socket").close()  # a mistake of the program's
        with pytest.raises(ClosedResourceError) as caught:
            transport.send(b"x")
        assert isinstance(caught.value.__cause__, OSError)
        assert caught.value.__cause__.errno == errno.EBADF
        assert transport.is_closing()
        with pytest.raises(ClosedResourceError):
            transport.send(b"again")  # refused as closed: not tried again
        lost = await closed(protocol)
    assert_closed_under_it(lost)
    assert protocol.events == ["made", "lost"]
    assert transport.stats.errors == 1


async def test_a_socket_closed_under_a_reading_endpoint_ends_it() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport, protocol = await aiosock.create_datagram_endpoint(Recorder, sock=left)
    with right:
        right.send(b"first")
        assert await turns_until(lambda: transport.stats.received == 1)
        # A copy of the descriptor lives on (as in a forked child), so the
        # socket, and the loop's watch on it, outlive the close.
        copy = os.dup(left.fileno())
        try:
            left.close()  # the transport's socket: a mistake of the program's
            right.send(b"second")
            lost = await closed(protocol)
        finally:
            os.close(copy)
    assert_closed_under_it(lost)
    assert protocol.events == ["made", b"first", "lost"]
    assert transport.stats.received == 1


async def test_a_socket_closed_under_an_endpoint_with_datagrams_kept_ends_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    right.setblocking(False)
    transport, protocol = await aiosock.create_datagram_endpoint(Recorder, sock=left)
    with right:
        # Only sending: were it reading too, neither loop could stop
        # watching a descriptor closed under it (asyncio's selector raises
        # EBADF, libuv aborts), and the endpoint would never be lost.
        transport.pause_reading()
        filled = await fill_until_queued(transport, None)
        transport.send(b"kept too")
        await asyncio.sleep(0)  # a turn: the loop starts watching for room
        # A copy of the descriptor lives on (as in a forked child), so the
        # socket, and the loop's watch on it, outlive the close.
        copy = os.dup(left.fileno())
        try:
            left.close()  # the transport's socket: a mistake of the program's
            read_all(right)  # room: the kept datagrams are tried
            lost = await closed(protocol)
        finally:
            os.close(copy)
    assert_closed_under_it(lost)
    [record] = caplog.records  # one line, at warning, naming the endpoint
    assert (record.name, record.levelno) == ("aiosock.datagram", logging.WARNING)
    assert record.getMessage().startswith("datagram endpoint <")
    stats = transport.stats
    # the first kept one failed; the one behind it was given up
    assert (stats.sent, stats.errors, stats.dropped) == (filled - 1, 1, 1)
    assert transport.get_write_buffer_size() == 0


def slow_peer(name: str) -> socket.socket:
    """A non-blocking Unix datagram socket at ``@{name}-slow``, which reads
    only when a test reads it: its queue fills, and kept datagrams wait."""
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.bind(f"\0{name}-slow")
    slow.setblocking(False)
    return slow


@pytest.mark.parametrize("kept", [1, 2])
@pytest.mark.parametrize("woken_by", ["room to send", "a datagram to read"])
async def test_a_socket_closed_under_a_reading_and_sending_endpoint_ends_it(
    woken_by: str,
    kept: int,
    abstract_name: str,
    loop_failures: list[dict[str, object]],
) -> None:
    # Watched both ways when its descriptor goes: asyncio's selector fails
    # to stop watching one way (EBADF) and hung the endpoint; libuv aborted
    # the process when the watch changed to one way on the closed descriptor.
    name = abstract_name
    with slow_peer(name) as slow:
        # Connected: its socket is writable only when the peer has room.
        transport, protocol = await aiosock.create_datagram_endpoint(
            Recorder, local=f"unixgram:@{name}-server", remote=f"unixgram:@{name}-slow"
        )
        filled = await fill_until_queued(transport, None)  # one kept
        for _ in range(kept - 1):
            transport.send(b"kept too")
        assert transport.is_reading()
        await asyncio.sleep(0)  # a turn: the loop starts watching for room
        sock = transport.get_extra_info("socket")
        # A copy of the descriptor lives on (as in a forked child), so the
        # socket, and the loop's watch on it, outlive the close.
        copy = os.dup(sock.fileno())
        try:
            sock.close()  # the transport's socket: a mistake of the program's
            if woken_by == "room to send":
                read_all(slow)
            else:
                slow.sendto(b"wake up", f"\0{name}-server")
            lost = await closed(protocol)
        finally:
            os.close(copy)
    assert isinstance(lost, ClosedResourceError)
    assert str(lost) == f"the socket of unixgram:@{name}-server was already closed"
    assert isinstance(lost.__cause__, OSError)
    assert lost.__cause__.errno == errno.EBADF
    assert transport.is_closing()
    with pytest.raises(ClosedResourceError):
        transport.send(b"late")
    stats = transport.stats
    if woken_by == "room to send":  # the first kept one failed, the rest given up
        assert (stats.sent, stats.errors, stats.dropped) == (filled - 1, 1, kept - 1)
    else:  # every kept one given up; a read that fails loses no datagram
        assert (stats.sent, stats.errors, stats.dropped) == (filled - 1, 0, kept)
    assert stats.received == 0
    assert protocol.events == ["made", "lost"]
    assert loop_failures == []


async def test_extra_info_gives_the_socket_and_its_names_as_asyncio_does() -> None:
    async with await aiosock.open_datagram("udp://127.0.0.1:0") as server:
        assert isinstance(server.local_address, UDPAddress)
        name = ("127.0.0.1", server.local_address.port)
        async with await aiosock.connect_datagram(server.local_address) as client:
            sock = client.transport.get_extra_info("socket")
            assert isinstance(sock, socket.socket)
            assert client.transport.get_extra_info("sockname") == sock.getsockname()
            assert client.transport.get_extra_info("peername") == name
            assert server.transport.get_extra_info("sockname") == name
            # not connected: no peer name, and no error
            assert server.transport.get_extra_info("peername", "none") == "none"
            assert client.transport.get_extra_info("nonsense", 42) == 42


async def test_adopting_takes_the_descriptor_or_the_socket_and_nothing_else(
    abstract_name: str, loop_failures: list[dict[str, object]]
) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        fd = os.dup(left.fileno())
        opening = aiosock.create_datagram_endpoint(
            Recorder, local=f"fd://{fd}", remote=f"unixgram:@{abstract_name}"
        )
        message = await refused(opening, given=fd)
        assert message == f"fd://{fd} is adopted as it is: give nothing else"
        fd = os.dup(left.fileno())
        opening = aiosock.create_datagram_endpoint(
            Recorder, local=f"fd://{fd}", sock=right
        )
        message = await refused(opening, given=fd)
        assert message == f"fd://{fd} is adopted as it is: give nothing else"
        alone = "sock= is adopted as it is: give no address with it"
        sock = socket.socket(fileno=os.dup(left.fileno()))
        opening = aiosock.create_datagram_endpoint(
            Recorder, sock=sock, local="unixgram:@x"
        )
        assert await refused(opening, given=sock) == alone
        sock = socket.socket(fileno=os.dup(left.fileno()))
        opening = aiosock.create_datagram_endpoint(
            Recorder, sock=sock, remote="unixgram:@x"
        )
        assert await refused(opening, given=sock) == alone
        transport, protocol = await aiosock.create_datagram_endpoint(
            Recorder, local=f"fd://{left.detach()}"
        )
        assert transport.connected
        transport.send(b"adopted")
        assert right.recv(100) == b"adopted"
        transport.close()
        assert await closed(protocol) is None
    assert loop_failures == []


@pytest.mark.parametrize(
    ("host", "largest"), [("127.0.0.1", 65_507), ("[::1]", 65_527)]
)
async def test_a_bound_udp_endpoint_sends_the_largest_datagram_of_its_family(
    host: str, largest: int
) -> None:
    async with await aiosock.open_datagram(f"udp://{host}:0") as endpoint:
        assert endpoint.max_datagram_size == largest
        itself = endpoint.local_address
        await endpoint.send(bytes(largest), itself)
        assert await endpoint.receive() == (bytes(largest), itself)
        with pytest.raises(DatagramTooLarge):
            await endpoint.send(bytes(largest + 1), itself)


async def test_a_gather_goes_to_the_address_given_now_or_later(
    abstract_name: str,
) -> None:
    transport, protocol = await aiosock.create_datagram_endpoint(
        Recorder, local=f"unixgram:@{abstract_name}-server"
    )
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(f"\0{abstract_name}-peer")
    peer.setblocking(False)
    address = UnixDatagramAddress(path=f"{abstract_name}-peer", abstract=True)
    with peer:
        transport.send([b"ab", memoryview(b"cd")], address)  # type: ignore[arg-type]
        assert peer.recv(100) == b"abcd"
        filled = await fill_until_queued(transport, address)
        transport.send([b"ef", b"gh"], address)  # type: ignore[arg-type]
        got: list[bytes] = []

        def peer_reads() -> bool:
            with contextlib.suppress(BlockingIOError):
                while True:
                    got.append(peer.recv(100))
            return not transport.get_write_buffer_size()

        assert await turns_until(peer_reads)
        peer_reads()
        assert got == [b"filler"] * filled + [b"efgh"]
    transport.close()
    assert await closed(protocol) is None


async def test_close_refuses_sends_at_once_and_reading_stays_stopped() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport, protocol = await aiosock.create_datagram_endpoint(Recorder, sock=left)
    with right:
        transport.close()
        assert (transport.is_closing(), transport.is_reading()) == (True, False)
        transport.resume_reading()
        assert transport.is_reading() is False
        with pytest.raises(ClosedResourceError, match=r"^the endpoint was closed$"):
            transport.send(b"x")
        assert await closed(protocol) is None
    assert protocol.events == ["made", "lost"]
    assert transport.stats.sent == 0


async def test_a_datagram_kept_behind_a_full_peer_goes_after_a_refused_send(
    abstract_name: str, loop_failures: list[dict[str, object]]
) -> None:
    transport, protocol = await aiosock.create_datagram_endpoint(
        Recorder, local=f"unixgram:@{abstract_name}-server"
    )
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.bind(f"\0{abstract_name}-slow")
    slow.setblocking(False)
    with slow:
        transport.send(b"lost", f"unixgram:@{abstract_name}-gone")  # refused
        slow_address = UnixDatagramAddress(path=f"{abstract_name}-slow", abstract=True)
        filled = await fill_until_queued(transport, slow_address)  # and one kept
        assert protocol.events == ["made", ConnectionRefusedError]
        assert await turns_until(
            lambda: read_all(slow) >= 0 and not transport.get_write_buffer_size()
        )
    transport.close()
    assert await closed(protocol) is None
    assert (transport.stats.sent, transport.stats.errors) == (filled, 1)
    assert loop_failures == []


async def test_dropped_counts_what_the_queue_and_an_abort_gave_up() -> None:
    limits = Limits(datagram_queue=1)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    endpoint = await endpoint_on(left, limits)
    with right:
        for data in (b"1", b"2", b"3"):
            right.send(data)
        assert await turns_until(lambda: endpoint.stats.received == 3)
        assert endpoint.stats.dropped == 2  # the queue holds one
        await fill_until_queued(endpoint.transport, None)
        endpoint.transport.send(b"kept too")
        endpoint.transport.abort()  # gives up the two kept
        assert endpoint.transport.get_write_buffer_size() == 0
        assert endpoint.stats.dropped == 4
        await endpoint.aclose()  # and the one queued
    assert endpoint.stats.dropped == 5


async def test_closing_in_connection_made_never_starts_reading() -> None:
    class CloseAtOnce(Recorder):
        def connection_made(self, transport: aiosock.DatagramTransport) -> None:
            super().connection_made(transport)
            transport.close()

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with right:
        right.send(b"never read")
        transport, protocol = await aiosock.create_datagram_endpoint(
            CloseAtOnce, sock=left
        )
        assert (transport.is_closing(), transport.is_reading()) == (True, False)
        assert await closed(protocol) is None
    assert protocol.events == ["made", "lost"]
    assert transport.stats.received == 0


async def test_repr_shows_the_kind_the_addresses_and_the_state(
    abstract_name: str,
) -> None:
    name = abstract_name
    with slow_peer(name) as slow:
        endpoint = Endpoint[bytes](Limits())
        await aiosock.create_datagram_endpoint(
            lambda: protocol_of(endpoint),
            local=f"unixgram:@{name}",
            remote=f"unixgram:@{name}-slow",
        )
        transport = endpoint.transport
        names = f"unixgram:@{name} -> unixgram:@{name}-slow"
        assert repr(transport) == f"<SocketDatagramTransport {names} open>"
        assert repr(endpoint) == f"<Endpoint {names} open>"
        await fill_until_queued(transport, None)  # one kept: closing waits
        closing = asyncio.create_task(endpoint.aclose())
        assert not await turns_until(closing.done, 5)
        assert repr(transport) == f"<SocketDatagramTransport {names} closing>"
        assert repr(endpoint) == f"<Endpoint {names} closing>"
        assert await turns_until(lambda: read_all(slow) >= 0 and closing.done())
        await closing
    assert repr(transport) == f"<SocketDatagramTransport {names} closed>"
    assert repr(endpoint) == f"<Endpoint {names} closed>"


async def test_any_transport_shows_its_kind_addresses_and_whether_closing() -> None:
    network = MemoryNetwork()
    async with (
        await network.open("udp://127.0.0.1:5000") as server,
        await network.connect("udp://127.0.0.1:5000") as client,
    ):
        here, there = server.local_address, client.local_address
        assert repr(server.transport) == f"<MemoryDatagramTransport {here} open>"
        assert repr(client.transport) == (
            f"<MemoryDatagramTransport {there} -> {here} open>"
        )
    assert repr(server.transport) == f"<MemoryDatagramTransport {here} closing>"
