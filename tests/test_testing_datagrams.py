"""The datagram conformance suite over every kind of datagram endpoint on both
loops; that each check can fail; and the in-memory network on its own."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from test_datagram_behaviour import has_ipv6_loopback  # a sibling
from test_testing_streams import Blind, Unpassing  # a sibling

import aiosock
import aiosock.testing
from aiosock import (
    Address,
    ClosedResourceError,
    DatagramError,
    DatagramProtocol,
    DatagramTooLarge,
    DatagramTransport,
    DatagramTruncated,
    Endpoint,
    LengthPrefixed,
    Limits,
    UDPAddress,
    UnixDatagramAddress,
)
from aiosock.aio._waiting import WaitingLine
from aiosock.aio.endpoint import protocol_of
from aiosock.core.datagrams import DatagramQueue
from aiosock.testing import turns_until
from aiosock.testing.datagrams import (
    DATAGRAM_CHECKS,
    DatagramPair,
    DatagramPairMaker,
    check_a_woken_receiver_cancelled_passes_the_datagram_on,
    check_aclose_is_idempotent_and_safe_under_cancellation,
    check_bound_and_connected_endpoints,
    check_boundaries_at_every_size,
    check_cancelled_receive_loses_no_datagram,
    check_closing_wakes_blocked_receivers,
    check_full_queue_counts_every_datagram,
    check_oversize_send_raises_before_sending,
    check_receive_after_close_raises_with_datagrams_queued,
    check_refusal_surfaces_once,
    check_sending_goes_on_after_a_refusal,
    check_use_after_close,
)
from aiosock.testing.network import MemoryDatagramTransport, MemoryNetwork

Check = Callable[[DatagramPairMaker], Awaitable[None]]


def served(server_address: Callable[[], str]) -> DatagramPairMaker:
    """Pairs of aiosock's own endpoints: open_datagram and connect_datagram."""

    @asynccontextmanager
    async def make(*, limits: Limits | None = None) -> AsyncIterator[DatagramPair]:
        async with await aiosock.open_datagram(
            server_address(), limits=limits
        ) as server:
            assert server.local_address is not None
            async with await aiosock.connect_datagram(
                server.local_address, limits=limits
            ) as client:
                yield DatagramPair(server=server, client=client)

    return make


@asynccontextmanager
async def socketpair_pair(
    *, limits: Limits | None = None
) -> AsyncIterator[DatagramPair]:
    """Both ends of a Unix datagram socketpair, adopted through fd:// addresses.

    Each end is connected to the other, so the server is too.
    """
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with right:
        async with (
            await aiosock.connect_datagram(
                f"fd://{left.detach()}", limits=limits
            ) as server,
            await aiosock.connect_datagram(
                f"fd://{right.detach()}", limits=limits
            ) as client,
        ):
            yield DatagramPair(server=server, client=client, server_connected=True)


def memory_unix(network: MemoryNetwork) -> DatagramPairMaker:
    """The memory network with Unix addresses: a path, an auto-bound client."""
    numbers = itertools.count()

    @asynccontextmanager
    async def make(*, limits: Limits | None = None) -> AsyncIterator[DatagramPair]:
        address = f"unixgram:///memory/{next(numbers)}"
        async with (
            await network.open(address, limits=limits) as server,
            await network.connect(address, limits=limits) as client,
        ):
            yield DatagramPair(server=server, client=client)

    return make


@pytest.fixture
def unix_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for socket files, short enough for sun_path (107 bytes)."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix="aiosock-"))
    yield directory
    directory.rmdir()  # empty: every endpoint removes its own file


def pair_makers(unix_dir: Path) -> dict[str, DatagramPairMaker]:
    numbers = itertools.count()  # a check may hold two pairs: two paths
    return {
        "udp4": served(lambda: "udp://127.0.0.1:0"),
        "udp6": served(lambda: "udp://[::1]:0"),
        "unix": served(lambda: f"unixgram://{unix_dir}/{next(numbers)}.sock"),
        "abstract": served(
            lambda: f"unixgram:@aiosock-test-{os.getpid()}-{os.urandom(6).hex()}"
        ),
        "socketpair": socketpair_pair,
        "memory": MemoryNetwork().pair,
        "memory-unix": memory_unix(MemoryNetwork()),
    }


KINDS = list(pair_makers(Path("/unused")))


@pytest.mark.parametrize("check", DATAGRAM_CHECKS, ids=lambda check: check.__name__[6:])
@pytest.mark.parametrize("kind", KINDS)
async def test_datagram_conformance(
    kind: str,
    check: Check,
    unix_dir: Path,
    open_sockets: Callable[[], set[str]],
) -> None:
    if kind == "udp6" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    before = open_sockets()
    await check(pair_makers(unix_dir)[kind])
    assert open_sockets() == before, "the check left a socket open"


def test_every_check_is_listed_once() -> None:
    module = aiosock.testing.datagrams
    checks = {getattr(module, name) for name in module.__all__ if name[:6] == "check_"}
    assert checks == set(DATAGRAM_CHECKS)
    assert len(DATAGRAM_CHECKS) == len(checks)


def test_the_package_exports_the_suite_and_the_network() -> None:
    for name in aiosock.testing.__all__:
        assert hasattr(aiosock.testing, name), name
    assert aiosock.testing.MemoryNetwork is MemoryNetwork


# ---------------------------------------------- each check can fail


def patch(monkeypatch: pytest.MonkeyPatch, name: str, replacement: object) -> None:
    monkeypatch.setattr(MemoryDatagramTransport, name, replacement)


async def test_the_suite_sees_a_datagram_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    take = MemoryDatagramTransport._take

    def cut(
        self: MemoryDatagramTransport,
        datagram: bytes,
        source: UDPAddress | UnixDatagramAddress,
    ) -> None:
        take(self, datagram[:1000], source)

    patch(monkeypatch, "_take", cut)
    with pytest.raises(AssertionError, match="datagrams changed"):
        await check_boundaries_at_every_size(MemoryNetwork().pair)


async def test_the_suite_sees_a_connected_endpoint_hear_a_stranger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    take = MemoryDatagramTransport._take
    patch(monkeypatch, "_arrive", take)  # no check of the source
    with pytest.raises(AssertionError, match="a connected receive"):
        await check_bound_and_connected_endpoints(MemoryNetwork().pair)


async def test_the_suite_sees_a_refusal_missing_or_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = MemoryDatagramTransport._refused

    def twice(self: MemoryDatagramTransport, target: UDPAddress) -> None:
        refused(self, target)
        refused(self, target)

    patch(monkeypatch, "_refused", twice)
    with pytest.raises(AssertionError, match="counted 2 times"):
        await check_refusal_surfaces_once(MemoryNetwork().pair)
    patch(monkeypatch, "_refused", lambda self, target: None)
    with pytest.raises(AssertionError, match="no refusal"):
        await check_refusal_surfaces_once(MemoryNetwork().pair)


async def test_the_suite_sees_an_endpoint_that_a_refusal_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = MemoryDatagramTransport._refused

    def and_close(self: MemoryDatagramTransport, target: UDPAddress) -> None:
        refused(self, target)
        self.close()

    patch(monkeypatch, "_refused", and_close)
    with pytest.raises(AssertionError, match="not ConnectionRefusedError"):
        await check_sending_goes_on_after_a_refusal(MemoryNetwork().pair)


async def test_the_suite_sees_a_queue_without_the_limit() -> None:
    @asynccontextmanager
    async def unlimited(*, limits: Limits | None = None) -> AsyncIterator[DatagramPair]:
        async with MemoryNetwork().pair() as pair:  # limits ignored
            yield pair

    with pytest.raises(AssertionError, match="nothing to receive gave"):
        await check_full_queue_counts_every_datagram(unlimited)


async def test_the_suite_sees_a_datagram_past_the_limit_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def understated(self: MemoryDatagramTransport) -> int:
        return self._max_send - 1

    patch(monkeypatch, "max_datagram_size", property(understated))
    with pytest.raises(AssertionError, match="was taken"):
        await check_oversize_send_raises_before_sending(MemoryNetwork().pair)


async def test_the_suite_sees_a_send_after_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send = MemoryDatagramTransport.send

    def heedless(
        self: MemoryDatagramTransport, data: bytes, address: Address | None = None
    ) -> None:
        if not self._closing:  # and if it is, pretend to send
            send(self, data, address)

    patch(monkeypatch, "send", heedless)
    with pytest.raises(AssertionError, match="send\\(\\) after close"):
        await check_use_after_close(MemoryNetwork().pair)


async def test_the_suite_sees_an_endpoint_that_will_not_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch(monkeypatch, "close", lambda self: None)
    patch(monkeypatch, "abort", lambda self: None)
    network = MemoryNetwork()

    @asynccontextmanager
    async def stubborn(*, limits: Limits | None = None) -> AsyncIterator[DatagramPair]:
        # aclose() waits for a close that never comes: not for long.
        async with network.pair(limits=Limits(close_timeout=0.01)) as pair:
            yield pair

    with pytest.raises(AssertionError, match="no refusal"):
        await check_aclose_is_idempotent_and_safe_under_cancellation(stubborn)


def memory_pairs(
    *,
    server: type[Endpoint[Any]] = Endpoint,
    client: type[Endpoint[Any]] = Endpoint,
) -> DatagramPairMaker:
    """Memory pairs whose server and client are of the classes given."""

    @asynccontextmanager
    async def make(*, limits: Limits | None = None) -> AsyncIterator[DatagramPair]:
        limits = limits or Limits()
        network = MemoryNetwork()
        bound, connected = server(limits), client(limits)
        await network.create_endpoint(
            lambda: protocol_of(bound), local="udp://127.0.0.1:0", limits=limits
        )
        assert bound.local_address is not None
        await network.create_endpoint(
            lambda: protocol_of(connected), remote=bound.local_address, limits=limits
        )
        async with bound, connected:
            yield DatagramPair(server=bound, client=connected)

    return make


class Forgetful(Endpoint[tuple[bytes, Address | None]]):
    """Loses the datagram that woke a receive() cancelled before it returned."""

    async def receive(self) -> tuple[bytes, Address | None]:
        try:
            return await super().receive()
        except asyncio.CancelledError:
            queue = protocol_of(self).queue
            if queue:
                queue.pop()
            raise


async def test_the_suite_sees_a_cancelled_receive_lose_a_datagram() -> None:
    with pytest.raises(AssertionError, match="never arrived"):
        await check_cancelled_receive_loses_no_datagram(memory_pairs(server=Forgetful))


def receivers_in(line: type[WaitingLine]) -> type[Endpoint[Any]]:
    """An Endpoint whose receivers wait in a ``line``."""

    class Lined(Endpoint[Any]):
        def __init__(self, limits: Limits) -> None:
            super().__init__(limits)
            protocol_of(self).receivers = line(asyncio.get_running_loop())

    return Lined


@pytest.mark.parametrize("line", [Unpassing, Blind], ids=["woken", "cancelled"])
async def test_the_suite_sees_a_wake_up_lost_with_a_cancelled_receiver(
    line: type[WaitingLine],
) -> None:
    with pytest.raises(AssertionError, match="the second never got the datagram"):
        await check_a_woken_receiver_cancelled_passes_the_datagram_on(
            memory_pairs(server=receivers_in(line))
        )


async def test_the_suite_sees_datagrams_received_after_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aclose() forgets to give up what is queued (only aclose() clears it).
    monkeypatch.setattr(DatagramQueue, "clear", lambda self: None)
    with pytest.raises(AssertionError, match=r"receive\(\) after close gave"):
        await check_receive_after_close_raises_with_datagrams_queued(
            MemoryNetwork().pair
        )


class Unwaking(Endpoint[Any]):
    """Forgets the receivers waiting when it closes: none of them is woken."""

    async def aclose(self) -> None:
        # A new line: nobody in it.
        protocol_of(self).receivers = WaitingLine(asyncio.get_running_loop())
        await super().aclose()


@pytest.mark.parametrize(
    ("end", "complaint"),
    [
        ("client", r"the blocked receive\(\) never returned"),
        ("server", "async for went on after close"),
    ],
    ids=["client", "server"],
)
async def test_the_suite_sees_a_close_that_wakes_no_receiver(
    end: str, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        await check_closing_wakes_blocked_receivers(memory_pairs(**{end: Unwaking}))


def test_every_check_has_a_self_test() -> None:
    """A check no self-test shows failing could be passing everything."""
    called = set()
    for name, test in globals().items():
        if name.startswith("test_the_suite_sees_"):
            called.update(test.__code__.co_names)
    missing = [c.__name__ for c in DATAGRAM_CHECKS if c.__name__ not in called]
    assert not missing, f"no self-test shows these checks failing: {missing}"


# ------------------------------------------------ the memory network


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.events: list[object] = []

    def connection_made(self, transport: DatagramTransport) -> None:
        self.events.append("made")

    def datagram_received(self, data: bytes, address: Address | None) -> None:
        self.events.append((data, address))

    def error_received(self, exc: Exception) -> None:
        self.events.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))


async def test_delivery_is_on_a_later_turn_whole_and_in_order() -> None:
    network = MemoryNetwork()
    receiver, recorder = await network.create_endpoint(
        Recorder, local="unixgram:@receiver"
    )
    sender, _ = await network.create_endpoint(Recorder, local="unixgram:@sender")
    sender.send(b"", "unixgram:@receiver")
    sender.send(b"one", "unixgram:@receiver")
    # Typed bytes, a datagram without a codec may be any buffer.
    two = cast(bytes, bytearray(b"two"))
    sender.send(two, UnixDatagramAddress(path="receiver", abstract=True))
    assert recorder.events == ["made"]  # not inside send()
    assert await turns_until(lambda: len(recorder.events) == 4)
    origin = UnixDatagramAddress(path="sender", abstract=True)
    assert recorder.events[1:] == [(b"", origin), (b"one", origin), (b"two", origin)]
    assert (sender.stats.sent, receiver.stats.received) == (3, 3)


async def test_port_zero_picks_free_ports_and_close_frees_the_address() -> None:
    network = MemoryNetwork()
    first = await network.open("udp://127.0.0.1:0")
    second = await network.open("udp://127.0.0.1:0")
    addresses = {first.local_address, second.local_address}
    assert len(addresses) == 2
    assert all(isinstance(a, UDPAddress) and a.port >= 49152 for a in addresses)
    assert first.local_address is not None
    with pytest.raises(OSError, match="in use") as caught:
        await network.open(first.local_address)
    assert caught.value.errno == errno.EADDRINUSE
    await first.aclose()
    third = await network.open("udp://127.0.0.1:0")
    assert third.local_address not in addresses  # a freed port waits its turn
    async with await network.open(first.local_address) as again, second, third:
        assert again.local_address == first.local_address


async def test_a_connected_endpoint_is_named_as_linux_would() -> None:
    network = MemoryNetwork()
    async with (
        await network.open("unixgram:///srv/log") as unix_server,
        await network.open("udp://[::1]:5000") as udp_server,
        await network.connect("unixgram:///srv/log") as unix_client,
        await network.connect("udp://[::1]:5000") as udp_client,
    ):
        assert unix_server.peer_address is udp_server.peer_address is None
        assert unix_client.local_address == UnixDatagramAddress(
            path="00000", abstract=True
        )
        assert isinstance(udp_client.local_address, UDPAddress)
        assert udp_client.local_address.host == "::1"
        assert udp_client.peer_address == UDPAddress(host="::1", port=5000)
        assert udp_client.max_datagram_size == 65_527
        assert unix_client.max_datagram_size == Limits().max_frame_size
        assert unix_client.transport.get_extra_info("socket") is None


async def test_with_a_codec_one_datagram_is_one_frame() -> None:
    network = MemoryNetwork()
    codec = LengthPrefixed()
    async with (
        await network.open("udp://127.0.0.1:7", codec=codec) as framed,
        await network.open("udp://127.0.0.1:8") as plain,
    ):
        await plain.send(b"\x00\x00\x00\x02hi", framed.local_address)
        await plain.send(b"\x00\x00\x00\x09short", framed.local_address)
        await plain.send(b"\x00\x00\x00\x03one\x00\x00\x00\x03two", "udp://127.0.0.1:7")
        assert (await framed.receive())[0] == b"hi"
        for _ in range(2):
            with pytest.raises(DatagramError):
                await framed.receive()
        assert framed.stats.errors == 2
        await framed.send(b"framed", plain.local_address)
        assert (await plain.receive())[0] == b"\x00\x00\x00\x06framed"


async def test_longer_than_the_receive_buffer_is_reported_not_cut() -> None:
    network = MemoryNetwork()
    small = Limits(max_frame_size=100)
    async with (
        await network.open("unixgram:@small", limits=small) as receiver,
        await network.connect("unixgram:@small") as sender,
    ):
        await sender.send(b"x" * 250)
        await sender.send(b"ok")
        with pytest.raises(DatagramTruncated) as caught:
            await receiver.receive()
        assert (caught.value.size, caught.value.partial) == (250, b"x" * 100)
        assert (await receiver.receive())[0] == b"ok"
        assert (receiver.stats.truncated, receiver.stats.received) == (1, 2)


async def test_the_network_bounds_every_datagram() -> None:
    network = MemoryNetwork(max_datagram_size=1200)
    async with (
        await network.open("udp://127.0.0.1:1") as server,
        await network.connect("udp://127.0.0.1:1") as client,
    ):
        assert client.max_datagram_size == server.max_datagram_size == 1200
        await client.send(bytes(1200))
        with pytest.raises(DatagramTooLarge, match="1201 bytes"):
            await client.send(bytes(1201))
        assert client.stats.sent == 1
    with pytest.raises(ValueError, match="negative"):
        MemoryNetwork(max_datagram_size=-1)


async def test_a_paused_reader_keeps_a_bounded_backlog_in_order() -> None:
    network = MemoryNetwork()
    receiver, recorder = await network.create_endpoint(Recorder, local="unixgram:@r")
    sender, _ = await network.create_endpoint(Recorder, remote="unixgram:@r")
    receiver.pause_reading()
    assert not receiver.is_reading()
    for i in range(300):
        sender.send(b"%d" % i)
    await turns_until(lambda: False, 10)
    assert recorder.events == ["made"]
    receiver.resume_reading()
    sender.send(b"after")  # behind the backlog, not ahead of it
    assert await turns_until(lambda: len(recorder.events) == 1 + 256 + 1)
    received = [event[0] for event in recorder.events if isinstance(event, tuple)]
    assert received == [b"%d" % i for i in range(256)] + [b"after"]
    assert receiver.stats.received == 257
    assert receiver.stats.dropped_by_kernel == 300 - 256  # counted, as Linux does
    receiver.close()
    sender.close()


async def test_a_refusal_reaches_a_connected_sender_only() -> None:
    network = MemoryNetwork()
    connected, recorder = await network.create_endpoint(
        Recorder, remote="udp://127.0.0.1:9"
    )
    bound, bystander = await network.create_endpoint(
        Recorder, local="udp://127.0.0.1:3"
    )
    connected.send(b"anyone?")
    bound.send(b"anyone?", "udp://127.0.0.1:9")
    assert recorder.events == ["made"]  # on a later turn, as ICMP comes
    assert await turns_until(lambda: len(recorder.events) == 2)
    assert isinstance(recorder.events[1], ConnectionRefusedError)
    assert connected.stats.errors == 1
    await turns_until(lambda: False, 10)
    assert bystander.events == ["made"]  # an unconnected socket hears no ICMP
    assert bound.stats.errors == 0
    connected.close()
    bound.close()


async def test_close_is_idempotent_and_connection_lost_comes_later() -> None:
    network = MemoryNetwork()
    transport, recorder = await network.create_endpoint(
        Recorder, local="udp://127.0.0.1:0"
    )
    transport.close()
    transport.close()
    transport.abort()
    assert transport.is_closing()
    assert recorder.events == ["made"]
    assert await turns_until(lambda: len(recorder.events) == 2)
    assert recorder.events[1] == ("lost", None)
    with pytest.raises(ClosedResourceError):
        transport.send(b"late", "udp://127.0.0.1:1")
    transport.resume_reading()
    assert not transport.is_reading()
    assert transport.get_write_buffer_size() == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda n: n.open("tcp://127.0.0.1:0"), "not a datagram address"),
        (lambda n: n.open("udp://localhost:0"), "no resolver"),
        (lambda n: n.open("udp://:0"), "no resolver"),
        (lambda n: n.connect("udp://127.0.0.1:0"), "needs a port"),
        (lambda n: n.connect("udp://[::1]:1", local="udp://127.0.0.1:0"), "cannot"),
        (lambda n: n.connect("unixgram:@x", local="udp://127.0.0.1:0"), "cannot"),
        (lambda n: n.create_endpoint(Recorder), "give a local address"),
    ],
)
async def test_addresses_the_network_cannot_have(
    call: Callable[[MemoryNetwork], Awaitable[object]], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        await call(MemoryNetwork())


async def test_sending_to_an_address_the_endpoint_cannot_reach() -> None:
    network = MemoryNetwork()
    async with await network.open("udp://127.0.0.1:0") as bound:
        transport = bound.transport
        for address, error in [
            (None, "not connected"),
            ("udp://[::1]:1", "cannot send"),
            ("unixgram:@x", "cannot send"),
            ("udp://localhost:1", "is a name"),
        ]:
            with pytest.raises(ValueError, match=error):
                transport.send(b"x", address)
        assert bound.stats.sent == 0
