"""The callback API: :class:`Protocol` and :class:`Transport`, over one adapter.

asyncio calls the adapter (:class:`StreamAdapter`) with raw bytes; the
adapter feeds the connection's decoder and calls the user's
:class:`Protocol` once per message. The user sends through
:class:`Transport`, which encodes with the same codec. This is aiosock's
fast path; the async :class:`~aiosock.aio.connection.Connection` is built
on it.

Contract of the callbacks, in order: ``connection_made`` once; then any
number of ``message_received``; then at most one of ``eof_received`` (the
peer will send no more; return True to keep sending, anything else closes
the connection) and ``framing_error`` (the peer broke the framing, after
the messages before the fault; no more arrive; return True to keep
sending, say an error reply, then close; anything else closes the
connection); ``shutdown_requested`` at most once, when the server that
accepted the connection begins to close; then ``connection_lost`` once,
with None for a clean close, the :class:`RemoteProtocolError` when the
peer broke the framing, a :class:`BrokenResourceError` (its ``__cause__``
the ``OSError``) when the network broke it, a :class:`DeadlineExceeded`
when a deadline of :class:`Limits` aborted it, or the exception a
callback raised (which the loop's exception handler is given too).

Deadlines (``limits.idle_timeout``, ``frame_timeout``, ``send_timeout``)
are kept here, below both APIs, and abort the connection: a graceful
close would wait for a peer that may never read.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any, Generic, cast

from aiosock.aio.loops import is_uvloop
from aiosock.core.addresses import Address, from_sockaddr
from aiosock.core.codecs import Buffer, Codec, Raw, T
from aiosock.core.errors import (
    ClosedResourceError,
    DeadlineExceeded,
    RemoteProtocolError,
    translate_os_error,
)
from aiosock.core.limits import Limits

__all__ = [
    "BufferedStreamAdapter",
    "Protocol",
    "StreamAdapter",
    "Transport",
]


class Protocol(Generic[T]):
    """Callbacks for one stream connection: subclass and override what you use.

    ``T`` is the message type of the connection's codec (``bytes`` for
    the built-in ones). See the module docstring for the order and
    meaning of the callbacks. Every method may be left as it is: they do
    nothing.
    """

    def connection_made(self, transport: Transport[T]) -> None:
        """The connection is open; ``transport`` sends on it."""

    def message_received(self, message: T) -> None:
        """One whole message, as the codec framed it (it may be empty)."""

    def eof_received(self) -> bool | None:
        """The peer sent EOF. Return True to keep the write side open."""
        return None

    def framing_error(self, exc: RemoteProtocolError) -> bool | None:
        """The peer broke the framing: ``exc`` says how; no more messages come.

        Reading stops. Return True to keep the connection open for sending
        (an error reply, as a Redis server sends ``-ERR Protocol error``)
        and close it yourself; anything else closes it at once.
        ``connection_lost`` gets ``exc`` either way.
        """
        return None

    def shutdown_requested(self) -> bool | None:
        """The server is closing: finish, then close; no more messages come.

        The socket is no longer read (a message partly read is dropped),
        and ``transport.shutting_down`` is True from now on. Return True to
        keep the connection open while you finish (a last reply), then
        close the transport yourself; anything else closes it now, after
        the bytes already sent. What is still open when the server's grace
        period ends is aborted.
        """
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is closed; ``exc`` says why (None: cleanly)."""

    def pause_writing(self) -> None:
        """The write buffer went above high water: stop sending for now."""

    def resume_writing(self) -> None:
        """The write buffer drained to low water: sending is welcome again."""


class Transport(Generic[T]):
    """Sends messages on one connection, through its codec.

    ``send`` never blocks: what the socket cannot take at once is buffered,
    and :meth:`Protocol.pause_writing` says when the buffer passes high
    water. Sending after :meth:`close`, :meth:`abort` or :meth:`send_eof`
    raises :class:`ClosedResourceError`; after the network broke the
    connection, the :class:`BrokenResourceError` it broke with.

    The transport owns the batching of writes: between :meth:`batch` and
    :meth:`flush` (or the end of the loop turn) sends are held and leave
    in one system call. ``messages_out`` and ``bytes_out`` count what was
    sent (encoded bytes, handed to the transport).
    """

    __slots__ = (
        "_batch",
        "_batch_limit",
        "_batch_size",
        "_closed_locally",
        "_encode",
        "_eof_sent",
        "_error",
        "_gone",
        "_local",
        "_loop",
        "_on_close",
        "_peer",
        "_reading_paused",
        "_transport",
        "_write",
        "_writelines",
        "batching",
        "bytes_out",
        "messages_out",
        "shutting_down",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        codec: Codec[T],
        on_close: Callable[[bool], None],
    ):
        self._transport = transport
        self._on_close = on_close  # the adapter delivers nothing after close
        self._encode = codec.encode
        self._write = transport.write
        self._writelines = transport.writelines
        # Set once the connection can no longer send; raised by send().
        self._error: Exception | None = None
        self._eof_sent = False
        self._closed_locally = False
        self._reading_paused = False  # by pause_reading(), not by asyncio
        self._gone = False  # connection_lost has run
        # Sends held back to leave in one write: see batch().
        self._batch: list[Buffer] | None = None
        #: True between :meth:`batch` and :meth:`flush`; read it, do not set
        #: it (an attribute, not a property: it is read on every send).
        self.batching = False
        self._batch_size = 0
        self._batch_limit = transport.get_write_buffer_limits()[1]
        # Counted per send, here, rather than per system call (which
        # asyncio makes): an increment is the cheapest place to count, and
        # the idle deadline reads the same counters.
        self.messages_out = 0
        self.bytes_out = 0
        #: True once the server that accepted this connection began to
        #: close (:meth:`Protocol.shutdown_requested` was called).
        self.shutting_down = False
        self._loop = asyncio.get_running_loop()
        self._local = self._address("sockname")
        self._peer = self._address("peername")

    def send(self, message: T) -> None:
        """Encode ``message`` and write it (a gather write for large frames).

        Raises the codec's :class:`LocalProtocolError` for a message it
        cannot frame (nothing is written).
        """
        if self._error is not None:
            raise self._error
        data = self._encode(message)
        self.messages_out += 1
        held = self._batch
        if held is None:
            if isinstance(data, bytes):
                self.bytes_out += len(data)
                self._write(data)
            else:
                self.bytes_out += sum(map(len, data))
                self._writelines(data)
            return
        if isinstance(data, bytes):
            size = len(data)
            held.append(data)
        else:
            size = sum(map(len, data))
            held += data
        self.bytes_out += size
        self._batch_size += size
        if self._batch_size > self._batch_limit:
            self.flush()  # let the transport's flow control see it

    def write(self, data: Buffer) -> None:
        """Write bytes that are already framed, as they are: no codec.

        For a protocol whose encoding is the connection's state rather than
        the codec's (a Redis server answers in RESP2 or, after ``HELLO 3``,
        RESP3): it encodes its replies and writes them here, batched and
        counted (as one message) like :meth:`send`, and raises like it.
        """
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            data = bytes(data)  # the caller may change its buffer after
        size = len(data)
        self.messages_out += 1
        self.bytes_out += size
        held = self._batch
        if held is None:
            self._write(data)
            return
        held.append(data)
        self._batch_size += size
        if self._batch_size > self._batch_limit:
            self.flush()

    @property
    def send_error(self) -> Exception | None:
        """What :meth:`send` would raise now; None while it can send."""
        return self._error

    def batch(self) -> None:
        """Hold sends back until :meth:`flush`, or the end of this loop turn.

        Replies to messages that arrived together then leave in one system
        call instead of one each; the loop turn bounds the delay for a
        caller that never flushes. Sends still raise at once; past the
        write buffer's high water, what is held is written. Idempotent.
        """
        if self._batch is None:
            self._batch = []
            self.batching = True
            self._batch_size = 0
            self._loop.call_soon(self.flush)

    def _hold(self) -> None:
        # batch() for a caller that flushes before it returns (the adapter,
        # around the messages of one read): no end-of-turn flush to
        # schedule, which would be a loop callback per read for nothing.
        if self._batch is None:
            self._batch = []
            self.batching = True
            self._batch_size = 0

    def flush(self) -> None:
        """Write what :meth:`batch` held back, in one call; end the batch."""
        held = self._batch
        self._batch = None
        self.batching = False
        if not held or self._transport.is_closing():
            return
        if len(held) == 1:
            self._write(held[0])
        else:
            self._writelines(held)

    def send_eof(self) -> None:
        """Half-close: the peer reads what was sent, then EOF; receiving goes on.

        Idempotent; raises like :meth:`send` once the connection is closed.
        """
        if self._eof_sent:
            return
        if self._error is not None:
            raise self._error
        self._eof_sent = True
        self._error = ClosedResourceError("cannot send after send_eof()")
        self.flush()
        if self._transport.can_write_eof():
            self._transport.write_eof()

    def close(self) -> None:
        """Close after the buffered bytes are sent; idempotent.

        Waits at most ``limits.close_timeout`` for the peer to take them,
        then aborts.
        """
        self.flush()
        self._closed_here(aborted=False)
        self._transport.close()

    def abort(self) -> None:
        """Close now, dropping whatever is buffered; idempotent."""
        self._batch = None
        self.batching = False
        self._closed_here(aborted=True)
        self._transport.abort()

    def _closed_here(self, *, aborted: bool) -> None:
        self._closed_locally = True
        self._error = ClosedResourceError("the connection was closed")
        self._on_close(aborted)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        """Stop reading the socket; messages already decoded still arrive.

        No deadline runs out while reading is paused here: the wait is
        this side's, not the peer's.
        """
        self._reading_paused = True
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by :meth:`send` and not yet handed to the kernel."""
        held = self._batch_size if self._batch else 0
        return self._transport.get_write_buffer_size() + held

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high) water marks of the write buffer, in bytes."""
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None
    ) -> None:
        self._transport.set_write_buffer_limits(high, low)

    @property
    def local_address(self) -> Address | None:
        """This end's address; None for an unnamed Unix socket."""
        return self._local

    @property
    def peer_address(self) -> Address | None:
        """None for an unnamed Unix peer (a client that never bound)."""
        return self._peer

    def _address(self, which: str) -> Address | None:
        # Read once, while the socket is open: uvloop asks the kernel on
        # every call and fails once the socket is closed, and logs want the
        # peer's address most after it is gone.
        try:
            sock = self._transport.get_extra_info("socket")
            name = self._transport.get_extra_info(which)
            if sock is None or name is None:
                return None
            return from_sockaddr(sock.family, sock.type, name)
        except (OSError, ValueError):
            return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's extra info (``"socket"``, ``"peername"``, ...)."""
        return self._transport.get_extra_info(name, default)

    def _lost(self, exc: Exception | None) -> None:
        # Closed here first: using it is the caller's mistake, whatever came after.
        self._gone = True
        if not self._closed_locally:
            self._error = exc or ClosedResourceError("the connection was closed")

    @property
    def state(self) -> str:
        """``"open"``, ``"closing"`` (closed, bytes still leaving) or ``"closed"``."""
        if self._gone:
            return "closed"
        return "closing" if self._transport.is_closing() else "open"

    def __repr__(self) -> str:
        return describe(self, self._local, self._peer, self.state)


class StreamAdapter(asyncio.Protocol, Generic[T]):
    """asyncio's side of a connection: bytes in, messages out to a Protocol.

    Internal: applications meet :class:`Protocol` and :class:`Transport`.
    This plain ``asyncio.Protocol`` is the adapter on uvloop, which reads
    into one buffer of its own and hands over bytes of the right size;
    :class:`BufferedStreamAdapter` is the one on asyncio's loop (see
    :func:`adapter_for` for why). It keeps the connection's deadlines and
    counts what arrives (``messages_in``, ``bytes_in``, per read).
    """

    __slots__ = (
        "_closing",
        "_codec",
        "_decoder",
        "_deliver",
        "_failure",
        "_feed",
        "_frame_started",
        "_frame_timeout",
        "_idle_mark",
        "_limits",
        "_loop",
        "_protocol",
        "_raw",
        "_send_mark",
        "_stopping",
        "_timers",
        "_transport",
        "bytes_in",
        "messages_in",
        "on_lost",
    )

    _transport_class: type[Transport[Any]] = Transport

    def __init__(self, protocol: Protocol[T], codec: Codec[T], limits: Limits) -> None:
        self._protocol = protocol
        self._codec = codec
        self._limits = limits
        self._loop: asyncio.AbstractEventLoop  # known once connected
        self._decoder = codec.decoder()
        self._feed = self._decoder.feed
        self._deliver = protocol.message_received
        self._transport: Transport[T] | None = None
        self._raw: asyncio.Transport | None = None
        self._failure: Exception | None = None
        self._closing = False
        self._stopping = False  # shutdown() came before connection_made()
        self.messages_in = 0
        self.bytes_in = 0
        # The deadline timers that are armed, by deadline.
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._idle_mark: tuple[int, int, int] = (0, 0, 0)
        self._frame_timeout = limits.frame_timeout
        self._frame_started: float | None = None  # when the partial frame began
        self._send_mark = 0
        # Told when the connection is gone: a server's bookkeeping.
        self.on_lost: Callable[[StreamAdapter[Any]], None] | None = None

    @property
    def transport(self) -> Transport[T]:
        assert self._transport is not None, "not connected yet"
        return self._transport

    @property
    def failure(self) -> Exception | None:
        """Why the connection ended on this side: a framing fault or a deadline."""
        return self._failure

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self._raw = raw = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        limits = self._limits
        raw.set_write_buffer_limits(limits.write_high_water, limits.write_low_water)
        sock = raw.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._transport = self._transport_class(
            raw, self._codec, self._closed_by_protocol
        )
        if limits.idle_timeout is not None:
            self._arm("idle", limits.idle_timeout, self._check_idle)
        self._protocol.connection_made(self._transport)
        if self._stopping and not self._closing:
            self._stopping = False
            self.shutdown()

    def _received(self, data: Buffer) -> None:
        self.bytes_in += len(data)
        try:
            messages = self._feed(data)
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        count = len(messages)
        self.messages_in += count
        if self._frame_timeout is not None and (
            self._frame_started is not None or self._decoder.buffered
        ):
            self._watch_frame(count)
        if count == 1:
            self._deliver(messages[0])
            return
        if not count:  # a partial frame: nothing to do, nothing scheduled
            return
        deliver = self._deliver
        transport = self.transport
        transport._hold()  # one write for the replies to the whole batch
        try:
            for message in messages:
                if self._closing:  # the protocol closed the connection mid-batch
                    return
                deliver(message)
        finally:
            transport.flush()

    def _closed_by_protocol(self, aborted: bool) -> None:
        # The protocol closed or aborted its transport: like asyncio, the
        # adapter delivers nothing more to it. A close is bounded: asyncio's
        # would wait for ever on a peer that does not read.
        self._closing = True
        raw = self._raw
        if not aborted and raw is not None and not raw.is_closing():
            self._arm("close", self._limits.close_timeout, raw.abort)

    data_received = _received

    def eof_received(self) -> bool | None:
        if self._failure is not None:  # the framing broke before: reported
            return True
        self._frame_started = None  # no more bytes: the decoder decides below
        try:
            self._decoder.eof()
        except RemoteProtocolError as exc:
            self._fail(exc)
            return True  # _fail closed it, or the protocol keeps it open
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self._closing = True
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._failure is not None:
            error: Exception | None = self._failure
        elif isinstance(exc, OSError):
            error = translate_os_error(exc)
            error.__cause__ = exc
        else:
            error = exc
        if self._transport is not None:
            self._transport._lost(error)
        try:
            self._protocol.connection_lost(error)
        finally:
            if self.on_lost is not None:
                self.on_lost(self)

    def pause_writing(self) -> None:
        timeout = self._limits.send_timeout
        if timeout is not None and self._raw is not None and "send" not in self._timers:
            self._send_mark = self._raw.get_write_buffer_size()
            self._arm("send", timeout, self._check_send)
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        timer = self._timers.pop("send", None)
        if timer is not None:
            timer.cancel()
        self._protocol.resume_writing()

    def abort(self) -> None:
        """Abort the connection if it was ever made; idempotent."""
        if self._transport is not None:
            self._transport.abort()

    def shutdown(self) -> None:
        """The server is closing: stop reading, tell the protocol. Idempotent.

        Before the connection is made, it is done as soon as it is.
        """
        transport = self._transport
        if transport is None:
            self._stopping = True
            return
        if transport.shutting_down or self._closing:
            return
        transport.shutting_down = True
        self._frame_started = None  # what is left of a frame will not come
        assert self._raw is not None
        self._raw.pause_reading()
        if not self._protocol.shutdown_requested() and not self._closing:
            transport.close()

    def _fail(self, exc: RemoteProtocolError) -> None:
        """The peer broke the framing: close after what was valid.

        The protocol may keep the connection open to send (see
        :meth:`Protocol.framing_error`); reading stops either way, since
        the decoder takes no more.
        """
        self._failure = exc
        self._frame_started = None
        messages, exc.messages = exc.messages, []  # delivered, not kept twice
        self.messages_in += len(messages)
        for message in messages:
            self._deliver(message)
        if self._protocol.framing_error(exc) and not self._closing:
            assert self._raw is not None  # a fault needs bytes read
            self._raw.pause_reading()
            self._feed = _refuse  # what was read past the fault is dropped
            return
        self._closing = True
        if self._raw is not None:
            self._raw.close()

    # ------------------------------------------------------------ deadlines
    #
    # One timer per deadline at most, armed rarely: the idle timer checks
    # counters that reads and sends keep anyway, the frame timer is armed
    # when a frame is left partial and re-armed only if a newer one began,
    # and the send timer runs only while the write buffer is above high
    # water. A deadline that runs out aborts: see _expire().

    def _arm(self, deadline: str, delay: float, check: Callable[[], None]) -> None:
        self._timers[deadline] = self._loop.call_later(delay, check)

    def _paused_here(self) -> bool:
        # Reading paused by the protocol: our side is behind (a reader over
        # read_high_water), not the peer; no deadline runs on that.
        return self._transport is not None and self._transport._reading_paused

    def _expire(self, deadline: str, seconds: float, why: str) -> None:
        """Abort: a graceful close would wait on the peer that let it run out."""
        self._failure = DeadlineExceeded(deadline, seconds, why)
        self._closing = True
        assert self._raw is not None
        self._raw.abort()

    def _check_idle(self) -> None:
        timeout = self._limits.idle_timeout
        assert timeout is not None
        assert self._raw is not None
        if self._closing:  # closing is bounded by close_timeout instead
            return
        transport = self.transport
        # Anything read, sent or drained since the last look is traffic.
        mark = (
            self.bytes_in,
            transport.messages_out,
            self._raw.get_write_buffer_size(),
        )
        if mark != self._idle_mark or self._paused_here():
            self._idle_mark = mark
            self._arm("idle", timeout, self._check_idle)
            return
        # Between idle_timeout and twice that of silence, both ways.
        self._expire("idle", timeout, "no bytes either way")

    def _watch_frame(self, completed: int) -> None:
        """After a read: start the frame clock if a new frame was left partial."""
        if not self._decoder.buffered:
            self._frame_started = None  # the timer, if armed, finds nothing
            return
        if completed or self._frame_started is None:  # a frame began here
            self._frame_started = self._loop.time()
            if "frame" not in self._timers:
                timeout = self._frame_timeout
                assert timeout is not None
                self._arm("frame", timeout, self._check_frame)

    def _check_frame(self) -> None:
        del self._timers["frame"]
        started, timeout = self._frame_started, self._frame_timeout
        if started is None or timeout is None or self._closing:
            return
        if self._paused_here():
            self._frame_started = started = self._loop.time()
        left = started + timeout - self._loop.time()
        if left > 0:  # a newer frame began since the timer was armed
            self._arm("frame", left, self._check_frame)
            return
        self._expire("frame", timeout, "a message begun was not completed")

    def _check_send(self) -> None:
        timeout = self._limits.send_timeout
        assert timeout is not None
        assert self._raw is not None
        size = self._raw.get_write_buffer_size()
        if size < self._send_mark:  # the peer took some: it has another T
            self._send_mark = size
            self._arm("send", timeout, self._check_send)
            return
        del self._timers["send"]
        self._expire("send", timeout, "the peer took none of the bytes waiting")


class BufferedStreamAdapter(StreamAdapter[T], asyncio.BufferedProtocol):
    """The adapter on asyncio's own loop: reads into a buffer shared per thread.

    asyncio reads for a plain Protocol into a new 256 KiB ``bytes``, and
    glibc serves an allocation that large with ``mmap``/``munmap`` until
    its dynamic threshold has been raised: in a fresh process every read
    then costs two system calls and page faults (``python -m
    benchmarks.micro``). ``recv_into`` a reused buffer avoids it. The
    buffer is shared by every connection of the thread, not one each
    (``limits.read_size`` per connection would be gigabytes at 10,000
    connections): asyncio calls ``get_buffer``, reads and calls
    ``buffer_updated`` in one go, and the decoders copy what they keep.
    """

    __slots__ = ("_view",)

    def __init__(self, protocol: Protocol[T], codec: Codec[T], limits: Limits) -> None:
        super().__init__(protocol, codec, limits)
        self._view = _read_buffer(limits.read_size)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._received(self._view[:nbytes])


class _PassThroughTransport(Transport[bytes]):
    """Transport for :class:`Raw`: a bytes message is written as it is."""

    __slots__ = ()

    def send(self, message: bytes) -> None:
        if self._error is None and self._batch is None and type(message) is bytes:
            self.messages_out += 1
            self.bytes_out += len(message)
            self._write(message)
        else:
            Transport.send(self, message)


class PassThroughAdapter(StreamAdapter[bytes]):
    """The adapter for :class:`Raw` where it never splits: each read is a message.

    uvloop reads at most ``LOOP_READ_MAX`` bytes at a time, so a ``Raw``
    codec allowing that much would hand every chunk over unchanged; this
    adapter does so without calling the decoder.
    """

    __slots__ = ()
    _transport_class = _PassThroughTransport

    def data_received(self, data: Buffer) -> None:
        self.messages_in += 1
        self.bytes_in += len(data)
        self._deliver(cast(bytes, data))  # a loop hands a plain Protocol bytes


class BufferedPassThroughAdapter(BufferedStreamAdapter[bytes]):
    """:class:`PassThroughAdapter` on asyncio's loop: one read, one message."""

    __slots__ = ()
    _transport_class = _PassThroughTransport

    def buffer_updated(self, nbytes: int) -> None:
        self.messages_in += 1
        self.bytes_in += nbytes
        self._deliver(self._view[:nbytes].tobytes())


def describe(
    thing: object, local: Address | None, peer: Address | None, state: str
) -> str:
    """``<Kind local -> peer state>``, as logs print connections."""
    return (
        f"<{type(thing).__name__} {local or 'unnamed'} -> {peer or 'unnamed'} {state}>"
    )


def _refuse(data: Buffer) -> list[Any]:
    """The decoder of a stream whose framing broke: it takes nothing more."""
    return []


# What uvloop reads per call, at most.
LOOP_READ_MAX = 256 * 1024

_buffers = threading.local()


def _read_buffer(size: int) -> memoryview:
    """The read buffer of ``size`` bytes for this thread's loop."""
    try:
        cache: dict[int, memoryview] = _buffers.by_size
    except AttributeError:
        cache = _buffers.by_size = {}
    view = cache.get(size)
    if view is None:
        view = cache[size] = memoryview(bytearray(size))
    return view


def adapter_for(
    codec: Codec[T], limits: Limits, loop: asyncio.AbstractEventLoop
) -> type[StreamAdapter[T]]:
    """The adapter class for ``codec`` on ``loop``.

    A ``BufferedProtocol`` on asyncio's loop, where reading into one
    reused buffer saves allocating a fresh 256 KiB ``bytes`` per read (the
    README's ``python -m benchmarks.micro`` table shows what that is
    worth). A plain ``Protocol`` on uvloop, which reads into a buffer of
    its own and never asks an adapter that is also an ``asyncio.Protocol``
    for one: there the plain adapter is a call less per read. The
    pass-through variants serve a ``Raw`` codec whose ``max_size`` is at
    least what one read can return.
    """
    if is_uvloop(loop):
        if isinstance(codec, Raw) and codec.max_size >= LOOP_READ_MAX:
            return cast("type[StreamAdapter[T]]", PassThroughAdapter)
        return StreamAdapter
    if isinstance(codec, Raw) and codec.max_size >= limits.read_size:
        return cast("type[StreamAdapter[T]]", BufferedPassThroughAdapter)
    return BufferedStreamAdapter
