from __future__ import annotations

import collections
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiosock.core.addresses import (
    AddressFamily,
    TCPAddress,
    UDPAddress,
    UnixDatagramAddress,
)
from aiosock.core.codecs import LengthPrefixed, Lines, Raw
from aiosock.core.datagrams import (
    MAX_UDP4_PAYLOAD,
    MAX_UDP6_PAYLOAD,
    DatagramQueue,
    DatagramStats,
    decode_datagram,
    encode_datagram,
    max_payload,
    sockaddr_for,
)
from aiosock.core.errors import (
    DatagramError,
    DatagramTooLarge,
    DatagramTruncated,
    FrameTooLarge,
    IncompleteFrame,
    RemoteProtocolError,
)
from aiosock.core.limits import OverflowPolicy

INET, INET6, UNIX = AddressFamily.AF_INET, AddressFamily.AF_INET6, AddressFamily.AF_UNIX
PEER = UDPAddress(host="192.0.2.7", port=4000)

# ---------------------------------------------------------------- errors


def test_a_truncated_datagram_says_how_much_of_it_fitted() -> None:
    error = DatagramTruncated(address=PEER, size=3000, partial=b"x" * 2048)
    assert str(error) == (
        "datagram of 3000 bytes from udp://192.0.2.7:4000 was cut to the "
        "2048-byte receive buffer"
    )
    assert (error.address, error.size, error.partial) == (PEER, 3000, b"x" * 2048)
    assert isinstance(error, DatagramError)
    assert isinstance(error, RemoteProtocolError)


def test_a_datagram_too_large_to_send_says_by_how_much() -> None:
    error = DatagramTooLarge(size=70_000, limit=MAX_UDP4_PAYLOAD)
    assert str(error) == "datagram of 70000 bytes is larger than 65507 bytes"
    assert (error.size, error.limit) == (70_000, MAX_UDP4_PAYLOAD)
    assert isinstance(error, ValueError)  # the caller's mistake


@pytest.mark.parametrize(
    ("address", "max_frame_size", "expected"),
    [
        (UDPAddress(host="192.0.2.7", port=53), 2**20, MAX_UDP4_PAYLOAD),
        (UDPAddress(host="2001:db8::7", port=53), 2**20, MAX_UDP6_PAYLOAD),
        (UDPAddress(host="192.0.2.7", port=53), 1000, 1000),
        (UDPAddress(host="2001:db8::7", port=53), 1000, 1000),
        (UnixDatagramAddress(path="/run/log"), 2**20, 2**20),
        (None, 1000, 1000),
    ],
)
def test_max_payload_is_udps_own_limit_or_the_configured_one(
    address: UDPAddress | UnixDatagramAddress | None,
    max_frame_size: int,
    expected: int,
) -> None:
    assert max_payload(address, max_frame_size) == expected


def test_encode_datagram_frames_with_the_codec_or_sends_as_is() -> None:
    message = bytearray(b"hello")
    assert encode_datagram(None, message) is message
    # Typed bytes, a built-in codec takes any buffer at run time.
    assert encode_datagram(Lines(), cast(bytes, message)) == b"hello\n"


# ------------------------------------------------------- decode_datagram


def test_without_a_codec_the_datagram_is_the_message() -> None:
    data = b"as it came"
    assert decode_datagram(None, data, PEER) is data


def test_raw_takes_any_datagram_up_to_its_limit() -> None:
    codec = Raw(max_size=10)
    assert decode_datagram(codec, b"", PEER) == b""
    assert decode_datagram(codec, b"y" * 10, PEER) == b"y" * 10
    with pytest.raises(DatagramError) as info:
        decode_datagram(codec, b"y" * 11, PEER)
    assert str(info.value) == (
        "datagram of 11 bytes from udp://192.0.2.7:4000 is larger than "
        "the limit of 10 bytes"
    )
    assert (info.value.address, info.value.size) == (PEER, 11)


@pytest.mark.parametrize(
    ("data", "count"), [(b"", 0), (b"\x01a\x01b", 2), (b"\x00\x00\x00", 3)]
)
def test_a_datagram_must_hold_exactly_one_frame(data: bytes, count: int) -> None:
    codec = LengthPrefixed(header_size=1)
    assert decode_datagram(codec, b"\x02ok", PEER) == b"ok"
    with pytest.raises(DatagramError) as info:
        decode_datagram(codec, data, PEER)
    assert type(info.value) is DatagramError
    assert str(info.value) == (
        f"datagram of {len(data)} bytes from udp://192.0.2.7:4000 holds "
        f"{count} frames, not one"
    )
    assert (info.value.address, info.value.size) == (PEER, len(data))


@pytest.mark.parametrize(
    ("data", "cause", "reason"),
    [
        (b"\x05abc", IncompleteFrame, "stream ended inside a frame (4 bytes of it"),
        (b"\x09abc", FrameTooLarge, "frame of 9 bytes is larger than the limit of 8"),
    ],
)
def test_a_datagram_that_does_not_decode_carries_the_codecs_error(
    data: bytes, cause: type[RemoteProtocolError], reason: str
) -> None:
    codec = LengthPrefixed(header_size=1, max_size=8)
    sender = UnixDatagramAddress(path="/run/peer.sock")
    with pytest.raises(DatagramError) as info:
        decode_datagram(codec, data, sender)
    assert str(info.value).startswith(
        f"datagram of 4 bytes from unixgram:///run/peer.sock does not decode: {reason}"
    )
    assert (info.value.address, info.value.size) == (sender, 4)
    assert type(info.value.__cause__) is cause


def test_a_datagram_from_nobody_says_so() -> None:
    with pytest.raises(DatagramError) as info:
        decode_datagram(Lines(), b"no newline", None)
    assert "from None does not decode" in str(info.value)
    assert info.value.address is None


# --------------------------------------------------------- DatagramQueue


def test_a_queue_holds_at_least_one_item() -> None:
    stats = DatagramStats()
    queue: DatagramQueue[int] = DatagramQueue(1, OverflowPolicy.DROP_NEWEST, stats)
    assert queue.stats is stats
    assert queue.push(1) is True
    with pytest.raises(ValueError, match=r"^maxlen must be at least 1, not 0$"):
        DatagramQueue(0, OverflowPolicy.DROP_NEWEST, stats)


def test_a_full_queue_drops_the_newest_and_says_so() -> None:
    stats = DatagramStats()
    queue: DatagramQueue[str] = DatagramQueue(2, OverflowPolicy.DROP_NEWEST, stats)
    assert [queue.push(item) for item in "abcd"] == [True, True, False, False]
    assert stats.dropped == 2
    assert [queue.pop(), queue.pop()] == ["a", "b"]


def test_a_full_queue_drops_the_oldest_to_take_the_newest() -> None:
    stats = DatagramStats()
    queue: DatagramQueue[str] = DatagramQueue(2, OverflowPolicy.DROP_OLDEST, stats)
    assert [queue.push(item) for item in "abcd"] == [True, True, True, True]
    assert stats.dropped == 2
    assert [queue.pop(), queue.pop()] == ["c", "d"]


def test_clear_adds_what_it_gives_up_to_the_count() -> None:
    stats = DatagramStats(dropped=5)
    queue: DatagramQueue[str] = DatagramQueue(4, OverflowPolicy.DROP_NEWEST, stats)
    queue.push("a")
    queue.push("b")
    assert queue
    assert len(queue) == 2
    queue.clear()
    assert stats.dropped == 7
    assert len(queue) == 0
    assert not queue


@given(
    maxlen=st.integers(1, 5),
    policy=st.sampled_from(OverflowPolicy),
    ops=st.lists(st.one_of(st.none(), st.integers(0, 99)), max_size=40),
)
def test_a_queue_is_bounded_and_counts_every_item_it_gives_up(
    maxlen: int, policy: OverflowPolicy, ops: list[int | None]
) -> None:
    """``None`` pops (when there is something to pop); a number is pushed."""
    stats = DatagramStats()
    queue: DatagramQueue[int] = DatagramQueue(maxlen, policy, stats)
    model: collections.deque[int] = collections.deque()
    pushed = popped = 0
    for op in ops:
        if op is None:
            if model:
                assert queue.pop() == model.popleft()
                popped += 1
            continue
        pushed += 1
        kept = len(model) < maxlen or policy is OverflowPolicy.DROP_OLDEST
        if len(model) == maxlen and kept:
            model.popleft()
        if kept:
            model.append(op)
        assert queue.push(op) is kept
        assert len(queue) == len(model) <= maxlen
        assert bool(queue) is bool(model)
    assert stats.dropped == pushed - popped - len(queue)


# ----------------------------------------------------------- sockaddr_for


@pytest.mark.parametrize(
    ("host", "family", "sockaddr"),
    [
        ("192.0.2.7", INET, ("192.0.2.7", 53)),
        ("192.0.2.7", INET6, ("::ffff:192.0.2.7", 53)),
        ("2001:db8::7", INET6, ("2001:db8::7", 53)),
    ],
)
def test_sockaddr_for_an_ip_fits_the_sockets_family(
    host: str, family: AddressFamily, sockaddr: tuple[str, int]
) -> None:
    assert sockaddr_for(UDPAddress(host=host, port=53), family) == sockaddr


def test_sockaddr_for_a_unix_datagram_address_is_its_path_or_name() -> None:
    assert sockaddr_for(UnixDatagramAddress(path="/run/log"), UNIX) == "/run/log"
    abstract = UnixDatagramAddress(path="log", abstract=True)
    assert sockaddr_for(abstract, UNIX) == "\0log"


@pytest.mark.parametrize(
    ("address", "family", "message"),
    [
        (UDPAddress(host="2001:db8::7", port=53), INET, "from an IPv4 socket"),
        (UDPAddress(host="192.0.2.7", port=53), UNIX, "from a Unix socket"),
        (UDPAddress(host="", port=53), INET, "it needs a host"),
        (UDPAddress(host="example.com", port=53), INET, "resolve it first"),
        (UnixDatagramAddress(path="/run/log"), INET6, "from a UDP socket"),
        (TCPAddress(host="192.0.2.7", port=53), INET, "not a datagram address"),
    ],
)
def test_sockaddr_for_refuses_what_the_socket_cannot_reach(
    address: UDPAddress | UnixDatagramAddress | TCPAddress,
    family: AddressFamily,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        sockaddr_for(address, family)
