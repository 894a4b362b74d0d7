"""Every resource bound in one frozen value, with the reasons for its defaults.

A connection or endpoint reads its bounds from one :class:`Limits`, so
memory and time are bounded in one visible place rather than by keyword
arguments scattered across the API. ``None`` for a timeout or a count
means "no bound".
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_DATAGRAM_QUEUE",
    "DEFAULT_FRAME_TIMEOUT",
    "DEFAULT_HIGH_WATER",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_LOW_WATER",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_READ_HIGH_WATER",
    "DEFAULT_READ_SIZE",
    "DEFAULT_SEND_TIMEOUT",
    "Limits",
    "OverflowPolicy",
]

# 1 MiB: the default largest message of the websockets library, a size
# that fits most request/response payloads while a hostile peer can make
# each connection hold no more than that.
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024

# 256 KiB: what asyncio's selector transports and uvloop read per call,
# enough to drain a loopback socket buffer in one system call.
DEFAULT_READ_SIZE = 256 * 1024

# 64 KiB / 16 KiB: asyncio's own write-buffer water marks (low = high / 4),
# so aiosock applies backpressure where plain asyncio code would.
DEFAULT_HIGH_WATER = 64 * 1024
DEFAULT_LOW_WATER = DEFAULT_HIGH_WATER // 4

# 256 KiB: received messages a connection queues for a reader that is
# behind before it stops reading the socket; one full read of the default
# size, so a steady reader never pauses the socket.
DEFAULT_READ_HIGH_WATER = 256 * 1024

# 10 s: how long closing waits for buffered bytes to reach a slow reader
# before it aborts; between nginx's lingering_timeout (5 s) and
# lingering_time (30 s) for the same job.
DEFAULT_CLOSE_TIMEOUT = 10.0

# None: a connection may be idle for ever by default, because long-lived
# quiet connections are normal (a Redis client's pool, a subscriber:
# Redis's own "timeout" defaults to 0, no limit). A server that cannot
# afford them sets one.
DEFAULT_IDLE_TIMEOUT: float | None = None

# 60 s: a message begun must be complete within this, so that a peer
# sending a byte now and then (slowloris) cannot hold a connection that
# the idle deadline never sees idle; nginx's client_header_timeout and
# client_body_timeout are 60 s for the same job. At the default 1 MiB
# max_frame_size a peer must send at least 17 KiB/s.
DEFAULT_FRAME_TIMEOUT: float | None = 60.0

# 60 s: how long a peer may take none of our bytes while a sender waits
# (the write buffer above high water); nginx's send_timeout is 60 s.
DEFAULT_SEND_TIMEOUT: float | None = 60.0

# 1024 datagrams: about what a 2 MiB socket receive buffer (a common
# net.core.rmem_max) holds of 2 KiB datagrams; a reader that falls further
# behind than that is losing datagrams anyway.
DEFAULT_DATAGRAM_QUEUE = 1024


class OverflowPolicy(enum.Enum):
    """Which datagram a full receive queue gives up."""

    #: Keep what is queued and drop the arrival, as the kernel does when a
    #: socket receive buffer is full.
    DROP_NEWEST = "drop-newest"
    #: Drop the oldest queued datagram to make room, for readers that care
    #: about the latest state more than about history.
    DROP_OLDEST = "drop-oldest"


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:  # also refuses NaN
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _non_negative(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _positive_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, got {value}")


_INT = attrs.validators.instance_of(int)
_NUMBER = attrs.validators.instance_of((int, float))
_NUMBER_OR_NONE = attrs.validators.optional(_NUMBER)


@attrs.frozen(kw_only=True)
class Limits:
    """The bounds of one connection, server or datagram endpoint.

    Raises :class:`ValueError` for a negative or zero size, a low water
    mark above the high one, or a timeout that is not positive.
    """

    #: Largest message in bytes where no codec sets its own limit: one
    #: datagram, one raw chunk. Codecs carry their own limit, whose default
    #: is the same number.
    max_frame_size: int = attrs.field(
        default=DEFAULT_MAX_FRAME_SIZE, validator=[_INT, _positive]
    )
    #: Bytes asked of a stream socket per read on asyncio's loop (uvloop
    #: reads up to its own 256 KiB whatever this says).
    read_size: int = attrs.field(default=DEFAULT_READ_SIZE, validator=[_INT, _positive])
    #: Queued incoming message bytes above which a connection stops reading
    #: the socket until its reader catches up (to half of it). A message of
    #: a codec of your own counts its ``len()``, or 1 if it has none: give
    #: such a codec a bound in its own units.
    read_high_water: int = attrs.field(
        default=DEFAULT_READ_HIGH_WATER, validator=[_INT, _positive]
    )
    #: Buffered outgoing bytes above which senders wait.
    write_high_water: int = attrs.field(
        default=DEFAULT_HIGH_WATER, validator=[_INT, _non_negative]
    )
    #: Buffered outgoing bytes at or below which waiting senders resume.
    write_low_water: int = attrs.field(
        default=DEFAULT_LOW_WATER, validator=[_INT, _non_negative]
    )
    #: Seconds a connection may pass with no traffic either way before it
    #: is aborted (:class:`DeadlineExceeded`, ``deadline="idle"``), checked
    #: so that it fires between once and twice this; None never.
    idle_timeout: float | None = attrs.field(
        default=DEFAULT_IDLE_TIMEOUT, validator=[_NUMBER_OR_NONE, _positive_or_none]
    )
    #: Seconds in which a message begun must be complete (the decoder
    #: holds part of one) before the connection is aborted
    #: (``deadline="frame"``); None never.
    frame_timeout: float | None = attrs.field(
        default=DEFAULT_FRAME_TIMEOUT, validator=[_NUMBER_OR_NONE, _positive_or_none]
    )
    #: Seconds the peer may take none of our bytes while the write buffer
    #: is above high water (senders wait) before the connection is aborted
    #: (``deadline="send"``); None never.
    send_timeout: float | None = attrs.field(
        default=DEFAULT_SEND_TIMEOUT, validator=[_NUMBER_OR_NONE, _positive_or_none]
    )
    #: Seconds one receive may wait for a message; None waits for ever.
    read_timeout: float | None = attrs.field(
        default=None, validator=[_NUMBER_OR_NONE, _positive_or_none]
    )
    #: Seconds closing waits for buffered outgoing bytes to be sent before
    #: it aborts the connection.
    close_timeout: float = attrs.field(
        default=DEFAULT_CLOSE_TIMEOUT, validator=[_NUMBER, _positive]
    )
    #: Connections a server holds at once; at the limit it stops accepting
    #: until one is done: its socket closed and its handler returned (a
    #: peer that resets does not free a slot while its handler still
    #: runs). None accepts without bound.
    max_connections: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional([_INT, _positive]),
    )
    #: Datagrams an endpoint queues for a reader that has not asked yet.
    datagram_queue: int = attrs.field(
        default=DEFAULT_DATAGRAM_QUEUE, validator=[_INT, _positive]
    )
    #: What a full datagram queue does with the next arrival.
    datagram_overflow: OverflowPolicy = attrs.field(
        default=OverflowPolicy.DROP_NEWEST,
        validator=attrs.validators.instance_of(OverflowPolicy),
    )
    #: Bytes asked of the kernel for a datagram socket's receive buffer
    #: (``SO_RCVBUF``), where datagrams wait before the endpoint reads
    #: them; a full one drops them, counted in ``stats.dropped_by_kernel``.
    #: Linux doubles the number asked (half is its bookkeeping) and caps
    #: it at ``net.core.rmem_max`` without an error. None keeps the
    #: kernel's default (``net.core.rmem_default``, 208 KiB on most Linux
    #: machines): the administrator's choice for every program on the
    #: machine, and asking beyond the cap would only seem to work.
    datagram_receive_buffer: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional([_INT, _positive]),
    )

    @write_low_water.validator
    def _check_low_water(self, _: attrs.Attribute[int], value: int) -> None:
        if value > self.write_high_water:
            raise ValueError(
                f"write_low_water ({value}) is above "
                f"write_high_water ({self.write_high_water})"
            )
