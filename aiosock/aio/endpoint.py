"""The awaitable datagram :class:`Endpoint`, and ``open_datagram`` /
``connect_datagram`` that make one.

An :class:`Endpoint` owns an :class:`EndpointProtocol` (a
:class:`~aiosock.aio.datagram.DatagramProtocol`) that keeps what arrives
in a bounded queue for ``await receive()`` and ``async for``, and turns
the transport's water marks into an ``await send()`` that waits. As for
:class:`~aiosock.Connection`, composition keeps the callbacks off the
endpoint's public face.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Generic

from typing_extensions import TypeVar

from aiosock._datagram_sockets import adopt_fd, name_lookup, with_host
from aiosock.aio._closing import AsyncClosing
from aiosock.aio._waiting import WaitingLine
from aiosock.aio.datagram import (
    DatagramProtocol,
    DatagramTransport,
    create_datagram_endpoint,
    resolve,
)
from aiosock.core.addresses import Address, FdAddress, UDPAddress, parse_address
from aiosock.core.codecs import Codec
from aiosock.core.datagrams import (
    DatagramQueue,
    DatagramStats,
    Received,
)
from aiosock.core.endpoint import ADDRESS_CACHE, describe_endpoint, needs_resolving
from aiosock.core.errors import (
    ClosedResourceError,
    DatagramError,
)
from aiosock.core.limits import Limits

__all__ = [
    "Endpoint",
    "EndpointProtocol",
    "connect_datagram",
    "open_datagram",
    "protocol_of",
]

# What receive() returns: (message, address) when bound, message when
# connected; and the codec's message type, what send() takes.
R = TypeVar("R")
M = TypeVar("M", default=bytes)


class EndpointProtocol(DatagramProtocol[M]):
    """The callbacks and the state behind one :class:`Endpoint` (internal).

    It queues datagrams (bounded, counted) for receivers, keeps what the
    socket reported for the next call, and holds senders back above high
    water; the :class:`Endpoint` that owns it is the awaitable face.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._transport: DatagramTransport[M] | None = None
        self.stats = DatagramStats()
        self.queue: DatagramQueue[Received[M] | DatagramError] = DatagramQueue(
            limits.datagram_queue, limits.datagram_overflow, self.stats
        )
        self._loop = asyncio.get_running_loop()
        self.receivers = WaitingLine(self._loop)
        self.senders = WaitingLine(self._loop)
        self.paused_writing = False
        self.pending_error: OSError | None = None  # from the socket, not yet raised
        # Addresses send() took that need no name resolution.
        self.literal: set[str | Address] = set()
        self.end: Exception | None = None  # why receive() can return no more
        self.closed = False
        self.connected = False
        self.lost: asyncio.Future[None] = self._loop.create_future()

    # ------------------------------------------------------ callbacks

    def connection_made(self, transport: DatagramTransport[M]) -> None:
        self._transport = transport
        transport.stats = self.stats  # one set of counters for both layers
        self.connected = transport.connected

    def datagram_received(self, message: M, address: Address | None) -> None:
        self.queue.push((message, address))
        if self.receivers:  # the deque's own test: no call when nobody waits
            self.receivers.wake_one()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, DatagramError):
            self.queue.push(exc)  # in order, and bounded like any datagram
            self.receivers.wake_one()
        elif isinstance(exc, OSError):
            # Raised from the next send(); and, on a connected endpoint,
            # where every error is about the one peer, from receive() too.
            # A bound endpoint's receive() never raises another peer's.
            self.pending_error = exc
            if self.connected:
                self.receivers.wake_all()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.end is None:
            self.end = exc or ClosedResourceError("the endpoint was closed")
        self.receivers.wake_all()
        self.senders.wake_all()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        self.senders.wake_all()

    # ------------------------------------------- what the face calls

    @property
    def transport(self) -> DatagramTransport[M]:
        assert self._transport is not None, "not open"
        return self._transport

    def raise_pending(self) -> None:
        error = self.pending_error
        if error is not None:
            self.pending_error = None
            raise error.with_traceback(None)

    async def next_item(self) -> Received[M] | DatagramError:
        queue = self.queue
        if not queue or (self.pending_error is not None and self.connected):
            if self.limits.read_timeout is None:
                await self.wait()
            else:
                async with asyncio.timeout(self.limits.read_timeout):
                    await self.wait()
        return queue.pop()

    async def wait(self) -> None:
        while True:
            if self.connected:
                self.raise_pending()
            if self.closed:
                raise ClosedResourceError("the endpoint was closed")
            if self.queue:
                return
            if self.end is not None:
                raise self.end.with_traceback(None)
            await self.receivers.wait()

    @property
    def state(self) -> str:
        """``"open"``, ``"closing"`` or ``"closed"``, for repr()."""
        if self.lost.done():
            return "closed"
        if self.closed or self.transport.is_closing():
            return "closing"
        return "open"


class Endpoint(AsyncClosing, Generic[R, M]):
    """A datagram endpoint with awaitable ``send`` and ``receive``.

    Made by :func:`open_datagram` (bound: ``receive()`` returns
    ``(data, address)``) or :func:`connect_datagram` (connected:
    ``receive()`` returns ``data``). Use it as ``async with`` to close it.

    Datagrams wait in a queue of ``limits.datagram_queue`` for a reader;
    a full queue drops per ``limits.datagram_overflow``, counted in
    ``stats.dropped``. The socket is always read, so a slow reader loses
    datagrams here, counted, rather than in the kernel; what the kernel
    drops all the same, in a flood faster than the loop reads, is counted
    in ``stats.dropped_by_kernel``.

    It owns an :class:`EndpointProtocol` that the transport calls back;
    the callbacks are not part of the endpoint's face.
    """

    __slots__ = ("_protocol",)

    # What an endpoint is made of: a class, so that a test can break it.
    _protocol_class: ClassVar[type[EndpointProtocol[Any]]] = EndpointProtocol

    def __init__(self, limits: Limits) -> None:
        self._protocol: EndpointProtocol[M] = self._protocol_class(limits)

    @property
    def stats(self) -> DatagramStats:
        """The counters (see :class:`DatagramStats`), the kernel's drops read now."""
        protocol = self._protocol
        transport = protocol._transport
        return protocol.stats if transport is None else transport.stats

    @property
    def transport(self) -> DatagramTransport[M]:
        return self._protocol.transport

    @property
    def local_address(self) -> Address | None:
        return self._protocol.transport.local_address

    @property
    def peer_address(self) -> Address | None:
        """The connected peer; None for a bound endpoint (or an unnamed peer)."""
        return self._protocol.transport.peer_address

    @property
    def max_datagram_size(self) -> int:
        return self._protocol.transport.max_datagram_size

    async def send(self, message: M, address: str | Address | None = None) -> None:
        """Send one datagram; wait while the send buffer is above high water.

        As :meth:`DatagramTransport.send`, and a host name in ``address`` is
        resolved (the first address of the socket's family; an IPv4 one
        comes mapped on an IPv6 socket). Raises the ``OSError`` of this
        datagram (a Unix peer that is gone: ``ConnectionRefusedError``), or
        one reported since the last send for an earlier datagram (one that
        waited for room and then failed; ICMP, if no receive raised it
        first); the endpoint stays usable, so a server answering many peers
        catches it and goes on. Delivery is not confirmed: datagrams may be
        lost.
        """
        protocol = self._protocol
        if protocol.pending_error is not None:
            protocol.raise_pending()
        transport = protocol.transport
        if address is not None and address not in protocol.literal:
            address = await self._resolve(address)
        transport.send(message, address)
        if protocol.pending_error is not None:  # this datagram's, just reported
            protocol.raise_pending()
        while protocol.paused_writing:
            await protocol.senders.wait()
            if protocol.end is not None:  # closed while waiting
                raise protocol.end.with_traceback(None)

    async def _resolve(self, address: str | Address) -> Address:
        """``address`` with a host name replaced by an address of it.

        One that needs nothing is remembered, so that sending to it again
        does not parse it again.
        """
        protocol = self._protocol
        parsed = parse_address(address) if isinstance(address, str) else address
        sock = protocol.transport.get_extra_info("socket")
        family = sock.family if sock is not None else 0
        if not needs_resolving(parsed, family):
            # What the transport refuses, it refuses with why.
            if len(protocol.literal) >= ADDRESS_CACHE:
                protocol.literal.clear()
            protocol.literal.add(address)
            return parsed
        assert isinstance(parsed, UDPAddress)
        return with_host(parsed, await resolve(name_lookup(parsed, family)))

    async def receive(self) -> R:
        """The next datagram: ``(data, address)`` when bound, ``data`` when connected.

        Raises, and the endpoint stays usable: a :class:`DatagramError` for
        a datagram that was cut or did not decode (in its place in the
        order); the ``OSError`` the socket reported (ICMP, on a connected
        endpoint: ``ConnectionRefusedError``), once. Raises
        :class:`ClosedResourceError` after :meth:`aclose`, and
        :class:`TimeoutError` after ``limits.read_timeout``. Cancellation
        loses no datagram.
        """
        protocol = self._protocol
        item = await protocol.next_item()
        if isinstance(item, DatagramError):
            raise item
        return item[0] if protocol.connected else item  # type: ignore[return-value]

    def __aiter__(self) -> Endpoint[R, M]:
        return self

    async def __anext__(self) -> R:
        """The next good datagram, as :meth:`receive` returns it.

        The iteration skips datagrams that were cut or did not decode (they
        are in :attr:`stats`), so garbage from the network cannot end a
        server's loop; it ends when the endpoint is closed. Socket errors
        (ICMP) are raised, as by :meth:`receive`.
        """
        protocol = self._protocol
        queue = protocol.queue
        while True:
            if queue and (protocol.pending_error is None or not protocol.connected):
                item = queue.pop()
            else:
                try:
                    item = await protocol.next_item()
                except ClosedResourceError:
                    raise StopAsyncIteration from None
            if not isinstance(item, DatagramError):
                return item[0] if protocol.connected else item  # type: ignore[return-value]

    async def aclose(self) -> None:
        """Close: send what is kept for sending (at most ``limits.close_timeout``),
        then release the socket. Idempotent; if cancelled, aborts and re-raises."""
        protocol = self._protocol
        protocol.closed = True
        protocol.queue.clear()  # closed means closed: receive() gives nothing more
        protocol.receivers.wake_all()
        transport = protocol.transport
        transport.close()
        try:
            async with asyncio.timeout(protocol.limits.close_timeout):
                await asyncio.shield(protocol.lost)
        except TimeoutError:
            transport.abort()
        except asyncio.CancelledError:
            transport.abort()
            raise

    def __repr__(self) -> str:
        """``<Endpoint local -> peer open>``: ``closing`` from :meth:`aclose`
        until the socket is released, then ``closed``."""
        protocol = self._protocol
        transport = protocol._transport
        if transport is None:
            return f"<{type(self).__name__} unopened>"
        return describe_endpoint(
            type(self).__name__,
            transport.local_address,
            transport.peer_address,
            protocol.connected,
            protocol.state,
        )


def protocol_of(endpoint: Endpoint[Any, M]) -> EndpointProtocol[M]:
    """The protocol the transport calls back for ``endpoint`` (aiosock's own use)."""
    return endpoint._protocol


async def open_datagram(
    local: str | Address,
    *,
    codec: Codec[M] | None = None,
    limits: Limits | None = None,
    unix_mode: int | None = None,
) -> Endpoint[Received[M], M]:
    """A bound endpoint: ``receive()`` returns ``(data, address)``, ``send``
    takes an address. ``udp://:PORT`` takes datagrams of both IP families
    where the machine has IPv6; port 0 picks a free port (see
    ``local_address``). See :func:`create_datagram_endpoint`."""
    limits = limits or Limits()
    address: Address | None = parse_address(local) if isinstance(local, str) else local
    sock = None
    if isinstance(address, FdAddress):
        sock, address = adopt_fd(address, connected=False), None
    endpoint: Endpoint[Received[M], M] = Endpoint(limits)
    await create_datagram_endpoint(
        lambda: protocol_of(endpoint),
        local=address,
        codec=codec,
        limits=limits,
        sock=sock,
        unix_mode=unix_mode,
    )
    return endpoint


async def connect_datagram(
    remote: str | Address,
    *,
    local: str | Address | None = None,
    codec: Codec[M] | None = None,
    limits: Limits | None = None,
) -> Endpoint[M, M]:
    """A connected endpoint: ``send(data)``, ``receive()`` returns ``data``,
    and only the peer's datagrams arrive; ``fd://N`` adopts a socket that is
    already connected. ICMP errors for what it sent
    surface on the next call. See :func:`create_datagram_endpoint`."""
    limits = limits or Limits()
    target: Address | None = (
        parse_address(remote) if isinstance(remote, str) else remote
    )
    bind_to = parse_address(local) if isinstance(local, str) else local
    if isinstance(bind_to, FdAddress):
        raise ValueError(f"adopt {bind_to} with connect_datagram({str(bind_to)!r})")
    sock = None
    if isinstance(target, FdAddress):
        if bind_to is not None:
            raise ValueError(f"{target} is adopted as it is: it takes no local address")
        sock, target = adopt_fd(target, connected=True), None
    endpoint: Endpoint[M, M] = Endpoint(limits)
    await create_datagram_endpoint(
        lambda: protocol_of(endpoint),
        local=bind_to,
        remote=target,
        codec=codec,
        limits=limits,
        sock=sock,
    )
    return endpoint
