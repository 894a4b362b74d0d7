"""Stream servers: :func:`serve` (async handlers) and :func:`create_server` (callbacks).

A :class:`Server` listens on one or more addresses at once and owns every
connection it accepts: handler tasks live in its TaskGroup; a handler that
raises is logged with its peer's address and disturbs nobody else.
Shutdown has a fixed order: stop accepting, let connections finish for up
to ``grace`` seconds, then cancel the handlers and abort what is left.
At ``limits.max_connections`` it stops accepting until one closes; when the
process runs out of descriptors (EMFILE) it backs off instead of spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from aiosock.aio.connection import Connection
from aiosock.aio.listeners import DEFAULT_BACKLOG, Listener, adopt, open_listeners
from aiosock.aio.protocol import Protocol, StreamAdapter, adapter_class
from aiosock.core.addresses import Address, parse_address
from aiosock.core.codecs import Codec, Raw
from aiosock.core.limits import Limits

__all__ = ["DEFAULT_GRACE", "Handler", "Server", "create_server", "serve"]

logger = logging.getLogger("aiosock")

Handler = Callable[[Connection], Awaitable[None]]

# 10 s: how long aclose() lets connections finish by default; what
# Kubernetes leaves between SIGTERM and SIGKILL is 30 s, and a server
# should be done well within it.
DEFAULT_GRACE = 10.0

# Out of descriptors or memory: accepting again at once would fail again,
# so wait (asyncio waits 1 s; Trio's survey of accept errors names the
# same four).
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BACKOFF_FIRST, _BACKOFF_MAX = 0.01, 1.0
# The connection died before it was accepted (Linux reports its error
# from accept): nothing to do but go on.
_DEAD_ON_ARRIVAL = frozenset(
    {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET, errno.ETIMEDOUT}
)


class Server:
    """Listening sockets and the connections accepted on them.

    Made by :func:`serve` or :func:`create_server`, already accepting.
    ``async with server:`` closes it on exit; :meth:`serve_forever` runs
    until cancelled, then closes it. Do not await :meth:`aclose` from a
    handler of the same server: it would wait for that handler to end.
    """

    def __init__(
        self,
        listeners: list[Listener],
        *,
        codec: Codec,
        limits: Limits,
        protocol_factory: Callable[[], Protocol] | None = None,
        handler: Handler | None = None,
    ) -> None:
        self._listeners = listeners
        self._codec = codec
        self._limits = limits
        self._protocol_factory = protocol_factory
        self._handler = handler
        self._adapter_class = adapter_class(asyncio.get_running_loop())
        self._adapters: set[StreamAdapter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._accepting: list[asyncio.Task[None]] = []
        self._room = asyncio.Event()  # set while below max_connections
        self._room.set()
        self._idle = asyncio.Event()  # set while no connection is open
        self._idle.set()
        self._closing = False
        self._closed = asyncio.get_running_loop().create_future()
        self._group = asyncio.TaskGroup()
        self._main = asyncio.create_task(self._run(), name="aiosock server")

    @property
    def addresses(self) -> list[Address]:
        """What was really bound, one per listening socket (port 0 resolved)."""
        return [listener.address for listener in self._listeners]

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        return len(self._adapters)

    def is_serving(self) -> bool:
        return not self._closing

    async def serve_forever(self) -> None:
        """Serve until cancelled (then close with the default grace) or closed.

        Raises what stopped the server if it failed: an unexpected error
        from ``accept``.
        """
        try:
            await asyncio.shield(self._main)
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def aclose(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop accepting, let connections finish for ``grace`` s, then abort them.

        Idempotent: a later call waits for the first to finish. If cancelled,
        it skips the rest of the grace period and aborts at once.
        """
        if not self._closing:
            self._closing = True
            try:
                await self._stop_accepting()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        await self._idle.wait()
            finally:
                for task in self._handlers:
                    task.cancel()
                for adapter in list(self._adapters):
                    adapter.transport.abort()
                if not self._closed.done():
                    self._closed.set_result(None)
        await asyncio.shield(self._closed)
        with contextlib.suppress(Exception):  # serve_forever reports failures
            await asyncio.shield(self._main)

    async def _stop_accepting(self) -> None:
        # Cancel the accept loops before closing their sockets: a loop must
        # not watch a descriptor that is closed (and may be reused) under it.
        for task in self._accepting:
            task.cancel()
        await asyncio.gather(*self._accepting, return_exceptions=True)
        for listener in self._listeners:
            listener.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------ accepting

    async def _run(self) -> None:
        async with self._group:
            for listener in self._listeners:
                task = self._group.create_task(self._accept_loop(listener))
                self._accepting.append(task)
            await self._closed

    async def _accept_loop(self, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        backoff = _BACKOFF_FIRST
        while True:
            await self._room.wait()
            try:
                sock, _ = await loop.sock_accept(listener.sock)
            except OSError as exc:
                if exc.errno in _DEAD_ON_ARRIVAL:
                    continue
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                logger.warning(
                    "accept on %s failed (%s); retrying in %.2f s",
                    listener.address,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, _BACKOFF_MAX)
                continue
            backoff = _BACKOFF_FIRST
            await self._start(sock)

    async def _start(self, sock: socket.socket) -> None:
        """Make the protocol and adapter for one accepted socket and run it."""
        protocol = (
            self._protocol_factory()
            if self._protocol_factory is not None
            else Connection(self._limits)
        )
        adapter = self._adapter_class(protocol, self._codec, self._limits)
        adapter.on_lost = self._untrack
        self._track(adapter)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: adapter, sock
            )
        except OSError as exc:  # the peer left before the transport was made
            logger.debug("connection lost as it was accepted: %s", exc)
            self._untrack(adapter)
            sock.close()
            return
        if self._handler is not None:
            assert isinstance(protocol, Connection)
            task = self._group.create_task(self._run_handler(self._handler, protocol))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    def _track(self, adapter: StreamAdapter) -> None:
        self._adapters.add(adapter)
        self._idle.clear()
        maximum = self._limits.max_connections
        if maximum is not None and len(self._adapters) >= maximum:
            self._room.clear()

    def _untrack(self, adapter: StreamAdapter) -> None:
        self._adapters.discard(adapter)
        if not self._adapters:
            self._idle.set()
        self._room.set()

    @staticmethod
    async def _run_handler(handler: Handler, connection: Connection) -> None:
        try:
            await handler(connection)
        except Exception:
            logger.exception(
                "handler failed for the connection from %s", connection.peer_address
            )
        finally:
            await connection.aclose()


async def serve(
    handler: Handler,
    *addresses: str | Address,
    codec: Codec | None = None,
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server:
    """Listen on every address and run ``await handler(connection)`` per connection.

    The connection is closed when the handler returns or raises (which is
    logged). ``codec`` None means :class:`Raw` chunks of at most
    ``limits.max_frame_size``; ``unix_mode`` is the file mode of Unix
    socket paths; ``sock`` adopts a socket that is already listening.
    Raises ``OSError`` if an address cannot be bound (nothing stays bound).
    """
    limits = limits or Limits()
    listeners = await _listen(addresses, sock, backlog, unix_mode)
    return Server(
        listeners,
        codec=codec or Raw(max_size=limits.max_frame_size),
        limits=limits,
        handler=handler,
    )


async def create_server(
    protocol_factory: Callable[[], Protocol],
    *addresses: str | Address,
    codec: Codec | None = None,
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server:
    """Like :func:`serve`, with a new ``protocol_factory()`` per connection."""
    limits = limits or Limits()
    listeners = await _listen(addresses, sock, backlog, unix_mode)
    return Server(
        listeners,
        codec=codec or Raw(max_size=limits.max_frame_size),
        limits=limits,
        protocol_factory=protocol_factory,
    )


async def _listen(
    addresses: Iterable[str | Address],
    sock: socket.socket | None,
    backlog: int,
    unix_mode: int | None,
) -> list[Listener]:
    parsed = [parse_address(a) if isinstance(a, str) else a for a in addresses]
    if not parsed and sock is None:
        raise ValueError("give at least one address, or sock=")
    listeners = [adopt(sock)] if sock is not None else []
    try:
        for address in parsed:
            listeners += await open_listeners(
                address, backlog=backlog, unix_mode=unix_mode
            )
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners
