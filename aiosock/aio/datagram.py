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
once; then any number of ``datagram_received(data, address)`` and
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
import errno
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from aiosock._sockets import (
    Created,
    is_udp,
    reconnect_unix,
    remove_if_ours,
    udp_socket,
    udp_wildcard,
    unix_datagram_socket,
    unix_send_limit,
)
from aiosock.aio.protocol import _read_buffer
from aiosock.core.addresses import (
    Address,
    FdAddress,
    UDPAddress,
    from_sockaddr,
    parse_address,
)
from aiosock.core.codecs import Buffer, Codec
from aiosock.core.datagrams import (
    DatagramStats,
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
from aiosock.core.limits import Limits

__all__ = [
    "DatagramProtocol",
    "DatagramTransport",
    "SocketDatagramTransport",
    "adopt_fd",
    "create_datagram_endpoint",
]

# Datagrams read per wake-up at most, so that one busy socket cannot keep
# the loop from everything else; asyncio reads one.
READ_BATCH = 64

# Distinct addresses remembered, converted, per endpoint; a server with more
# peers than this converts again, it does not grow without bound.
ADDRESS_CACHE = 1024

# A plain int: ``flags & socket.MSG_TRUNC`` would run the enum's Python code.
_MSG_TRUNC = int(socket.MSG_TRUNC)
_AGAIN = (BlockingIOError, InterruptedError)
# The descriptor is gone: the endpoint is finished, unlike after ICMP errors.
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})

P = TypeVar("P", bound="DatagramProtocol")
Sockaddr = Any  # what the socket module takes and returns: a tuple or a str


class DatagramProtocol:
    """Callbacks for one datagram endpoint: subclass and override what you use.

    See the module docstring for their order and meaning.
    """

    def connection_made(self, transport: DatagramTransport) -> None:
        """The endpoint is open; ``transport`` sends on it."""

    def datagram_received(self, data: bytes, address: Address | None) -> None:
        """One datagram (decoded, with a codec); ``address`` is the sender's,
        None for an unnamed Unix socket."""

    def error_received(self, exc: Exception) -> None:
        """A datagram that could not be delivered, or an error of the socket."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The endpoint is closed; ``exc`` says why (None: by this program)."""

    def pause_writing(self) -> None:
        """The send buffer went above high water: stop sending for now."""

    def resume_writing(self) -> None:
        """Everything kept for sending has been sent."""


class DatagramTransport:
    """What a :class:`DatagramProtocol` sends with: one datagram endpoint.

    The interface; :func:`create_datagram_endpoint` makes the socket one,
    and :mod:`aiosock.testing` an in-memory one. ``send`` never blocks: a
    datagram the endpoint cannot send now is kept (in order) and sent
    when it can; :meth:`DatagramProtocol.pause_writing` says when those
    pass ``limits.write_high_water``.
    """

    #: Counters of this endpoint; an :class:`Endpoint` shares its own.
    stats: DatagramStats
    #: True when the endpoint has a fixed peer (``send`` takes no address).
    connected: bool

    def send(self, data: Buffer, address: str | Address | None = None) -> None:
        """Send ``data`` as one datagram (one frame of the codec, with one).

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


class SocketDatagramTransport(DatagramTransport):
    """A :class:`DatagramTransport` on a socket that aiosock reads itself."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: DatagramProtocol,
        *,
        codec: Codec | None,
        limits: Limits,
        created: tuple[str, int, int] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._family = sock.family
        self._protocol = protocol
        self._codec = codec
        self._limits = limits
        self._created = created  # the Unix socket file this endpoint made
        self.stats = DatagramStats()
        self._local = _name(sock.family, sock.getsockname)
        try:
            self._peer = from_sockaddr(
                sock.family, socket.SOCK_DGRAM, sock.getpeername()
            )
            self.connected = True  # the peer may be unnamed (a socketpair)
        except OSError:
            self._peer = None
            self.connected = False
        self._max_send = max_payload(self._peer or self._local, limits.max_frame_size)
        if sock.family == socket.AF_UNIX:
            self._max_send = min(self._max_send, unix_send_limit(sock, self._max_send))
        # As large as the largest datagram taken: MSG_TRUNC tells a longer one.
        self._view = _read_buffer(
            max_payload(self._local or self._peer, limits.max_frame_size)
        )
        self._addresses: dict[Sockaddr, Address | None] = {}
        self._sockaddrs: dict[str | Address | None, Sockaddr] = {}
        self._pending: collections.deque[tuple[Buffer | list[Buffer], Sockaddr]]
        self._pending = collections.deque()
        self._pending_size = 0
        self._writing_paused = False
        self._reading = False
        self._closing = False
        self._closed = False
        self._error: Exception | None = None
        self._rearm_scheduled = False
        self._rejoin = False  # connect to the peer again before sending

    def _start(self) -> None:
        self._protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()

    # ----------------------------------------------------------- reading

    def _read_ready(self) -> None:
        view, stats, addresses = self._view, self.stats, self._addresses
        protocol, codec = self._protocol, self._codec
        # Bound once per wake-up: a lookup saved on every datagram.
        recvfrom_into, deliver = self._sock.recvfrom_into, protocol.datagram_received
        limit, truncate = len(view), _MSG_TRUNC
        for _ in range(READ_BATCH):
            try:
                # With MSG_TRUNC, Linux returns a datagram's real length even
                # when the buffer took only its start.
                nbytes, sockaddr = recvfrom_into(view, 0, truncate)
            except _AGAIN:
                return
            except OSError as exc:  # an ICMP error, or the socket broke
                if not self._socket_error(exc):
                    return
                continue
            stats.received += 1
            try:  # _address, inlined for a sender seen before
                address = addresses[sockaddr]
            except KeyError:
                address = self._address(sockaddr)
            if nbytes > limit:
                stats.truncated += 1
                protocol.error_received(
                    DatagramTruncated(
                        address=address, size=nbytes, partial=view.tobytes()
                    )
                )
            elif codec is None:
                deliver(view[:nbytes].tobytes(), address)
            else:
                try:
                    message = decode_datagram(codec, view[:nbytes].tobytes(), address)
                except DatagramError as exc:
                    stats.errors += 1
                    protocol.error_received(exc)
                else:
                    deliver(message, address)
            if not self._reading:  # paused or closed by a callback
                return

    def _socket_error(self, exc: OSError) -> bool:
        """Report an error from the socket; True if reading may go on."""
        if exc.errno in _CLOSED_ERRNOS:
            self._fatal(exc)  # which stops reading
        else:
            # ICMP errors (refused, unreachable) belong to an earlier
            # datagram; the socket stays usable, as every OS treats it.
            self.stats.errors += 1
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

    def _address(self, sockaddr: Sockaddr) -> Address | None:
        """The aiosock address of a sender not in the cache (and now in it)."""
        if len(self._addresses) >= ADDRESS_CACHE:
            self._addresses.clear()
        try:
            address = (
                None  # an unnamed Unix sender
                if sockaddr is None
                else from_sockaddr(self._family, socket.SOCK_DGRAM, sockaddr)
            )
        except ValueError:
            # A name aiosock addresses cannot hold (a Unix socket bound to a
            # relative path): the datagram is good, so it comes unnamed.
            address = None
        self._addresses[sockaddr] = address
        return address

    # ----------------------------------------------------------- sending

    def send(self, data: Buffer, address: str | Address | None = None) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)
        payload = data if self._codec is None else self._codec.encode(data)
        if type(payload) is bytes:  # the common case, tested first
            size = len(payload)
        elif isinstance(payload, list):
            size = _total(payload)
        else:
            size = memoryview(payload).nbytes
        if size > self._max_send:
            raise DatagramTooLarge(size=size, limit=self._max_send)
        try:  # the common case, an address sent to before, costs one lookup
            target = self._sockaddrs[address]
        except KeyError:
            target = self._target(address)
        if not self._pending:
            try:
                if self._rejoin:
                    self._reconnect()
                # The path of every datagram: bytes to an address goes
                # straight to sendto.
                if target is not None and type(payload) is bytes:
                    self._sock.sendto(payload, target)
                else:
                    self._send_now(payload, target)
            except _AGAIN:
                pass
            except OSError as exc:
                self.stats.errors += 1
                if exc.errno in _CLOSED_ERRNOS:
                    self._fatal(exc)
                    raise translate_os_error(exc) from exc
                # As asyncio's transports do: this datagram is lost, which
                # the protocol hears of; the endpoint goes on.
                self._refused(exc)
                self._schedule_rearm()  # in case the loop saw the error too
                self._protocol.error_received(exc)
                return
            else:
                self.stats.sent += 1
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

    def _send_now(self, payload: Buffer | list[Buffer], target: Sockaddr) -> None:
        sock = self._sock
        if isinstance(payload, list):
            if target is None:
                sock.sendmsg(payload)
            else:
                sock.sendmsg(payload, (), 0, target)
        elif target is None:
            sock.send(payload)
        else:
            sock.sendto(payload, target)

    def _refused(self, exc: OSError) -> None:
        """Note a send that failed; a refused Unix one cost us the peer."""
        if exc.errno == errno.ECONNREFUSED and self.connected:
            # Linux dropped a Unix peer: connect again before the next send
            # (see reconnect_unix).
            self._rejoin = self._family == socket.AF_UNIX

    def _reconnect(self) -> None:
        reconnect_unix(self._sock, self._peer)
        self._rejoin = False

    def _write_ready(self) -> None:
        pending = self._pending
        while pending:
            payload, target = pending[0]
            try:
                if self._rejoin:
                    self._reconnect()
                self._send_now(payload, target)
            except _AGAIN:
                return
            except OSError as exc:
                # The datagram is lost: say so, and go on with the next.
                self._pop_head()
                self.stats.errors += 1
                if exc.errno in _CLOSED_ERRNOS:
                    self._fatal(exc)
                    return
                self._refused(exc)
                self._schedule_rearm()
                self._protocol.error_received(exc)
                if self._closed:  # aborted by the callback
                    return
                continue
            self._pop_head()
            self.stats.sent += 1
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

    def _target(self, address: str | Address | None) -> Sockaddr:
        """The socket address to send to, None for the connected peer.

        Remembered in ``_sockaddrs`` under ``address`` as given, so that the
        next send to it skips the parsing and the checks.
        """
        if address is None:
            if not self.connected:
                raise ValueError("this endpoint is not connected: give an address")
            self._sockaddrs[None] = None
            return None
        parsed = parse_address(address) if isinstance(address, str) else address
        if self.connected:
            if parsed != self._peer:
                raise ValueError(
                    f"this endpoint is connected to {self._peer}: "
                    f"it cannot send to {parsed}"
                )
            sockaddr = None
        else:
            sockaddr = sockaddr_for(parsed, self._family)
        if len(self._sockaddrs) >= ADDRESS_CACHE:
            self._sockaddrs.clear()
        self._sockaddrs[address] = sockaddr
        return sockaddr

    # ------------------------------------------------------- the rest

    @property
    def local_address(self) -> Address | None:
        return self._local

    @property
    def peer_address(self) -> Address | None:
        return self._peer

    @property
    def max_datagram_size(self) -> int:
        return self._max_send

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

    def _fatal(self, exc: OSError) -> None:
        error = translate_os_error(exc)
        error.__cause__ = exc
        self._closing = True
        self._error = error
        self.pause_reading()
        self._finish(error)

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pending:
            # Given up unsent (abort, a broken socket, or close_timeout).
            self.stats.dropped += len(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self._loop.remove_writer(self._fd)
        self._loop.call_soon(self._lost, exc)

    def _lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            if self._created is not None:
                remove_if_ours(self._created)


def _name(family: int, call: Callable[[], Sockaddr]) -> Address | None:
    try:
        return from_sockaddr(family, socket.SOCK_DGRAM, call())
    except OSError:  # not connected
        return None


def _total(parts: list[Buffer]) -> int:
    return sum(memoryview(part).nbytes for part in parts)


# ------------------------------------------------------------- opening


async def create_datagram_endpoint(
    protocol_factory: Callable[[], P],
    *,
    local: str | Address | None = None,
    remote: str | Address | None = None,
    codec: Codec | None = None,
    limits: Limits | None = None,
    sock: socket.socket | None = None,
    unix_mode: int | None = None,
) -> tuple[SocketDatagramTransport, P]:
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
        _check_adopted(sock)
    else:
        sock, created = await _open_socket(local_address, remote_address, unix_mode)
    try:
        sock.setblocking(False)
        protocol = protocol_factory()
        transport = SocketDatagramTransport(
            sock, protocol, codec=codec, limits=limits, created=created
        )
        transport._start()
    except BaseException:
        sock.close()
        if created is not None:
            remove_if_ours(created)
        raise
    return transport, protocol


def adopt_fd(address: FdAddress, *, connected: bool | None) -> socket.socket:
    """The datagram socket of descriptor ``address.fd``, connected or not as
    asked (None: either); a descriptor refused is left open, the caller's."""
    sock = socket.socket(fileno=address.fd)
    try:
        _check_adopted(sock)
        if connected is not None and _is_connected(sock) != connected:
            raise ValueError(
                f"{address} is connected: use connect_datagram()"
                if not connected
                else f"{address} is not connected: use open_datagram()"
            )
    except BaseException:
        sock.detach()
        raise
    return sock


def _is_connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:  # ENOTCONN
        return False
    return True  # the peer may be unnamed (a socketpair)


def _check_adopted(sock: socket.socket) -> None:
    if sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"socket {sock.fileno()} is not a datagram socket")


async def _open_socket(
    local: Address | None, remote: Address | None, unix_mode: int | None
) -> tuple[socket.socket, Created | None]:
    if not is_udp(local, remote):
        return unix_datagram_socket(local, remote, unix_mode)  # type: ignore[arg-type]
    return await _udp_socket(local, remote), None  # type: ignore[arg-type]


async def _udp_socket(
    local: UDPAddress | None, remote: UDPAddress | None
) -> socket.socket:
    loop = asyncio.get_running_loop()
    remote_family = connect_to = None
    if remote is not None:
        if not remote.host or remote.port == 0:
            raise ValueError(f"cannot connect to {remote}: it needs a host and a port")
        infos = await loop.getaddrinfo(remote.host, remote.port, type=socket.SOCK_DGRAM)
        remote_family, connect_to = infos[0][0], infos[0][4]
    plan = udp_wildcard(local, remote_family)
    if plan is None:  # a local host to resolve
        assert local is not None
        infos = await loop.getaddrinfo(
            local.host,
            local.port,
            family=remote_family or 0,
            type=socket.SOCK_DGRAM,
            flags=socket.AI_PASSIVE,
        )
        plan = infos[0][0], infos[0][4]
    family, bind_to = plan
    dual_stack = local is not None and not local.host
    return udp_socket(family, bind_to, connect_to, dual_stack=dual_stack)
