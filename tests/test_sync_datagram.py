"""The blocking datagram endpoint, over real sockets: UDP v4 and v6, Unix
datagram sockets by path and by abstract name, and socketpairs via fd://.

Every socket has a timeout, so a lost datagram fails a test instead of
hanging it; nothing sleeps to synchronise. Traffic goes only to loopback
and Unix sockets.
"""

from __future__ import annotations

import errno
import json
import math
import os
import queue
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiosock.core.addresses import UDPAddress, UnixDatagramAddress
from aiosock.core.codecs import Codec, LengthPrefixed, Lines, Raw
from aiosock.core.datagrams import (
    MAX_UDP4_PAYLOAD,
    MAX_UDP6_PAYLOAD,
)
from aiosock.core.errors import (
    AiosockError,
    ClosedResourceError,
    DatagramError,
    DatagramTooLarge,
    DatagramTruncated,
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
)
from aiosock.core.limits import Limits
from aiosock.sync import (
    DatagramEndpoint,
    Received,
    connect_datagram,
    open_datagram,
)

# Seconds any one blocking step may take before the test fails instead of
# hanging; generous, since the machine is shared.
TIMEOUT = 10.0
# A short timeout for tests that wait for one on purpose.
SHORT = 0.2
# Bounds every loop that waits for the kernel to push back.
MAX_SENDS = 100_000

Pair = tuple[DatagramEndpoint[bytes], DatagramEndpoint[bytes]]


# ---------------------------------------------------------------- helpers


def ipv6_loopback() -> None:
    """Skip the test where this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")


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
def raw_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A plain Unix datagram socketpair, both ends with a timeout."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.settimeout(TIMEOUT)
    right.settimeout(TIMEOUT)
    with left, right:
        yield left, right


def adopt(
    sock: socket.socket,
    *,
    codec: Codec | None = None,
    limits: Limits | None = None,
    timeout: float = TIMEOUT,
) -> DatagramEndpoint[bytes]:
    """A connected endpoint on ``sock``, which it then owns."""
    return connect_datagram(
        f"fd://{sock.detach()}", codec=codec, limits=limits, timeout=timeout
    )


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Two connected endpoints on a Unix datagram socketpair, via fd://."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with adopt(left) as a, adopt(right) as b:
        yield a, b


def udp_sockaddr(endpoint: DatagramEndpoint[Received]) -> tuple[str, int]:
    address = endpoint.local_address
    assert isinstance(address, UDPAddress)
    return address.host, address.port


def wait_until_blocked(thread: threading.Thread) -> None:
    """Return once ``thread`` sleeps in the kernel, not waiting for a lock.

    Linux names the kernel function a thread sleeps in (its wait channel);
    ``0`` while it runs, a futex wait while it waits for the GIL or a lock.
    """
    wchan = Path(f"/proc/self/task/{thread.native_id}/wchan")
    deadline = time.monotonic() + TIMEOUT
    where = "not read"
    while time.monotonic() < deadline:
        where = wchan.read_text()
        if where not in ("", "0") and "futex" not in where:
            return
    raise AssertionError(f"the thread never blocked in the kernel (at {where})")


def closed_udp_port() -> int:
    """A loopback UDP port nobody is bound to (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_socket_error(sock: socket.socket) -> None:
    """Return once the kernel holds an error for ``sock`` (POLLERR)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    events = poller.poll(TIMEOUT * 1000)
    assert events, "no error arrived"
    assert events[0][1] & select.POLLERR


def pattern(size: int) -> bytes:
    """``size`` bytes that differ from those of any other size."""
    return bytes([size % 251]) * size


# ---------------------------------------------------------------- purity


def test_importing_the_blocking_layer_loads_no_event_loop() -> None:
    # A fresh interpreter: this one has asyncio loaded by pytest-asyncio.
    code = "import json, sys, aiosock.sync; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert "aiosock.sync" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("asyncio", "uvloop")}


# ------------------------------------------------------------ round trips


@pytest.mark.parametrize("kind", SERVERS)
def test_a_connected_client_and_a_bound_server_answer_each_other(
    kind: str, sock_dir: Path
) -> None:
    with open_datagram(server_address(kind, sock_dir), timeout=TIMEOUT) as server:
        assert server.peer_address is None
        target = server.local_address
        assert target is not None
        if isinstance(target, UDPAddress):
            assert target.port != 0
        with connect_datagram(target, timeout=TIMEOUT) as client:
            assert client.peer_address == target
            client.send(b"ping")
            data, sender = server.receive()
            assert data == b"ping"
            # A Unix client is auto-bound, so the server can answer it.
            assert sender is not None
            assert sender == client.local_address
            server.send(b"pong", sender)
            assert client.receive() == b"pong"
            for endpoint in (client, server):
                assert endpoint.stats.sent == endpoint.stats.received == 1
                assert endpoint.stats.dropped == 0  # the kernel's queue only
    if kind == "unix":
        assert not (sock_dir / "server.sock").exists()  # removed: it was ours


def test_all_interfaces_takes_both_families() -> None:
    with open_datagram("udp://:0", timeout=TIMEOUT) as server:
        assert isinstance(server.local_address, UDPAddress)
        port = server.local_address.port
        hosts = ["127.0.0.1"]
        if server.socket.family == socket.AF_INET6:
            hosts.append("[::1]")
        for host in hosts:
            with connect_datagram(f"udp://{host}:{port}", timeout=TIMEOUT) as client:
                client.send(host.encode())
                data, sender = server.receive()
                assert data == host.encode()
                server.send(data, sender)
                assert client.receive() == data


def test_a_host_name_is_resolved_by_send() -> None:
    with (
        open_datagram("udp://127.0.0.1:0", timeout=TIMEOUT) as server,
        open_datagram("udp://127.0.0.1:0", timeout=TIMEOUT) as client,
    ):
        _, port = udp_sockaddr(server)
        # An IPv4 socket asks the resolver for IPv4 addresses only.
        client.send(b"by name", f"udp://localhost:{port}")
        data, sender = server.receive()
        assert data == b"by name"
        assert sender == client.local_address


def test_a_dual_stack_endpoint_sends_to_a_name_with_only_ipv4() -> None:
    infos = socket.getaddrinfo("localhost", 9, type=socket.SOCK_DGRAM)
    if any(info[0] == socket.AF_INET6 for info in infos):
        pytest.skip("localhost has an IPv6 address on this machine")
    with (
        open_datagram("udp://127.0.0.1:0", timeout=TIMEOUT) as server,
        open_datagram("udp://:0", timeout=TIMEOUT) as client,  # dual-stack
    ):
        _, port = udp_sockaddr(server)
        # Asked for IPv6 only, the resolver knows no address for it.
        client.send(b"mapped", f"udp://localhost:{port}")
        assert server.receive()[0] == b"mapped"


def test_a_host_name_is_resolved_by_connect() -> None:
    ipv6_loopback()  # localhost may resolve to ::1 first
    with open_datagram("udp://:0", timeout=TIMEOUT) as server:
        _, port = udp_sockaddr(server)
        with connect_datagram(f"udp://localhost:{port}", timeout=TIMEOUT) as client:
            assert isinstance(client.peer_address, UDPAddress)
            assert client.peer_address.host in ("127.0.0.1", "::1")
            # The peer by its name is the peer.
            client.send(b"to the peer", f"udp://localhost:{port}")
            data, _ = server.receive()
            assert data == b"to the peer"


@pytest.mark.parametrize(
    "codec", [LengthPrefixed(), Lines()], ids=lambda codec: type(codec).__name__
)
def test_with_a_codec_one_datagram_is_one_frame(
    codec: LengthPrefixed | Lines, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, codec=codec) as endpoint:
        # 3000 bytes: a framed codec encodes it as a list, sent gathered.
        assert isinstance(codec.encode(b"x" * 3000), list)
        for message in (b"framed", b"", b"x" * 3000):
            endpoint.send(message)
            encoded = codec.encode(message)
            wire = encoded if isinstance(encoded, bytes) else b"".join(encoded)
            assert theirs.recv(10_000) == wire
            theirs.send(wire)
            assert endpoint.receive() == message


# ------------------------------------------------------------------ sizes

Sized = tuple[DatagramEndpoint[bytes], Callable[[], bytes]]


@pytest.fixture(params=["udp4", "udp6", "socketpair", "unix"])
def sized(request: pytest.FixtureRequest, sock_dir: Path) -> Iterator[Sized]:
    """A connected sender, and how its receiver takes the next datagram."""
    kind = request.param
    if kind == "socketpair":
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with adopt(left) as sender, adopt(right) as receiver:
            yield sender, receiver.receive
        return
    with open_datagram(server_address(kind, sock_dir), timeout=TIMEOUT) as server:
        assert server.local_address is not None
        with connect_datagram(server.local_address, timeout=TIMEOUT) as client:

            def receive() -> bytes:
                data, sender = server.receive()
                assert sender == client.local_address
                return data

            yield client, receive


def test_every_size_up_to_the_maximum_arrives_whole(sized: Sized) -> None:
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
        sender.send(pattern(size))
        assert receive() == pattern(size)
    with pytest.raises(DatagramTooLarge) as caught:
        sender.send(pattern(maximum + 1))
    assert (caught.value.size, caught.value.limit) == (maximum + 1, maximum)
    sender.send(b"after")
    assert receive() == b"after"  # nothing was sent in between
    assert sender.stats.sent == len(sizes) + 1


@pytest.mark.parametrize("kind", SERVERS)
def test_a_smaller_frame_limit_bounds_every_kind_at_both_ends(
    kind: str, sock_dir: Path
) -> None:
    small = Limits(max_frame_size=100)
    address = server_address(kind, sock_dir)
    with open_datagram(address, limits=small, timeout=TIMEOUT) as server:
        assert server.local_address is not None
        with (
            connect_datagram(
                server.local_address, limits=small, timeout=TIMEOUT
            ) as client,
            # The default limit: this one sends past the server's.
            connect_datagram(server.local_address, timeout=TIMEOUT) as roomy,
        ):
            assert server.max_datagram_size == client.max_datagram_size == 100
            sender = client.local_address
            # Sending, either way: 100 bytes go, 101 raise and nothing goes.
            for end, target in ((client, None), (server, sender)):
                end.send(pattern(100), target)
                with pytest.raises(DatagramTooLarge) as caught:
                    end.send(pattern(101), target)
                assert (caught.value.size, caught.value.limit) == (101, 100)
                end.send(b"after", target)
                assert end.stats.sent == 2
            assert server.receive() == (pattern(100), sender)
            assert server.receive() == (b"after", sender)  # nothing in between
            assert client.receive() == pattern(100)
            assert client.receive() == b"after"
            # Receiving: 101 bytes from a sender with room are reported, not cut
            # short and passed on; the next datagram comes whole.
            roomy.send(pattern(101))
            roomy.send(pattern(100))
            with pytest.raises(DatagramTruncated) as cut:
                server.receive()
            assert (cut.value.size, cut.value.partial) == (101, pattern(101)[:100])
            assert cut.value.address == roomy.local_address
            assert server.receive() == (pattern(100), roomy.local_address)
            stats = server.stats
            assert (stats.received, stats.truncated, stats.errors) == (4, 1, 0)


def test_the_limit_counts_the_codec_framing(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    small = Limits(max_frame_size=100)
    with adopt(ours, codec=LengthPrefixed(), limits=small) as endpoint:
        assert endpoint.max_datagram_size == 100
        endpoint.send(bytes(96))  # and a 4-byte header: 100
        assert len(theirs.recv(1000)) == 100
        with pytest.raises(DatagramTooLarge) as caught:
            endpoint.send(bytes(97))
        assert (caught.value.size, caught.value.limit) == (101, 100)
        assert endpoint.stats.sent == 1


def test_a_message_the_codec_cannot_frame_sends_nothing(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, codec=Lines()) as endpoint:
        with pytest.raises(LocalProtocolError):
            endpoint.send(b"two\nlines")
        endpoint.send(b"one line")
        assert theirs.recv(100) == b"one line\n"
        assert endpoint.stats.sent == 1


# ------------------------------------------------------ truncation, codecs


def test_an_oversize_datagram_is_reported_not_cut(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, limits=Limits(max_frame_size=100)) as endpoint:
        # A plain socket sends past the limit; the endpoint would refuse.
        for size in (250, 101, 100):
            theirs.send(pattern(size))
        theirs.send(b"ok")
        for size in (250, 101):
            with pytest.raises(DatagramTruncated) as caught:
                endpoint.receive()
            assert caught.value.size == size
            assert caught.value.partial == pattern(size)[:100]
            assert caught.value.address is None  # the socketpair's peer
        assert endpoint.receive() == pattern(100)
        assert endpoint.receive() == b"ok"  # and it goes on
        stats = endpoint.stats
        assert (stats.received, stats.truncated, stats.errors) == (4, 2, 0)


@pytest.mark.parametrize("kind", ["udp4", "unix"])
def test_a_bound_endpoint_names_the_sender_of_an_oversize_datagram(
    kind: str, sock_dir: Path
) -> None:
    small = Limits(max_frame_size=100)
    address = server_address(kind, sock_dir)
    with open_datagram(address, limits=small, timeout=TIMEOUT) as server:
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
            plain.sendto(pattern(1000), target)
            plain.sendto(b"ok", target)
            with pytest.raises(DatagramTruncated) as caught:
                server.receive()
            assert (caught.value.address, caught.value.size) == (sender, 1000)
            assert server.receive() == (b"ok", sender)
        assert server.stats.truncated == 1


def test_datagrams_that_do_not_decode_are_errors_in_their_place(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, codec=LengthPrefixed(max_size=16)) as endpoint:
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
                endpoint.receive()
            assert type(caught.value) is DatagramError
            assert isinstance(caught.value.__cause__, cause)
            assert caught.value.size == len(datagram)
        assert endpoint.receive() == b"ok"
        stats = endpoint.stats
        assert (stats.received, stats.errors, stats.truncated) == (4, 3, 0)


def test_the_raw_codec_refuses_a_datagram_above_its_own_limit(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, codec=Raw(max_size=10)) as endpoint:
        theirs.send(bytes(11))
        theirs.send(bytes(10))
        with pytest.raises(DatagramError, match="limit of 10 bytes"):
            endpoint.receive()
        assert endpoint.receive() == bytes(10)
        assert (endpoint.stats.errors, endpoint.stats.truncated) == (1, 0)


def test_iteration_skips_bad_datagrams_and_ends_at_close(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    codec = LengthPrefixed()
    endpoint = adopt(ours, codec=codec, limits=Limits(max_frame_size=64))
    for datagram in (b"\0\0\0\x011", b"garbage", bytes(100), b"\0\0\0\x012"):
        theirs.send(datagram)
    got = []
    for message in endpoint:
        got.append(message)
        if len(got) == 2:
            endpoint.close()
    assert got == [b"1", b"2"]
    assert (endpoint.stats.errors, endpoint.stats.truncated) == (1, 1)


def test_senders_without_an_aiosock_address_arrive_unnamed(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = abstract_name()
    with open_datagram(f"unixgram:@{name}", timeout=TIMEOUT) as server:
        monkeypatch.chdir(sock_dir)
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed,
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as relative,
        ):
            relative.bind("relative.sock")
            unnamed.sendto(b"unnamed", "\0" + name)
            relative.sendto(b"relative", "\0" + name)
            assert server.receive() == (b"unnamed", None)
            # An aiosock address holds an absolute path only.
            assert server.receive() == (b"relative", None)


# ----------------------------------------------------------- bound, connected


def test_addresses_must_fit_the_endpoint(pair: Pair) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match="connected to None"):
        a.send(b"x", "unixgram:@elsewhere")
    with open_datagram("udp://127.0.0.1:0", timeout=TIMEOUT) as bound:
        refused: list[tuple[str | None, str]] = [
            (None, "not connected: give an address"),
            ("unixgram:@x", "from a UDP socket"),
            ("udp://[::1]:9", "from an IPv4 socket"),
            ("udp://:9", "needs a host"),
            ("tcp://127.0.0.1:9", "not a datagram address"),
            ("fd://3", "not a datagram address"),
        ]
        for address, match in refused:
            with pytest.raises(ValueError, match=match):
                bound.send(b"x", address)
        assert bound.stats.sent == bound.stats.errors == 0
    with open_datagram(f"unixgram:@{abstract_name()}", timeout=TIMEOUT) as unix:
        with pytest.raises(ValueError, match="from a Unix socket"):
            unix.send(b"x", "udp://127.0.0.1:9")
        with pytest.raises(ValueError, match="from a Unix socket"):
            unix.send(b"x", "udp://localhost:9")  # not resolved either


def test_a_connected_endpoint_sends_to_its_peer_only() -> None:
    with open_datagram("udp://127.0.0.1:0", timeout=TIMEOUT) as server:
        peer = server.local_address
        assert peer is not None
        with connect_datagram(str(peer), timeout=TIMEOUT) as client:
            client.send(b"named", str(peer))
            client.send(b"as a value", peer)
            assert [server.receive()[0] for _ in range(2)] == [b"named", b"as a value"]
            with pytest.raises(ValueError, match=f"connected to {peer}"):
                client.send(b"x", "udp://127.0.0.2:9")
            assert client.stats.sent == 2


def test_icmp_refusal_surfaces_on_receive_and_the_endpoint_goes_on() -> None:
    port = closed_udp_port()
    with connect_datagram(f"udp://127.0.0.1:{port}", timeout=TIMEOUT) as client:
        client.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            client.receive()
        stats = client.stats
        assert (stats.sent, stats.errors, stats.received) == (1, 1, 0)
        # Someone binds the port now: the same endpoint reaches them.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.settimeout(TIMEOUT)
            peer.bind(("127.0.0.1", port))
            client.send(b"now?")
            data, sender = peer.recvfrom(100)
            assert data == b"now?"
            assert UDPAddress(host=sender[0], port=sender[1]) == client.local_address
            peer.sendto(b"yes", sender)
            assert client.receive() == b"yes"
        assert (stats.sent, stats.errors, stats.received) == (2, 1, 1)


def test_icmp_refusal_surfaces_on_the_next_send_once() -> None:
    port = closed_udp_port()
    with connect_datagram(f"udp://127.0.0.1:{port}", timeout=SHORT) as client:
        client.send(b"one")
        wait_for_socket_error(client.socket)
        with pytest.raises(ConnectionRefusedError):
            client.send(b"two")  # refused before it was sent
        assert (client.stats.sent, client.stats.errors) == (1, 1)
        with pytest.raises(TimeoutError):
            client.receive()  # the error was raised once, by the send


def test_a_send_to_a_unix_peer_that_is_gone_is_refused(pair: Pair) -> None:
    a, b = pair
    b.close()
    with pytest.raises(ConnectionRefusedError):
        a.send(b"anyone?")
    assert (a.stats.sent, a.stats.errors) == (0, 1)
    with pytest.raises(ConnectionRefusedError):  # an unnamed peer stays gone
        a.send(b"anyone now?")
    assert (a.stats.sent, a.stats.errors) == (0, 2)


def test_a_unix_client_reaches_a_server_bound_again_at_its_name(
    sock_dir: Path,
) -> None:
    address = f"unixgram://{sock_dir}/server"
    with open_datagram(address, timeout=TIMEOUT):
        client = connect_datagram(address, timeout=TIMEOUT)
    with client:
        # Linux drops a Unix socket's peer when the peer refuses a send.
        for _ in range(2):
            with pytest.raises(ConnectionRefusedError):
                client.send(b"anyone?")
        with open_datagram(address, timeout=TIMEOUT) as server:
            client.send(b"back")
            assert server.receive() == (b"back", client.local_address)
    assert (client.stats.sent, client.stats.errors) == (1, 2)


# -------------------------------------------------------------- timeouts


def test_a_receive_timeout_loses_nothing(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, timeout=SHORT) as endpoint:
        with pytest.raises(TimeoutError) as caught:
            endpoint.receive()
        assert not isinstance(caught.value, AiosockError)
        theirs.send(b"late")
        assert endpoint.receive() == b"late"
        assert (endpoint.stats.received, endpoint.stats.errors) == (1, 0)


def test_a_send_waits_for_room_until_its_timeout(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, timeout=SHORT) as endpoint:
        # Nobody reads: the peer's queue fills (net.unix.max_dgram_qlen).
        for count in range(MAX_SENDS):
            try:
                endpoint.send(b"%d" % count)
            except TimeoutError:
                break
        else:
            raise AssertionError("the peer's queue never filled")
        assert endpoint.stats.sent == count
        assert [theirs.recv(100) for _ in range(count)] == [
            b"%d" % n for n in range(count)
        ]
        endpoint.send(b"room again")  # the timed-out one was never sent
        assert theirs.recv(100) == b"room again"


def test_the_timeout_is_limits_read_timeout_unless_given() -> None:
    limits = Limits(read_timeout=SHORT)
    with open_datagram("udp://127.0.0.1:0", limits=limits) as endpoint:
        assert endpoint.socket.gettimeout() == SHORT
        with pytest.raises(TimeoutError):
            endpoint.receive()
    with open_datagram("udp://127.0.0.1:0", limits=limits, timeout=TIMEOUT) as given:
        assert given.socket.gettimeout() == TIMEOUT
    with open_datagram("udp://127.0.0.1:0") as default:
        assert default.socket.gettimeout() is None


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan])
def test_a_timeout_that_is_not_positive_is_refused(
    timeout: float, open_sockets: Callable[[], set[str]]
) -> None:
    before = open_sockets()
    with pytest.raises(ValueError, match="timeout must be positive"):
        open_datagram("udp://127.0.0.1:0", timeout=timeout)
    with pytest.raises(ValueError, match="timeout must be positive"):
        connect_datagram("udp://127.0.0.1:9", timeout=timeout)
    assert open_sockets() == before


# ------------------------------------------------------------------ close


def test_close_is_idempotent_and_final(pair: Pair) -> None:
    a, _ = pair
    local, peer = a.local_address, a.peer_address
    a.close()
    a.close()
    assert a.socket.fileno() == -1
    with pytest.raises(ClosedResourceError):
        a.send(b"x")
    with pytest.raises(ClosedResourceError):
        a.receive()
    assert list(a) == []
    assert (a.local_address, a.peer_address) == (local, peer)


def test_the_context_manager_closes(pair: Pair) -> None:
    a, _ = pair
    with pytest.raises(KeyError), a:
        raise KeyError
    with pytest.raises(ClosedResourceError):
        a.receive()


@pytest.mark.parametrize("timeout", [None, TIMEOUT], ids=["blocking", "timeout"])
def test_close_from_another_thread_ends_a_blocked_iteration(
    timeout: float | None,
) -> None:
    server = open_datagram("udp://127.0.0.1:0", timeout=timeout)
    target = udp_sockaddr(server)
    got: queue.Queue[object] = queue.Queue()

    def serve() -> None:
        try:
            for item in server:
                got.put(item)
        except BaseException as exc:  # reported through the queue
            got.put(exc)
        else:
            got.put("ended")

    thread = threading.Thread(target=serve, daemon=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        thread.start()
        try:
            client.sendto(b"one", target)
            sender = UDPAddress(host="127.0.0.1", port=client.getsockname()[1])
            assert got.get(timeout=TIMEOUT) == (b"one", sender)
            wait_until_blocked(thread)  # in the next receive
            server.close()
            assert got.get(timeout=TIMEOUT) == "ended"
        finally:
            server.close()
            if thread.is_alive():
                # Should close() not have woken it, a datagram still would:
                # the blocked call keeps the socket, and its port, alive.
                client.sendto(b"release", target)
            thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_close_does_not_shut_down_an_adopted_socket(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    # Whoever handed the descriptor over may share the socket (a prefork
    # server does); closing the endpoint must leave it working for them.
    with socket.socket(fileno=os.dup(ours.fileno())) as shared:
        shared.settimeout(TIMEOUT)
        endpoint = adopt(ours)
        endpoint.close()
        theirs.send(b"still open")
        assert shared.recv(100) == b"still open"


# -------------------------------------------------------- Unix paths, fd://


def test_unix_path_stale_live_and_foreign_files(sock_dir: Path) -> None:
    path = sock_dir / "dg.sock"
    address = f"unixgram://{path}"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()  # leaves the file behind
    with open_datagram(address, timeout=TIMEOUT) as live:
        assert live.local_address == UnixDatagramAddress(path=str(path))
        with pytest.raises(OSError, match="already bound") as caught:
            open_datagram(address)
        assert caught.value.errno == errno.EADDRINUSE
        assert path.exists()
    assert not path.exists()  # removed on close: it was ours
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        with pytest.raises(OSError, match="already bound"):
            open_datagram(address)  # a live socket of the other kind
    path.unlink()
    path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        open_datagram(address)
    assert path.read_text() == "not a socket"
    path.unlink()
    endpoint = open_datagram(address, unix_mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    path.write_text("someone else's now")
    endpoint.close()
    assert path.read_text() == "someone else's now"  # not ours: kept


def test_adopting_sockets_by_fd() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        right.settimeout(TIMEOUT)
        fd = left.fileno()
        with pytest.raises(ValueError, match="is connected: use connect_datagram"):
            open_datagram(f"fd://{fd}")
        with pytest.raises(ValueError, match="takes no local address"):
            connect_datagram(f"fd://{fd}", local="unixgram:@x")
        assert left.getpeername() == ""  # still open, still the caller's
        with connect_datagram(f"fd://{left.detach()}", timeout=TIMEOUT) as endpoint:
            assert endpoint.peer_address is None  # an unnamed peer
            assert endpoint.local_address is None
            right.send(b"hello")
            assert endpoint.receive() == b"hello"
            endpoint.send(b"back")
            assert right.recv(100) == b"back"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = abstract_name()
    bound.bind("\0" + name)
    with bound:
        with pytest.raises(ValueError, match="not connected: use open_datagram"):
            connect_datagram(f"fd://{bound.fileno()}")
        with open_datagram(f"fd://{bound.detach()}", timeout=TIMEOUT) as adopted:
            assert adopted.local_address == UnixDatagramAddress(
                path=name, abstract=True
            )
    with socket.socket() as stream:
        with pytest.raises(ValueError, match="not a datagram socket"):
            open_datagram(f"fd://{stream.fileno()}")
        stream.getsockname()  # still open
    with pytest.raises(ValueError, match="adopt fd://3 with connect_datagram"):
        connect_datagram("unixgram:@x", local="fd://3")


def test_wrapping_a_socket_you_made(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with DatagramEndpoint[bytes](ours) as endpoint:
        endpoint.send(b"wrapped")
        assert theirs.recv(100) == b"wrapped"
    assert ours.fileno() == -1  # the endpoint owned it
    with socket.socket() as stream, pytest.raises(ValueError, match="datagram"):
        DatagramEndpoint[bytes](stream)
    blocking = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with blocking:
        blocking.setblocking(False)
        with pytest.raises(ValueError, match="blocking socket"):
            DatagramEndpoint[bytes](blocking)


@pytest.mark.parametrize(
    ("remote", "local", "match"),
    [
        ("tcp://127.0.0.1:9", None, "not a datagram address"),
        ("udp://127.0.0.1:0", None, "needs a host and a port"),
        ("udp://:9", None, "needs a host and a port"),
        ("unixgram:@x", "udp://127.0.0.1:0", "cannot mix"),
        ("udp://127.0.0.1:9", "unixgram:@x", "cannot mix"),
    ],
)
def test_connect_refuses_unusable_addresses(
    remote: str, local: str | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        connect_datagram(remote, local=local)


def test_open_refuses_a_stream_address() -> None:
    with pytest.raises(ValueError, match="not a datagram address"):
        open_datagram("unix:@x")


def test_failures_leave_no_descriptor_or_file_behind(
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
        failures: list[tuple[Callable[[], object], type[BaseException]]] = [
            (lambda: connect_datagram(f"unixgram://{missing}"), FileNotFoundError),
            (
                lambda: connect_datagram(f"unixgram://{stale_path}"),
                ConnectionRefusedError,
            ),
            # Bound to a path of its own, then the connect fails.
            (
                lambda: connect_datagram(f"unixgram://{missing}", local=client_path),
                FileNotFoundError,
            ),
            (lambda: open_datagram(f"unixgram://{live_path}"), OSError),
            (lambda: open_datagram(f"unixgram://{foreign}"), FileExistsError),
            (lambda: open_datagram(f"unixgram://{sock_dir}/no/dir"), FileNotFoundError),
            (lambda: open_datagram(in_use), OSError),
            (lambda: connect_datagram("udp://127.0.0.1:9", local=in_use), OSError),
            (lambda: open_datagram(f"fd://{stream.fileno()}"), ValueError),
            (lambda: open_datagram("fd://999999"), OSError),
        ]
        files = sorted(os.listdir(sock_dir))
        before = open_sockets()
        for call, error in failures:
            with pytest.raises(error):
                call()
            assert open_sockets() == before
            assert sorted(os.listdir(sock_dir)) == files
        # A failure once the socket is open and bound, before it is wrapped.
        broken = OSError(errno.EPERM, "no send buffer for you")

        def refuse(sock: socket.socket, wanted: int) -> int:
            raise broken

        monkeypatch.setattr("aiosock._datagram_sockets.unix_send_limit", refuse)
        with pytest.raises(OSError, match="no send buffer for you"):
            open_datagram(client_path)
        assert open_sockets() == before
        assert sorted(os.listdir(sock_dir)) == files
        stream.getsockname()  # a refused descriptor is left open
