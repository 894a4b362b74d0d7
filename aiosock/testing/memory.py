"""Connected pairs in memory: test a Protocol, or a Connection, without sockets.

:func:`memory_pair` joins two :class:`~aiosock.Protocol` objects through
the same adapter and codec as a socket would, over an in-memory transport
that behaves like a stream socket where it matters: delivery happens on a
later turn of the loop, never inside ``send()``; a reader that pauses
makes the writer's buffer grow until ``pause_writing()``; ``send_eof()``
delivers EOF after the bytes before it; ``close()`` flushes, then the peer
sees EOF; ``abort()`` drops what is buffered and the peer sees a reset
(:class:`BrokenResourceError`).

:func:`memory_connection_pair` does the same for two async
:class:`~aiosock.Connection` objects; the stream conformance suite runs
over it like over any socket.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiosock.aio.connection import Connection, protocol_of
from aiosock.aio.protocol import Protocol, StreamAdapter, Transport
from aiosock.core.codecs import Buffer, Codec, T, codec_or_raw
from aiosock.core.limits import Limits

__all__ = ["memory_connection_pair", "memory_pair"]


class _MemoryTransport(asyncio.Transport):
    """One end of an in-memory stream; bytes go to ``peer`` on later turns."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self.peer: _MemoryTransport | None = None
        self.adapter: StreamAdapter[Any] | None = None
        self._outgoing: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._high, self._low = 64 * 1024, 16 * 1024
        self._reading = True
        self._writing_paused = False
        self._flush_scheduled = False
        self._eof_pending = False  # EOF to deliver once _outgoing is empty
        self._eof_delivered = False
        self._closing = False
        self._lost = False

    # -------------------------------------------------------- writing

    def write(self, data: Buffer) -> None:
        if self._lost or self._closing or self._eof_pending:
            return  # like a socket transport: the aiosock Transport refuses first
        self._outgoing.append(bytes(data))
        self._buffered += len(data)
        self._schedule_flush()
        if not self._writing_paused and self._buffered > self._high:
            self._writing_paused = True
            self._protocol().pause_writing()

    def writelines(self, list_of_data: Iterable[Buffer]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self._eof_pending = not self._eof_delivered
        self._schedule_flush()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None
    ) -> None:
        self._high = 64 * 1024 if high is None else high
        self._low = self._high // 4 if low is None else low

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        peer = self.peer
        if self._lost or peer is None:
            return
        while self._outgoing and peer._reading and not peer._lost:
            chunk = self._outgoing.popleft()
            self._buffered -= len(chunk)
            peer._protocol().data_received(chunk)
        if self._writing_paused and self._buffered <= self._low:
            self._writing_paused = False
            self._protocol().resume_writing()
        if peer._lost:
            # Bytes for a peer that is gone break the connection (EPIPE); a
            # bare EOF or a close just ends it, as a FIN to a dead peer does.
            if self._buffered:
                self._lose(BrokenPipeError("the peer is gone"))
            elif self._closing:
                self._lose(None)
            self._eof_pending = False
            return
        if self._outgoing:
            return  # the peer is not reading: resume_reading() flushes again
        if self._eof_pending:
            self._eof_pending = False
            self._eof_delivered = True
            peer._deliver_eof()
        if self._closing:
            self._lose(None)

    # -------------------------------------------------------- reading

    def _deliver_eof(self) -> None:
        if self._lost:
            return
        if not self._protocol().eof_received():
            self.close()

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        if self.peer is not None:
            self.peer._schedule_flush()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # ------------------------------------------------------- closing

    def close(self) -> None:
        """Flush, then the peer sees EOF, then this end is lost."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._eof_pending = not self._eof_delivered
        self._reading = False
        self._schedule_flush()

    def abort(self) -> None:
        """Drop the buffer: the peer sees a reset."""
        if self._lost:
            return
        self._outgoing.clear()
        self._buffered = 0
        self._lose(None)
        if self.peer is not None and not self.peer._lost:
            self.peer._lose(ConnectionResetError("the peer aborted"))

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._loop.call_soon(self._protocol().connection_lost, exc)
        if self.peer is not None:  # what the peer wrote to us can wait no more
            self.peer._schedule_flush()

    def _protocol(self) -> StreamAdapter[Any]:
        assert self.adapter is not None
        return self.adapter

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket, no addresses


def memory_pair(
    a: Protocol[T],
    b: Protocol[T],
    *,
    codec: Codec[T] | None = None,
    limits: Limits | None = None,
) -> tuple[Transport[T], Transport[T]]:
    """Connect protocols ``a`` and ``b`` in memory; return their transports.

    Both get ``connection_made`` before this returns. Must be called with
    a running loop.
    """
    loop = asyncio.get_running_loop()
    limits = limits or Limits()
    codec = codec_or_raw(codec, limits.max_frame_size)
    ends = (_MemoryTransport(loop), _MemoryTransport(loop))
    ends[0].peer, ends[1].peer = ends[1], ends[0]
    transports = []
    for end, protocol in zip(ends, (a, b), strict=True):
        end.adapter = StreamAdapter(protocol, codec, limits)
    for end in ends:
        end._protocol().connection_made(end)
        transports.append(end._protocol().transport)
    return transports[0], transports[1]


@asynccontextmanager
async def memory_connection_pair(
    codec: Codec[T] | None = None, *, limits: Limits | None = None
) -> AsyncIterator[tuple[Connection[T], Connection[T]]]:
    """Two connected :class:`Connection` objects in memory; closed on exit.

    Its signature fits the stream conformance suite's pair maker.
    """
    limits = limits or Limits()
    a: Connection[T] = Connection(limits)
    b: Connection[T] = Connection(limits)
    memory_pair(protocol_of(a), protocol_of(b), codec=codec, limits=limits)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()
