"""The async API: :class:`Connection`, a stream of messages to await.

A :class:`Connection` owns a :class:`ConnectionProtocol`: a
:class:`~aiosock.aio.protocol.Protocol` (the same adapter and codec as
the callback API underneath) that queues what arrives for ``receive()``
and makes ``send()`` wait while the write buffer is full. Composition, not
inheritance: the callbacks are the adapter's business and stay off the
connection's public face, at no cost per message (the adapter calls the
protocol directly; the connection's methods read its state through one
attribute). Memory is bounded both ways: past ``limits.read_high_water``
bytes of unreceived messages the socket is no longer read (until half of
that is left), and a sender waits above ``limits.write_high_water``.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, ClassVar, Generic

from aiosock.aio._closing import AsyncClosing
from aiosock.aio._waiting import WaitingLine
from aiosock.aio.protocol import Protocol, Transport, describe
from aiosock.core.addresses import Address
from aiosock.core.codecs import T
from aiosock.core.errors import ClosedResourceError, EndOfStream, RemoteProtocolError
from aiosock.core.limits import Limits

__all__ = ["Connection", "ConnectionProtocol", "protocol_of"]


class ConnectionProtocol(Protocol[T]):
    """The callbacks and the state behind one :class:`Connection` (internal).

    It queues messages for receivers and holds senders back above high
    water; the :class:`Connection` that owns it is the awaitable face.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._loop = asyncio.get_running_loop()
        self.queue: collections.deque[T] = collections.deque()
        self.queued = 0  # bytes in queue
        self.receivers = WaitingLine(self._loop)
        self.senders = WaitingLine(self._loop)
        self._transport: Transport[T] | None = None
        self.paused_writing = False
        self._paused_reading = False
        self._eof = False
        self.closed = False  # by aclose() or abort()
        # Why receive() can return no more: None while it still can.
        self._end: Exception | None = None
        self.read_timeout = limits.read_timeout
        self._read_high_water = limits.read_high_water
        self._resume_reading_at = limits.read_high_water // 2
        self.lost: asyncio.Future[None] = self._loop.create_future()

    # ------------------------------------------------- Protocol callbacks

    def connection_made(self, transport: Transport[T]) -> None:
        self._transport = transport

    def message_received(self, message: T) -> None:
        self.queue.append(message)
        try:  # free in 3.11 when nothing is raised: this is every message's path
            self.queued += len(message)  # type: ignore[arg-type]  # no len(): 1
        except TypeError:
            self.queued += 1
        if self.queued > self._read_high_water and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        if self.receivers:  # the deque's own test: no call when nobody waits
            self.receivers.wake_one()

    def eof_received(self) -> bool:
        self._eof = True
        self.receivers.wake_all()
        return True  # keep the write side open: half-close

    def framing_error(self, exc: RemoteProtocolError) -> bool:
        # receive() raises exc after the messages before it; sending goes
        # on (an error reply) until aclose(), as on the blocking driver.
        self._end = exc
        self._eof = True
        self._resume_reading_at = -1  # the socket is not read again
        self.receivers.wake_all()
        return True

    def shutdown_requested(self) -> bool:
        # The stream ends after what is queued: an idle handler's receive()
        # or async for ends now, a busy one finishes its work first. The
        # handler returning closes the connection.
        self._eof = True
        self._resume_reading_at = -1  # the socket is not read again
        self.receivers.wake_all()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._end is None:
            self._end = exc
        self._eof = True
        self.receivers.wake_all()
        self.senders.wake_all()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        self.senders.wake_all()

    def take(self) -> T:
        """The next queued message (there is one), with the bookkeeping."""
        message = self.queue.popleft()
        try:
            self.queued -= len(message)  # type: ignore[arg-type]  # as on arrival
        except TypeError:
            self.queued -= 1
        if self.queue:
            # More input is here already: hold the replies to write them
            # together (until the queue is empty, or the next loop turn).
            transport = self._transport
            assert transport is not None
            if not transport.batching:
                transport.batch()
        if self._paused_reading and self.queued <= self._resume_reading_at:
            self._paused_reading = False
            self.transport.resume_reading()
        return message

    async def wait_for_message(self) -> None:
        while not self.queue or self.closed:
            waiter = self.receiver()
            try:
                await waiter
            except asyncio.CancelledError:
                self.receivers.leave(waiter)
                raise

    def receiver(self) -> asyncio.Future[None]:
        """A future for a receiver to wait on, or why it cannot wait."""
        if self.closed:
            raise ClosedResourceError("the connection was closed")
        if self._eof:
            # Reset the traceback: the same error may be raised on
            # every later call, and must not grow each time.
            raise (self._end or EndOfStream()).with_traceback(None)
        transport = self._transport
        assert transport is not None
        if transport.batching:
            transport.flush()  # going idle: nothing may wait behind us
        return self.receivers.park()

    @property
    def transport(self) -> Transport[T]:
        assert self._transport is not None, "not connected"
        return self._transport

    @property
    def state(self) -> str:
        """``"open"``, ``"closing"`` or ``"closed"``, for repr()."""
        if self.lost.done():
            return "closed"
        if self.closed or self._transport is None:
            return "closing"
        return self._transport.state


class Connection(AsyncClosing, Generic[T]):
    """One stream connection with awaitable ``send`` and ``receive``.

    ``T`` is the message type of its codec: ``Connection[bytes]`` for the
    built-in codecs.

    Made by :func:`aiosock.connect` or handed to a :func:`aiosock.serve`
    handler, not built by hand. Use it as ``async with`` to close it.

    One task may receive while another sends. Two tasks receiving at once
    each get different messages, in order of arrival.
    """

    __slots__ = ("_protocol",)

    # What a connection is made of: a class, so that a test can break it.
    _protocol_class: ClassVar[type[ConnectionProtocol[Any]]] = ConnectionProtocol

    def __init__(self, limits: Limits) -> None:
        self._protocol: ConnectionProtocol[T] = self._protocol_class(limits)

    def __repr__(self) -> str:
        protocol = self._protocol
        if protocol._transport is None:
            return f"<{type(self).__name__} unconnected>"
        transport = protocol._transport
        return describe(
            self, transport.local_address, transport.peer_address, protocol.state
        )

    @property
    def transport(self) -> Transport[T]:
        """The callback API's transport underneath (sends without waiting)."""
        return self._protocol.transport

    @property
    def local_address(self) -> Address | None:
        return self._protocol.transport.local_address

    @property
    def peer_address(self) -> Address | None:
        """None for an unnamed Unix peer (a client that never bound)."""
        return self._protocol.transport.peer_address

    @property
    def shutting_down(self) -> bool:
        """Whether the server that accepted this connection began to close.

        From then on the socket is not read: :meth:`receive` returns what
        had arrived, then raises :class:`EndOfStream` (``async for``
        ends). Finish the work in hand and return; what is left when the
        server's grace period ends is cancelled.
        """
        return self._protocol.transport.shutting_down

    async def send(self, message: T) -> None:
        """Send one message; wait while the write buffer is above high water.

        Raises the codec's :class:`LocalProtocolError` for a message it
        cannot frame (nothing is sent), :class:`ClosedResourceError` after
        :meth:`aclose` or :meth:`send_eof`, and :class:`BrokenResourceError`
        when the peer or the network broke the connection, also to senders
        that were waiting. If cancelled while waiting, the message has
        already been handed to the transport.
        """
        protocol = self._protocol
        transport = protocol._transport
        assert transport is not None, "not connected"
        transport.send(message)
        if not protocol.queue and transport.batching:
            transport.flush()  # no more input to answer now: write it all
        while protocol.paused_writing:
            senders = protocol.senders
            waiter = senders.park()
            try:
                await waiter
            except asyncio.CancelledError:
                senders.leave(waiter)
                raise
            error = transport.send_error
            if error is not None:
                raise error

    async def receive(self) -> T:
        """The next message.

        Raises :class:`EndOfStream` once the peer has sent EOF and every
        message before it was received; the :class:`RemoteProtocolError`
        that ended the stream (an oversize frame, a cut-off one) after the
        messages before it; each of these again on every later call, as
        the blocking driver does (sending goes on after a framing fault,
        for an error reply, until :meth:`aclose`);
        :class:`BrokenResourceError` when the network broke it;
        :class:`ClosedResourceError` after :meth:`aclose`; and
        :class:`TimeoutError` after ``limits.read_timeout`` (the connection
        stays usable). Cancellation loses no message.
        """
        protocol = self._protocol
        if not protocol.queue or protocol.closed:
            if protocol.read_timeout is None:
                await protocol.wait_for_message()
            else:
                async with asyncio.timeout(protocol.read_timeout):
                    await protocol.wait_for_message()
        return protocol.take()

    def __aiter__(self) -> Connection[T]:
        return self

    async def __anext__(self) -> T:
        """The next message; the iteration ends at EOF (``async for``).

        Like :meth:`receive`, with the same errors but for EOF.
        """
        protocol = self._protocol
        if protocol.read_timeout is not None:
            try:
                return await self.receive()
            except EndOfStream:
                raise StopAsyncIteration from None
        # wait_for_message() inlined: a coroutine less per message.
        while not protocol.queue or protocol.closed:
            try:
                waiter = protocol.receiver()
            except EndOfStream:
                raise StopAsyncIteration from None
            try:
                await waiter
            except asyncio.CancelledError:
                protocol.receivers.leave(waiter)
                raise
        return protocol.take()

    async def send_eof(self) -> None:
        """Half-close: the peer reads everything sent, then EOF; receiving goes on.

        Idempotent. Later sends raise :class:`ClosedResourceError`.
        """
        self._protocol.transport.send_eof()

    async def aclose(self) -> None:
        """Close: flush what was sent, then release the socket. Idempotent.

        Waits at most ``limits.close_timeout`` for the peer to take the
        buffered bytes, then aborts. If cancelled, it aborts at once and
        re-raises: the connection is closed either way.
        """
        protocol = self._protocol
        protocol.closed = True
        transport = protocol.transport
        transport.close()
        try:
            async with asyncio.timeout(protocol.limits.close_timeout):
                await asyncio.shield(protocol.lost)
        except TimeoutError:
            transport.abort()
        except asyncio.CancelledError:
            transport.abort()
            raise

    def abort(self) -> None:
        """Close now, dropping buffered bytes. Idempotent."""
        protocol = self._protocol
        protocol.closed = True
        protocol.transport.abort()


def protocol_of(connection: Connection[T]) -> ConnectionProtocol[T]:
    """The protocol an adapter drives for ``connection`` (aiosock's own use)."""
    return connection._protocol
