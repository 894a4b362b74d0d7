"""Datagram endpoints in memory: test datagram code without sockets.

:class:`MemoryNetwork` holds datagram endpoints that reach each other by
address (:class:`~aiosock.UDPAddress`, :class:`~aiosock.UnixDatagramAddress`)
under the real :class:`~aiosock.Endpoint`, and behaves like UDP where it
matters: a datagram arrives on a later turn, whole or not at all; a
connected endpoint hears only its peer, and one that sends where nobody
is bound gets ``ConnectionRefusedError``, as ICMP would tell it.
Its :meth:`MemoryNetwork.pair` fits the datagram conformance suite.
"""

from __future__ import annotations

import asyncio
import collections
import errno
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiosock.aio.datagram import DatagramProtocol, DatagramTransport
from aiosock.aio.endpoint import Endpoint, protocol_of
from aiosock.core.addresses import (
    Address,
    AddressFamily,
    UDPAddress,
    UnixDatagramAddress,
    parse_address,
)
from aiosock.core.codecs import Codec, T
from aiosock.core.datagrams import (
    DatagramStats,
    Received,
    decode_datagram,
    encode_datagram,
    max_payload,
)
from aiosock.core.errors import (
    ClosedResourceError,
    DatagramError,
    DatagramTooLarge,
    DatagramTruncated,
)
from aiosock.core.limits import Limits
from aiosock.testing.datagrams import DatagramPair

__all__ = ["MemoryDatagramTransport", "MemoryNetwork"]

P = TypeVar("P", bound=DatagramProtocol[Any])
DatagramAddress = UDPAddress | UnixDatagramAddress

# Where port 0 starts looking: the dynamic range of RFC 6335 (49152-65535),
# so that a picked port looks like one the kernel would pick.
_FIRST_DYNAMIC_PORT = 49152

# Datagrams kept for an endpoint that paused reading; later ones drop, as
# they do from a full socket buffer: about what Linux's default 208 KiB
# receive buffer holds of small datagrams (some 800 bytes of it each).
_PAUSED_BACKLOG = 256


class MemoryNetwork:
    """Datagram endpoints that reach each other by address, in memory.

    A datagram sent on one turn of the loop arrives on a later one, whole,
    in order, at the endpoint bound to its address; to an address where
    nobody is bound it is lost, and a connected sender is told so on a
    later turn (``error_received(ConnectionRefusedError)``), as ICMP tells
    a connected UDP socket, whatever the kind of address. Closing an
    endpoint frees its address at once.

    Addresses are UDP ones with an IP literal (the network has neither a
    resolver nor interfaces, so no host names and no every-interface
    host; one IP family per conversation) or Unix datagram ones; nothing is
    made in the filesystem. ``max_datagram_size`` (None: what a socket of
    the same address takes, see :func:`~aiosock.core.datagrams.max_payload`)
    bounds every datagram, as a path MTU would; an endpoint also takes no
    more than its ``limits.max_frame_size``.
    """

    def __init__(self, *, max_datagram_size: int | None = None) -> None:
        if max_datagram_size is not None and max_datagram_size < 0:
            raise ValueError(f"max_datagram_size {max_datagram_size} is negative")
        self._max_datagram_size = max_datagram_size
        self._bound: dict[DatagramAddress, MemoryDatagramTransport[Any]] = {}
        # Where the last port and the last auto-bound name were picked.
        self._port_offset = -1  # into the dynamic range
        self._last_name = -1

    async def open(
        self,
        local: str | Address,
        *,
        codec: Codec[T] | None = None,
        limits: Limits | None = None,
    ) -> Endpoint[Received[T], T]:
        """A bound endpoint, as :func:`~aiosock.open_datagram` makes one."""
        limits = limits or Limits()
        endpoint: Endpoint[Received[T], T] = Endpoint(limits)
        await self.create_endpoint(
            lambda: protocol_of(endpoint), local=local, codec=codec, limits=limits
        )
        return endpoint

    async def connect(
        self,
        remote: str | Address,
        *,
        local: str | Address | None = None,
        codec: Codec[T] | None = None,
        limits: Limits | None = None,
    ) -> Endpoint[T, T]:
        """A connected endpoint, as :func:`~aiosock.connect_datagram` makes one.

        Without ``local`` it is bound to a free port of the remote's host
        or, for Unix, to an abstract name of its own (as Linux auto-binds),
        so that its peer can answer it.
        """
        limits = limits or Limits()
        endpoint: Endpoint[T, T] = Endpoint(limits)
        await self.create_endpoint(
            lambda: protocol_of(endpoint),
            local=local,
            remote=remote,
            codec=codec,
            limits=limits,
        )
        return endpoint

    async def create_endpoint(
        self,
        protocol_factory: Callable[[], P],
        *,
        local: str | Address | None = None,
        remote: str | Address | None = None,
        codec: Codec[T] | None = None,
        limits: Limits | None = None,
    ) -> tuple[MemoryDatagramTransport[T], P]:
        """An endpoint bound to ``local``, connected to ``remote``, or both.

        As :func:`~aiosock.create_datagram_endpoint`, typed as it is:
        ``connection_made`` before this returns. Port 0 picks a free port.
        Connecting needs nobody at ``remote``, as with UDP. Raises
        ``OSError`` (EADDRINUSE) for an address in use and ``ValueError``
        for an address the network cannot have (see the class) or kinds
        that do not mix.
        """
        limits = limits or Limits()
        peer = _datagram_address(remote)
        if isinstance(peer, UDPAddress) and peer.port == 0:
            raise ValueError(f"cannot connect to {peer}: it needs a port")
        address = self._bind_address(_datagram_address(local), peer)
        limit = max_payload(peer or address, limits.max_frame_size)
        if self._max_datagram_size is not None:
            limit = min(limit, self._max_datagram_size)
        protocol = protocol_factory()
        transport = MemoryDatagramTransport(
            self,
            protocol,
            local=address,
            peer=peer,
            codec=codec,
            limits=limits,
            max_size=limit,
        )
        self._bound[address] = transport
        protocol.connection_made(transport)
        return transport, protocol

    @asynccontextmanager
    async def pair(
        self, *, limits: Limits | None = None
    ) -> AsyncIterator[DatagramPair]:
        """A bound server and a client connected to it; both closed on exit.

        UDP on 127.0.0.1, a new port each. A bound method of one network
        is a pair maker for the datagram conformance suite.
        """
        async with await self.open("udp://127.0.0.1:0", limits=limits) as server:
            address = server.local_address
            assert address is not None
            async with await self.connect(address, limits=limits) as client:
                yield DatagramPair(server=server, client=client)

    def _bind_address(
        self, local: DatagramAddress | None, peer: DatagramAddress | None
    ) -> DatagramAddress:
        """Where a new endpoint is bound: ``local``, or one picked for it."""
        if local is None:
            if peer is None:
                raise ValueError("give a local address, a remote one, or both")
            if isinstance(peer, UnixDatagramAddress):
                return self._auto_name()
            local = UDPAddress(host=peer.host, port=0)
        elif peer is not None:
            _reachable(local, peer)
        if isinstance(local, UDPAddress) and local.port == 0:
            return self._free_port(local.host)
        if local in self._bound:
            raise OSError(errno.EADDRINUSE, f"{local} is in use")
        return local

    def _free_port(self, host: str) -> UDPAddress:
        """The next free port on ``host`` after the last one given.

        Not the lowest: a port just freed is not given again at once, so
        a datagram to a closed endpoint does not reach a new one.
        """
        span = 65536 - _FIRST_DYNAMIC_PORT
        for step in range(1, span + 1):
            offset = (self._port_offset + step) % span
            address = UDPAddress(host=host, port=_FIRST_DYNAMIC_PORT + offset)
            if address not in self._bound:
                self._port_offset = offset
                return address
        raise OSError(errno.EADDRNOTAVAIL, f"no free port on {host}")

    def _auto_name(self) -> UnixDatagramAddress:
        """A free abstract name of five hex digits, as Linux auto-bind gives."""
        span = 1 << 20
        for step in range(1, span + 1):
            number = (self._last_name + step) % span
            address = UnixDatagramAddress(path=f"{number:05x}", abstract=True)
            if address not in self._bound:
                self._last_name = number
                return address
        raise OSError(errno.EAGAIN, "no free abstract name")

    def _carry(
        self,
        sender: MemoryDatagramTransport[Any],
        source: DatagramAddress,
        target: DatagramAddress,
        datagram: bytes,
    ) -> None:
        receiver = self._bound.get(target)
        if receiver is not None:
            receiver._arrive(datagram, source)
        elif sender.connected:
            sender._refused(target)

    def _release(self, address: DatagramAddress) -> None:
        del self._bound[address]


class MemoryDatagramTransport(DatagramTransport[T]):
    """One endpoint of a :class:`MemoryNetwork`.

    ``send`` hands the datagram to the network at once (nothing is ever
    kept for sending, so writing never pauses) and it arrives on a later
    turn. Received datagrams are checked as a socket's are: longer than
    the receive buffer (:func:`~aiosock.core.datagrams.max_payload` of the
    local address) is :class:`DatagramTruncated`, one that does not
    decode is a :class:`DatagramError`, both counted. While reading is
    paused, up to ``_PAUSED_BACKLOG`` datagrams wait and later ones drop,
    counted in ``stats.dropped_by_kernel`` as a socket's would be.
    """

    def __init__(
        self,
        network: MemoryNetwork,
        protocol: DatagramProtocol[T],
        *,
        local: DatagramAddress,
        peer: DatagramAddress | None,
        codec: Codec[T] | None,
        limits: Limits,
        max_size: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._network = network
        self._protocol = protocol
        self._local = local
        self._peer = peer
        self._codec = codec
        self._max_send = max_size
        self._max_receive = max_payload(local, limits.max_frame_size)
        self.stats = DatagramStats()
        self.connected = peer is not None
        self._backlog: collections.deque[tuple[bytes, DatagramAddress]]
        self._backlog = collections.deque()
        self._reading = True
        self._closing = False

    # -------------------------------------------------------- sending

    def send(self, message: T, address: str | Address | None = None) -> None:
        if self._closing:
            raise ClosedResourceError("the endpoint was closed")
        payload = encode_datagram(self._codec, message)
        # A copy, as a socket takes one: the caller may reuse its buffer.
        datagram = b"".join(payload) if isinstance(payload, list) else bytes(payload)
        if len(datagram) > self._max_send:
            raise DatagramTooLarge(size=len(datagram), limit=self._max_send)
        target = self._target(address)
        self.stats.sent += 1
        network = self._network
        self._loop.call_soon(network._carry, self, self._local, target, datagram)

    def _target(self, address: str | Address | None) -> DatagramAddress:
        if address is None:
            if self._peer is None:
                raise ValueError("this endpoint is not connected: give an address")
            return self._peer
        parsed = parse_address(address) if isinstance(address, str) else address
        if self._peer is not None and parsed != self._peer:
            raise ValueError(
                f"this endpoint is connected to {self._peer}: "
                f"it cannot send to {parsed}"
            )
        return _reachable(self._local, parsed)

    def _refused(self, target: DatagramAddress) -> None:
        """What an ICMP port unreachable does to a connected socket."""
        if self._closing:
            return
        self.stats.errors += 1
        self._protocol.error_received(
            ConnectionRefusedError(errno.ECONNREFUSED, f"nobody is at {target}")
        )

    # -------------------------------------------------------- receiving

    def _arrive(self, datagram: bytes, source: DatagramAddress) -> None:
        if self._peer is not None and source != self._peer:
            return  # a connected socket hears its peer only
        if self._reading and not self._backlog:
            self._take(datagram, source)
        elif len(self._backlog) < _PAUSED_BACKLOG:
            self._backlog.append((datagram, source))
        else:  # as a kernel drops it from a full socket buffer, and counts it
            self.stats.dropped_by_kernel += 1

    def _take(self, datagram: bytes, source: DatagramAddress) -> None:
        stats, protocol = self.stats, self._protocol
        stats.received += 1
        if len(datagram) > self._max_receive:
            stats.truncated += 1
            partial = datagram[: self._max_receive]
            protocol.error_received(
                DatagramTruncated(address=source, size=len(datagram), partial=partial)
            )
            return
        try:
            message = decode_datagram(self._codec, datagram, source)
        except DatagramError as exc:
            stats.errors += 1
            protocol.error_received(exc)
        else:
            protocol.datagram_received(message, source)

    def _drain(self) -> None:
        backlog = self._backlog
        while backlog and self._reading:
            self._take(*backlog.popleft())

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self._closing:
            return
        self._reading = True
        if self._backlog:  # on a later turn, as a socket becoming readable
            self._loop.call_soon(self._drain)

    def is_reading(self) -> bool:
        return self._reading

    # -------------------------------------------------------- the rest

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def peer_address(self) -> Address | None:
        return self._peer

    @property
    def max_datagram_size(self) -> int:
        return self._max_send

    def get_write_buffer_size(self) -> int:
        return 0  # send() never keeps a datagram

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Free the address now; ``connection_lost(None)`` follows on a later turn.

        Datagrams already sent still arrive; those waiting for a paused
        reader are lost, as with a socket's buffer.
        """
        if self._closing:
            return
        self._closing = True
        self._reading = False
        self._backlog.clear()
        self._network._release(self._local)
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        # Nothing is ever kept for sending, so closing is already immediate.
        self.close()


def _datagram_address(address: str | Address | None) -> DatagramAddress | None:
    """``address`` parsed, if a :class:`MemoryNetwork` can have it."""
    if address is None:
        return None
    parsed = parse_address(address) if isinstance(address, str) else address
    if not isinstance(parsed, UDPAddress | UnixDatagramAddress):
        raise ValueError(f"{parsed} is not a datagram address (udp, unixgram)")
    if isinstance(parsed, UDPAddress) and parsed.family is AddressFamily.AF_UNSPEC:
        raise ValueError(
            f"{parsed}: a memory network has no resolver and no interfaces; "
            "give an IP address"
        )
    return parsed


def _reachable(local: DatagramAddress, target: Address) -> DatagramAddress:
    """``target``, if an endpoint at ``local`` can send to it; else ValueError."""
    if isinstance(local, UnixDatagramAddress):
        if isinstance(target, UnixDatagramAddress):
            return target
    elif isinstance(target, UDPAddress):
        if target.family is AddressFamily.AF_UNSPEC:
            raise ValueError(
                f"{target.host!r} is a name: resolve it first, or use Endpoint.send()"
            )
        if target.family is local.family:
            return target
    raise ValueError(f"cannot send to {target} from {local}")
