"""Datagrams without a loop: counters, the bounded receive queue, framing.

A datagram socket keeps message boundaries but may lose, duplicate or
reorder datagrams, and the kernel cuts a datagram longer than the buffer
it is read into. The pieces here let every layer (asyncio callbacks, the
async endpoint, the blocking driver) say what happened instead of hiding
it: :class:`DatagramStats` counts, :class:`DatagramQueue` bounds what waits
for a reader and counts what it gives up, and :func:`decode_datagram`
turns one datagram into one message or a :class:`DatagramError`.
"""

from __future__ import annotations

import collections
import ipaddress
from typing import Any, Generic, TypeVar

import attrs

from aiosock.core.addresses import (
    Address,
    AddressFamily,
    UDPAddress,
    UnixDatagramAddress,
)
from aiosock.core.codecs import Buffer, Codec, Raw, T
from aiosock.core.errors import DatagramError, RemoteProtocolError
from aiosock.core.limits import OverflowPolicy

__all__ = [
    "MAX_UDP4_PAYLOAD",
    "MAX_UDP6_PAYLOAD",
    "DatagramQueue",
    "DatagramStats",
    "Received",
    "decode_datagram",
    "encode_datagram",
    "max_payload",
    "sockaddr_for",
]

# 65,535 bytes of IP datagram less the headers: 20 (IPv4) + 8 (UDP); an
# IPv6 payload length excludes its own 40-byte header, so only UDP's 8.
MAX_UDP4_PAYLOAD = 65_507
MAX_UDP6_PAYLOAD = 65_527

#: What a :class:`DatagramQueue` holds.
Item = TypeVar("Item")

#: What a bound endpoint receives: the message and its sender (None for an
#: unnamed Unix socket). ``Received[M]`` for a codec of ``M``; plain
#: ``Received`` holds bytes.
Received = tuple[T, Address | None]


@attrs.define
class DatagramStats:
    """What an endpoint saw; every datagram it was handed or gave up is here.

    ``received`` counts datagrams read from the socket (good or not);
    ``sent`` those the socket took; ``dropped`` those the endpoint gave
    up: received ones a full queue gave up (see :class:`OverflowPolicy`)
    or still queued at close, and ones still waiting to be sent when the
    endpoint was aborted or broke; ``truncated`` those longer than the
    receive buffer, which the kernel cut; ``errors`` datagrams that did
    not decode with the codec, sends the socket refused, and errors it
    reported (an ICMP port unreachable, for one).

    ``dropped_by_kernel`` counts datagrams the kernel dropped before the
    endpoint could read them, its socket receive buffer full (see
    ``Limits.datagram_receive_buffer``): Linux keeps the count per socket
    and the endpoint reads it each time its ``stats`` are read. It stays 0
    where the kernel does not report it (not Linux), and for Unix datagram
    sockets, whose full queue makes the sender wait instead. So, once a
    receiver has read everything a sender sent it, ``sender.sent ==
    receiver.received + receiver.dropped_by_kernel``; and ``received``
    holds what the endpoint gave up (``dropped``) besides what it delivered.
    """

    received: int = 0
    sent: int = 0
    dropped: int = 0
    truncated: int = 0
    errors: int = 0
    dropped_by_kernel: int = 0


def max_payload(address: Address | None, max_frame_size: int) -> int:
    """The largest datagram an endpoint bound or connected to ``address`` sends.

    UDP's own limit for its family (at most ``max_frame_size``); for Unix
    datagram sockets, whose limit is the socket's send buffer, the
    configured ``max_frame_size``.
    """
    if isinstance(address, UDPAddress):
        limit = MAX_UDP6_PAYLOAD if ":" in address.host else MAX_UDP4_PAYLOAD
        return min(limit, max_frame_size)
    return max_frame_size


def encode_datagram(codec: Codec[T] | None, message: T) -> Buffer | list[Buffer]:
    """What to send for ``message``: one frame of ``codec``, or the bytes as they are.

    Raises the codec's :class:`LocalProtocolError` for a message it cannot
    frame. A list is a gather: its parts make one datagram.
    """
    if codec is None:
        # No codec: the message is typed bytes and, at run time, any buffer.
        return message  # type: ignore[return-value]
    return codec.encode(message)


def decode_datagram(codec: Codec[T] | None, data: bytes, address: Address | None) -> T:
    """The one message in ``data``, a whole datagram from ``address``.

    Without a codec, the datagram itself. With one, of any message type,
    the datagram must hold exactly one frame: none, several or part of one
    raise :class:`DatagramError` (the codec's own error, such as
    :class:`FrameTooLarge`, is its ``__cause__``).
    """
    # Without a codec, or with Raw, T is bytes: the datagram is returned as
    # it is, with no cast() call on a path every datagram may take.
    if codec is None:
        return data  # type: ignore[return-value]
    if isinstance(codec, Raw):  # every datagram, even an empty one, is a frame
        if len(data) > codec.max_size:
            raise DatagramError(
                f"datagram of {len(data)} bytes from {address} is larger "
                f"than the limit of {codec.max_size} bytes",
                address=address,
                size=len(data),
            )
        return data  # type: ignore[return-value]
    decoder = codec.decoder()
    try:
        messages = decoder.feed(data)
        decoder.eof()
    except RemoteProtocolError as exc:
        raise DatagramError(
            f"datagram of {len(data)} bytes from {address} does not decode: {exc}",
            address=address,
            size=len(data),
        ) from exc
    if len(messages) != 1:
        raise DatagramError(
            f"datagram of {len(data)} bytes from {address} holds "
            f"{len(messages)} frames, not one",
            address=address,
            size=len(data),
        )
    return messages[0]


class DatagramQueue(Generic[Item]):
    """Received items waiting for a reader, at most ``maxlen`` of them.

    When full, :meth:`push` gives up the newest item (the one pushed) or
    the oldest (at the head), as ``policy`` says, and counts it in
    ``stats.dropped``: a flood costs bounded memory and is never silent.
    """

    __slots__ = ("_items", "_maxlen", "_policy", "stats")

    def __init__(self, maxlen: int, policy: OverflowPolicy, stats: DatagramStats):
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, not {maxlen}")
        self._items: collections.deque[Item] = collections.deque()
        self._maxlen = maxlen
        self._policy = policy
        self.stats = stats

    def push(self, item: Item) -> bool:
        """Queue ``item``; False when a full queue dropped it instead."""
        items = self._items
        if len(items) >= self._maxlen:
            self.stats.dropped += 1
            if self._policy is OverflowPolicy.DROP_NEWEST:
                return False
            items.popleft()
        items.append(item)
        return True

    def pop(self) -> Item:
        """The oldest item; :class:`IndexError` when empty."""
        return self._items.popleft()

    def clear(self) -> None:
        """Give up every queued item, counting each in ``stats.dropped``."""
        self.stats.dropped += len(self._items)
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


def sockaddr_for(address: Address, family: int) -> Any:
    """What ``sendto`` takes for ``address`` on a socket of ``family``.

    An IPv4 address on an IPv6 socket becomes its mapped form (a dual-stack
    socket takes it). Raises ``ValueError`` for a host name (resolve it
    first), no host, a family the socket cannot reach, or an address that
    is not a datagram one.
    """
    if isinstance(address, UDPAddress):
        if family not in (AddressFamily.AF_INET, AddressFamily.AF_INET6):
            raise ValueError(f"cannot send to {address} from a Unix socket")
        if not address.host:
            raise ValueError(f"cannot send to {address}: it needs a host")
        try:
            ip = ipaddress.ip_address(address.host)
        except ValueError:
            raise ValueError(
                f"{address.host!r} is a host name: resolve it first"
            ) from None
        if ip.version == 4 and family == AddressFamily.AF_INET6:
            return (f"::ffff:{ip}", address.port)
        if ip.version == 6 and family == AddressFamily.AF_INET:
            raise ValueError(f"cannot send to {address} from an IPv4 socket")
        return (address.host, address.port)
    if isinstance(address, UnixDatagramAddress):
        if family != AddressFamily.AF_UNIX:
            raise ValueError(f"cannot send to {address} from a UDP socket")
        return "\0" + address.path if address.abstract else address.path
    raise ValueError(f"{address} is not a datagram address")
