"""The awaitable datagram Endpoint, and open_datagram / connect_datagram that
make one, on both loops.

What every kind of endpoint owes is checked by the conformance suite (see
test_testing_datagrams.py); the socket underneath by test_datagram.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import socket
from collections.abc import Callable

import pytest
from test_datagram import endpoint_on  # a sibling

import aiosock
from aiosock import (
    ClosedResourceError,
    DatagramTooLarge,
    Endpoint,
    LengthPrefixed,
    Limits,
    UDPAddress,
    UnixDatagramAddress,
)
from aiosock.testing import MemoryNetwork, turns_until

# A failure bound for a wait that a broken endpoint leaves waiting for ever;
# what is awaited comes within a few turns of the loop.
WAIT = 5


def abstract(name: str) -> UnixDatagramAddress:
    return UnixDatagramAddress(path=name, abstract=True)


async def test_addresses_may_be_given_as_text_or_as_address_values(
    abstract_name: str,
) -> None:
    server_address = abstract(f"{abstract_name}-server")
    async with await aiosock.open_datagram(server_address) as server:
        assert server.local_address == server_address
        async with await aiosock.connect_datagram(
            f"unixgram:@{abstract_name}-server",
            local=f"unixgram:@{abstract_name}-client",
        ) as client:
            assert client.local_address == abstract(f"{abstract_name}-client")
            await client.send(b"hi")
            assert await server.receive() == (b"hi", client.local_address)


async def test_open_and_connect_frame_with_the_codec_given(abstract_name: str) -> None:
    codec = LengthPrefixed()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    raw.bind(f"\0{abstract_name}-raw")
    raw.setblocking(False)
    with raw:
        async with await aiosock.connect_datagram(
            abstract(f"{abstract_name}-raw"), codec=codec
        ) as client:
            await client.send(b"hi")  # on loopback, there at once
            assert raw.recv(100) == b"\x00\x00\x00\x02hi"
        async with await aiosock.open_datagram(
            f"unixgram:@{abstract_name}-server", codec=codec
        ) as server:
            raw.sendto(b"\x00\x00\x00\x02hi", f"\0{abstract_name}-server")
            assert await server.receive() == (b"hi", abstract(f"{abstract_name}-raw"))


async def test_open_and_connect_apply_the_limits_given(abstract_name: str) -> None:
    limits = Limits(max_frame_size=100)
    async with await aiosock.open_datagram(
        f"unixgram:@{abstract_name}", limits=limits
    ) as server:
        assert server.local_address is not None
        async with await aiosock.connect_datagram(
            server.local_address, limits=limits
        ) as client:
            assert server.max_datagram_size == client.max_datagram_size == 100
            with pytest.raises(DatagramTooLarge):
                await client.send(bytes(101))
            with pytest.raises(DatagramTooLarge):
                await server.send(bytes(101), client.local_address)


async def test_iterating_a_bound_endpoint_gives_each_datagram_with_its_sender(
    abstract_name: str,
) -> None:
    async with (
        await aiosock.open_datagram(f"unixgram:@{abstract_name}") as server,
        await aiosock.connect_datagram(f"unixgram:@{abstract_name}") as client,
    ):
        for data in (b"1", b"2"):
            await client.send(data)
        got = []
        async with asyncio.timeout(WAIT):
            async for item in server:
                got.append(item)
                if len(got) == 2:
                    break
        assert got == [(b"1", client.local_address), (b"2", client.local_address)]


async def test_iterating_a_connected_endpoint_raises_a_refusal_in_its_place(
    free_udp_port: Callable[[str], int],
) -> None:
    port = free_udp_port("127.0.0.1")
    async with await aiosock.connect_datagram(f"udp://127.0.0.1:{port}") as client:
        await client.send(b"anyone?")  # refused: an ICMP port unreachable
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as late:
            late.bind(("127.0.0.1", port))  # someone there now, who answers
            late.sendto(b"here now", client.transport.get_extra_info("sockname"))
            assert await turns_until(lambda: client.stats.received == 1)
        async with asyncio.timeout(WAIT):
            with pytest.raises(ConnectionRefusedError):  # first, as it happened
                await anext(client)
            assert await anext(client) == b"here now"  # and the iteration goes on


async def test_a_host_name_is_resolved_in_the_family_of_the_socket(
    two_family_name: str,
) -> None:
    async with (
        await aiosock.open_datagram("udp://[::1]:0") as server,
        await aiosock.open_datagram("udp://[::1]:0") as client,
    ):
        assert isinstance(server.local_address, UDPAddress)
        port = server.local_address.port
        # The name's IPv4 address comes first; an IPv6 socket sends to its ::1.
        await client.send(b"v6", f"udp://{two_family_name}:{port}")
        async with asyncio.timeout(WAIT):
            assert await server.receive() == (b"v6", client.local_address)


async def test_an_endpoint_without_a_socket_resolves_a_host_name_too(
    two_family_name: str,
) -> None:
    network = MemoryNetwork()
    async with (
        await network.open("udp://127.0.0.1:0") as server,
        await network.open("udp://127.0.0.1:0") as client,
    ):
        assert isinstance(server.local_address, UDPAddress)
        port = server.local_address.port
        await client.send(b"x", f"udp://{two_family_name}:{port}")  # the first
        async with asyncio.timeout(WAIT):
            assert await server.receive() == (b"x", client.local_address)


def read_all(sock: socket.socket) -> None:
    """Read every datagram waiting on a non-blocking ``sock``."""
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(65_536)


async def test_send_waits_while_more_than_high_water_is_kept() -> None:
    limits = Limits(write_high_water=10, write_low_water=0)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    right.setblocking(False)
    endpoint = await endpoint_on(left, limits)
    async with endpoint:
        with right:
            for _ in range(100_000):  # a bound: until the peer's queue is full
                await endpoint.send(b"filler")  # kept or not, below high water
                if endpoint.transport.get_write_buffer_size():
                    break
            sending = asyncio.create_task(endpoint.send(b"0123456789"))
            # 16 bytes kept: above high water, so the send waits
            assert not await turns_until(sending.done, 100)

            def peer_reads() -> bool:
                read_all(right)
                return sending.done()

            assert await turns_until(peer_reads)
            await sending  # returned once everything kept went
            assert endpoint.transport.get_write_buffer_size() == 0
            await endpoint.send(b"at once")


async def socketpair_endpoint(
    limits: Limits | None = None,
) -> tuple[Endpoint[bytes], socket.socket]:
    """An endpoint on one end of a socketpair, and the other end, non-blocking."""
    limits = limits or Limits()
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    right.setblocking(False)
    endpoint = await endpoint_on(left, limits)
    return endpoint, right


def fill(endpoint: Endpoint[bytes]) -> int:
    """Send until the endpoint keeps one for later (the peer's queue is full)."""
    for count in range(1, 100_000):
        endpoint.transport.send(b"filler")
        if endpoint.transport.get_write_buffer_size():
            return count
    raise AssertionError("the peer's queue never filled")


async def test_receive_gives_up_after_the_read_timeout() -> None:
    endpoint, peer = await socketpair_endpoint(Limits(read_timeout=0.01))
    async with endpoint:
        with peer:
            receiving = asyncio.create_task(endpoint.receive())
            await asyncio.wait({receiving}, timeout=WAIT)  # a failure bound
            assert isinstance(receiving.exception(), TimeoutError)
            peer.send(b"later")  # the endpoint goes on
            assert await turns_until(lambda: endpoint.stats.received == 1)
            assert await endpoint.receive() == b"later"


def cancelled_futures() -> int:
    gc.collect()
    return sum(
        isinstance(thing, asyncio.Future) and thing.cancelled()
        for thing in gc.get_objects()
    )


async def test_receives_that_time_out_keep_nothing() -> None:
    # A server that polls an idle socket with a read timeout must not grow.
    endpoint, peer = await socketpair_endpoint(Limits(read_timeout=0.001))
    async with endpoint:
        with peer:
            before = cancelled_futures()
            for _ in range(50):
                with pytest.raises(TimeoutError):
                    await endpoint.receive()
            assert cancelled_futures() - before < 10
            peer.send(b"still")
            assert await turns_until(lambda: endpoint.stats.received == 1)
            assert await endpoint.receive() == b"still"


async def test_aclose_ends_a_blocked_receive_before_the_kept_datagrams_go() -> None:
    endpoint, peer = await socketpair_endpoint()
    with peer:
        filled = fill(endpoint)
        receiving = asyncio.create_task(endpoint.receive())
        assert not await turns_until(receiving.done, 20)
        closing = asyncio.create_task(endpoint.aclose())
        assert await turns_until(receiving.done)
        assert not closing.done()  # it sends what is kept first
        with pytest.raises(ClosedResourceError, match=r"^the endpoint was closed$"):
            receiving.result()

        def peer_reads() -> bool:
            read_all(peer)
            return closing.done()

        assert await turns_until(peer_reads)
        await closing
    assert (endpoint.stats.sent, endpoint.stats.dropped) == (filled, 0)


async def test_a_receive_raises_why_the_endpoint_ended_under_it() -> None:
    endpoint, peer = await socketpair_endpoint()
    async with endpoint:
        with peer:
            receiving = asyncio.create_task(endpoint.receive())
            assert not await turns_until(receiving.done, 20)
            endpoint.transport.get_extra_info("socket").close()  # a mistake
            with pytest.raises(ClosedResourceError):
                await endpoint.send(b"x")
            await asyncio.wait({receiving}, timeout=WAIT)  # a failure bound
            error = receiving.exception()
    assert isinstance(error, ClosedResourceError)
    assert isinstance(error.__cause__, OSError)
    assert error.__cause__.errno == errno.EBADF


async def test_an_abort_ends_a_send_waiting_above_high_water() -> None:
    endpoint, peer = await socketpair_endpoint(
        Limits(write_high_water=10, write_low_water=0)
    )
    async with endpoint:
        with peer:
            fill(endpoint)
            sending = asyncio.create_task(endpoint.send(b"0123456789"))
            receiving = asyncio.create_task(endpoint.receive())
            assert not await turns_until(lambda: sending.done() or receiving.done(), 20)
            endpoint.transport.abort()
            await asyncio.wait({sending, receiving}, timeout=WAIT)  # a failure bound
    for task in (sending, receiving):
        error = task.exception()
        assert isinstance(error, ClosedResourceError)
        assert str(error) == "the endpoint was closed"
    assert endpoint.stats.dropped == 2


async def test_an_endpoint_not_yet_opened_says_so() -> None:
    # What create_datagram_endpoint's protocol factory makes, before it is
    # given a transport (a log line from connection_made's caller, say).
    assert repr(Endpoint[bytes](Limits())) == "<Endpoint unopened>"


async def test_an_endpoint_shows_no_callbacks() -> None:
    # The callbacks belong to the protocol it owns, not to its public face.
    callbacks = {
        name for name in dir(aiosock.DatagramProtocol) if not name.startswith("_")
    }
    assert callbacks & set(dir(Endpoint)) == set()
    async with await aiosock.open_datagram("udp://127.0.0.1:0") as endpoint:
        assert callbacks & set(dir(endpoint)) == set()
