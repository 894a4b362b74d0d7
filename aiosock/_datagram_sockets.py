"""Datagram sockets for both drivers: making, adopting and driving them.

The asyncio transport (:mod:`aiosock.aio.datagram`) and the blocking
endpoint (:mod:`aiosock.sync`) make, adopt and send on their sockets
with these; what they decide about each datagram is the sans-IO
:class:`~aiosock.core.endpoint.EndpointState`. Name resolution, which each
does its own way (the loop's resolver, or the blocking one), stays with
them: :class:`DatagramSocketPlan` says which names to resolve, and takes
the answers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any, Generic, NamedTuple

from aiosock._sockets import Created, ipv6_works, remove_if_ours, remove_if_stale
from aiosock.core.addresses import (
    Address,
    FdAddress,
    SocketKind,
    UDPAddress,
    UnixDatagramAddress,
    from_sockaddr,
)
from aiosock.core.codecs import Buffer, Codec, T
from aiosock.core.datagrams import DatagramStats, max_payload, sockaddr_for
from aiosock.core.endpoint import (
    MEMINFO_SIZE,
    SO_MEMINFO,
    EndpointState,
    Resolver,
    meminfo_drops,
)
from aiosock.core.errors import naming
from aiosock.core.limits import Limits

__all__ = [
    "MSG_TRUNC",
    "DatagramSocketPlan",
    "EndpointAddresses",
    "Found",
    "Lookup",
    "adopt_fd",
    "check_datagram_socket",
    "current_stats",
    "endpoint_state",
    "is_connected",
    "is_udp",
    "kernel_drops",
    "name_lookup",
    "reconnect_unix",
    "released_on_failure",
    "send_datagram",
    "udp_socket",
    "udp_wildcard",
    "unix_datagram_socket",
    "unix_send_limit",
    "with_host",
]

Sockaddr = Any  # what the socket module takes and returns: a tuple or a str
#: getaddrinfo's first answer, as far as it is used: (family, sockaddr).
Found = tuple[int, Sockaddr]

# SO_MEMINFO is Linux's; elsewhere option 55 may mean something else.
_LINUX = sys.platform.startswith("linux")

#: The flag for every datagram read: with it, Linux returns a datagram's
#: real length even when the buffer took only its start. A plain int:
#: ``flags & socket.MSG_TRUNC`` would run the enum's Python code.
MSG_TRUNC = int(socket.MSG_TRUNC)


# ------------------------------------------------------------- making


def is_udp(local: Address | None, remote: Address | None) -> bool:
    """True for UDP addresses, False for Unix datagram ones.

    Raises ``ValueError`` for neither address, a stream address, or a mix.
    """
    if local is None and remote is None:
        raise ValueError("give a local address, a remote one, or both")
    for address in (local, remote):
        if address is not None and not isinstance(
            address, UDPAddress | UnixDatagramAddress
        ):
            raise ValueError(f"{address} is not a datagram address (udp, unixgram)")
    kinds = {type(a) for a in (local, remote) if a is not None}
    if len(kinds) > 1:
        raise ValueError(f"cannot mix {local} and {remote}")
    return kinds == {UDPAddress}


def udp_wildcard(
    local: UDPAddress | None, remote_family: int | None
) -> tuple[int, Sockaddr | None]:
    """The family of the UDP socket to make and where to bind it (None:
    nowhere), for a ``local`` with no host to resolve (or none at all).

    ``udp://:PORT`` with no remote is dual-stack where the machine has IPv6.
    """
    if local is None:
        assert remote_family is not None, "a remote, resolved, or a local"
        return remote_family, None
    assert not local.host, "a local host is resolved, not a wildcard"
    if remote_family is not None:
        wildcard = "::" if remote_family == socket.AF_INET6 else "0.0.0.0"
        return remote_family, (wildcard, local.port)
    if socket.has_ipv6 and ipv6_works():
        return socket.AF_INET6, ("::", local.port)
    return socket.AF_INET, ("0.0.0.0", local.port)


def udp_socket(
    family: int,
    bind_to: Sockaddr | None,
    connect_to: Sockaddr | None,
    *,
    dual_stack: bool,
) -> socket.socket:
    """A UDP socket bound and connected to resolved addresses; closed if that fails."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    with released_on_failure(sock, None):
        if family == socket.AF_INET6 and dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if bind_to is not None:
            sock.bind(bind_to)
        if connect_to is not None:
            sock.connect(connect_to)
    return sock


def unix_datagram_socket(
    local: UnixDatagramAddress | None,
    remote: UnixDatagramAddress | None,
    unix_mode: int | None,
) -> tuple[socket.socket, Created | None]:
    """A Unix datagram socket bound to ``local``, connected to ``remote``, or both.

    With no ``local`` it is bound to an abstract name of its own (Linux
    auto-bind) so that a peer can answer it. A path: a stale socket file is
    replaced, a live one or a file that is not a socket refused (see
    :func:`remove_if_stale`); ``unix_mode`` sets the new file's mode.
    Returns the socket and the file made, if any. Leaves no socket open
    and no file behind when it fails.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    created = None
    with released_on_failure(sock, None):
        if local is None:
            sock.bind("")  # Linux auto-bind: an abstract name the peer can answer
        elif local.abstract:
            sock.bind("\0" + local.path)
        else:
            remove_if_stale(local.path, socket.SOCK_DGRAM)
            sock.bind(local.path)
            info = os.stat(local.path)
            created = (local.path, info.st_dev, info.st_ino)
    with released_on_failure(sock, created):
        if created is not None and unix_mode is not None:
            os.chmod(created[0], unix_mode)
        if remote is not None:
            sock.connect("\0" + remote.path if remote.abstract else remote.path)
    return sock, created


def unix_send_limit(sock: socket.socket, wanted: int) -> int:
    """The largest Unix datagram ``sock`` can send, after asking for ``wanted``.

    Linux refuses (EMSGSIZE) a Unix datagram longer than the send buffer
    less 32 bytes; the buffer can grow up to ``net.core.wmem_max``.
    """
    with contextlib.suppress(OSError):
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < wanted + 32:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wanted + 32)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 32


def reconnect_unix(sock: socket.socket, peer: Address | None) -> None:
    """Connect a Unix datagram socket to ``peer`` again, after Linux dropped it.

    Linux disconnects a Unix datagram socket when its peer, gone, refuses a
    send: every send after fails with ENOTCONN, even once a new peer is
    bound at the name. Raises ``ConnectionRefusedError`` while nobody is
    there, and always for an unnamed peer (a socketpair's cannot come back).
    """
    if peer is None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "the peer is gone")
    try:
        sock.connect(sockaddr_for(peer, socket.AF_UNIX))
    except FileNotFoundError as exc:
        raise ConnectionRefusedError(
            errno.ECONNREFUSED, f"nobody is bound at {peer}"
        ) from exc


# ------------------------------------------------- opening, in sans-IO steps


class Lookup(NamedTuple):
    """One name for a driver to resolve, its own way (the loop's resolver,
    or the blocking one): ``getaddrinfo(host, port, family, SOCK_DGRAM, 0,
    flags)``, of which the first answer is used."""

    host: str
    port: int
    family: int = 0
    flags: int = 0


class DatagramSocketPlan:
    """How to open a datagram socket bound to ``local``, connected to
    ``remote``, or both: the names to resolve first, then the socket.

    A driver asks :meth:`lookup` until it returns None, handing each
    answer to :meth:`found`, then calls :meth:`open`. Raises
    ``ValueError`` at once, before any socket is made, for neither address,
    a stream address, a mix of UDP and Unix, or a remote with no host or
    port 0.
    """

    def __init__(
        self, local: Address | None, remote: Address | None, unix_mode: int | None
    ) -> None:
        self._udp = is_udp(local, remote)
        if (
            self._udp
            and isinstance(remote, UDPAddress)
            and (not remote.host or remote.port == 0)
        ):
            raise ValueError(f"cannot connect to {remote}: it needs a host and a port")
        self._local = local
        self._remote = remote
        self._unix_mode = unix_mode
        self._connect_to: Found | None = None
        self._bind_to: Found | None = None

    def lookup(self) -> Lookup | None:
        """The next name to resolve; None when there is none left."""
        remote, local = self._remote, self._local
        if not self._udp:
            return None  # Unix names need no resolving
        if isinstance(remote, UDPAddress) and self._connect_to is None:
            return Lookup(remote.host, remote.port)
        if isinstance(local, UDPAddress) and local.host and self._bind_to is None:
            # In the remote's family, so that the two can talk.
            family = 0 if self._connect_to is None else self._connect_to[0]
            return Lookup(local.host, local.port, family, socket.AI_PASSIVE)
        return None

    def found(self, answer: Found) -> None:
        """The answer to the last :meth:`lookup`."""
        if self._remote is not None and self._connect_to is None:
            self._connect_to = answer
        else:
            self._bind_to = answer

    def open(self) -> tuple[socket.socket, Created | None]:
        """The socket, and the Unix socket file it made, if any.

        Raises ``OSError`` (in use, no such file, refused), naming the
        addresses, and leaves no socket open and no file behind when it does.
        """
        try:
            return self._open()
        except OSError as exc:
            local, remote = self._local, self._remote
            if local is None or remote is None:
                named: object = local or remote
            else:
                named = f"{local} -> {remote}"
            raise naming(exc, named) from None

    def _open(self) -> tuple[socket.socket, Created | None]:
        local, remote = self._local, self._remote
        if not self._udp:
            assert isinstance(local, UnixDatagramAddress | None)
            assert isinstance(remote, UnixDatagramAddress | None)
            return unix_datagram_socket(local, remote, self._unix_mode)
        assert isinstance(local, UDPAddress | None)
        connect_to = self._connect_to
        if self._bind_to is not None:
            family, bind_to = self._bind_to
        else:
            family, bind_to = udp_wildcard(
                local, None if connect_to is None else connect_to[0]
            )
        sock = udp_socket(
            family,
            bind_to,
            None if connect_to is None else connect_to[1],
            dual_stack=local is not None and not local.host,
        )
        return sock, None


def name_lookup(address: UDPAddress, family: int) -> Lookup:
    """The lookup for sending to ``address`` (a host name) from a socket of
    ``family`` (0: unknown): on an IPv6 socket, dual-stack by default, a
    name with only IPv4 addresses comes back mapped (``::ffff:a.b.c.d``)
    instead of failing."""
    flags = socket.AI_V4MAPPED if family == socket.AF_INET6 else 0
    return Lookup(address.host, address.port, family, flags)


def with_host(address: UDPAddress, answer: Found) -> UDPAddress:
    """``address`` with its host name replaced by the address found for it."""
    return UDPAddress(host=str(answer[1][0]), port=address.port)


# ------------------------------------------------------------- adopting


def check_datagram_socket(sock: socket.socket, name: object) -> None:
    """Refuse (``ValueError``) a socket that is not a datagram one."""
    if sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"{name} is not a datagram socket")


def is_connected(sock: socket.socket) -> bool:
    """True when ``sock`` has a fixed peer, which may be unnamed (a socketpair)."""
    try:
        sock.getpeername()
    except OSError:  # ENOTCONN
        return False
    return True


def adopt_fd(address: FdAddress, *, connected: bool | None) -> socket.socket:
    """The datagram socket of descriptor ``address.fd``, connected or not as
    asked (None: either); a descriptor refused is left open, the caller's."""
    sock = socket.socket(fileno=address.fd)
    try:
        check_datagram_socket(sock, address)
        if connected is not None and is_connected(sock) != connected:
            raise ValueError(
                f"{address} is connected: use connect_datagram()"
                if not connected
                else f"{address} is not connected: use open_datagram()"
            )
    except BaseException:
        sock.detach()
        raise
    return sock


# ------------------------------------------------------- an open endpoint


class EndpointAddresses(Generic[T]):
    """What both drivers' endpoints tell of themselves, from their state
    (whose message type is ``T``)."""

    __slots__ = ()
    _state: EndpointState[T]

    @property
    def local_address(self) -> Address | None:
        """This end's address; None for an unnamed Unix socket."""
        return self._state.local

    @property
    def peer_address(self) -> Address | None:
        """The connected peer; None for a bound endpoint (or an unnamed peer)."""
        return self._state.peer

    @property
    def max_datagram_size(self) -> int:
        """The largest datagram ``send`` takes, codec framing included.

        UDP's own limit for the family (65,507 bytes over IPv4, 65,527 over
        IPv6), at most ``limits.max_frame_size``; for a Unix socket
        ``limits.max_frame_size``, at most what its send buffer allows.
        """
        return self._state.max_send


@contextlib.contextmanager
def released_on_failure(sock: socket.socket, created: Created | None) -> Iterator[None]:
    """Close ``sock``, and remove the Unix socket file it made, if the
    block raises (or is cancelled); re-raise."""
    try:
        yield
    except BaseException:
        sock.close()
        if created is not None:
            remove_if_ours(created)
        raise


def endpoint_state(
    sock: socket.socket,
    *,
    codec: Codec[T] | None,
    limits: Limits,
    resolve: Resolver | None = None,
) -> EndpointState[T]:
    """The rules of an endpoint on ``sock``, a bound or connected datagram
    socket, read from it; sets its receive buffer where ``limits`` asks.

    Raises ``OSError`` from the socket (one already closed).
    """
    family = sock.family
    if limits.datagram_receive_buffer is not None:
        size = limits.datagram_receive_buffer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    # A bound or connected socket's names never change: read once, they
    # stay available after close, for logs.
    local = from_sockaddr(family, SocketKind.SOCK_DGRAM, sock.getsockname())
    connected = is_connected(sock)
    peer = (
        from_sockaddr(family, SocketKind.SOCK_DGRAM, sock.getpeername())
        if connected
        else None
    )
    send_limit = None
    if family == socket.AF_UNIX:
        send_limit = unix_send_limit(
            sock, max_payload(peer or local, limits.max_frame_size)
        )
    state = EndpointState(
        family=family,
        local=local,
        peer=peer,
        connected=connected,
        codec=codec,
        max_frame_size=limits.max_frame_size,
        send_limit=send_limit,
        resolve=resolve,
    )
    state.kernel_drops(kernel_drops(sock))  # where counting starts
    return state


def kernel_drops(sock: socket.socket) -> int | None:
    """The kernel's count of datagrams it dropped for ``sock``, its receive
    buffer full; None where it is not known (not Linux, a closed socket).

    Read with ``SO_MEMINFO`` when asked, rather than from the counter that
    ``SO_RXQ_OVFL`` attaches to every datagram read: that one is stamped on
    each datagram as it is queued, so the drops after the last datagram
    queued, the tail of a flood, stay unseen until another arrives; and
    reading it costs every datagram a ``recvmsg`` and its ancillary data
    (about 300 ns more than ``recvfrom_into`` here) where this costs one
    system call per look at the stats.
    """
    if not _LINUX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, MEMINFO_SIZE)
    except OSError:
        return None
    return meminfo_drops(raw)


def current_stats(sock: socket.socket, state: EndpointState[Any]) -> DatagramStats:
    """``state.stats`` with the kernel's drops for ``sock`` read now."""
    state.kernel_drops(kernel_drops(sock))
    return state.stats


def send_datagram(
    sock: socket.socket,
    state: EndpointState[Any],
    payload: Buffer | list[Buffer],
    target: Sockaddr,
) -> None:
    """Send what ``state.prepare`` made (a list is a gather) to ``target``
    (None: the peer), connecting a Unix socket to its peer again first
    where ``state.rejoin`` asks. Raises what the socket raises."""
    if state.rejoin:
        reconnect_unix(sock, state.peer)
        state.rejoin = False
    if isinstance(payload, list):
        if target is None:
            sock.sendmsg(payload)
        else:
            sock.sendmsg(payload, (), 0, target)
    elif target is None:
        sock.send(payload)
    else:
        sock.sendto(payload, target)
