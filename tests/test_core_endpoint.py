"""The rules of one datagram endpoint, without a socket: what both drivers
decide about what they read and send (aiosock.core.endpoint)."""

from __future__ import annotations

import errno
import sys
from typing import cast

import pytest

from aiosock.core.addresses import (
    AddressFamily,
    UDPAddress,
    UnixDatagramAddress,
    parse_address,
)
from aiosock.core.codecs import LengthPrefixed
from aiosock.core.endpoint import (
    ADDRESS_CACHE,
    MEMINFO_SIZE,
    EndpointState,
    describe_endpoint,
    meminfo_drops,
    needs_resolving,
)
from aiosock.core.errors import (
    ClosedResourceError,
    DatagramError,
    DatagramTooLarge,
    DatagramTruncated,
)

INET, INET6, UNIX = AddressFamily.AF_INET, AddressFamily.AF_INET6, AddressFamily.AF_UNIX
HERE = UDPAddress(host="127.0.0.1", port=5000)
THERE = UDPAddress(host="127.0.0.1", port=6000)


def bound(**options: object) -> EndpointState:
    settings: dict[str, object] = {
        "family": INET,
        "local": HERE,
        "peer": None,
        "connected": False,
        "codec": None,
        "max_frame_size": 100,
    }
    settings.update(options)
    return EndpointState(**settings)  # type: ignore[arg-type]


def connected(**options: object) -> EndpointState:
    return bound(**{"peer": THERE, "connected": True, **options})


def read(state: EndpointState, datagram: bytes, sockaddr: object) -> object:
    """What ``state`` makes of ``datagram`` as a read of a long one returns it."""
    buffer = memoryview(bytearray(state.buffer_size))
    taken = datagram[: len(buffer)]
    buffer[: len(taken)] = taken
    return state.received(buffer, len(datagram), sockaddr)


# ------------------------------------------------------------- receiving


def test_a_datagram_comes_with_its_sender_converted_once() -> None:
    state = bound()
    assert read(state, b"hi", ("127.0.0.1", 6000)) == (b"hi", THERE)
    assert state.senders == {("127.0.0.1", 6000): THERE}
    assert read(state, b"", ("127.0.0.1", 6000)) == (b"", THERE)
    assert state.stats.received == 2


def test_the_sender_cache_is_bounded() -> None:
    state = bound()
    for port in range(1, ADDRESS_CACHE + 2):
        read(state, b"x", ("127.0.0.1", port))
        assert len(state.senders) <= ADDRESS_CACHE
    assert state.stats.received == ADDRESS_CACHE + 1


def test_senders_without_an_aiosock_address_come_unnamed() -> None:
    state = bound(family=UNIX, local=UnixDatagramAddress(path="/run/s"))
    assert read(state, b"a", None) == (b"a", None)  # never bound
    assert read(state, b"b", "relative.sock") == (b"b", None)  # no address holds it
    at = UnixDatagramAddress(path="x", abstract=True)
    assert read(state, b"c", "\0x") == (b"c", at)


def test_a_connected_endpoint_hears_its_peer_only() -> None:
    state = connected()
    assert read(state, b"hi", ("127.0.0.1", 6000)) == (b"hi", THERE)
    assert state.senders == {}  # no conversion: the peer is known


def test_one_datagram_longer_than_the_limit_is_cut_and_counted() -> None:
    state = bound()
    assert state.buffer_size == state.max_receive + 1 == 101
    # Seen by the byte more where a kernel tells no more (101), or by the
    # real length that Linux reports with MSG_TRUNC (5000).
    for size in (101, 5000):
        with pytest.raises(DatagramTruncated) as caught:
            read(state, bytes(size), ("127.0.0.1", 6000))
        error = caught.value
        assert (error.address, error.size, error.partial) == (THERE, size, bytes(100))
    assert read(state, bytes(100), ("127.0.0.1", 6000)) == (bytes(100), THERE)
    assert (state.stats.received, state.stats.truncated) == (3, 2)


def test_a_datagram_that_does_not_decode_is_an_error_in_its_place() -> None:
    state = bound(codec=LengthPrefixed())
    assert read(state, b"\0\0\0\x02hi", ("127.0.0.1", 6000)) == (b"hi", THERE)
    with pytest.raises(DatagramError) as caught:
        read(state, b"garbage", ("127.0.0.1", 6000))
    assert caught.value.address == THERE
    assert (state.stats.received, state.stats.errors) == (2, 1)


# --------------------------------------------------------------- sending


def test_prepare_sizes_every_kind_of_buffer_in_bytes() -> None:
    state = connected()
    assert state.prepare(b"abc", None) == (b"abc", 3, None)
    parts = [b"ab", memoryview(b"cd")]
    assert state.prepare(parts, None) == (parts, 4, None)  # type: ignore[arg-type]
    # Typed bytes, a message without a codec may be any buffer at run time.
    wide = cast(bytes, memoryview(bytes(100)).cast("i"))  # 25 items, 100 bytes
    assert state.prepare(wide, None)[1] == 100
    with pytest.raises(DatagramTooLarge) as caught:
        state.prepare(cast(bytes, memoryview(bytes(104)).cast("i")), None)
    assert (caught.value.size, caught.value.limit) == (104, 100)


def test_prepare_encodes_with_the_codec_and_counts_the_framing() -> None:
    state = connected(codec=LengthPrefixed())
    payload, size, _ = state.prepare(b"hi", None)
    assert (payload, size) == (b"\0\0\0\x02hi", 6)
    with pytest.raises(DatagramTooLarge):
        state.prepare(bytes(97), None)  # and a 4-byte header: 101


def test_targets_fit_the_endpoint_and_literals_are_remembered() -> None:
    state = bound()
    assert state.prepare(b"x", "udp://127.0.0.1:6000")[2] == ("127.0.0.1", 6000)
    assert state.prepare(b"x", THERE)[2] == ("127.0.0.1", 6000)
    assert state.targets == {
        "udp://127.0.0.1:6000": ("127.0.0.1", 6000),
        THERE: ("127.0.0.1", 6000),
    }
    with pytest.raises(ValueError, match=r"^this endpoint is not connected"):
        state.prepare(b"x", None)
    with pytest.raises(ValueError, match="is a host name: resolve it first"):
        state.prepare(b"x", "udp://localhost:9")
    peer = connected()
    assert peer.prepare(b"x", None)[2] is None
    assert peer.prepare(b"x", "udp://127.0.0.1:6000")[2] is None
    message = "^this endpoint is connected to udp://127.0.0.1:6000: it cannot send to"
    with pytest.raises(ValueError, match=message):
        peer.prepare(b"x", "udp://127.0.0.2:6000")


def test_the_target_cache_is_bounded() -> None:
    state = bound()
    for port in range(1, ADDRESS_CACHE + 2):
        state.prepare(b"x", UDPAddress(host="127.0.0.1", port=port))
        assert len(state.targets) <= ADDRESS_CACHE


def test_a_resolver_given_resolves_names_and_they_are_not_remembered() -> None:
    asked: list[tuple[UDPAddress, int]] = []

    def resolve(address: UDPAddress, family: int) -> UDPAddress:
        asked.append((address, family))
        return UDPAddress(host="127.0.0.1", port=address.port)

    state = bound(resolve=resolve)
    for _ in range(2):  # a name may resolve elsewhere next time: asked again
        assert state.prepare(b"x", "udp://localhost:6000")[2] == ("127.0.0.1", 6000)
    assert asked == [(UDPAddress(host="localhost", port=6000), INET)] * 2
    assert state.targets == {}
    assert connected(resolve=resolve).prepare(b"x", "udp://localhost:6000")[2] is None


@pytest.mark.parametrize(
    ("address", "family", "needed"),
    [
        ("udp://localhost:9", INET, True),
        ("udp://localhost:9", INET6, True),
        ("udp://localhost:9", 0, True),  # no socket to ask: as an IP one
        ("udp://localhost:9", UNIX, False),  # refused as a UDP address
        ("udp://127.0.0.1:9", INET, False),
        ("udp://[::1]:9", INET6, False),
        ("udp://:9", INET, False),  # refused: no host
        ("unixgram:@x", UNIX, False),
    ],
)
def test_which_addresses_need_a_name_resolved(
    address: str, family: int, needed: bool
) -> None:
    assert needs_resolving(parse_address(address), family) is needed


# ---------------------------------------------------------------- errors


def test_a_send_refused_costs_the_datagram_and_a_unix_peer_must_rejoin() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    unix = connected(family=UNIX, local=None, peer=UnixDatagramAddress(path="/run/p"))
    assert unix.send_failed(refused) is None
    assert (unix.stats.errors, unix.rejoin) == (1, True)
    for state in (connected(), bound(family=UNIX, local=None)):  # UDP; not connected
        assert state.send_failed(refused) is None
        assert (state.stats.errors, state.rejoin) == (1, False)


@pytest.mark.parametrize("code", [errno.EBADF, errno.ENOTSOCK])
def test_a_descriptor_gone_ends_the_endpoint_naming_it(code: int) -> None:
    gone = OSError(code, "gone")
    state = bound()
    error = state.send_failed(gone)
    assert isinstance(error, ClosedResourceError)
    assert str(error) == "the socket of udp://127.0.0.1:5000 was already closed"
    assert state.stats.errors == 1  # the datagram it was sending is lost
    error = state.receive_failed(gone)
    assert isinstance(error, ClosedResourceError)
    assert state.stats.errors == 1  # a read loses no datagram
    unnamed = connected(family=UNIX, local=None, peer=None)
    assert str(unnamed.receive_failed(gone)) == "the socket was already closed"


def test_a_read_error_is_counted_and_the_endpoint_goes_on() -> None:
    state = connected()
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    assert state.receive_failed(refused) is None
    assert (state.stats.errors, state.rejoin) == (1, False)


# ----------------------------------------------------------- kernel drops


def test_kernel_drops_count_from_the_first_reading() -> None:
    state = bound()
    state.kernel_drops(None)  # not known: nothing to count from
    state.kernel_drops(7)  # dropped before this endpoint began
    assert state.stats.dropped_by_kernel == 0
    state.kernel_drops(None)
    state.kernel_drops(10)
    assert state.stats.dropped_by_kernel == 3
    state.kernel_drops(None)  # a closed socket: the last count stays
    assert state.stats.dropped_by_kernel == 3


def test_kernel_drops_survive_the_counter_wrapping() -> None:
    state = bound()
    state.kernel_drops(2**32 - 2)
    state.kernel_drops(3)
    assert state.stats.dropped_by_kernel == 5


def test_the_drop_counter_is_the_ninth_of_the_memory_counters() -> None:
    counters = [0, 212_992, 0, 212_992, 0, 0, 0, 0, 9944]
    raw = b"".join(n.to_bytes(4, sys.byteorder) for n in counters)
    assert len(raw) == MEMINFO_SIZE
    assert meminfo_drops(raw) == 9944
    assert meminfo_drops(raw + bytes(4)) == 9944  # a newer kernel's, longer
    assert meminfo_drops(raw[:-4]) is None  # an older kernel's, without it


# ------------------------------------------------------------------ repr


def test_an_endpoint_is_described_by_kind_addresses_and_state() -> None:
    assert (
        describe_endpoint("Endpoint", HERE, THERE, True, "open")
        == "<Endpoint udp://127.0.0.1:5000 -> udp://127.0.0.1:6000 open>"
    )
    assert (
        describe_endpoint("Endpoint", HERE, None, False, "closing")
        == "<Endpoint udp://127.0.0.1:5000 closing>"
    )
    assert (
        describe_endpoint("DatagramEndpoint", None, None, True, "closed")
        == "<DatagramEndpoint unnamed -> unnamed closed>"
    )
