"""Stream servers: :func:`serve` (async handlers) and :func:`create_server` (callbacks).

A :class:`Server` listens on one or more addresses at once and owns every
connection it accepts: handler tasks live in its TaskGroup; a handler that
raises is logged with its peer's address and disturbs nobody else.
Shutdown has a fixed order: stop accepting, tell every connection (the
socket is no longer read, so an idle handler's stream ends at once and a
busy one finishes its work), let them finish for up to ``grace`` seconds,
then cancel the handlers and abort what is left.
At ``limits.max_connections`` it stops accepting until one closes; when the
process runs out of descriptors (EMFILE) it backs off instead of spinning.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, overload

import attrs

from aiosock.aio._closing import AsyncClosing
from aiosock.aio.connection import Connection, protocol_of
from aiosock.aio.listeners import DEFAULT_BACKLOG, Listener, adopt, open_listeners
from aiosock.aio.protocol import Protocol, StreamAdapter, adapter_for
from aiosock.core.addresses import Address, parse_address
from aiosock.core.codecs import Codec, T, codec_or_raw
from aiosock.core.errors import (
    BrokenResourceError,
    DeadlineExceeded,
    RemoteProtocolError,
)
from aiosock.core.limits import Limits
from aiosock.core.ratelimit import Recovered, RepeatedFailures, Started

__all__ = [
    "DEFAULT_GRACE",
    "Handler",
    "Server",
    "ServerState",
    "ServerStats",
    "create_server",
    "serve",
]

# What the server does (accepting, shutting down), and what happens to one
# connection (a deadline, a peer breaking the protocol, a handler failing).
logger = logging.getLogger("aiosock.server")
connection_logger = logging.getLogger("aiosock.connection")

#: What :func:`serve` runs per connection; ``Handler[MyMessage]`` for a
#: codec of ``MyMessage``.
Handler = Callable[[Connection[T]], Awaitable[None]]

# 10 s: how long aclose() lets connections finish by default; what
# Kubernetes leaves between SIGTERM and SIGKILL is 30 s, and a server
# should be done well within it.
DEFAULT_GRACE = 10.0

# Out of descriptors or memory: accepting again at once would fail again,
# so wait (asyncio waits 1 s; Trio's survey of accept errors names the
# same four).
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BACKOFF_FIRST, _BACKOFF_MAX = 0.01, 1.0
# Connections accepted per wake-up at most, so that a flood of them does
# not keep the loop from serving the ones already open.
_ACCEPT_BATCH = 64
# The connection died before it was accepted: nothing to do but go on.
# Linux reports a connection's pending network error from accept() itself;
# accept(2) names ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET,
# EHOSTUNREACH, EOPNOTSUPP and ENETUNREACH for TCP and says to retry as
# for EAGAIN. To those: EPERM (a firewall refused it), ECONNABORTED and
# ECONNRESET (the peer reset it first), ETIMEDOUT, and the rarer protocol
# errors, as in the survey in Trio's _highlevel_socket.py. EOPNOTSUPP can
# also mean a socket that cannot accept, but a Listener is checked to be a
# listening stream socket before it gets here.
_DEAD_ON_ARRIVAL = frozenset(
    getattr(errno, name)
    for name in (
        "ENETDOWN",
        "EPROTO",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "EPERM",
        "ECONNABORTED",
        "ECONNRESET",
        "ETIMEDOUT",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
    )
    if hasattr(errno, name)  # not every platform has every one
)


class ServerState(enum.Enum):
    """Where a :class:`Server` is in its life; ``Server.state`` tells."""

    #: Accepting connections.
    SERVING = "serving"
    #: At ``limits.max_connections``: accepting again when one closes.
    PAUSED = "paused"
    #: Out of descriptors or memory: accepting again after a delay.
    BACKING_OFF = "backing off"
    #: A listening socket broke: nothing is accepted any more, the open
    #: connections go on until ``aclose()``.
    FAILED = "failed"
    #: ``aclose()`` began: nothing is accepted, connections are finishing.
    CLOSING = "closing"
    #: Every connection is gone and so is the server's task.
    CLOSED = "closed"


_S = ServerState
# Every move a server can make. One method, Server._move, makes them all
# and raises on any other, so an impossible transition shows at once.
_MOVES: dict[ServerState, frozenset[ServerState]] = {
    _S.SERVING: frozenset({_S.PAUSED, _S.BACKING_OFF, _S.FAILED, _S.CLOSING}),
    _S.PAUSED: frozenset({_S.SERVING, _S.CLOSING}),
    _S.BACKING_OFF: frozenset({_S.SERVING, _S.PAUSED, _S.CLOSING}),
    _S.FAILED: frozenset({_S.CLOSING}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}
# The states in which the listening sockets are open.
_LISTENING = frozenset({_S.SERVING, _S.PAUSED, _S.BACKING_OFF})


@attrs.frozen(kw_only=True)
class ServerStats:
    """What a server has done since it started: a snapshot, ``server.stats``.

    Messages and bytes count what the codec framed and what was handed to
    the transport, of the connections open now and of those gone.
    """

    #: Connections open now.
    connections: int = 0
    #: Connections accepted in total.
    accepted: int = 0
    #: Connections aborted by each deadline of :class:`Limits`.
    closed_idle: int = 0
    closed_frame: int = 0
    closed_send: int = 0
    #: Times accepting paused at ``limits.max_connections``.
    paused_at_limit: int = 0
    #: Times accepting backed off, out of descriptors or memory.
    accept_backoffs: int = 0
    #: Peers that broke the protocol (an oversize frame, garbage).
    protocol_errors: int = 0
    #: Handlers that raised (a bug in the handler, logged with traceback).
    handler_errors: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class Server(AsyncClosing):
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
        codec: Codec[Any],
        limits: Limits,
        protocol_factory: Callable[[], Protocol[Any]] | None = None,
        handler: Handler[Any] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._listeners = listeners
        self._codec = codec
        self._limits = limits
        self._protocol_factory = protocol_factory
        self._handler = handler
        self._adapter = adapter_for(codec, limits, self._loop)
        self._adapters: set[StreamAdapter[Any]] = set()  # connections open
        # A slot of max_connections per connection, held by its socket and
        # by its task (the handler): free only when both are done.
        self._holds: dict[StreamAdapter[Any], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # one per connection
        # ServerStats' fields, but connections and the traffic of the open
        # ones, which stats adds up when it is read.
        self._counts: collections.Counter[str] = collections.Counter()
        self._backoff = _BACKOFF_FIRST
        self._retry: asyncio.TimerHandle | None = None  # while BACKING_OFF
        # A run of them is logged in a few lines, not one per back-off; a
        # timer waits to call the run over while accepting works again.
        self._accept_failures = RepeatedFailures(clock=self._loop.time)
        self._settling: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()  # set while no slot is held
        self._idle.set()
        # Resolved when accepting stops for good: by aclose(), or with the
        # error that broke a listener (FAILED).
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._group = asyncio.TaskGroup()
        # Paused until _run() has entered the TaskGroup that handlers need.
        self._state = _S.PAUSED
        self._main = asyncio.create_task(self._run(), name="aiosock server")

    @property
    def state(self) -> ServerState:
        """Accepting, paused, backing off, failed, closing or closed."""
        return self._state

    @property
    def addresses(self) -> list[Address]:
        """What was really bound, one per listening socket (port 0 resolved)."""
        return [listener.address for listener in self._listeners]

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        return len(self._adapters)

    @property
    def stats(self) -> ServerStats:
        """A snapshot of what the server has done (see :class:`ServerStats`)."""
        counts = self._counts.copy()
        for adapter in self._adapters:
            _add_traffic(counts, adapter)
        return ServerStats(connections=len(self._adapters), **counts)

    def is_serving(self) -> bool:
        """Whether the listening sockets are open (until aclose() or a failure)."""
        return self._state in _LISTENING

    def __repr__(self) -> str:
        addresses = ", ".join(map(str, self.addresses))
        return (
            f"<Server {addresses} {self._state.value}, {self.connections} connections>"
        )

    async def serve_forever(self) -> None:
        """Serve until cancelled (then close with the default grace) or closed.

        Raises the ``OSError`` that broke a listening socket, if one did;
        the server is then FAILED and still needs :meth:`aclose`.
        """
        try:
            await asyncio.shield(self._stopped)
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def aclose(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop accepting, tell the connections, then abort them after ``grace`` s.

        Accepting stops before the first await: a client connecting after
        ``aclose()`` was called is refused. Then every connection stops
        being read and is told: a handler's stream ends after the messages
        already received (:attr:`Connection.shutting_down` is True), a
        protocol's :meth:`~Protocol.shutdown_requested` is called. What is
        still running after ``grace`` seconds is cancelled and aborted.
        Idempotent: a later call waits for the first to finish. If
        cancelled, it skips the rest of the grace period and aborts at
        once. Also closes a FAILED server.
        """
        if self._state not in (_S.CLOSING, _S.CLOSED):
            if self._state is _S.FAILED:
                # Logged when it happened; serve_forever() raises it to
                # whoever waits there. Closing must not log it once more.
                self._stopped.exception()
            self._move(_S.CLOSING)
            if self._settling is not None:  # nothing to recover now
                self._settling.cancel()
                self._settling = None
            started = self._loop.time()
            where = ", ".join(map(str, self.addresses))
            logger.info(
                "%s: shutting down, %d connections open", where, len(self._adapters)
            )
            for adapter in list(self._adapters):
                self._tell(adapter)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        await self._idle.wait()
            finally:
                left = len(self._tasks)
                for task in self._tasks:
                    task.cancel()
                for adapter in list(self._adapters):
                    adapter.abort()
                self._closed.set_result(None)
                logger.info(
                    "%s: closed in %.3f s; %d connections cut at the grace period",
                    where,
                    self._loop.time() - started,
                    left,
                )
        await asyncio.shield(self._closed)
        await asyncio.shield(self._main)

    # ------------------------------------------------------------ the state

    def _move(self, new: ServerState, failure: OSError | None = None) -> None:
        """Go to ``new``, doing what leaving the old state and entering it needs.

        The listening sockets are watched exactly while SERVING, and a retry
        is pending exactly while BACKING_OFF.
        """
        old = self._state
        if new not in _MOVES[old]:
            raise RuntimeError(f"a server cannot go from {old.value} to {new.value}")
        self._state = new
        if new is _S.BACKING_OFF:
            self._counts["accept_backoffs"] += 1
        elif new is _S.PAUSED and old is not _S.PAUSED and self._full():
            self._counts["paused_at_limit"] += 1
        if old is _S.SERVING:
            for listener in self._listeners:
                self._loop.remove_reader(listener.sock.fileno())
        elif old is _S.BACKING_OFF and self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if new is _S.SERVING:
            for listener in self._listeners:
                self._loop.add_reader(listener.sock.fileno(), self._accept, listener)
        elif new is _S.BACKING_OFF:
            self._retry = self._loop.call_later(self._backoff, self._retry_accepting)
            self._backoff = min(2 * self._backoff, _BACKOFF_MAX)
        elif new is _S.FAILED or (new is _S.CLOSING and old is not _S.FAILED):
            for listener in self._listeners:
                listener.close()
            if failure is not None:
                self._stopped.set_exception(failure)
            else:
                self._stopped.set_result(None)

    # ------------------------------------------------------------ accepting
    #
    # Readiness callbacks rather than a task awaiting sock_accept(): one
    # wake-up accepts a batch, accepting stops synchronously (a cancelled
    # sock_accept can still take a connection, and leak it), and a listening
    # descriptor is never closed while the loop watches it.

    async def _run(self) -> None:
        async with self._group:
            if self._state is _S.PAUSED:  # not closed before it could start
                self._move(_S.SERVING)
            await self._closed
        self._move(_S.CLOSED)

    def _full(self) -> bool:
        maximum = self._limits.max_connections
        return maximum is not None and len(self._holds) >= maximum

    def _accept(self, listener: Listener) -> None:
        for _ in range(_ACCEPT_BATCH):
            if self._full():
                self._move(_S.PAUSED)
                return
            try:
                sock, _ = listener.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _DEAD_ON_ARRIVAL:
                    continue
                if exc.errno in _RESOURCE_ERRNOS:
                    self._tell_accept_failure(listener.address, exc)
                    self._move(_S.BACKING_OFF)
                else:
                    logger.error("accept on %s failed: %s", listener.address, exc)
                    self._move(_S.FAILED, exc)
                return
            self._backoff = _BACKOFF_FIRST
            if self._accept_failures.failing:
                self._accept_failures.succeeded()
                if self._settling is None:
                    self._settle_accept_failures()
            self._admit(sock)

    def _tell_accept_failure(self, address: Address, exc: OSError) -> None:
        """Log a resource error at once if it starts a run, else once a second."""
        told = self._accept_failures.failed()
        if isinstance(told, Started):
            logger.warning("accept on %s failed (%s); backing off", address, exc)
        elif told is not None:
            logger.warning(
                "accept on %s: %d more %s (%s) in the last %.1f s; still backing off",
                address,
                told.failures,
                "failure" if told.failures == 1 else "failures",
                exc.strerror or exc,
                told.seconds,
            )

    def _settle_accept_failures(self) -> None:
        """Log that accepting recovered, once it has worked for a while.

        Called when an accept works during a run of failures, and again by
        a timer until the run is over or fails again.
        """
        self._settling = None
        if not self.is_serving():
            return  # closed or broken since: nothing recovered
        settled = self._accept_failures.settle()
        if isinstance(settled, Recovered):
            logger.info(
                "accept on %s recovered after %d %s in %.1f s",
                ", ".join(map(str, self.addresses)),
                settled.failures,
                "failure" if settled.failures == 1 else "failures",
                settled.seconds,
            )
        elif settled is not None:
            self._settling = self._loop.call_later(
                settled, self._settle_accept_failures
            )

    def _retry_accepting(self) -> None:
        self._retry = None
        self._move(_S.PAUSED if self._full() else _S.SERVING)

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        connection: Connection[Any] | None = None
        if self._protocol_factory is not None:
            protocol = self._protocol_factory()
        else:
            connection = Connection(self._limits)
            protocol = protocol_of(connection)
        adapter = self._adapter(protocol, self._codec, self._limits)
        adapter.on_lost = self._untrack
        self._counts["accepted"] += 1
        self._adapters.add(adapter)
        self._holds[adapter] = 2
        self._idle.clear()
        task = self._group.create_task(self._serve_one(sock, adapter, connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._release(adapter))

    def _tell(self, adapter: StreamAdapter[Any]) -> None:
        """Tell one connection the server is shutting down."""
        try:
            adapter.shutdown()
        except Exception:  # a protocol's shutdown_requested() raised
            connection_logger.exception(
                "shutdown_requested() failed for %s; aborting it", adapter.transport
            )
            adapter.abort()

    def _untrack(self, adapter: StreamAdapter[Any]) -> None:
        """The connection is gone (or never came): its socket's hold ends.

        What it carried joins the totals, and why it ended, if that was a
        deadline or the peer's fault, is counted and logged here, once.
        """
        if adapter not in self._adapters:
            return
        self._adapters.discard(adapter)
        counts = self._counts
        _add_traffic(counts, adapter)
        failure = adapter.failure
        if isinstance(failure, DeadlineExceeded):
            counts[f"closed_{failure.deadline}"] += 1
            connection_logger.debug(
                "connection from %s aborted: %s", _peer(adapter), failure
            )
        elif isinstance(failure, RemoteProtocolError):
            counts["protocol_errors"] += 1
            connection_logger.warning(
                "connection from %s broke the protocol: %s", _peer(adapter), failure
            )
        self._release(adapter)

    def _release(self, adapter: StreamAdapter[Any]) -> None:
        """One of a connection's two holds on its slot ended."""
        left = self._holds.pop(adapter) - 1
        if left:
            self._holds[adapter] = left
            return
        if not self._holds:
            self._idle.set()
        if self._state is _S.PAUSED and not self._full():
            self._move(_S.SERVING)

    async def _serve_one(
        self,
        sock: socket.socket,
        adapter: StreamAdapter[Any],
        connection: Connection[Any] | None,
    ) -> None:
        """Make the transport; run the handler on ``connection`` if it has one."""
        try:
            await self._loop.connect_accepted_socket(lambda: adapter, sock)
        except BaseException as exc:
            # The peer left before the transport was made, or the server is
            # closing: this socket is ours to close either way.
            self._untrack(adapter)
            adapter.abort()
            sock.close()
            if not isinstance(exc, OSError):
                raise
            logger.debug("connection lost as it was accepted: %s", exc)
            return
        if self._handler is not None:
            assert connection is not None
            await self._run_handler(self._handler, connection, adapter)

    async def _run_handler(
        self,
        handler: Handler[Any],
        connection: Connection[Any],
        adapter: StreamAdapter[Any],
    ) -> None:
        """Run one handler; nothing but cancellation may escape into the group.

        A peer that vanished is routine (debug); a peer that broke the
        protocol is its fault (warning, one line); anything else is a bug
        in the handler (error, with the traceback). A framing fault or a
        deadline the handler lets out was logged where it happened
        (:meth:`_untrack`), and is not logged twice.
        """
        peer = connection.peer_address
        try:
            await handler(connection)
        except BrokenResourceError as exc:
            if exc is not adapter.failure:
                connection_logger.debug("connection from %s broke: %s", peer, exc)
        except RemoteProtocolError as exc:
            if exc is not adapter.failure:  # the handler's own verdict
                self._counts["protocol_errors"] += 1
                connection_logger.warning(
                    "connection from %s broke the protocol: %s", peer, exc
                )
        except Exception:
            self._counts["handler_errors"] += 1
            connection_logger.exception(
                "handler failed for the connection from %s", peer
            )
        finally:
            try:
                await connection.aclose()
            except Exception:  # aclose() raising would take the server down
                connection_logger.exception(
                    "closing the connection from %s failed", peer
                )


def _add_traffic(counts: collections.Counter[str], adapter: StreamAdapter[Any]) -> None:
    counts["messages_in"] += adapter.messages_in
    counts["bytes_in"] += adapter.bytes_in
    transport = adapter._transport
    if transport is not None:
        counts["messages_out"] += transport.messages_out
        counts["bytes_out"] += transport.bytes_out


def _peer(adapter: StreamAdapter[Any]) -> object:
    transport = adapter._transport
    return None if transport is None else transport.peer_address


@overload
async def serve(
    handler: Handler[bytes],
    *addresses: str | Address,
    codec: None = None,
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server: ...
@overload
async def serve(
    handler: Handler[T],
    *addresses: str | Address,
    codec: Codec[T],
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server: ...
async def serve(
    handler: Handler[Any],
    *addresses: str | Address,
    codec: Codec[Any] | None = None,
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server:
    """Listen on every address and run ``await handler(connection)`` per connection.

    The connection is closed when the handler returns or raises (which is
    logged). It carries the messages of ``codec``: :class:`Raw` chunks of
    at most ``limits.max_frame_size`` when None, so the handler takes a
    ``Connection[bytes]``; with a ``Codec[M]`` it takes a
    ``Connection[M]`` (the overloads make mypy check it). ``unix_mode``
    is the file mode of Unix socket paths; ``sock`` adopts a socket that
    is already listening. Raises ``OSError`` if an address cannot be bound
    (nothing stays bound).
    """
    return await _open(
        addresses, codec, limits, backlog, unix_mode, sock, handler=handler
    )


@overload
async def create_server(
    protocol_factory: Callable[[], Protocol[bytes]],
    *addresses: str | Address,
    codec: None = None,
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server: ...
@overload
async def create_server(
    protocol_factory: Callable[[], Protocol[T]],
    *addresses: str | Address,
    codec: Codec[T],
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server: ...
async def create_server(
    protocol_factory: Callable[[], Protocol[Any]],
    *addresses: str | Address,
    codec: Codec[Any] | None = None,
    limits: Limits | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int | None = None,
    sock: socket.socket | None = None,
) -> Server:
    """Like :func:`serve`, with a new ``protocol_factory()`` per connection.

    The protocols get the messages of ``codec``, typed as for :func:`serve`.
    """
    return await _open(
        addresses,
        codec,
        limits,
        backlog,
        unix_mode,
        sock,
        protocol_factory=protocol_factory,
    )


async def _open(
    addresses: Iterable[str | Address],
    codec: Codec[Any] | None,
    limits: Limits | None,
    backlog: int,
    unix_mode: int | None,
    sock: socket.socket | None,
    *,
    handler: Handler[Any] | None = None,
    protocol_factory: Callable[[], Protocol[Any]] | None = None,
) -> Server:
    limits = limits or Limits()
    return Server(
        await _listen(addresses, sock, backlog, unix_mode),
        codec=codec_or_raw(codec, limits.max_frame_size),
        limits=limits,
        handler=handler,
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
