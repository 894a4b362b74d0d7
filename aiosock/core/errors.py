"""The errors aiosock raises, arranged by who is at fault.

- :class:`RemoteProtocolError`: the peer sent something the protocol forbids
  (an oversize frame, a stream that ends inside a frame).
- :class:`LocalProtocolError`: this program misused the API (sent a message
  its own codec cannot frame, fed a decoder after it failed).
- :class:`ClosedResourceError`: the resource was closed by this program.
- :class:`BrokenResourceError`: the network or the peer broke the resource.
- :class:`EndOfStream`: a message stream ended cleanly. It is an error only
  to a caller that asked for one more message, because an empty message can
  be real and so cannot mean "end".

Every class derives from :class:`AiosockError`, so one ``except`` can catch
them all.
"""

from __future__ import annotations

import errno
from typing import Any

from aiosock.core.addresses import Address

__all__ = [
    "AiosockError",
    "BrokenResourceError",
    "ClosedResourceError",
    "DatagramError",
    "DatagramTooLarge",
    "DatagramTruncated",
    "DeadlineExceeded",
    "EndOfStream",
    "FrameTooLarge",
    "IncompleteFrame",
    "LocalProtocolError",
    "LoopUnavailable",
    "RemoteProtocolError",
    "translate_os_error",
]


class AiosockError(Exception):
    """Base of every error aiosock raises on purpose."""


class RemoteProtocolError(AiosockError):
    """The peer broke the framing or protocol; the stream cannot go on.

    ``messages`` holds the complete messages that the same call decoded
    before it met the fault (of the codec's message type), so that nothing
    valid is lost with the error.
    """

    def __init__(self, msg: str, *, messages: list[Any] | None = None) -> None:
        super().__init__(msg)
        self.messages: list[Any] = messages if messages is not None else []


class FrameTooLarge(RemoteProtocolError):
    """A frame is, or would grow, larger than the limit.

    Raised as soon as the frame is known to be too large (from a length
    header, or once a delimited frame grows past the limit), before its
    payload is buffered. ``size`` is the announced size, or for a frame
    whose end has not arrived the size seen so far; ``limit`` is the limit
    that was crossed.
    """

    def __init__(
        self, *, size: int, limit: int, messages: list[Any] | None = None
    ) -> None:
        super().__init__(
            f"frame of {size} bytes is larger than the limit of {limit} bytes",
            messages=messages,
        )
        self.size = size
        self.limit = limit


class IncompleteFrame(RemoteProtocolError):
    """The stream ended inside a frame; ``partial`` holds the bytes received."""

    def __init__(self, partial: bytes) -> None:
        super().__init__(
            f"stream ended inside a frame ({len(partial)} bytes of it received)"
        )
        self.partial = partial


class LocalProtocolError(AiosockError):
    """This program used the API in a way the protocol or codec forbids."""


class ClosedResourceError(AiosockError):
    """The resource was closed by this program and cannot be used any more."""


class BrokenResourceError(AiosockError):
    """The peer or the network broke the resource; the cause is chained."""


class DeadlineExceeded(BrokenResourceError, TimeoutError):
    """A deadline of :class:`~aiosock.Limits` ran out: the connection was aborted.

    ``deadline`` names which (``"idle"``, ``"frame"`` or ``"send"``) and
    ``seconds`` how long it was. Aborted, not closed: a peer that stopped
    reading would otherwise hold the connection while closing waits for it.
    Also a ``TimeoutError``, so ``except TimeoutError`` keeps working.
    """

    def __init__(self, deadline: str, seconds: float, why: str) -> None:
        super().__init__(f"{deadline} deadline of {seconds:g} s: {why}")
        self.deadline = deadline
        self.seconds = seconds


class LoopUnavailable(AiosockError, RuntimeError):
    """The event loop asked for is not installed (``loop="uvloop"`` without it)."""


class EndOfStream(AiosockError):
    """The peer ended the stream cleanly: there are no more messages."""


class DatagramError(RemoteProtocolError):
    """A datagram that cannot be delivered as a message; the endpoint goes on.

    ``address`` is the sender's (None when unknown); ``size`` the datagram's
    length as the kernel reported it.
    """

    def __init__(self, msg: str, *, address: Address | None, size: int) -> None:
        super().__init__(msg)
        self.address = address
        self.size = size


class DatagramTruncated(DatagramError):
    """A datagram longer than the receive buffer: the kernel cut it.

    ``partial`` holds the bytes that fitted, for diagnosis only: they are
    not the message. ``size`` is the datagram's real length where the
    kernel reports it (Linux does), else at least one more than the buffer.
    """

    def __init__(self, *, address: Address | None, size: int, partial: bytes) -> None:
        super().__init__(
            f"datagram of {size} bytes from {address} was cut to the "
            f"{len(partial)}-byte receive buffer",
            address=address,
            size=size,
        )
        self.partial = partial


class DatagramTooLarge(LocalProtocolError, ValueError):
    """A datagram to send is larger than the endpoint can send; nothing was sent.

    The caller's mistake; also a :class:`ValueError`, as a bad argument is.
    """

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(f"datagram of {size} bytes is larger than {limit} bytes")
        self.size = size
        self.limit = limit


# What a socket call raises on a descriptor this program already closed.
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


def translate_os_error(
    exc: OSError, *, address: Address | None = None
) -> ClosedResourceError | BrokenResourceError:
    """The aiosock error for an ``OSError`` from an open socket; raise it ``from exc``.

    A closed descriptor is this program's doing (:class:`ClosedResourceError`);
    anything else (reset, broken pipe, unreachable, timed out) broke the
    connection from outside (:class:`BrokenResourceError`). This is the one
    place aiosock decides that, for every layer. Failures to *open* a socket
    (refused, no such file) are not translated: they stay ``OSError``, as in
    asyncio and Trio. ``address``, where given, is the socket's, and the
    message names it.
    """
    if exc.errno in _CLOSED_ERRNOS:
        if address is None:
            return ClosedResourceError("the socket was already closed")
        return ClosedResourceError(f"the socket of {address} was already closed")
    reason = exc.strerror or type(exc).__name__
    if address is None:
        return BrokenResourceError(f"the connection broke: {reason}")
    return BrokenResourceError(f"the connection of {address} broke: {reason}")


def naming(exc: OSError, address: object) -> OSError:
    """``exc``, saying which ``address`` (or ``fd://N``) it concerns.

    For raising when opening a socket failed (connect, bind, listen,
    adopting a descriptor): the type and errno stay, so that ``except
    ConnectionRefusedError`` and ``exc.errno`` work as before, and the
    message ends with the address, as Python's own file errors end with
    the file name. An ``OSError`` without an errno (a timeout, the
    combined error of several addresses tried) is replaced by one of the
    same type whose message names the address, chained from it.
    """
    if str(address) in str(exc):
        return exc
    if exc.errno is not None and exc.strerror is not None:
        if exc.filename is None:
            exc.filename = str(address)
        return exc
    named = type(exc)(f"{exc or type(exc).__name__} ({address})")
    named.__cause__ = exc
    return named
