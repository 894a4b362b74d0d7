"""One set of behaviour tests for both datagram drivers, over real sockets.

The async :class:`aiosock.Endpoint` and the blocking
:class:`aiosock.sync.DatagramEndpoint` keep the same rules (they share
them: :mod:`aiosock.core.endpoint`), so every test here takes ``driver``
and runs once with each: ``aio`` and ``sync``. A :class:`Driver` opens
endpoints and a :class:`Handle` wraps one, so that a test reads the same
whichever it drives; both are awaited, the blocking one's calls simply
blocking the test's thread, with its socket's timeout as the failure
bound. Like every async test, each runs on asyncio and uvloop; the
blocking driver takes no part in the loop and runs on both all the same.

What only one driver has (the callback API, cancellation, write-buffer
waits; timeouts and threads) is in test_datagram.py, test_endpoint.py
and test_sync_datagram.py. Traffic goes only to loopback and Unix
sockets in temporary directories; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiosock
import aiosock.sync
from aiosock.aio._closing import AsyncClosing
from aiosock.core.addresses import Address, UDPAddress, UnixDatagramAddress
from aiosock.core.codecs import LengthPrefixed, Lines, Raw
from aiosock.core.datagrams import MAX_UDP4_PAYLOAD, MAX_UDP6_PAYLOAD, DatagramStats
from aiosock.core.errors import (
    ClosedResourceError,
    DatagramError,
    DatagramTooLarge,
    DatagramTruncated,
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
)
from aiosock.core.limits import Limits

# Seconds any one step may take before the test fails instead of hanging;
# generous, since the machine is shared.
TIMEOUT = 10.0


# ------------------------------------------------------------- the drivers


class Handle(AsyncClosing):
    """One endpoint of either driver, as the tests use it."""

    def __init__(self, endpoint: Any) -> None:
        #: The driver's own endpoint, for what only repr() shows.
        self.endpoint = endpoint

    @property
    def socket(self) -> socket.socket:
        raise NotImplementedError

    @property
    def stats(self) -> DatagramStats:
        stats: DatagramStats = self.endpoint.stats
        return stats

    @property
    def local_address(self) -> Address | None:
        address: Address | None = self.endpoint.local_address
        return address

    @property
    def peer_address(self) -> Address | None:
        address: Address | None = self.endpoint.peer_address
        return address

    @property
    def max_datagram_size(self) -> int:
        size: int = self.endpoint.max_datagram_size
        return size

    async def send(self, data: Any, address: str | Address | None = None) -> None:
        raise NotImplementedError

    async def receive(self) -> Any:
        raise NotImplementedError

    async def iterate(self, count: int) -> list[Any]:
        """What iterating gives until ``count`` items, when the loop closes
        the endpoint and the iteration must end."""
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class AsyncHandle(Handle):
    endpoint: aiosock.Endpoint[Any]

    @property
    def socket(self) -> socket.socket:
        sock: socket.socket = self.endpoint.transport.get_extra_info("socket")
        return sock

    async def send(self, data: Any, address: str | Address | None = None) -> None:
        await self.endpoint.send(data, address)

    async def receive(self) -> Any:
        async with asyncio.timeout(TIMEOUT):  # a failure bound
            return await self.endpoint.receive()

    async def iterate(self, count: int) -> list[Any]:
        got = []
        async with asyncio.timeout(TIMEOUT):  # a failure bound
            async for item in self.endpoint:
                got.append(item)
                if len(got) == count:
                    await self.endpoint.aclose()
        return got

    async def aclose(self) -> None:
        await self.endpoint.aclose()


class SyncHandle(Handle):
    endpoint: aiosock.sync.DatagramEndpoint[Any]

    @property
    def socket(self) -> socket.socket:
        return self.endpoint.socket

    async def send(self, data: Any, address: str | Address | None = None) -> None:
        self.endpoint.send(data, address)

    async def receive(self) -> Any:
        return self.endpoint.receive()

    async def iterate(self, count: int) -> list[Any]:
        got = []
        for item in self.endpoint:
            got.append(item)
            if len(got) == count:
                self.endpoint.close()
        return got

    async def aclose(self) -> None:
        self.endpoint.close()


class Driver:
    """Opens endpoints of one driver, with its own functions; ``options``
    are theirs (``codec``, ``limits``, ``local``, ``unix_mode``)."""

    name: str

    async def open(self, local: str | Address, **options: Any) -> Handle:
        raise NotImplementedError

    async def connect(self, remote: str | Address, **options: Any) -> Handle:
        raise NotImplementedError

    async def adopt(self, sock: socket.socket, **options: Any) -> Handle:
        """A connected endpoint on ``sock``, which it then owns."""
        return await self.connect(f"fd://{sock.detach()}", **options)


class AsyncDriver(Driver):
    name = "aio"

    async def open(self, local: str | Address, **options: Any) -> Handle:
        return AsyncHandle(await aiosock.open_datagram(local, **options))

    async def connect(self, remote: str | Address, **options: Any) -> Handle:
        return AsyncHandle(await aiosock.connect_datagram(remote, **options))


class SyncDriver(Driver):
    name = "sync"

    async def open(self, local: str | Address, **options: Any) -> Handle:
        opened = aiosock.sync.open_datagram(local, timeout=TIMEOUT, **options)
        return SyncHandle(opened)

    async def connect(self, remote: str | Address, **options: Any) -> Handle:
        connected = aiosock.sync.connect_datagram(remote, timeout=TIMEOUT, **options)
        return SyncHandle(connected)


@pytest.fixture(params=[AsyncDriver(), SyncDriver()], ids=lambda d: d.name)
def driver(request: pytest.FixtureRequest) -> Driver:
    """Each driver in turn."""
    chosen: Driver = request.param
    return chosen


# ---------------------------------------------------------------- helpers


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def ipv6_loopback() -> None:
    """Skip the test where this machine has no IPv6 loopback."""
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")


def abstract_name() -> str:
    return f"aiosock-test-{uuid.uuid4().hex}"


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """pytest's tmp_path, or a shorter directory where that is too long.

    A Unix socket path holds at most 107 bytes.
    """
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="aiosock-"))
    yield short
    shutil.rmtree(short)


SERVERS = ["udp4", "udp6", "unix", "abstract"]


def server_address(kind: str, sock_dir: Path) -> str:
    """Where a bound endpoint of ``kind`` listens; port 0 picks one."""
    if kind == "udp4":
        return "udp://127.0.0.1:0"
    if kind == "udp6":
        ipv6_loopback()
        return "udp://[::1]:0"
    if kind == "unix":
        return f"unixgram://{sock_dir / 'server.sock'}"
    return f"unixgram:@{abstract_name()}"


@pytest.fixture
async def pair(driver: Driver) -> AsyncIterator[tuple[Handle, Handle]]:
    """Two connected endpoints on a Unix datagram socketpair, via fd://."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    async with await driver.adopt(left) as a, await driver.adopt(right) as b:
        yield a, b


def udp_sockaddr(endpoint: Handle) -> tuple[str, int]:
    address = endpoint.local_address
    assert isinstance(address, UDPAddress)
    return address.host, address.port


def closed_udp_port() -> int:
    """A loopback UDP port nobody is bound to (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pattern(size: int) -> bytes:
    """``size`` bytes that differ from those of any other size."""
    return bytes([size % 251]) * size


def proc_net_drops(sock: socket.socket) -> int | None:
    """The drops column of ``/proc/net/udp`` for ``sock`` (by its inode), or
    None where there is no such file."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    try:
        table = Path("/proc/net/udp").read_text().splitlines()
    except FileNotFoundError:
        return None
    for row in table[1:]:
        fields = row.split()
        if fields[9] == inode:
            return int(fields[-1])
    raise AssertionError(f"no row for inode {inode} in /proc/net/udp")


# ------------------------------------------------------------ round trips


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_connected_client_and_a_bound_server_answer_each_other(
    driver: Driver, kind: str, sock_dir: Path
) -> None:
    async with await driver.open(server_address(kind, sock_dir)) as server:
        assert server.peer_address is None
        target = server.local_address
        assert target is not None
        if isinstance(target, UDPAddress):
            assert target.port != 0
        async with await driver.connect(target) as client:
            assert client.peer_address == target
            await client.send(b"ping")
            data, sender = await server.receive()
            assert data == b"ping"
            # A Unix client is auto-bound, so the server can answer it.
            assert sender is not None
            assert sender == client.local_address
            await server.send(b"pong", sender)
            assert await client.receive() == b"pong"
            for endpoint in (client, server):
                assert endpoint.stats.sent == endpoint.stats.received == 1
                assert endpoint.stats.dropped == 0
                assert endpoint.stats.dropped_by_kernel == 0
    if kind == "unix":
        assert not (sock_dir / "server.sock").exists()  # removed: it was ours


async def test_all_interfaces_takes_both_families(driver: Driver) -> None:
    async with await driver.open("udp://:0") as server:
        assert isinstance(server.local_address, UDPAddress)
        port = server.local_address.port
        hosts = ["127.0.0.1"]
        if has_ipv6_loopback():  # then the socket is dual-stack
            assert server.socket.family == socket.AF_INET6
            hosts.append("[::1]")
        for host in hosts:
            async with await driver.connect(f"udp://{host}:{port}") as client:
                await client.send(host.encode())
                data, sender = await server.receive()
                assert data == host.encode()
                await server.send(data, sender)
                assert await client.receive() == data


async def test_a_host_name_is_resolved_by_send(driver: Driver) -> None:
    async with (
        await driver.open("udp://127.0.0.1:0") as server,
        await driver.open("udp://127.0.0.1:0") as client,
    ):
        _, port = udp_sockaddr(server)
        # An IPv4 socket asks the resolver for IPv4 addresses only.
        await client.send(b"by name", f"udp://localhost:{port}")
        data, sender = await server.receive()
        assert data == b"by name"
        assert sender == client.local_address


async def test_a_dual_stack_endpoint_sends_to_a_name_with_only_ipv4(
    driver: Driver, ipv4_only_name: str
) -> None:
    ipv6_loopback()  # a dual-stack socket needs IPv6
    async with (
        await driver.open("udp://127.0.0.1:0") as server,
        await driver.open("udp://:0") as client,  # dual-stack
    ):
        _, port = udp_sockaddr(server)
        # Asked for IPv6 only, the resolver knows no address for it.
        await client.send(b"mapped", f"udp://{ipv4_only_name}:{port}")
        assert (await server.receive())[0] == b"mapped"
        with pytest.raises(ValueError, match="needs a host"):
            await client.send(b"x", "udp://:9")


async def test_a_host_name_is_resolved_by_connect(driver: Driver) -> None:
    ipv6_loopback()  # localhost may resolve to ::1 first
    async with await driver.open("udp://:0") as server:
        _, port = udp_sockaddr(server)
        async with await driver.connect(f"udp://localhost:{port}") as client:
            assert isinstance(client.peer_address, UDPAddress)
            assert client.peer_address.host in ("127.0.0.1", "::1")
            # The peer by its name is the peer.
            await client.send(b"to the peer", f"udp://localhost:{port}")
            data, _ = await server.receive()
            assert data == b"to the peer"


@pytest.mark.parametrize(
    "codec", [LengthPrefixed(), Lines()], ids=lambda codec: type(codec).__name__
)
async def test_with_a_codec_one_datagram_is_one_frame(
    driver: Driver,
    codec: LengthPrefixed | Lines,
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    async with await driver.adopt(ours, codec=codec) as endpoint:
        # 3000 bytes: a framed codec encodes it as a list, sent gathered.
        assert isinstance(codec.encode(b"x" * 3000), list)
        for message in (b"framed", b"", b"x" * 3000):
            await endpoint.send(message)
            encoded = codec.encode(message)
            wire = encoded if isinstance(encoded, bytes) else b"".join(encoded)
            assert theirs.recv(10_000) == wire
            theirs.send(wire)
            assert await endpoint.receive() == message


# ------------------------------------------------------------------ sizes

Sized = tuple[Handle, Callable[[], Awaitable[bytes]]]


@pytest.fixture(params=["udp4", "udp6", "socketpair", "unix"])
async def sized(
    request: pytest.FixtureRequest, driver: Driver, sock_dir: Path
) -> AsyncIterator[Sized]:
    """A connected sender, and how its receiver takes the next datagram."""
    kind = request.param
    if kind == "socketpair":
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        async with await driver.adopt(left) as sender, await driver.adopt(right) as b:
            yield sender, b.receive
        return
    async with await driver.open(server_address(kind, sock_dir)) as server:
        assert server.local_address is not None
        async with await driver.connect(server.local_address) as client:

            async def receive() -> bytes:
                data, sender = await server.receive()
                assert sender == client.local_address
                return bytes(data)

            yield client, receive


async def test_every_size_up_to_the_maximum_arrives_whole(sized: Sized) -> None:
    sender, receive = sized
    maximum = sender.max_datagram_size
    family = sender.socket.family
    if family == socket.AF_INET:
        assert maximum == MAX_UDP4_PAYLOAD
    elif family == socket.AF_INET6:
        assert maximum == MAX_UDP6_PAYLOAD
    else:  # the frame limit, unless net.core.wmem_max holds the buffer lower
        assert MAX_UDP6_PAYLOAD < maximum <= Limits().max_frame_size
    # One at a time: a socket buffer holds only a few of the largest.
    sizes = [*range(17), 1000, 1472, 1473, maximum - 1, maximum]
    for size in sizes:
        await sender.send(pattern(size))
        assert await receive() == pattern(size)
    with pytest.raises(DatagramTooLarge, match=f"{maximum + 1} bytes") as caught:
        await sender.send(pattern(maximum + 1))
    assert (caught.value.size, caught.value.limit) == (maximum + 1, maximum)
    await sender.send(b"after")
    assert await receive() == b"after"  # nothing was sent in between
    assert sender.stats.sent == len(sizes) + 1


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_smaller_frame_limit_bounds_every_kind_at_both_ends(
    driver: Driver, kind: str, sock_dir: Path
) -> None:
    small = Limits(max_frame_size=100)
    address = server_address(kind, sock_dir)
    async with await driver.open(address, limits=small) as server:
        assert server.local_address is not None
        async with (
            await driver.connect(server.local_address, limits=small) as client,
            # The default limit: this one sends past the server's.
            await driver.connect(server.local_address) as roomy,
        ):
            assert server.max_datagram_size == client.max_datagram_size == 100
            sender = client.local_address
            # Sending, either way: 100 bytes go, 101 raise and nothing goes.
            for end, target in ((client, None), (server, sender)):
                await end.send(pattern(100), target)
                with pytest.raises(DatagramTooLarge) as caught:
                    await end.send(pattern(101), target)
                assert (caught.value.size, caught.value.limit) == (101, 100)
                await end.send(b"after", target)
                assert end.stats.sent == 2
            assert await server.receive() == (pattern(100), sender)
            assert await server.receive() == (b"after", sender)  # none between
            assert await client.receive() == pattern(100)
            assert await client.receive() == b"after"
            # Receiving: 101 bytes from a sender with room are reported, not
            # cut short and passed on; the next datagram comes whole.
            await roomy.send(pattern(101))
            await roomy.send(pattern(100))
            with pytest.raises(DatagramTruncated) as cut:
                await server.receive()
            assert (cut.value.size, cut.value.partial) == (101, pattern(101)[:100])
            assert cut.value.address == roomy.local_address
            assert await server.receive() == (pattern(100), roomy.local_address)
            stats = server.stats
            assert (stats.received, stats.truncated, stats.errors) == (4, 1, 0)


async def test_the_limit_counts_the_codec_framing(
    driver: Driver, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = raw_pair
    small = Limits(max_frame_size=100)
    async with await driver.adopt(ours, codec=LengthPrefixed(), limits=small) as end:
        assert end.max_datagram_size == 100
        await end.send(bytes(96))  # and a 4-byte header: 100
        assert len(theirs.recv(1000)) == 100
        with pytest.raises(DatagramTooLarge) as caught:
            await end.send(bytes(97))
        assert (caught.value.size, caught.value.limit) == (101, 100)
        assert end.stats.sent == 1


async def test_a_message_the_codec_cannot_frame_sends_nothing(
    driver: Driver, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = raw_pair
    async with await driver.adopt(ours, codec=Lines()) as endpoint:
        with pytest.raises(LocalProtocolError):
            await endpoint.send(b"two\nlines")
        await endpoint.send(b"one line")
        assert theirs.recv(100) == b"one line\n"
        assert endpoint.stats.sent == 1


# ------------------------------------------------------ truncation, codecs


async def test_an_oversize_datagram_is_reported_not_cut(
    driver: Driver, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = raw_pair
    async with await driver.adopt(ours, limits=Limits(max_frame_size=100)) as end:
        # A plain socket sends past the limit; the endpoint would refuse.
        for size in (250, 101, 100):
            theirs.send(pattern(size))
        theirs.send(b"ok")
        for size in (250, 101):
            with pytest.raises(DatagramTruncated) as caught:
                await end.receive()
            assert caught.value.size == size
            assert caught.value.partial == pattern(size)[:100]
            assert caught.value.address is None  # the socketpair's peer
        assert await end.receive() == pattern(100)
        assert await end.receive() == b"ok"  # and it goes on
        stats = end.stats
        assert (stats.received, stats.truncated, stats.errors) == (4, 2, 0)


@pytest.mark.parametrize("kind", ["udp4", "unix"])
async def test_a_bound_endpoint_names_the_sender_of_a_bad_datagram(
    driver: Driver, kind: str, sock_dir: Path
) -> None:
    small = Limits(max_frame_size=100)
    address = server_address(kind, sock_dir)
    codec = LengthPrefixed()
    async with await driver.open(address, codec=codec, limits=small) as server:
        target: str | tuple[str, int]
        if kind == "udp4":
            plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            plain.bind(("127.0.0.1", 0))
            target = udp_sockaddr(server)
            sender: object = UDPAddress(host="127.0.0.1", port=plain.getsockname()[1])
        else:
            plain = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            name = abstract_name()
            plain.bind("\0" + name)
            assert isinstance(server.local_address, UnixDatagramAddress)
            target = server.local_address.path
            sender = UnixDatagramAddress(path=name, abstract=True)
        with plain:
            plain.sendto(b"\0\0\0\x02hi", target)
            plain.sendto(pattern(1000), target)  # longer than the receive buffer
            plain.sendto(b"garbage", target)  # not one frame
            plain.sendto(b"\0\0\0\x02ok", target)
            assert await server.receive() == (b"hi", sender)
            with pytest.raises(DatagramTruncated) as cut:
                await server.receive()
            assert (cut.value.address, cut.value.size) == (sender, 1000)
            with pytest.raises(DatagramError) as bad:
                await server.receive()
            assert await server.receive() == (b"ok", sender)
        for error in (cut.value, bad.value):
            assert error.address == sender
            assert str(sender) in str(error)
        assert not isinstance(bad.value, DatagramTruncated)
        stats = server.stats
        assert (stats.received, stats.truncated, stats.errors) == (4, 1, 1)


async def test_datagrams_that_do_not_decode_are_errors_in_their_place(
    driver: Driver, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = raw_pair
    async with await driver.adopt(ours, codec=LengthPrefixed(max_size=16)) as end:
        await end.send(b"framed")
        assert theirs.recv(100) == b"\0\0\0\x06framed"
        bad = [
            (b"\0\0\0\x09short", IncompleteFrame),  # announces 9, holds 5
            (b"\0\0\0\x03one\0\0\0\x03two", type(None)),  # two frames
            (b"\0\0\x10\x00", FrameTooLarge),  # announces 4096
        ]
        for datagram, _ in bad:
            theirs.send(datagram)
        theirs.send(b"\0\0\0\x02ok")
        for datagram, cause in bad:
            with pytest.raises(DatagramError) as caught:
                await end.receive()
            assert type(caught.value) is DatagramError
            assert isinstance(caught.value.__cause__, cause)
            assert caught.value.size == len(datagram)
        assert await end.receive() == b"ok"
        stats = end.stats
        assert (stats.received, stats.errors, stats.truncated) == (4, 3, 0)


async def test_the_raw_codec_refuses_a_datagram_above_its_own_limit(
    driver: Driver, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = raw_pair
    async with await driver.adopt(ours, codec=Raw(max_size=10)) as endpoint:
        theirs.send(bytes(11))
        theirs.send(bytes(10))
        with pytest.raises(DatagramError, match="limit of 10 bytes"):
            await endpoint.receive()
        assert await endpoint.receive() == bytes(10)
        assert (endpoint.stats.errors, endpoint.stats.truncated) == (1, 0)


async def test_iteration_skips_bad_datagrams_and_ends_at_close(
    driver: Driver, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = raw_pair
    codec = LengthPrefixed()
    endpoint = await driver.adopt(ours, codec=codec, limits=Limits(max_frame_size=64))
    # Good, garbage, two longer than the buffer (one by a byte), good.
    for datagram in (b"\0\0\0\x011", b"garbage", bytes(250), bytes(65), b"\0\0\0\x012"):
        theirs.send(datagram)
    assert await endpoint.iterate(2) == [b"1", b"2"]
    stats = endpoint.stats
    assert (stats.received, stats.errors, stats.truncated) == (5, 1, 2)


async def test_senders_without_an_aiosock_address_arrive_unnamed(
    driver: Driver, sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = abstract_name()
    async with await driver.open(f"unixgram:@{name}") as server:
        monkeypatch.chdir(sock_dir)
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed,
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as relative,
        ):
            relative.bind("relative.sock")
            unnamed.sendto(b"unnamed", "\0" + name)
            relative.sendto(b"relative", "\0" + name)
            assert await server.receive() == (b"unnamed", None)
            # An aiosock address holds an absolute path only.
            assert await server.receive() == (b"relative", None)


# ----------------------------------------------------------- bound, connected


async def test_addresses_must_fit_the_endpoint(
    driver: Driver, pair: tuple[Handle, Handle]
) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match="connected to None"):
        await a.send(b"x", "unixgram:@elsewhere")
    async with await driver.open("udp://127.0.0.1:0") as bound:
        refused: list[tuple[str | None, str]] = [
            (None, "not connected: give an address"),
            ("unixgram:@x", "from a UDP socket"),
            ("udp://[::1]:9", r"^cannot send to udp://\[::1\]:9 from an IPv4 socket$"),
            ("udp://:9", "needs a host"),
            ("tcp://127.0.0.1:9", "not a datagram address"),
            ("fd://3", "not a datagram address"),
        ]
        for address, match in refused:
            with pytest.raises(ValueError, match=match):
                await bound.send(b"x", address)
        assert bound.stats.sent == bound.stats.errors == 0
    async with await driver.open(f"unixgram:@{abstract_name()}") as unix:
        with pytest.raises(ValueError, match="from a Unix socket"):
            await unix.send(b"x", "udp://127.0.0.1:9")
        with pytest.raises(ValueError, match="from a Unix socket"):
            await unix.send(b"x", "udp://localhost:9")  # not resolved either


@pytest.mark.parametrize("kind", ["udp4", "abstract"])
async def test_a_connected_endpoint_sends_to_its_peer_named_or_not(
    driver: Driver, kind: str, sock_dir: Path
) -> None:
    async with await driver.open(server_address(kind, sock_dir)) as server:
        peer = server.local_address
        assert peer is not None
        async with await driver.connect(str(peer)) as client:
            await client.send(b"1")
            await client.send(b"2", peer)
            await client.send(b"3", str(peer))
            for data in (b"1", b"2", b"3"):
                assert await server.receive() == (data, client.local_address)
            other = "udp://127.0.0.2:9" if kind == "udp4" else "unixgram:@elsewhere"
            message = f"^this endpoint is connected to {peer}: "
            with pytest.raises(
                ValueError, match=f"{message}it cannot send to {other}$"
            ):
                await client.send(b"4", other)
            with pytest.raises(
                ValueError, match=r"^this endpoint is not connected: give an address$"
            ):
                await server.send(b"5")
            assert (client.stats.sent, server.stats.sent) == (3, 0)


async def test_icmp_refusal_surfaces_on_receive_and_the_endpoint_goes_on(
    driver: Driver,
) -> None:
    port = closed_udp_port()
    async with await driver.connect(f"udp://127.0.0.1:{port}") as client:
        await client.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            await client.receive()
        stats = client.stats
        assert (stats.sent, stats.errors, stats.received) == (1, 1, 0)
        # Someone binds the port now: the same endpoint reaches them.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.settimeout(TIMEOUT)
            peer.bind(("127.0.0.1", port))
            await client.send(b"now?")
            data, sender = peer.recvfrom(100)
            assert data == b"now?"
            assert UDPAddress(host=sender[0], port=sender[1]) == client.local_address
            peer.sendto(b"yes", sender)
            assert await client.receive() == b"yes"
        stats = client.stats
        assert (stats.sent, stats.errors, stats.received) == (2, 1, 1)


async def test_a_send_to_a_unix_peer_that_is_gone_is_refused(
    pair: tuple[Handle, Handle],
) -> None:
    a, b = pair
    await b.aclose()
    with pytest.raises(ConnectionRefusedError):
        await a.send(b"anyone?")
    assert (a.stats.sent, a.stats.errors) == (0, 1)
    with pytest.raises(ConnectionRefusedError):  # an unnamed peer stays gone
        await a.send(b"anyone now?")
    assert (a.stats.sent, a.stats.errors) == (0, 2)


async def test_a_unix_client_reaches_a_server_bound_again_at_its_name(
    driver: Driver, sock_dir: Path
) -> None:
    path = sock_dir / "server"
    address = f"unixgram://{path}"
    async with await driver.open(address):
        client = await driver.connect(address)
    async with client:
        # Linux drops a Unix socket's peer when the peer refuses a send.
        for _ in range(2):
            with pytest.raises(ConnectionRefusedError):
                await client.send(b"anyone?")
        async with await driver.open(address) as server:
            await client.send(b"back")
            assert await server.receive() == (b"back", client.local_address)
            # Connected again to that socket, once: not to the name for
            # every datagram, so the name may go and the peer stays.
            path.unlink()
            await client.send(b"still")
            assert await server.receive() == (b"still", client.local_address)
    assert (client.stats.sent, client.stats.errors) == (2, 2)


# -------------------------------------------------------- counts, honestly


FLOOD = 10_000


async def test_a_flood_onto_a_slow_reader_is_counted_to_the_last_datagram(
    driver: Driver,
) -> None:
    # A small receive buffer (Linux doubles it: 128 KiB, a hundred or two
    # small datagrams as the kernel charges them) and, for the async
    # endpoint, a shorter queue: datagrams drop in the kernel and there.
    limits = Limits(datagram_receive_buffer=64 * 1024, datagram_queue=10)
    async with await driver.open("udp://127.0.0.1:0", limits=limits) as reader:
        assert reader.local_address is not None
        writer = await driver.connect(reader.local_address)
        # Sent without a turn of the loop: the reader reads none of it yet.
        for number in range(FLOOD):
            await writer.send(b"%05d" % number)
        sent = writer.stats.sent
        assert sent == FLOOD
        got: list[bytes] = []
        for _ in range(FLOOD):  # a bound: one receive per datagram sent
            stats = reader.stats
            read_all = stats.received + stats.dropped_by_kernel == sent
            if read_all and len(got) == stats.received - stats.dropped:
                break
            got.append(await reader.receive())
        await writer.aclose()
        stats = reader.stats
        assert sent == len(got) + stats.dropped + stats.dropped_by_kernel
        assert stats.dropped_by_kernel > 0  # the flood did overflow the buffer
        if driver.name == "aio":  # and the queue (the blocking one has none)
            assert stats.dropped > 0
        assert got == sorted(set(got))  # in order, none twice
        # What the kernel shows every user of the machine, for this socket.
        kernel = proc_net_drops(reader.socket)
        assert kernel is None or kernel == stats.dropped_by_kernel
    assert reader.stats.dropped_by_kernel == stats.dropped_by_kernel  # kept


async def test_the_receive_buffer_is_the_one_limits_ask_for(driver: Driver) -> None:
    asked = 100_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        default = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # What the kernel makes of the number (Linux doubles it, capped).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, asked)
        granted = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    limits = Limits(datagram_receive_buffer=asked)
    async with (
        await driver.open("udp://127.0.0.1:0", limits=limits) as sized,
        await driver.open("udp://127.0.0.1:0") as untouched,
    ):
        assert sized.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == granted
        buffer = untouched.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert buffer == default


# ------------------------------------------------------------------ close


async def test_close_is_idempotent_and_final(pair: tuple[Handle, Handle]) -> None:
    a, _ = pair
    local, peer = a.local_address, a.peer_address
    await a.aclose()
    await a.aclose()
    assert a.socket.fileno() == -1
    with pytest.raises(ClosedResourceError):
        await a.send(b"x")
    with pytest.raises(ClosedResourceError):
        await a.receive()
    assert await a.iterate(1) == []
    assert (a.local_address, a.peer_address) == (local, peer)


async def test_repr_shows_the_kind_the_addresses_and_the_state(
    driver: Driver, sock_dir: Path
) -> None:
    kind = "Endpoint" if driver.name == "aio" else "DatagramEndpoint"
    path = sock_dir / "server.sock"
    async with await driver.open("udp://127.0.0.1:0") as server:
        here = server.local_address
        assert repr(server.endpoint) == f"<{kind} {here} open>"
        async with await driver.connect(str(here)) as client:
            there = client.local_address
            assert repr(client.endpoint) == f"<{kind} {there} -> {here} open>"
        assert repr(client.endpoint) == f"<{kind} {there} -> {here} closed>"
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with right:
        unnamed = await driver.adopt(left)
        assert repr(unnamed.endpoint) == f"<{kind} unnamed -> unnamed open>"
        await unnamed.aclose()
    async with await driver.open(f"unixgram://{path}") as unix:
        assert repr(unix.endpoint) == f"<{kind} unixgram://{path} open>"


# -------------------------------------------------------- Unix paths, fd://


async def test_unix_path_stale_live_and_foreign_files(
    driver: Driver, sock_dir: Path
) -> None:
    path = sock_dir / "dg.sock"
    address = f"unixgram://{path}"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()  # leaves the file behind
    async with await driver.open(address) as live:
        assert live.local_address == UnixDatagramAddress(path=str(path))
        with pytest.raises(OSError, match="already bound") as caught:
            await driver.open(address)
        assert caught.value.errno == errno.EADDRINUSE
        assert path.exists()
    assert not path.exists()  # removed on close: it was ours
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        with pytest.raises(OSError, match="already bound"):
            await driver.open(address)  # a live socket of the other kind
    path.unlink()
    path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        await driver.open(address)
    assert path.read_text() == "not a socket"
    path.unlink()
    endpoint = await driver.open(address, unix_mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    path.write_text("someone else's now")
    await endpoint.aclose()
    assert path.read_text() == "someone else's now"  # not ours: kept


async def refusal(
    opening: Callable[[str], Awaitable[object]], sock: socket.socket
) -> tuple[str, str]:
    """The ``fd://N`` given and the message of the ``ValueError`` that
    ``opening`` it must raise, given a copy of ``sock``'s descriptor.

    A refusal leaves the descriptor open, the caller's: closing the copy
    here fails if it closed it.
    """
    fd = os.dup(sock.fileno())
    address = f"fd://{fd}"
    try:
        opened = await opening(address)
    except ValueError as exc:
        os.close(fd)
        return address, str(exc)
    raise AssertionError(f"{address} was opened, not refused: {opened!r}")


async def test_adopting_sockets_by_fd(driver: Driver) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        right.settimeout(TIMEOUT)
        address, message = await refusal(driver.open, left)
        assert message == f"{address} is connected: use connect_datagram()"
        address, message = await refusal(
            lambda fd: driver.connect(fd, local="unixgram:@x"), left
        )
        assert message == f"{address} is adopted as it is: it takes no local address"
        address, message = await refusal(
            lambda fd: driver.connect("unixgram:@x", local=fd), left
        )
        assert message == f"adopt {address} with connect_datagram('{address}')"
        assert left.getpeername() == ""  # still open, still the caller's
        async with await driver.connect(f"fd://{left.detach()}") as endpoint:
            assert endpoint.peer_address is None  # an unnamed peer
            assert endpoint.local_address is None
            right.send(b"hello")
            assert await endpoint.receive() == b"hello"
            await endpoint.send(b"back")
            assert right.recv(100) == b"back"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = abstract_name()
    bound.bind("\0" + name)
    with bound:
        address, message = await refusal(driver.connect, bound)
        assert message == f"{address} is not connected: use open_datagram()"
        async with await driver.open(f"fd://{bound.detach()}") as adopted:
            assert adopted.local_address == UnixDatagramAddress(
                path=name, abstract=True
            )
    with socket.socket() as stream:
        address, message = await refusal(driver.open, stream)
        assert message == f"{address} is not a datagram socket"
        stream.getsockname()  # still open


@pytest.mark.parametrize(
    ("remote", "local", "match"),
    [
        ("tcp://127.0.0.1:9", None, "not a datagram address"),
        (
            "udp://127.0.0.1:0",
            None,
            r"^cannot connect to udp://127\.0\.0\.1:0: it needs a host and a port$",
        ),
        ("udp://:9", None, r"^cannot connect to udp://:9: it needs a host and a port$"),
        ("unixgram:@x", "udp://127.0.0.1:0", "cannot mix"),
        ("udp://127.0.0.1:9", "unixgram:@x", "cannot mix"),
    ],
)
async def test_connect_refuses_unusable_addresses(
    driver: Driver,
    remote: str,
    local: str | None,
    match: str,
    open_sockets: Callable[[], set[str]],
) -> None:
    before = open_sockets()
    with pytest.raises(ValueError, match=match):
        await driver.connect(remote, local=local)
    assert open_sockets() == before


@pytest.mark.parametrize("address", ["unix:@x", "tcp://127.0.0.1:0"])
async def test_open_refuses_a_stream_address(driver: Driver, address: str) -> None:
    with pytest.raises(ValueError, match="not a datagram address"):
        await driver.open(address)


async def test_failures_leave_no_descriptor_or_file_behind(
    driver: Driver,
    sock_dir: Path,
    open_sockets: Callable[[], set[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live_path, stale_path = sock_dir / "live.sock", sock_dir / "stale.sock"
    missing, foreign = sock_dir / "missing.sock", sock_dir / "foreign"
    foreign.write_text("not a socket")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(stale_path))
    stale.close()
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as live,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken,
        socket.socket() as stream,
    ):
        live.bind(str(live_path))
        taken.bind(("127.0.0.1", 0))
        in_use = f"udp://127.0.0.1:{taken.getsockname()[1]}"
        client_path = f"unixgram://{sock_dir}/client.sock"
        failures: list[tuple[Callable[[], Awaitable[object]], type[BaseException]]]
        failures = [
            (lambda: driver.connect(f"unixgram://{missing}"), FileNotFoundError),
            (
                lambda: driver.connect(f"unixgram://{stale_path}"),
                ConnectionRefusedError,
            ),
            # Bound to a path of its own, then the connect fails.
            (
                lambda: driver.connect(f"unixgram://{missing}", local=client_path),
                FileNotFoundError,
            ),
            (lambda: driver.open(f"unixgram://{live_path}"), OSError),
            (lambda: driver.open(f"unixgram://{foreign}"), FileExistsError),
            (lambda: driver.open(f"unixgram://{sock_dir}/no/dir"), FileNotFoundError),
            (lambda: driver.open(in_use), OSError),
            (lambda: driver.connect("udp://127.0.0.1:9", local=in_use), OSError),
            (lambda: driver.open(f"fd://{stream.fileno()}"), ValueError),
            (lambda: driver.open("fd://999999"), OSError),
        ]
        files = sorted(os.listdir(sock_dir))
        before = open_sockets()
        for call, error in failures:
            with pytest.raises(error):
                await call()
            assert open_sockets() == before
            assert sorted(os.listdir(sock_dir)) == files
        # A failure once the socket is open and bound, before it is wrapped.
        broken = OSError(errno.EPERM, "no send buffer for you")

        def refuse(sock: socket.socket, wanted: int) -> int:
            raise broken

        monkeypatch.setattr("aiosock._datagram_sockets.unix_send_limit", refuse)
        with pytest.raises(OSError, match="no send buffer for you"):
            await driver.open(client_path)
        assert open_sockets() == before
        assert sorted(os.listdir(sock_dir)) == files
        stream.getsockname()  # a refused descriptor is left open
