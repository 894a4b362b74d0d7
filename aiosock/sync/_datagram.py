"""The blocking :class:`DatagramEndpoint`: one message per datagram, no loop."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from aiosock._sockets import (
    Created,
    is_udp,
    mapped_if_ipv6,
    reconnect_unix,
    remove_if_ours,
    udp_socket,
    udp_wildcard,
    unix_datagram_socket,
    unix_send_limit,
)
from aiosock.core.addresses import (
    Address,
    FdAddress,
    UDPAddress,
    from_sockaddr,
    is_ip_literal,
    parse_address,
)
from aiosock.core.codecs import Buffer, Codec
from aiosock.core.datagrams import (
    DatagramStats,
    Received,
    decode_datagram,
    encode_datagram,
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
from aiosock.sync._stream import check_timeout

__all__ = ["DatagramEndpoint", "connect_datagram", "open_datagram"]

T = TypeVar("T")
Sockaddr = Any  # what the socket module takes and returns: a tuple or a str

# A plain int: ``flags & socket.MSG_TRUNC`` would run the enum's Python code.
_MSG_TRUNC = int(socket.MSG_TRUNC)

# Distinct addresses remembered per endpoint, as the async endpoint does:
# a server with more peers than this converts again rather than grow.
_ADDRESS_CACHE = 1024


def open_datagram(
    local: str | Address,
    *,
    codec: Codec | None = None,
    limits: Limits | None = None,
    timeout: float | None = None,
    unix_mode: int | None = None,
) -> DatagramEndpoint[Received]:
    """A bound endpoint: ``receive()`` returns ``(data, address)``, ``send``
    takes an address.

    ``local``: ``udp://HOST:PORT`` (``udp://:PORT`` takes datagrams of both
    IP families where the machine has IPv6; port 0 picks a free port, see
    ``local_address``), ``unixgram:///path``, ``unixgram:@name``, or
    ``fd://N`` to adopt descriptor N, a datagram socket that is not
    connected, which the endpoint then owns.

    A Unix path: a stale socket file is replaced, a path where an endpoint
    is alive is refused (``OSError`` EADDRINUSE), anything else is never
    deleted (:class:`FileExistsError`); the file is removed on close only if
    it is still the one made here, and ``unix_mode`` sets its mode.

    ``timeout`` (seconds) becomes the socket's timeout, which bounds every
    wait: a receive for a datagram, a send for room in a Unix peer's full
    queue. None means ``limits.read_timeout`` (itself None by default:
    wait for ever). ``codec`` None sends and receives the datagrams as
    they are; with a codec, each datagram is one frame. ``limits`` None
    means ``Limits()``; only ``max_frame_size`` and ``read_timeout`` apply.

    Raises ``OSError`` (in use, no such file, a name that does not
    resolve) and ``ValueError`` for a stream address, a timeout that is
    not positive, or a descriptor that is not a bound datagram socket (it
    is left open). Leaves no socket open and no file behind when it fails.
    """
    address, limits, timeout = _datagram_options(local, limits, timeout)
    if isinstance(address, FdAddress):
        return _adopt(
            address, connected=False, codec=codec, limits=limits, timeout=timeout
        )
    sock, created = _open_datagram_socket(address, None, unix_mode)
    return _opened(sock, created, codec=codec, limits=limits, timeout=timeout)


def connect_datagram(
    remote: str | Address,
    *,
    local: str | Address | None = None,
    codec: Codec | None = None,
    limits: Limits | None = None,
    timeout: float | None = None,
) -> DatagramEndpoint[bytes]:
    """A connected endpoint: ``send(data)``, ``receive()`` returns ``data``,
    and only the peer's datagrams arrive.

    ``remote``: ``udp://HOST:PORT`` (the first address the name resolves
    to), ``unixgram:///path``, ``unixgram:@name``, or ``fd://N`` to adopt
    a datagram socket that is already connected. ``local`` binds the socket
    first; without it a Unix endpoint is bound to an abstract name of its
    own (Linux auto-bind) so that its peer can answer it. ICMP errors for
    what it sent surface on the next call (``ConnectionRefusedError``).

    Other options, errors and cleanup as in :func:`open_datagram`; it also
    raises ``ValueError`` for a remote with no host or port 0, and
    ``OSError`` when a Unix peer is missing (``FileNotFoundError``) or gone
    (``ConnectionRefusedError``).
    """
    target, limits, timeout = _datagram_options(remote, limits, timeout)
    if isinstance(target, FdAddress):
        if local is not None:
            raise ValueError(f"{target} is adopted as it is: it takes no local address")
        return _adopt(
            target, connected=True, codec=codec, limits=limits, timeout=timeout
        )
    bind_to = parse_address(local) if isinstance(local, str) else local
    if isinstance(bind_to, FdAddress):
        raise ValueError(f"adopt {bind_to} with connect_datagram({str(bind_to)!r})")
    sock, created = _open_datagram_socket(bind_to, target, None)
    return _opened(sock, created, codec=codec, limits=limits, timeout=timeout)


def _datagram_options(
    address: str | Address, limits: Limits | None, timeout: float | None
) -> tuple[Address, Limits, float | None]:
    """The parsed address, the limits, and the socket timeout to use."""
    parsed = parse_address(address) if isinstance(address, str) else address
    check_timeout(timeout)
    limits = Limits() if limits is None else limits
    return parsed, limits, limits.read_timeout if timeout is None else timeout


def _opened(
    sock: socket.socket,
    created: tuple[str, int, int] | None,
    *,
    codec: Codec | None,
    limits: Limits,
    timeout: float | None,
) -> DatagramEndpoint[Any]:
    """Wrap a socket made here, or close it (and remove its file) on failure."""
    try:
        sock.settimeout(timeout)
        endpoint: DatagramEndpoint[Any] = DatagramEndpoint(
            sock, codec=codec, limits=limits
        )
    except BaseException:
        sock.close()
        if created is not None:
            remove_if_ours(created)
        raise
    endpoint._created = created
    # Nobody else holds this socket, so shutting it down at close is safe.
    endpoint._wake_on_close = True
    return endpoint


def _adopt(
    address: FdAddress,
    *,
    connected: bool,
    codec: Codec | None,
    limits: Limits,
    timeout: float | None,
) -> DatagramEndpoint[Any]:
    sock = socket.socket(fileno=address.fd)
    try:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"{address} is not a datagram socket")
        if _is_connected(sock) != connected:
            raise ValueError(
                f"{address} is connected: use connect_datagram()"
                if not connected
                else f"{address} is not connected: use open_datagram()"
            )
        sock.settimeout(timeout)
        return DatagramEndpoint(sock, codec=codec, limits=limits)
    except BaseException:
        # An adopted descriptor stays the caller's until adoption succeeds.
        sock.detach()
        raise


def _is_connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:  # ENOTCONN
        return False
    return True  # the peer may be unnamed (a socketpair)


class DatagramEndpoint(Generic[T]):
    """A datagram socket that sends and receives one message per datagram.

    Made by :func:`open_datagram` (bound: :meth:`receive` returns
    ``(data, address)``, and :meth:`send` needs an address) or
    :func:`connect_datagram` (connected: :meth:`receive` returns ``data``).
    To wrap a socket you made, it must be a ``SOCK_DGRAM`` socket in
    blocking mode (timeout None or positive), bound or connected; the
    endpoint then owns it. ``codec`` None means no codec: the datagrams as
    they are. Of ``limits`` only ``max_frame_size`` applies here, bounding
    what is sent and received.

    **Queueing.** The kernel's receive queue is the only queue: there is
    no reader to fall behind in the background, so ``stats.dropped`` stays
    0. A datagram the kernel drops (its queue full) is not seen or counted.

    **Timeouts.** The socket's timeout bounds each wait. A
    :class:`TimeoutError` loses nothing and sends nothing (a datagram goes
    whole or not at all): the endpoint stays usable.

    **Errors.** Datagrams may be lost, and ICMP errors (refused,
    unreachable) for one sent earlier on a connected UDP endpoint are
    reported on the next send or receive as the ``OSError`` itself
    (``ConnectionRefusedError``), once, counted in ``stats.errors``; the
    endpoint stays usable. After :meth:`close`, every call raises
    :class:`ClosedResourceError`.

    One thread may send while another receives; two must not both send, or
    both receive, at once.
    """

    __slots__ = (
        "_closed",
        "_codec",
        "_connected",
        "_created",
        "_family",
        "_local",
        "_max_receive",
        "_max_send",
        "_peer",
        "_rejoin",
        "_senders",
        "_targets",
        "_view",
        "_wake_on_close",
        "socket",
        "stats",
    )

    def __init__(
        self,
        sock: socket.socket,
        *,
        codec: Codec | None = None,
        limits: Limits | None = None,
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(
                f"a DatagramEndpoint needs a datagram socket, not {sock.type!r}"
            )
        if sock.gettimeout() == 0:
            raise ValueError(
                "a DatagramEndpoint needs a blocking socket, not timeout 0"
            )
        max_frame_size = (Limits() if limits is None else limits).max_frame_size
        #: The wrapped socket, for setsockopt() and the like.
        self.socket = sock
        #: Counters of this endpoint; ``dropped`` stays 0 (see above).
        self.stats = DatagramStats()
        self._codec = codec
        self._family = sock.family
        # A bound or connected socket's addresses never change: read them
        # once, so that they stay available after close, for logs.
        self._local = _datagram_name(sock.family, sock.getsockname)
        self._connected = _is_connected(sock)
        self._peer = (
            _datagram_name(sock.family, sock.getpeername) if self._connected else None
        )
        self._max_send = max_payload(self._peer or self._local, max_frame_size)
        if sock.family == socket.AF_UNIX:
            self._max_send = min(self._max_send, unix_send_limit(sock, self._max_send))
        self._max_receive = max_payload(self._local or self._peer, max_frame_size)
        # One byte more than the largest datagram taken: one that fills it
        # was too long, even where the kernel does not report MSG_TRUNC.
        # Reused by every receive, so receiving allocates only the result.
        self._view = memoryview(bytearray(self._max_receive + 1))
        # Sender addresses as received -> aiosock addresses, and addresses
        # as send() took them -> what sendto() takes; literals only.
        self._senders: dict[Sockaddr, Address | None] = {}
        self._targets: dict[str | Address, Sockaddr] = {}
        self._closed = False
        # Set by the openers for a socket made here: the Unix file to
        # remove at close, and whether close may shut the socket down.
        self._created: tuple[str, int, int] | None = None
        self._wake_on_close = False
        self._rejoin = False  # connect to the peer again before sending

    @property
    def local_address(self) -> Address | None:
        """This end's address; None for an unnamed Unix socket."""
        return self._local

    @property
    def peer_address(self) -> Address | None:
        """The connected peer; None for a bound endpoint (or an unnamed peer)."""
        return self._peer

    @property
    def max_datagram_size(self) -> int:
        """The largest datagram :meth:`send` takes, codec framing included.

        UDP's own limit for the family (65,507 bytes over IPv4, 65,527 over
        IPv6), at most ``limits.max_frame_size``; for a Unix socket
        ``limits.max_frame_size``, at most what its send buffer allows.
        """
        return self._max_send

    def send(self, data: Buffer, address: str | Address | None = None) -> None:
        """Send ``data`` as one datagram (one frame of the codec, with one).

        ``address`` is required on a bound endpoint and must be left out
        (or be the peer) on a connected one; a host name is resolved (the
        first address of the socket's family). Nothing is sent when this
        raises :class:`DatagramTooLarge` (above :attr:`max_datagram_size`),
        the codec's :class:`LocalProtocolError`, ``ValueError`` for an
        address this endpoint cannot send to, ``socket.gaierror`` for a
        name that does not resolve, :class:`TimeoutError`, or
        :class:`ClosedResourceError` after :meth:`close`. An ``OSError``
        the socket reports (``ConnectionRefusedError`` for an earlier
        datagram, on a connected endpoint) is raised as it is and counted
        in ``stats.errors``; the endpoint stays usable. Delivery is not
        confirmed: datagrams may be lost.
        """
        self._check_open()
        payload = encode_datagram(self._codec, data)
        size = _size(payload)
        if size > self._max_send:
            raise DatagramTooLarge(size=size, limit=self._max_send)
        target = self._target(address)
        sock = self.socket
        with self._os_errors():
            if self._rejoin:
                self._reconnect()
            if isinstance(payload, list):
                if target is None:
                    sock.sendmsg(payload)
                else:
                    sock.sendmsg(payload, (), 0, target)
            elif target is None:
                sock.send(payload)
            else:
                sock.sendto(payload, target)
        self.stats.sent += 1

    def _target(self, address: str | Address | None) -> Sockaddr:
        """What ``sendto`` takes for ``address``; None for the connected peer."""
        if address is None:
            if not self._connected:
                raise ValueError("this endpoint is not connected: give an address")
            return None
        targets = self._targets
        try:  # an address sent to before costs one lookup
            return targets[address]
        except KeyError:
            pass
        parsed = parse_address(address) if isinstance(address, str) else address
        resolved = self._resolve(parsed)
        if self._connected:
            if resolved != self._peer:
                raise ValueError(
                    f"this endpoint is connected to {self._peer}: "
                    f"it cannot send to {resolved}"
                )
            sockaddr = None
        else:
            sockaddr = sockaddr_for(resolved, self._family)
        # Only literals are kept: a name may resolve elsewhere next time.
        if resolved is parsed:
            if len(targets) >= _ADDRESS_CACHE:
                targets.clear()
            targets[address] = sockaddr
        return sockaddr

    def _resolve(self, address: Address) -> Address:
        """``address`` with a host name replaced by its first address."""
        if (
            not isinstance(address, UDPAddress)
            or not address.host
            or is_ip_literal(address.host)
            or self._family not in (socket.AF_INET, socket.AF_INET6)
        ):
            return address  # nothing to resolve; sockaddr_for judges the rest
        infos = socket.getaddrinfo(
            address.host,
            address.port,
            family=self._family,
            type=socket.SOCK_DGRAM,
            flags=mapped_if_ipv6(self._family),
        )
        return UDPAddress(host=str(infos[0][4][0]), port=address.port)

    def receive(self) -> T:
        """The next datagram: ``(data, address)`` when bound, ``data`` when connected.

        Waits for one as long as the socket's timeout allows, then raises
        :class:`TimeoutError`. Datagrams have no end of stream: an empty
        datagram is an empty message. Raises, and the endpoint stays usable:
        :class:`DatagramTruncated` for a datagram longer than the maximum
        (counted in ``stats.truncated``), :class:`DatagramError` for one
        that does not decode with the codec (``stats.errors``), each in its
        place in the order; the ``OSError`` the socket reported (ICMP, on a
        connected endpoint: ``ConnectionRefusedError``), once. Raises
        :class:`ClosedResourceError` after :meth:`close`, also in a receive
        that :meth:`close` interrupted from another thread.
        """
        data, address = self._receive()
        return data if self._connected else (data, address)  # type: ignore[return-value]

    def _receive(self) -> Received:
        self._check_open()
        view = self._view
        with self._os_errors():
            # With MSG_TRUNC, Linux returns a datagram's real length even
            # when the buffer took only its start.
            nbytes, _, flags, sockaddr = self.socket.recvmsg_into([view], 0, _MSG_TRUNC)
        if self._closed:  # close() in another thread woke this receive
            raise ClosedResourceError("the endpoint was closed")
        stats = self.stats
        stats.received += 1
        # A connected socket receives from its peer only.
        address = self._peer if self._connected else self._sender(sockaddr)
        limit = self._max_receive
        if nbytes > limit or flags & _MSG_TRUNC:
            stats.truncated += 1
            raise DatagramTruncated(
                address=address, size=nbytes, partial=view[:limit].tobytes()
            )
        data = view[:nbytes].tobytes()
        if self._codec is not None:
            try:
                data = decode_datagram(self._codec, data, address)
            except DatagramError:
                stats.errors += 1
                raise
        return data, address

    def _sender(self, sockaddr: Sockaddr) -> Address | None:
        """The aiosock address of a sender, converted once per sender."""
        senders = self._senders
        try:
            return senders[sockaddr]
        except KeyError:
            pass
        if len(senders) >= _ADDRESS_CACHE:
            senders.clear()
        try:
            address = (
                None  # an unnamed Unix sender
                if sockaddr is None
                else from_sockaddr(self._family, socket.SOCK_DGRAM, sockaddr)
            )
        except ValueError:
            # A name aiosock addresses cannot hold (a Unix socket bound to a
            # relative path): the datagram is fine, so deliver it unnamed.
            address = None
        senders[sockaddr] = address
        return address

    def __iter__(self) -> Iterator[T]:
        """Every good datagram, as :meth:`receive` returns it, until :meth:`close`.

        Skips datagrams that were cut or did not decode (they are counted
        in :attr:`stats`), so garbage from the network cannot end a
        server's loop. Other errors propagate, :class:`TimeoutError` and
        socket errors (ICMP) among them.
        """
        while True:
            try:
                item = self.receive()
            except DatagramError:
                continue
            except ClosedResourceError:
                return
            yield item

    def close(self) -> None:
        """Close the socket, dropping datagrams not yet received; idempotent.

        A receive blocked in another thread raises
        :class:`ClosedResourceError` (an iteration ends) at once when the
        endpoint made the socket; on a socket it adopted, which others may
        share, only at its timeout. The address properties keep their
        values, and a Unix socket file made by :func:`open_datagram` is
        removed if it is still the one it made.
        """
        if self._closed:
            return
        self._closed = True
        if self._wake_on_close:
            # Closing a descriptor does not wake a thread blocked on it
            # (Linux); shutting reading down does, and touches no peer.
            # Unbound sockets answer ENOTCONN, yet wake all the same.
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RD)
        self.socket.close()
        if self._created is not None:
            remove_if_ours(self._created)
            self._created = None

    def __enter__(self) -> DatagramEndpoint[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the endpoint was closed")

    @contextlib.contextmanager
    def _os_errors(self) -> Iterator[None]:
        """Translate an ``OSError`` from the socket: the one place."""
        try:
            yield
        except OSError as exc:
            # Once closed, whatever the socket says (EBADF, or the timeout
            # of a receive woken by the shutdown) means just that.
            if self._closed:
                raise ClosedResourceError("the endpoint was closed") from exc
            if isinstance(exc, TimeoutError) and exc.errno is None:
                raise  # the socket's own timeout: nothing lost, nothing sent
            error = translate_os_error(exc)
            if isinstance(error, ClosedResourceError):
                raise error from exc
            # ICMP errors (refused, unreachable) belong to an earlier
            # datagram; the socket stays usable, as every OS treats it, so
            # the error is not a broken resource but the OSError itself.
            self.stats.errors += 1
            if exc.errno == errno.ECONNREFUSED and self._connected:
                # Linux dropped a Unix peer: connect again before the next
                # send (see reconnect_unix).
                self._rejoin = self._family == socket.AF_UNIX
            raise

    def _reconnect(self) -> None:
        reconnect_unix(self.socket, self._peer)
        self._rejoin = False


def _datagram_name(family: int, call: Callable[[], Sockaddr]) -> Address | None:
    return from_sockaddr(family, socket.SOCK_DGRAM, call())


def _size(payload: Buffer | list[Buffer]) -> int:
    if isinstance(payload, list):
        return sum(map(_size, payload))
    # len() of a memoryview counts items, which need not be bytes.
    return payload.nbytes if isinstance(payload, memoryview) else len(payload)


# ------------------------------------------------ opening datagram sockets


def _open_datagram_socket(
    local: Address | None, remote: Address | None, unix_mode: int | None
) -> tuple[socket.socket, Created | None]:
    """A socket bound to ``local``, connected to ``remote``, or both, with
    the Unix socket file it made, if any."""
    if not is_udp(local, remote):
        return unix_datagram_socket(local, remote, unix_mode)  # type: ignore[arg-type]
    return _udp_socket(local, remote), None  # type: ignore[arg-type]


def _udp_socket(local: UDPAddress | None, remote: UDPAddress | None) -> socket.socket:
    remote_family = connect_to = None
    if remote is not None:
        if not remote.host or remote.port == 0:
            raise ValueError(f"cannot connect to {remote}: it needs a host and a port")
        infos = socket.getaddrinfo(remote.host, remote.port, type=socket.SOCK_DGRAM)
        remote_family, connect_to = infos[0][0], infos[0][4]
    plan = udp_wildcard(local, remote_family)
    if plan is None:  # a local host to resolve
        assert local is not None
        infos = socket.getaddrinfo(
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
