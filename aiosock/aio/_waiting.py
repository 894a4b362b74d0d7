"""The line of tasks waiting for a connection or an endpoint: :class:`WaitingLine`.

Receivers wait for a message, senders for room in the write buffer. Both
kinds of wait are the same mechanism, written once here: a task parks a
future in the line and awaits it, and whoever makes progress possible
wakes one waiter (a message came) or all of them (room to send, the end).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

__all__ = ["WaitingLine"]


class WaitingLine(collections.deque[asyncio.Future[None]]):
    """Tasks waiting in turn to be woken, first come first woken.

    A task waits like this, with no coroutine of its own per wait (it is
    on the per-message path)::

        waiter = line.park()
        try:
            await waiter
        except asyncio.CancelledError:
            line.leave(waiter)
            raise

    then checks again what it waited for: a wake-up says "look again", not
    "it is yours". Another task may have taken the message first, or a
    waiter may be woken by a wake-up passed on (see :meth:`leave`) after
    its message was taken; it then parks again.

    Cancellation: a waiter that is cancelled leaves the line and takes no
    wake-up with it. If it was woken and then cancelled before it ran
    (a timeout in its caller expiring in the same loop turn as the message
    arrived), :meth:`leave` passes the wake-up on to the next waiter, so
    that what woke it does not wait for a wake-up that never comes.

    The line is the deque of its waiters' futures (cancelled ones that
    have not left yet included), so that ``if line:`` where a message
    arrives costs what a deque's truth test costs; change it only through
    the methods below.
    """

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def park(self) -> asyncio.Future[None]:
        """A new waiter at the end of the line, for the caller to await."""
        waiter = self._loop.create_future()
        self.append(waiter)
        return waiter

    def wake_one(self) -> None:
        """Wake the first waiter that is not cancelled, if there is one.

        A cancelled waiter that has not left yet is dropped, not woken: the
        wake-up goes to the next one.
        """
        while self:
            waiter = self.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        """Wake every waiter in the line; those who park from now on wait."""
        while self:
            waiter = self.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def leave(self, waiter: asyncio.Future[None]) -> None:
        """Take ``waiter``, whose task was cancelled, out of the line.

        Call it where the task's wait raised :class:`asyncio.CancelledError`.
        A waiter that was woken before its task could run holds a wake-up
        that nobody used: it goes to the next waiter in the line.
        """
        if waiter.done() and not waiter.cancelled():
            self.wake_one()
        else:
            with contextlib.suppress(ValueError):  # dropped by a wake_one()
                self.remove(waiter)

    async def wait(self) -> None:
        """Park, wait until woken, and leave the line if cancelled.

        The pattern above as a coroutine, for callers to whom one more
        coroutine per wait does not matter (the datagram ``Endpoint``).
        """
        waiter = self.park()
        try:
            await waiter
        except asyncio.CancelledError:
            self.leave(waiter)
            raise
