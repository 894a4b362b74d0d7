"""Stream clients: :func:`connect` (async) and :func:`create_connection` (callbacks)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from aiosock.aio.connection import Connection, protocol_of
from aiosock.aio.protocol import Protocol, StreamAdapter, Transport, adapter_for
from aiosock.core.addresses import (
    Address,
    FdAddress,
    TCPAddress,
    UnixAddress,
    parse_address,
)
from aiosock.core.codecs import Codec, T, codec_or_raw
from aiosock.core.errors import naming
from aiosock.core.limits import Limits

__all__ = ["connect", "create_connection"]

P = TypeVar("P", bound=Protocol[Any])

# Pauses between connects to a Unix listener whose backlog is full.
_UNIX_RETRY_FIRST, _UNIX_RETRY_MAX = 0.001, 0.1


async def connect(
    address: str | Address,
    *,
    codec: Codec[T] | None = None,
    limits: Limits | None = None,
    timeout: float | None = None,
) -> Connection[T]:
    """Open a stream connection to ``address`` (tcp, unix or fd).

    ``timeout`` bounds the whole connect (resolving the name too) and
    raises :class:`TimeoutError`; a refused or unreachable peer raises
    the ``OSError`` as it is. TCP_NODELAY is on. Cancelling leaves no
    socket open. The connection carries the messages of ``codec``
    (:class:`Raw` chunks of ``bytes`` when None).
    """
    limits = limits or Limits()
    connection: Connection[T] = Connection(limits)
    await create_connection(
        lambda: protocol_of(connection),
        address,
        codec=codec,
        limits=limits,
        timeout=timeout,
    )
    return connection


async def create_connection(
    protocol_factory: Callable[[], P],
    address: str | Address,
    *,
    codec: Codec[T] | None = None,
    limits: Limits | None = None,
    timeout: float | None = None,
) -> tuple[Transport[T], P]:
    """Like :func:`connect`, for the callback API: returns (transport, protocol).

    The protocol's ``message_received`` gets the messages of ``codec``;
    mypy cannot tie a factory's protocol type to the codec's, so keep
    them in step by hand.
    """
    target = parse_address(address) if isinstance(address, str) else address
    limits = limits or Limits()
    codec = codec_or_raw(codec, limits.max_frame_size)
    loop = asyncio.get_running_loop()
    protocol = protocol_factory()
    adapter = adapter_for(codec, limits, loop)(protocol, codec, limits)
    try:
        async with asyncio.timeout(timeout):
            await _connect(loop, adapter, target)
    except TimeoutError as exc:
        if exc.errno is not None:  # the kernel's ETIMEDOUT
            raise naming(exc, target) from None
        raise TimeoutError(
            f"connecting to {target} timed out after {timeout} s"
        ) from None
    except OSError as exc:
        raise naming(exc, target) from None
    return adapter.transport, protocol


async def _connect(
    loop: asyncio.AbstractEventLoop, adapter: StreamAdapter[Any], target: Address
) -> None:
    if isinstance(target, TCPAddress):
        if not target.host or target.port == 0:
            raise ValueError(f"cannot connect to {target}: it needs a host and a port")
        await loop.create_connection(lambda: adapter, target.host, target.port)
    elif isinstance(target, UnixAddress):
        sock = await _connect_unix(target)
        await loop.create_unix_connection(lambda: adapter, sock=sock)
    elif isinstance(target, FdAddress):
        sock = socket.socket(fileno=target.fd)
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise ValueError(f"fd {target.fd} is not a stream socket")
        await loop.create_connection(lambda: adapter, sock=sock)
    else:
        raise ValueError(f"{target} is a datagram address: use connect_datagram()")


async def _connect_unix(target: UnixAddress) -> socket.socket:
    # Connected here, not by the loop: uvloop cannot connect to an abstract
    # name (EINVAL), and asyncio takes the EAGAIN of a listener whose backlog
    # is full for a connection in progress, then hands over a socket that
    # never connected. The kernel signals nothing when the backlog has room
    # again, so retry with a growing pause (bounded by the caller's timeout).
    path = "\0" + target.path if target.abstract else target.path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        pause = _UNIX_RETRY_FIRST
        while True:
            try:
                sock.connect(path)
            except BlockingIOError:
                await asyncio.sleep(pause)
                pause = min(2 * pause, _UNIX_RETRY_MAX)
            else:
                return sock
    except BaseException:
        sock.close()
        raise
