"""Making sockets and their Unix files: system calls, no event loop.

Shared by the asyncio layer (:mod:`aiosock.aio`) and the blocking one
(:mod:`aiosock.sync`). Name resolution, which each does its own way (the
loop's resolver, or the blocking one), stays with them: what needs a
resolved address takes it resolved.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from typing import Any

from aiosock.core.addresses import Address, UDPAddress, UnixDatagramAddress
from aiosock.core.datagrams import sockaddr_for

__all__ = [
    "Created",
    "ipv6_works",
    "is_udp",
    "reconnect_unix",
    "remove_if_ours",
    "remove_if_stale",
    "udp_socket",
    "udp_wildcard",
    "unix_datagram_socket",
    "unix_send_limit",
]

Sockaddr = Any  # what the socket module takes and returns: a tuple or a str
#: A Unix socket file made here: (path, st_dev, st_ino).
Created = tuple[str, int, int]


# ------------------------------------------------------- Unix socket files


def remove_if_ours(created: Created) -> None:
    """Unlink ``path`` if it is still the file (device, inode) we bound."""
    path, dev, ino = created
    with contextlib.suppress(FileNotFoundError):
        info = os.stat(path)
        if (info.st_dev, info.st_ino) == (dev, ino):
            os.unlink(path)


def remove_if_stale(path: str, kind: int) -> None:
    """Unlink a socket file nobody is bound to; refuse anything else in the way.

    ``kind`` is the socket type to probe with: a live Unix socket of the
    other type would refuse the probe as if it were stale. Raises
    :class:`FileExistsError` for a file that is not a socket (never
    deleted) and ``OSError`` EADDRINUSE where a socket is alive.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(
            errno.EEXIST, f"{path} exists and is not a socket; not removing it"
        )
    with socket.socket(socket.AF_UNIX, kind) as probe:
        # Non-blocking: a live server with a full backlog answers EAGAIN
        # instead of keeping us waiting.
        probe.setblocking(False)
        result = probe.connect_ex(path)
    if result == errno.ECONNREFUSED:
        os.unlink(path)  # stale: left by a socket that is gone
    elif result != errno.ENOENT:
        what = (
            "a server is already listening"
            if kind == socket.SOCK_STREAM
            else "a datagram socket is already bound"
        )
        raise OSError(errno.EADDRINUSE, f"{what} at {path}")


# ------------------------------------------------------- datagram sockets


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
) -> tuple[int, Sockaddr | None] | None:
    """The family of the UDP socket to make and where to bind it (None:
    nowhere), when no name needs resolving; None when ``local``'s host does.

    ``udp://:PORT`` with no remote is dual-stack where the machine has IPv6.
    """
    if local is None:
        assert remote_family is not None, "a remote, resolved, or a local"
        return remote_family, None
    if local.host:
        return None
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
    try:
        if family == socket.AF_INET6 and dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if bind_to is not None:
            sock.bind(bind_to)
        if connect_to is not None:
            sock.connect(connect_to)
    except BaseException:
        sock.close()
        raise
    return sock


def ipv6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM):
            return True
    except OSError:
        return False


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
    try:
        if local is None:
            sock.bind("")  # Linux auto-bind: an abstract name the peer can answer
        elif local.abstract:
            sock.bind("\0" + local.path)
        else:
            remove_if_stale(local.path, socket.SOCK_DGRAM)
            sock.bind(local.path)
            info = os.stat(local.path)
            created = (local.path, info.st_dev, info.st_ino)
            if unix_mode is not None:
                os.chmod(local.path, unix_mode)
        if remote is not None:
            sock.connect("\0" + remote.path if remote.abstract else remote.path)
    except BaseException:
        sock.close()
        if created is not None:
            remove_if_ours(created)
        raise
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


def mapped_if_ipv6(family: int) -> int:
    """``getaddrinfo`` flags for sending from a socket of ``family``: on an
    IPv6 socket (dual-stack by default), a name with only IPv4 addresses
    comes back mapped (``::ffff:a.b.c.d``) instead of failing."""
    return socket.AI_V4MAPPED if family == socket.AF_INET6 else 0
