"""Datagram transports: UDP (v4, v6) and Unix datagram sockets, on any loop.

aiosock reads and writes the socket itself, through the loop's
``add_reader``/``add_writer``, instead of using the loop's datagram
transport, for three reasons measured or documented:

- asyncio's transport reads one datagram per loop turn into a new 256 KiB
  buffer; here every datagram that is ready (up to ``READ_BATCH``) is read
  per wake-up, into a buffer shared by the thread;
- uvloop cannot bind a Unix datagram socket by path (uvloop#403) nor answer
  a sender bound to an abstract name; here the socket is always made by
  aiosock, so every kind works the same on both loops;
- neither tells when the kernel cut a datagram longer than the buffer;
  here ``MSG_TRUNC`` makes Linux return the real length.

Callbacks (:class:`DatagramProtocol`): ``connection_made(transport)``
once; then any number of ``datagram_received(message, address)`` and
``error_received(exc)``; then ``connection_lost(exc)`` once, with None
after :meth:`DatagramTransport.close`. ``error_received`` gets a
:class:`DatagramError` for a datagram that was cut or does not decode
(counted; the endpoint goes on) and the ``OSError`` the socket reported,
such as :class:`ConnectionRefusedError` after an ICMP port unreachable on
a connected endpoint, or from a Unix peer that is gone.

The awaitable :class:`~aiosock.aio.endpoint.Endpoint` stands on these.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aiosock._datagram_sockets import (
    MSG_TRUNC,
    DatagramSocketPlan,
    EndpointAddresses,
    Found,
    Lookup,
    adopt_fd,
    check_datagram_socket,
    current_stats,
    endpoint_state,
    released_on_failure,
    send_datagram,
)
from aiosock._sockets import Created, remove_if_ours
from aiosock.aio.protocol import _read_buffer
from aiosock.core.addresses import Address, FdAddress, parse_address
from aiosock.core.codecs import Buffer, Codec, T
from aiosock.core.datagrams import DatagramStats
from aiosock.core.endpoint import describe_endpoint
from aiosock.core.errors import ClosedResourceError, DatagramError
from aiosock.core.limits import Limits

__all__ = [
    "DatagramProtocol",
    "DatagramTransport",
    "SocketDatagramTransport",
    "create_datagram_endpoint",
    "resolve",
]

# Datagrams read per wake-up at most, so that one busy socket cannot keep
# the loop from everything else; asyncio reads one.
READ_BATCH = 64

_AGAIN = (BlockingIOError, InterruptedError)

P = TypeVar("P", bound="DatagramProtocol[Any]")
Sockaddr = Any  # what the socket module takes and returns: a tuple or a str

# One line per endpoint that ends on an error; a datagram that is lost or
# does not decode is counted in stats, not logged (a flood would flood the
# log too).
logger = logging.getLogger("aiosock.datagram")


class DatagramProtocol(Generic[T]):
    """Callbacks for one datagram endpoint: subclass and override what you use.

    ``T`` is the message type of the endpoint's codec (``bytes`` without
    one). See the module docstring for their order and meaning.
    """

    def connection_made(self, transport: DatagramTransport[T]) -> None:
        """The endpoint is open; ``transport`` sends on it."""

    def datagram_received(self, message: T, address: Address | None) -> None:
        """One datagram, decoded with the codec (the bytes, without one);
        ``address`` is the sender's, None for an unnamed Unix socket."""

    def error_received(self, exc: Exception) -> None:
        """A datagram that could not be delivered, or an error of the socket."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The endpoint is closed; ``exc`` says why (None: by this program)."""

    def pause_writing(self) -> None:
        """The send buffer went above high water: stop sending for now."""

    def resume_writing(self) -> None:
        """Everything kept for sending has been sent."""


class DatagramTransport(Generic[T]):
    """What a :class:`DatagramProtocol` sends with: one datagram endpoint.

    ``T`` is the message type of its codec (``bytes`` without one). The
    interface; :func:`create_datagram_endpoint` makes the socket one,
    and :mod:`aiosock.testing` an in-memory one. ``send`` never blocks: a
    datagram the endpoint cannot send now is kept (in order) and sent
    when it can; :meth:`DatagramProtocol.pause_writing` says when those
    pass ``limits.write_high_water``.
    """

    #: Counters of this endpoint; an :class:`Endpoint` shares its own.
    stats: DatagramStats
    #: True when the endpoint has a fixed peer (``send`` takes no address).
    connected: bool

    def send(self, message: T, address: str | Address | None = None) -> None:
        """Send ``message`` as one datagram (one frame of the codec, with one).

        ``address`` is required on a bound endpoint and must be left out (or
        be the peer) on a connected one. Raises, with nothing sent,
        :class:`DatagramTooLarge` above :attr:`max_datagram_size`,
        ``ValueError`` for a wrong or unresolved address (a host name:
        resolve it first, or use :meth:`Endpoint.send`), and
        :class:`ClosedResourceError` after close. An ``OSError`` from the
        socket (a Unix peer that is gone: ``ConnectionRefusedError``) goes
        to :meth:`DatagramProtocol.error_received`, as asyncio's transports
        do: the datagram is lost, counted in ``stats.errors``, and the
        endpoint goes on.
        """
        raise NotImplementedError

    @property
    def local_address(self) -> Address | None:
        """This end's address; None for an unnamed Unix socket."""
        raise NotImplementedError

    @property
    def peer_address(self) -> Address | None:
        """The connected peer's address; None when not connected (or unnamed)."""
        raise NotImplementedError

    @property
    def max_datagram_size(self) -> int:
        """The largest datagram :meth:`send` takes."""
        raise NotImplementedError

    def get_write_buffer_size(self) -> int:
        """Bytes of datagrams accepted by :meth:`send` and not yet sent."""
        raise NotImplementedError

    def pause_reading(self) -> None:
        """Stop delivering datagrams: they wait in the kernel (or drop there)."""
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def is_reading(self) -> bool:
        raise NotImplementedError

    def is_closing(self) -> bool:
        raise NotImplementedError

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"socket"``, ``"sockname"`` or ``"peername"``, as asyncio names them."""
        return default

    def close(self) -> None:
        """Stop reading; close once the datagrams kept for sending are sent.

        Idempotent. ``connection_lost(None)`` follows on a later loop turn.
        """
        raise NotImplementedError

    def abort(self) -> None:
        """Close now, dropping datagrams not yet sent. Idempotent."""
        raise NotImplementedError

    def __repr__(self) -> str:
        """``<Kind local -> peer open>``; ``closing`` once closing has begun."""
        status = "closing" if self.is_closing() else "open"
        kind, local, peer = type(self).__name__, self.local_address, self.peer_address
        return describe_endpoint(kind, local, peer, self.connected, status)


class SocketDatagramTransport(EndpointAddresses[T], DatagramTransport[T]):
    """A :class:`DatagramTransport` on a socket that aiosock reads itself.

    What it decides about each datagram is its
    :class:`~aiosock.core.endpoint.EndpointState`'s, as for the blocking
    endpoint; this class reads, writes and waits.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: DatagramProtocol[T],
        *,
        codec: Codec[T] | None,
        limits: Limits,
        created: Created | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._limits = limits
        self._created = created  # the Unix socket file this endpoint made
        self._state = state = endpoint_state(sock, codec=codec, limits=limits)
        self.connected = state.connected
        # Shared by the thread's endpoints: each datagram is copied out of
        # it before any callback runs.
        self._view = _read_buffer(state.buffer_size)
        self._pending: collections.deque[tuple[Buffer | list[Buffer], Sockaddr]]
        self._pending = collections.deque()
        self._pending_size = 0
        self._writing_paused = False
        self._reading = False
        self._closing = False
        self._closed = False
        self._error: Exception | None = None
        self._rearm_scheduled = False

    def _start(self) -> None:
        self._protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()

    @property
    def stats(self) -> DatagramStats:
        """The counters; reading them reads the kernel's drops (one system call)."""
        return current_stats(self._sock, self._state)

    @stats.setter
    def stats(self, stats: DatagramStats) -> None:
        self._state.stats = stats

    # ----------------------------------------------------------- reading

    def _read_ready(self) -> None:
        view, protocol = self._view, self._protocol
        # Bound once per wake-up: a lookup saved on every datagram.
        recvfrom_into, received = self._sock.recvfrom_into, self._state.received
        deliver, truncate = protocol.datagram_received, MSG_TRUNC
        for _ in range(READ_BATCH):
            try:
                nbytes, sockaddr = recvfrom_into(view, 0, truncate)
            except _AGAIN:
                return
            except OSError as exc:  # an ICMP error, or the socket broke
                if not self._socket_error(exc):
                    return
                continue
            try:
                message, address = received(view, nbytes, sockaddr)
            except DatagramError as exc:  # cut, or not one frame: counted
                protocol.error_received(exc)
            else:
                deliver(message, address)
            if not self._reading:  # paused or closed by a callback
                return

    def _socket_error(self, exc: OSError) -> bool:
        """Report an error from the socket; True if reading may go on."""
        fatal = self._state.receive_failed(exc)
        if fatal is not None:
            self._fatal(fatal, exc)  # which stops reading
        else:
            self._schedule_rearm()
            self._protocol.error_received(exc)
        return self._reading

    def _schedule_rearm(self) -> None:
        if not self._rearm_scheduled:
            self._rearm_scheduled = True
            self._loop.call_soon(self._rearm)

    def _rearm(self) -> None:
        """Watch the socket again after it reported an error.

        libuv stops watching a descriptor that polled POLLERR (as an ICMP
        error makes it) and uvloop forgets its callbacks, after running
        them once; asyncio keeps them. Registering again after that turn
        makes both loops go on alike.
        """
        self._rearm_scheduled = False
        if self._closed:
            return
        loop, fd = self._loop, self._fd
        if self._reading:
            loop.remove_reader(fd)
            loop.add_reader(fd, self._read_ready)
        if self._pending:
            loop.remove_writer(fd)
            loop.add_writer(fd, self._write_ready)

    # ----------------------------------------------------------- sending

    def send(self, message: T, address: str | Address | None = None) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)
        state = self._state
        payload, size, target = state.prepare(message, address)
        if not self._pending:
            try:
                # The path of every datagram: bytes to an address goes
                # straight to sendto (only a connected socket rejoins).
                if target is not None and type(payload) is bytes:
                    self._sock.sendto(payload, target)
                else:
                    send_datagram(self._sock, state, payload, target)
            except _AGAIN:
                pass
            except OSError as exc:
                fatal = self._send_failed(exc)
                if fatal is not None:
                    raise fatal from exc
                return
            else:
                state.stats.sent += 1
                return
            self._loop.add_writer(self._fd, self._write_ready)
        # Kept past this call: a copy, so that the caller may reuse its
        # buffer at once (bytes, immutable, is kept as it is).
        if isinstance(payload, list):
            payload = [bytes(part) for part in payload]
        elif type(payload) is not bytes:
            payload = bytes(payload)
        self._pending.append((payload, target))
        self._pending_size += size
        high_water = self._limits.write_high_water
        if not self._writing_paused and self._pending_size > high_water:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _send_failed(self, exc: OSError) -> ClosedResourceError | None:
        """A send the socket refused: the error that ended the endpoint, or
        None when only the datagram is lost, which the protocol hears of,
        as from asyncio's transports."""
        fatal = self._state.send_failed(exc)
        if fatal is not None:
            self._fatal(fatal, exc)
            return fatal
        self._schedule_rearm()  # in case the loop saw the error too
        self._protocol.error_received(exc)
        return None

    def _write_ready(self) -> None:
        pending, sock, state = self._pending, self._sock, self._state
        while pending:
            payload, target = pending[0]
            try:
                send_datagram(sock, state, payload, target)
            except _AGAIN:
                return
            except OSError as exc:
                # The datagram is lost: say so, and go on with the next.
                self._pop_head()
                if self._send_failed(exc) is not None or self._closed:
                    return  # ended, or aborted by the callback
                continue
            self._pop_head()
            state.stats.sent += 1
        self._loop.remove_writer(self._fd)
        self._pending_size = 0
        if self._writing_paused:
            self._writing_paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._finish(None)

    def _pop_head(self) -> None:
        payload, _ = self._pending.popleft()
        self._pending_size -= (
            _total(payload) if isinstance(payload, list) else len(payload)
        )

    # ------------------------------------------------------- the rest

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)

    def is_reading(self) -> bool:
        return self._reading

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name in ("sockname", "peername"):
            call = (
                self._sock.getsockname if name == "sockname" else self._sock.getpeername
            )
            with contextlib.suppress(OSError):
                return call()
        return default

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._error = ClosedResourceError("the endpoint was closed")
        self.pause_reading()
        if not self._pending:
            self._finish(None)

    def abort(self) -> None:
        self._closing = True
        if self._error is None:
            self._error = ClosedResourceError("the endpoint was closed")
        self.pause_reading()
        self._finish(None)

    def _fatal(self, error: ClosedResourceError, exc: OSError) -> None:
        """End the endpoint: its descriptor is gone (closed under it)."""
        logger.warning("datagram endpoint %s ended: %s (%s)", self, error, exc)
        error.__cause__ = exc
        self._closing = True
        self._error = error
        self._finish(error)

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._reading = False
        if self._pending:
            # Given up unsent (abort, a broken socket, or close_timeout).
            self._state.stats.dropped += len(self._pending)
            self._pending.clear()
            self._pending_size = 0
        self._unwatch()
        self._loop.call_soon(self._lost, exc)

    def _unwatch(self) -> None:
        """Stop watching the descriptor both ways, in one turn of the loop.

        It may have been closed under the endpoint while a copy keeps the
        socket alive (a forked child's): asyncio's selector then fails to
        change what it watches (EBADF), and libuv aborts the process if a
        change reaches epoll before the watch is gone; removing both at
        once, the failure ignored, leaves neither anything to change.
        """
        loop, fd = self._loop, self._fd
        with contextlib.suppress(OSError):
            loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            loop.remove_writer(fd)

    def _lost(self, exc: Exception | None) -> None:
        current_stats(self._sock, self._state)  # the kernel's last word
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            if self._created is not None:
                remove_if_ours(self._created)

    def __repr__(self) -> str:
        state = self._state
        status = "closed" if self._closed else "closing" if self._closing else "open"
        kind = type(self).__name__
        return describe_endpoint(kind, state.local, state.peer, self.connected, status)


def _total(parts: list[Buffer]) -> int:
    return sum(memoryview(part).nbytes for part in parts)


# ------------------------------------------------------------- opening


async def create_datagram_endpoint(
    protocol_factory: Callable[[], P],
    *,
    local: str | Address | None = None,
    remote: str | Address | None = None,
    codec: Codec[T] | None = None,
    limits: Limits | None = None,
    sock: socket.socket | None = None,
    unix_mode: int | None = None,
) -> tuple[SocketDatagramTransport[T], P]:
    """Open a datagram socket bound to ``local``, connected to ``remote``, or both.

    Or adopt ``sock`` (or ``local="fd://N"``), a datagram socket already
    bound or connected. A Unix path: a stale socket file is replaced, a
    path where an endpoint is alive refused, anything else never deleted,
    and the file is removed on close only if it is still the one made
    here (``unix_mode`` sets its mode). A connected Unix endpoint with no
    ``local`` is bound to an abstract name of its own (Linux auto-bind)
    so that its peer can answer it. Raises ``OSError`` (refused, in use,
    no such file), ``ValueError`` for a stream address or mismatched
    families, and leaves no socket open when it fails or is cancelled.

    The transport carries the messages of ``codec`` (``bytes`` when None),
    as does the protocol's ``datagram_received``: mypy cannot tie a
    factory's protocol type to the codec's, so keep them in step by hand
    (a ``DatagramProtocol[M]`` for a ``Codec[M]``).
    """
    limits = limits or Limits()
    local_address = parse_address(local) if isinstance(local, str) else local
    remote_address = parse_address(remote) if isinstance(remote, str) else remote
    created = None
    if isinstance(local_address, FdAddress):
        if sock is not None or remote_address is not None:
            raise ValueError(f"{local_address} is adopted as it is: give nothing else")
        sock = adopt_fd(local_address, connected=None)
    elif sock is not None:
        if local_address is not None or remote_address is not None:
            raise ValueError("sock= is adopted as it is: give no address with it")
        check_datagram_socket(sock, f"socket {sock.fileno()}")
    else:
        plan = DatagramSocketPlan(local_address, remote_address, unix_mode)
        while (lookup := plan.lookup()) is not None:
            plan.found(await resolve(lookup))
        sock, created = plan.open()
    with released_on_failure(sock, created):
        sock.setblocking(False)
        protocol = protocol_factory()
        transport = SocketDatagramTransport(
            sock, protocol, codec=codec, limits=limits, created=created
        )
        transport._start()
    return transport, protocol


async def resolve(lookup: Lookup) -> Found:
    """The first answer of the running loop's resolver to ``lookup``."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        lookup.host,
        lookup.port,
        family=lookup.family,
        type=socket.SOCK_DGRAM,
        flags=lookup.flags,
    )
    return infos[0][0], infos[0][4]
