"""Unix socket files and the machine's IP families: system calls, no event loop.

Shared by the asyncio layer (:mod:`aiosock.aio`) and the blocking one
(:mod:`aiosock.sync`); the datagram sockets both make and drive are in
:mod:`aiosock._datagram_sockets`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

__all__ = [
    "Created",
    "ipv6_works",
    "remove_if_ours",
    "remove_if_stale",
]

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


def ipv6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM):
            return True
    except OSError:
        return False
