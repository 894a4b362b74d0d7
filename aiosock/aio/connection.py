"""The async API: :class:`Connection`, a stream of messages to await.

It is a :class:`~aiosock.aio.protocol.Protocol` (the same adapter and
codec as the callback API underneath) that queues what arrives for
``receive()`` and makes ``send()`` wait while the write buffer is full.
Memory is bounded both ways: past ``limits.read_high_water`` bytes of
unreceived messages the socket is no longer read (until half of that is
left), and a sender waits above ``limits.write_high_water``.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType

from aiosock.aio._waiting import WaitingLine
from aiosock.aio.protocol import Protocol, Transport
from aiosock.core.addresses import Address
from aiosock.core.codecs import Buffer
from aiosock.core.errors import ClosedResourceError, EndOfStream
from aiosock.core.limits import Limits

__all__ = ["Connection"]


class Connection(Protocol):
    """One stream connection with awaitable ``send`` and ``receive``.

    Made by :func:`aiosock.connect` or handed to a :func:`aiosock.serve`
    handler, not built by hand. Use it as ``async with`` to close it.

    One task may receive while another sends. Two tasks receiving at once
    each get different messages, in order of arrival.
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0  # bytes in _queue
        self._receivers = WaitingLine(self._loop)
        self._senders = WaitingLine(self._loop)
        self._transport: Transport | None = None
        self._paused_writing = False
        self._paused_reading = False
        self._eof = False
        self._closed = False  # by aclose() or abort()
        # Why receive() can return no more: None while it still can.
        self._end: Exception | None = None
        self._read_timeout = limits.read_timeout
        self._read_high_water = limits.read_high_water
        self._resume_reading_at = limits.read_high_water // 2
        self._lost: asyncio.Future[None] = self._loop.create_future()

    # ------------------------------------------------- Protocol callbacks

    def connection_made(self, transport: Transport) -> None:
        self._transport = transport

    def message_received(self, message: bytes) -> None:
        self._queue.append(message)
        self._queued += len(message)
        if self._queued > self._read_high_water and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        if self._receivers:
            self._receivers.wake_one()

    def eof_received(self) -> bool:
        self._eof = True
        self._receivers.wake_all()
        return True  # keep the write side open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._end is None:
            self._end = exc
        self._eof = True
        self._receivers.wake_all()
        self._senders.wake_all()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._senders.wake_all()

    # ---------------------------------------------------------- the API

    @property
    def transport(self) -> Transport:
        assert self._transport is not None, "not connected"
        return self._transport

    @property
    def local_address(self) -> Address | None:
        return self.transport.local_address

    @property
    def peer_address(self) -> Address | None:
        """None for an unnamed Unix peer (a client that never bound)."""
        return self.transport.peer_address

    async def send(self, message: Buffer) -> None:
        """Send one message; wait while the write buffer is above high water.

        Raises the codec's :class:`LocalProtocolError` for a message it
        cannot frame (nothing is sent), :class:`ClosedResourceError` after
        :meth:`aclose` or :meth:`send_eof`, and :class:`BrokenResourceError`
        when the peer or the network broke the connection, also to senders
        that were waiting. If cancelled while waiting, the message has
        already been handed to the transport.
        """
        transport = self._transport
        assert transport is not None
        transport.send(message)
        if transport._corked is not None and not self._queue:
            transport._uncork()  # no more input to answer now: write it all
        while self._paused_writing:
            waiter = self._senders.park()
            try:
                await waiter
            except asyncio.CancelledError:
                self._senders.leave(waiter)
                raise
            self._check_can_send()

    def _check_can_send(self) -> None:
        error = self.transport._error
        if error is not None:
            raise error

    async def receive(self) -> bytes:
        """The next message.

        Raises :class:`EndOfStream` once the peer has sent EOF and every
        message before it was received; the :class:`RemoteProtocolError`
        that ended the stream (an oversize frame, a cut-off one) after the
        messages before it; each of these again on every later call, as
        the blocking driver does; :class:`BrokenResourceError` when the network
        broke it; :class:`ClosedResourceError` after :meth:`aclose`; and
        :class:`TimeoutError` after ``limits.read_timeout`` (the connection
        stays usable). Cancellation loses no message.
        """
        if not self._queue or self._closed:
            if self._read_timeout is None:
                await self._wait_for_message()
            else:
                async with asyncio.timeout(self._read_timeout):
                    await self._wait_for_message()
        return self._take()

    def _take(self) -> bytes:
        """The next queued message (there is one), with the bookkeeping."""
        message = self._queue.popleft()
        self._queued -= len(message)
        if self._queue:
            # More input is here already: hold the replies to write them
            # together (until the queue is empty, or the next loop turn).
            self._transport._cork()  # type: ignore[union-attr]  # connected
        if self._paused_reading and self._queued <= self._resume_reading_at:
            self._paused_reading = False
            self.transport.resume_reading()
        return message

    async def _wait_for_message(self) -> None:
        while not self._queue or self._closed:
            waiter = self._receiver()
            try:
                await waiter
            except asyncio.CancelledError:
                self._receivers.leave(waiter)
                raise

    def _receiver(self) -> asyncio.Future[None]:
        """A future for a receiver to wait on, or why it cannot wait."""
        if self._closed:
            raise ClosedResourceError("the connection was closed")
        if self._eof:
            # Reset the traceback: the same error may be raised on
            # every later call, and must not grow each time.
            raise (self._end or EndOfStream()).with_traceback(None)
        transport = self._transport
        assert transport is not None
        if transport._corked is not None:
            transport._uncork()  # going idle: nothing may wait behind us
        return self._receivers.park()

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> bytes:
        """The next message; the iteration ends at EOF (``async for``).

        Like :meth:`receive`, with the same errors but for EOF.
        """
        if self._read_timeout is not None:
            try:
                return await self.receive()
            except EndOfStream:
                raise StopAsyncIteration from None
        # _wait_for_message() inlined: a coroutine less per message.
        while not self._queue or self._closed:
            try:
                waiter = self._receiver()
            except EndOfStream:
                raise StopAsyncIteration from None
            try:
                await waiter
            except asyncio.CancelledError:
                self._receivers.leave(waiter)
                raise
        return self._take()

    async def send_eof(self) -> None:
        """Half-close: the peer reads everything sent, then EOF; receiving goes on.

        Idempotent. Later sends raise :class:`ClosedResourceError`.
        """
        self.transport.send_eof()

    async def aclose(self) -> None:
        """Close: flush what was sent, then release the socket. Idempotent.

        Waits at most ``limits.close_timeout`` for the peer to take the
        buffered bytes, then aborts. If cancelled, it aborts at once and
        re-raises: the connection is closed either way.
        """
        self._closed = True
        transport = self.transport
        transport.close()
        try:
            async with asyncio.timeout(self._limits.close_timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            transport.abort()
        except asyncio.CancelledError:
            transport.abort()
            raise

    def abort(self) -> None:
        """Close now, dropping buffered bytes. Idempotent."""
        self._closed = True
        self.transport.abort()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
