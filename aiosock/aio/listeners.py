"""Listening sockets for stream servers, made from aiosock addresses.

- ``tcp://HOST:PORT`` binds every address HOST resolves to (``tcp://:PORT``:
  every interface of every family), all on the same port, also when PORT
  is 0; IPv6 sockets are IPv6-only so that an IPv4 one can share the port.
- ``unix:///path`` replaces a stale socket file (nothing accepts on it),
  refuses a path where a server is alive, never deletes anything that is
  not a socket, and on close removes the file only if it is still the one
  it made. ``unix:@name`` binds a Linux abstract name.
- ``fd://N`` and ``sock=`` adopt a socket that is already listening.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

import attrs

from aiosock._sockets import Created, remove_if_ours, remove_if_stale
from aiosock.core.addresses import (
    Address,
    FdAddress,
    TCPAddress,
    UnixAddress,
    from_sockaddr,
)
from aiosock.core.errors import naming

__all__ = [
    "DEFAULT_BACKLOG",
    "Listener",
    "adopt",
    "open_listeners",
]

# 1024: asyncio's default of 100 overflows when a hundred clients connect
# at once (a benchmark does); the kernel caps it at net.core.somaxconn.
DEFAULT_BACKLOG = 1024

# Binding several families to one port the kernel picked for the first can
# collide with a port another program holds in the other family; a few
# fresh tries make that vanishingly rare.
_PORT_ATTEMPTS = 20


@attrs.define
class Listener:
    """One listening socket, and the Unix path to remove when it closes."""

    sock: socket.socket
    address: Address
    # The socket file this listener created, if any, to remove on close.
    created: Created | None = None

    def close(self) -> None:
        """Close the socket and remove its file if it is still ours. Idempotent."""
        self.sock.close()
        if self.created is not None:
            remove_if_ours(self.created)
            self.created = None


async def open_listeners(
    address: Address, *, backlog: int, unix_mode: int | None = None
) -> list[Listener]:
    """Bind and listen on ``address``; raise ``ValueError``, or the
    ``OSError`` (its type and errno kept) naming ``address``."""
    try:
        if isinstance(address, TCPAddress):
            return await _tcp_listeners(address, backlog)
        if isinstance(address, UnixAddress):
            return [_unix_listener(address, backlog, unix_mode)]
        if isinstance(address, FdAddress):
            return [adopt(socket.socket(fileno=address.fd))]
    except OSError as exc:
        raise naming(exc, address) from None
    raise ValueError(f"{address} is a datagram address: use open_datagram()")


def adopt(sock: socket.socket) -> Listener:
    """A listener for a socket that is already bound and listening."""
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"socket {sock.fileno()} is not a stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ValueError(f"socket {sock.fileno()} is not listening")
    sock.setblocking(False)
    address = from_sockaddr(sock.family, sock.type, sock.getsockname())
    assert address is not None, "a listening socket has a name"
    return Listener(sock=sock, address=address)


async def _tcp_listeners(address: TCPAddress, backlog: int) -> list[Listener]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        address.host or None,
        address.port,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE,
    )
    # Unique, in resolver order (getaddrinfo may repeat an address).
    targets = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
    for _ in range(_PORT_ATTEMPTS):
        listeners: list[Listener] = []
        port = address.port
        try:
            for family, host in targets:
                listener = _bind_tcp(family, host, port, backlog)
                listeners.append(listener)
                port = listener.sock.getsockname()[1]
            return listeners
        except OSError as exc:
            for listener in listeners:
                listener.close()
            if exc.errno != errno.EADDRINUSE or address.port != 0 or not listeners:
                raise
    raise OSError(errno.EADDRINUSE, f"no free port for every family of {address}")


def _bind_tcp(family: int, host: str, port: int, backlog: int) -> Listener:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        # The family's own address: tcp://:PORT binds several.
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise naming(exc, f"tcp://{where}") from None
    bound = from_sockaddr(sock.family, sock.type, sock.getsockname())
    assert bound is not None
    return Listener(sock=sock, address=bound)


def _unix_listener(address: UnixAddress, backlog: int, mode: int | None) -> Listener:
    if address.abstract:
        target = "\0" + address.path
    else:
        target = address.path
        remove_if_stale(target, socket.SOCK_STREAM)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(target)
        created = None
        if not address.abstract:
            info = os.stat(target)
            created = (target, info.st_dev, info.st_ino)
            if mode is not None:
                os.chmod(target, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return Listener(sock=sock, address=address, created=created)
