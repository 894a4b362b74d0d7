"""The rules of one datagram endpoint, without a socket or a loop.

Both drivers, the asyncio transport (:mod:`aiosock.aio.datagram`) and the
blocking endpoint (:mod:`aiosock.sync`), read and write their own socket;
everything they decide about what they read and write is here, once, in
:class:`EndpointState`:

- bound or connected, the addresses, the largest datagram either way;
- what a receive returned: a message from its sender, or a datagram the
  kernel cut (:class:`DatagramTruncated`) or the codec refused
  (:class:`DatagramError`), counted either way;
- what a send takes: the encoded datagram, checked against the limit,
  and the socket address to give ``sendto``;
- the error policy: which ``OSError`` ends the endpoint and which costs
  one datagram and is reported, and when a connected Unix socket must
  connect again before it sends;
- the counters (:class:`DatagramStats`), the kernel's drops among them;
- the two caches that save converting addresses for every datagram.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any, Generic

from aiosock.core.addresses import (
    Address,
    AddressFamily,
    SocketKind,
    UDPAddress,
    from_sockaddr,
    is_ip_literal,
    parse_address,
)
from aiosock.core.codecs import Buffer, Codec, T
from aiosock.core.datagrams import (
    DatagramStats,
    Received,
    decode_datagram,
    max_payload,
    sockaddr_for,
)
from aiosock.core.errors import (
    ClosedResourceError,
    DatagramError,
    DatagramTooLarge,
    DatagramTruncated,
    translate_os_error,
)

__all__ = [
    "ADDRESS_CACHE",
    "MEMINFO_SIZE",
    "SO_MEMINFO",
    "EndpointState",
    "Resolver",
    "describe_endpoint",
    "meminfo_drops",
    "needs_resolving",
]

Sockaddr = Any  # what the socket module takes and returns: a tuple or a str
#: A blocking resolver a driver may give: the address with its host name
#: replaced by an IP address of ``family``.
Resolver = Callable[[UDPAddress, int], UDPAddress]

# Distinct addresses remembered, converted, per endpoint and direction; an
# endpoint with more peers than this converts again, it does not grow
# without bound.
ADDRESS_CACHE = 1024

# Linux's getsockopt(SOL_SOCKET, SO_MEMINFO) (include/uapi/linux/sock_diag.h):
# the socket's memory counters as native u32s, SK_MEMINFO_DROPS the ninth,
# the same sk_drops counter that SO_RXQ_OVFL stamps on each datagram.
SO_MEMINFO = 55
_SK_MEMINFO_DROPS = 8
MEMINFO_SIZE = 4 * (_SK_MEMINFO_DROPS + 1)
# sk_drops is a 32-bit counter: differences are taken modulo its range.
_COUNTER_RANGE = 1 << 32


def meminfo_drops(raw: bytes) -> int | None:
    """The kernel's drop counter in what ``SO_MEMINFO`` returned, or None
    when the answer is too short to hold it (a kernel older than the
    counter)."""
    if len(raw) < MEMINFO_SIZE:
        return None
    start = 4 * _SK_MEMINFO_DROPS
    return int.from_bytes(raw[start : start + 4], sys.byteorder)


def needs_resolving(address: Address, family: int) -> bool:
    """True when sending to ``address`` from a socket of ``family`` needs a
    name resolved first: a UDP address with a host name, on an IP socket.

    ``family`` 0 (no socket to ask) counts as an IP one. A Unix socket
    resolves nothing; sending there refuses a UDP address, named or not.
    """
    return (
        isinstance(address, UDPAddress)
        and bool(address.host)
        and not is_ip_literal(address.host)
        and family != AddressFamily.AF_UNIX
    )


class EndpointState(Generic[T]):
    """What one datagram endpoint knows and decides, for any driver.

    ``T`` is the message type of its codec: :meth:`received` returns one,
    :meth:`prepare` takes one; ``bytes`` without a codec.

    ``local`` and ``peer`` are the socket's names (None for an unnamed Unix
    socket); ``connected`` says whether it has a fixed peer, which may be
    unnamed (a socketpair). ``send_limit``, for a Unix socket, is the
    largest datagram its send buffer takes. ``resolve``, where given,
    resolves a host name that ``send`` was handed, on a cache miss; without
    it a host name is refused (the asyncio layer resolves before it sends).

    Drivers call :meth:`received` for every datagram read, :meth:`prepare`
    for every one to send, and :meth:`send_failed` or
    :meth:`receive_failed` for every ``OSError``; they read ``rejoin``
    before a send (see :meth:`send_failed`).
    """

    __slots__ = (
        "_kernel_base",
        "_resolve",
        "codec",
        "connected",
        "family",
        "local",
        "max_receive",
        "max_send",
        "peer",
        "rejoin",
        "senders",
        "stats",
        "targets",
    )

    def __init__(
        self,
        *,
        family: int,
        local: Address | None,
        peer: Address | None,
        connected: bool,
        codec: Codec[T] | None,
        max_frame_size: int,
        send_limit: int | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self.family = family
        self.local = local
        self.peer = peer
        self.connected = connected
        self.codec = codec
        #: The largest datagram sent (codec framing included) and received.
        self.max_send = max_payload(peer or local, max_frame_size)
        if send_limit is not None:
            self.max_send = min(self.max_send, send_limit)
        self.max_receive = max_payload(local or peer, max_frame_size)
        self.stats = DatagramStats()
        #: Connect to the peer again before the next send (see send_failed).
        self.rejoin = False
        # Senders as recvfrom gives them -> aiosock addresses; addresses as
        # send() took them -> what sendto takes. Literals only: a name may
        # resolve elsewhere next time.
        self.senders: dict[Sockaddr, Address | None] = {}
        self.targets: dict[str | Address | None, Sockaddr] = {}
        self._resolve = resolve
        self._kernel_base: int | None = None

    # ---------------------------------------------------------- receiving

    @property
    def buffer_size(self) -> int:
        """The bytes to read a datagram into: one more than the largest
        taken, so that one too long is seen as such even where the kernel
        does not report its real length."""
        return self.max_receive + 1

    def received(
        self, buffer: memoryview, nbytes: int, sockaddr: Sockaddr
    ) -> Received[T]:
        """The message of a datagram read into ``buffer``, and its sender.

        ``nbytes`` is what the read returned: with ``MSG_TRUNC``, Linux
        gives a datagram's real length even when the buffer took only its
        start. ``sockaddr`` is the sender as the read gave it. Counts the
        datagram; raises, counted too, :class:`DatagramTruncated` for one
        longer than ``max_receive`` and :class:`DatagramError` for one that
        does not decode with the codec. The sender of a connected endpoint
        is its peer.
        """
        stats = self.stats
        stats.received += 1
        if self.connected:
            address = self.peer
        else:
            try:  # a sender seen before costs one lookup
                address = self.senders[sockaddr]
            except KeyError:
                address = self._sender(sockaddr)
        limit = self.max_receive
        if nbytes > limit:
            stats.truncated += 1
            raise DatagramTruncated(
                address=address, size=nbytes, partial=buffer[:limit].tobytes()
            )
        data = buffer[:nbytes].tobytes()
        codec = self.codec
        if codec is None:  # T is bytes: no cast() call on every datagram
            return data, address  # type: ignore[return-value]
        try:
            return decode_datagram(codec, data, address), address
        except DatagramError:
            stats.errors += 1
            raise

    def _sender(self, sockaddr: Sockaddr) -> Address | None:
        """The aiosock address of a sender not in the cache (and now in it)."""
        senders = self.senders
        if len(senders) >= ADDRESS_CACHE:
            senders.clear()
        try:
            address = (
                None  # an unnamed Unix sender
                if sockaddr is None
                else from_sockaddr(self.family, SocketKind.SOCK_DGRAM, sockaddr)
            )
        except ValueError:
            # A name aiosock addresses cannot hold (a Unix socket bound to a
            # relative path): the datagram is good, so it comes unnamed.
            address = None
        senders[sockaddr] = address
        return address

    # ------------------------------------------------------------ sending

    def prepare(
        self, message: T, address: str | Address | None
    ) -> tuple[Buffer | list[Buffer], int, Sockaddr]:
        """What to send for ``message`` to ``address``: the datagram (a list
        is a gather), its size and the socket address (None: the peer).

        Raises, and nothing may be sent: the codec's
        :class:`LocalProtocolError`, :class:`DatagramTooLarge` above
        ``max_send``, and ``ValueError`` for an address this endpoint cannot
        send to (a bound one needs an address; a connected one takes its
        peer's only; a host name without a resolver).
        """
        codec = self.codec
        # Without a codec T is bytes (at run time, any buffer), sent as it
        # is: an ignore rather than cast(), a call on every datagram's path.
        payload: Buffer | list[Buffer] = (
            message if codec is None else codec.encode(message)  # type: ignore[assignment]
        )
        if type(payload) is bytes:  # the common case, tested first
            size = len(payload)
        elif isinstance(payload, list):
            size = sum(memoryview(part).nbytes for part in payload)
        else:  # len() of a memoryview counts items, which need not be bytes
            size = memoryview(payload).nbytes
        if size > self.max_send:
            raise DatagramTooLarge(size=size, limit=self.max_send)
        try:  # an address sent to before costs one lookup
            target = self.targets[address]
        except KeyError:
            target = self._target(address)
        return payload, size, target

    def _target(self, address: str | Address | None) -> Sockaddr:
        """The socket address for ``address``, not in the cache (a literal
        is put there)."""
        if address is None:
            if not self.connected:
                raise ValueError("this endpoint is not connected: give an address")
            self.targets[None] = None
            return None
        parsed = parse_address(address) if isinstance(address, str) else address
        resolved = parsed
        if self._resolve is not None and needs_resolving(parsed, self.family):
            assert isinstance(parsed, UDPAddress)
            resolved = self._resolve(parsed, self.family)
        if self.connected:
            if resolved != self.peer:
                raise ValueError(
                    f"this endpoint is connected to {self.peer}: "
                    f"it cannot send to {resolved}"
                )
            sockaddr = None
        else:
            sockaddr = sockaddr_for(resolved, self.family)
        if resolved is parsed:
            if len(self.targets) >= ADDRESS_CACHE:
                self.targets.clear()
            self.targets[address] = sockaddr
        return sockaddr

    # ------------------------------------------------------------- errors

    def send_failed(self, exc: OSError) -> ClosedResourceError | None:
        """A send the socket refused: the datagram is lost, counted in
        ``stats.errors``.

        Returns the error that ends the endpoint, its descriptor gone, to
        raise ``from exc``; or None when the endpoint goes on and ``exc``
        is the caller's to report: an ICMP error for an earlier datagram,
        or a Unix peer that is gone. Linux disconnects a connected Unix
        socket whose peer refused a send, so ``rejoin`` then asks the
        driver to connect again before the next send.
        """
        self.stats.errors += 1
        ended = self._ended_by(exc)
        if (
            exc.errno == errno.ECONNREFUSED
            and self.connected
            and self.family == AddressFamily.AF_UNIX
        ):
            self.rejoin = True
        return ended

    def receive_failed(self, exc: OSError) -> ClosedResourceError | None:
        """A read the socket refused.

        Returns the error that ends the endpoint, its descriptor gone, to
        raise ``from exc``. Else None: an ICMP error (refused, unreachable)
        for an earlier datagram, counted in ``stats.errors``, after which
        the socket stays usable, as every OS treats it.
        """
        ended = self._ended_by(exc)
        if ended is None:
            self.stats.errors += 1
        return ended

    def _ended_by(self, exc: OSError) -> ClosedResourceError | None:
        """The error that ends the endpoint when ``exc`` says its descriptor
        is gone; None otherwise, whatever translate_os_error would call a
        broken stream: a datagram socket's other errors are one datagram's."""
        error = translate_os_error(exc, address=self.local or self.peer)
        return error if isinstance(error, ClosedResourceError) else None

    # ------------------------------------------------------ kernel drops

    def kernel_drops(self, counter: int | None) -> None:
        """Note the kernel's drop counter for the socket (None: unknown).

        The first note is where counting starts (an adopted socket may have
        dropped before); ``stats.dropped_by_kernel`` is what it gained since.
        """
        if counter is None:
            return
        if self._kernel_base is None:
            self._kernel_base = counter
        else:
            gained = (counter - self._kernel_base) % _COUNTER_RANGE
            self.stats.dropped_by_kernel = gained


def describe_endpoint(
    kind: str,
    local: Address | None,
    peer: Address | None,
    connected: bool,
    status: str,
) -> str:
    """``<kind local -> peer status>``, what every endpoint's ``repr()``
    shows: a bound endpoint has no arrow, an unnamed socket is ``unnamed``."""
    here = "unnamed" if local is None else str(local)
    if not connected:
        return f"<{kind} {here} {status}>"
    there = "unnamed" if peer is None else str(peer)
    return f"<{kind} {here} -> {there} {status}>"
