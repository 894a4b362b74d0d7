"""The blocking :class:`DatagramEndpoint`: one message per datagram, no loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any, Generic, NoReturn

from typing_extensions import TypeVar

from aiosock._datagram_sockets import (
    MSG_TRUNC,
    DatagramSocketPlan,
    EndpointAddresses,
    Found,
    Lookup,
    adopt_fd,
    current_stats,
    endpoint_state,
    kernel_drops,
    name_lookup,
    released_on_failure,
    send_datagram,
    with_host,
)
from aiosock._sockets import Created, remove_if_ours
from aiosock.core.addresses import Address, FdAddress, UDPAddress, parse_address
from aiosock.core.codecs import Codec
from aiosock.core.datagrams import DatagramStats, Received
from aiosock.core.endpoint import describe_endpoint
from aiosock.core.errors import ClosedResourceError, DatagramError
from aiosock.core.limits import Limits
from aiosock.sync._stream import check_timeout

__all__ = ["DatagramEndpoint", "connect_datagram", "open_datagram"]

#: What an endpoint's ``receive()`` returns: ``(message, address)`` when
#: bound, the message when connected.
R = TypeVar("R")
#: The message type of an endpoint's codec, which ``send()`` takes; bytes
#: without a codec.
M = TypeVar("M", default=bytes)


def open_datagram(
    local: str | Address,
    *,
    codec: Codec[M] | None = None,
    limits: Limits | None = None,
    timeout: float | None = None,
    unix_mode: int | None = None,
) -> DatagramEndpoint[Received[M], M]:
    """A bound endpoint: ``receive()`` returns ``(message, address)``,
    ``send`` takes an address.

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
    they are, ``bytes``; with a ``Codec[M]``, each datagram is one frame
    and the messages are ``M``. ``limits`` None means ``Limits()``; only
    ``max_frame_size``, ``read_timeout`` and ``datagram_receive_buffer``
    apply.

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
    sock, created = _open_socket(address, None, unix_mode)
    return _opened(sock, created, codec=codec, limits=limits, timeout=timeout)


def connect_datagram(
    remote: str | Address,
    *,
    local: str | Address | None = None,
    codec: Codec[M] | None = None,
    limits: Limits | None = None,
    timeout: float | None = None,
) -> DatagramEndpoint[M, M]:
    """A connected endpoint: ``send(message)``, ``receive()`` returns a
    message, and only the peer's datagrams arrive.

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
    sock, created = _open_socket(bind_to, target, None)
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
    created: Created | None,
    *,
    codec: Codec[M] | None,
    limits: Limits,
    timeout: float | None,
) -> DatagramEndpoint[Any, M]:
    """Wrap a socket made here, or close it (and remove its file) on failure."""
    with released_on_failure(sock, created):
        sock.settimeout(timeout)
        endpoint: DatagramEndpoint[Any, M] = DatagramEndpoint(
            sock, codec=codec, limits=limits
        )
    endpoint._created = created
    # Nobody else holds this socket, so shutting it down at close is safe.
    endpoint._wake_on_close = True
    return endpoint


def _adopt(
    address: FdAddress,
    *,
    connected: bool,
    codec: Codec[M] | None,
    limits: Limits,
    timeout: float | None,
) -> DatagramEndpoint[Any, M]:
    sock = adopt_fd(address, connected=connected)
    try:
        sock.settimeout(timeout)
        return DatagramEndpoint(sock, codec=codec, limits=limits)
    except BaseException:
        # An adopted descriptor stays the caller's until adoption succeeds.
        sock.detach()
        raise


class DatagramEndpoint(EndpointAddresses[M], Generic[R, M]):
    """A datagram socket that sends and receives one message per datagram.

    Made by :func:`open_datagram` (bound: :meth:`receive` returns
    ``(message, address)``, and :meth:`send` needs an address) or
    :func:`connect_datagram` (connected: :meth:`receive` returns the
    message). To wrap a socket you made, it must be a ``SOCK_DGRAM``
    socket in blocking mode (timeout None or positive), bound or
    connected; the endpoint then owns it. ``codec`` None means no codec:
    the datagrams as they are. Of ``limits``, ``max_frame_size`` bounds
    what is sent and received and ``datagram_receive_buffer`` sizes the
    socket's receive buffer; the rest apply to the async endpoint only.

    **Types.** ``R`` is what :meth:`receive` returns, ``M`` the message
    type of the codec, which :meth:`send` takes (``bytes`` without one):
    ``DatagramEndpoint[Received[M], M]`` when bound,
    ``DatagramEndpoint[M, M]`` when connected.

    **Queueing.** The kernel's receive queue is the only queue: there is
    no reader to fall behind in the background, so ``stats.dropped`` stays
    0. What the kernel drops, its queue full, is counted in
    ``stats.dropped_by_kernel`` (Linux).

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

    __slots__ = ("_closed", "_created", "_state", "_view", "_wake_on_close", "socket")

    def __init__(
        self,
        sock: socket.socket,
        *,
        codec: Codec[M] | None = None,
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
        limits = Limits() if limits is None else limits
        #: The wrapped socket, for setsockopt() and the like.
        self.socket = sock
        self._state = endpoint_state(
            sock, codec=codec, limits=limits, resolve=_resolve_name
        )
        # Reused by every receive, so receiving allocates only the result.
        self._view = memoryview(bytearray(self._state.buffer_size))
        self._closed = False
        # Set by the openers for a socket made here: the Unix file to
        # remove at close, and whether close may shut the socket down.
        self._created: Created | None = None
        self._wake_on_close = False

    @property
    def stats(self) -> DatagramStats:
        """The counters (see :class:`DatagramStats`); ``dropped`` stays 0
        (see above), and reading them reads the kernel's drops (one system
        call; after :meth:`close`, the last count)."""
        return current_stats(self.socket, self._state)

    def send(self, message: M, address: str | Address | None = None) -> None:
        """Send ``message`` as one datagram (one frame of the codec, with one).

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
        state = self._state
        payload, _, target = state.prepare(message, address)
        try:
            send_datagram(self.socket, state, payload, target)
        except OSError as exc:
            self._raise_os_error(exc, sending=True)
        state.stats.sent += 1

    def receive(self) -> R:
        """The next message: ``(message, address)`` when bound, the message
        alone when connected.

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
        message, address = self._receive()
        return message if self._state.connected else (message, address)  # type: ignore[return-value]

    def _receive(self) -> Received[M]:
        self._check_open()
        view = self._view
        try:
            nbytes, sockaddr = self.socket.recvfrom_into(view, 0, MSG_TRUNC)
        except OSError as exc:
            self._raise_os_error(exc, sending=False)
        if self._closed:  # close() in another thread woke this receive
            raise ClosedResourceError("the endpoint was closed")
        return self._state.received(view, nbytes, sockaddr)

    def __iter__(self) -> Iterator[R]:
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
        share, only at its timeout. The address properties and the stats
        keep their values, and a Unix socket file made by
        :func:`open_datagram` is removed if it is still the one it made.
        """
        if self._closed:
            return
        self._closed = True
        self._state.kernel_drops(kernel_drops(self.socket))  # its last word
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

    def __enter__(self) -> DatagramEndpoint[R, M]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        """``<DatagramEndpoint local -> peer open>``, ``closed`` after close."""
        state, status = self._state, "closed" if self._closed else "open"
        kind = type(self).__name__
        return describe_endpoint(kind, state.local, state.peer, state.connected, status)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the endpoint was closed")

    def _raise_os_error(self, exc: OSError, *, sending: bool) -> NoReturn:
        """Raise what ``exc``, from the socket, means: the one place."""
        # Once closed, whatever the socket says (EBADF, or the timeout of a
        # receive woken by the shutdown) means just that.
        if self._closed:
            raise ClosedResourceError("the endpoint was closed") from exc
        if isinstance(exc, TimeoutError) and exc.errno is None:
            raise exc  # the socket's own timeout: nothing lost, nothing sent
        state = self._state
        fatal = state.send_failed(exc) if sending else state.receive_failed(exc)
        if fatal is not None:
            raise fatal from exc
        # ICMP errors (refused, unreachable) belong to an earlier datagram,
        # and a Unix peer may be gone: the socket stays usable, so the
        # error is not a broken resource but the OSError itself.
        raise exc


# ------------------------------------------------ opening datagram sockets


def _open_socket(
    local: Address | None, remote: Address | None, unix_mode: int | None
) -> tuple[socket.socket, Created | None]:
    """A socket bound to ``local``, connected to ``remote``, or both, with
    the Unix socket file it made, if any."""
    plan = DatagramSocketPlan(local, remote, unix_mode)
    while (lookup := plan.lookup()) is not None:
        plan.found(_resolve(lookup))
    return plan.open()


def _resolve(lookup: Lookup) -> Found:
    """The blocking resolver's first answer to ``lookup``."""
    infos = socket.getaddrinfo(
        lookup.host, lookup.port, lookup.family, socket.SOCK_DGRAM, 0, lookup.flags
    )
    return infos[0][0], infos[0][4]


def _resolve_name(address: UDPAddress, family: int) -> UDPAddress:
    """``address`` with its host name replaced by its first address of ``family``."""
    return with_host(address, _resolve(name_lookup(address, family)))
