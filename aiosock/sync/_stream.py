"""The blocking stream :class:`Connection`: whole messages over a plain socket."""

from __future__ import annotations

import collections
import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Generic

from aiosock.core.addresses import (
    Address,
    FdAddress,
    TCPAddress,
    UDPAddress,
    UnixAddress,
    UnixDatagramAddress,
    from_sockaddr,
    parse_address,
)
from aiosock.core.codecs import Buffer, Codec, T, codec_or_raw
from aiosock.core.errors import (
    BrokenResourceError,
    ClosedResourceError,
    EndOfStream,
    RemoteProtocolError,
    naming,
    translate_os_error,
)
from aiosock.core.limits import DEFAULT_MAX_FRAME_SIZE, Limits

__all__ = ["Connection", "check_timeout", "connect"]


def connect(
    address: str | Address,
    *,
    codec: Codec[T] | None = None,
    limits: Limits | None = None,
    timeout: float | None = None,
) -> Connection[T]:
    """Connect to ``address`` and wrap the socket in a :class:`Connection`.

    ``address``: ``tcp://HOST:PORT`` (each address a name resolves to is
    tried in turn), ``unix:///path``, ``unix:@name``, or ``fd://N`` to adopt
    descriptor N, a connected stream socket that the connection then owns.
    ``timeout`` (seconds; None waits for ever) bounds the whole connect,
    name resolution apart, then becomes the socket's timeout. ``codec``
    None means :class:`Raw` (a ``Connection[bytes]``), ``limits`` None
    means ``Limits()``.

    Raises :class:`ValueError` for a datagram address, a TCP address with
    no host or port 0 (only a server can use those), a timeout that is not
    positive, or a descriptor that is not a stream socket (it is left open).
    Failures to connect stay :class:`OSError`, as in :mod:`socket`:
    ``ConnectionRefusedError``, ``FileNotFoundError``, :class:`TimeoutError`.
    """
    if not isinstance(address, Address):
        address = parse_address(address)
    if isinstance(address, UDPAddress | UnixDatagramAddress):
        raise ValueError(f"{address} is a datagram address; use a datagram endpoint")
    check_timeout(timeout)
    try:
        sock = _open(address, timeout)
    except OSError as exc:
        raise naming(exc, address) from None
    try:
        return Connection(sock, codec=codec, limits=limits)
    except BaseException:
        # An adopted descriptor stays the caller's until adoption succeeds.
        if isinstance(address, FdAddress):
            sock.detach()
        else:
            sock.close()
        raise


def _open(
    address: TCPAddress | UnixAddress | FdAddress, timeout: float | None
) -> socket.socket:
    if isinstance(address, TCPAddress):
        return _open_tcp(address, timeout)
    if isinstance(address, UnixAddress):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = "\0" + address.path if address.abstract else address.path
        _connect_or_close(sock, path, timeout)
        return sock
    sock = socket.socket(fileno=address.fd)
    sock.settimeout(timeout)
    return sock


def _open_tcp(address: TCPAddress, timeout: float | None) -> socket.socket:
    if not address.host or not address.port:
        what = "port 0" if address.host else "no host"
        raise ValueError(
            f"{address} has {what}, which only a server can use; "
            "a client must name the host and the port to connect to"
        )
    # Like socket.create_connection (each resolved address in turn, the
    # last error raised), but under one deadline, so that ``timeout`` bounds
    # the whole connect rather than each attempt.
    deadline = None if timeout is None else time.monotonic() + timeout
    error: OSError = OSError(f"{address.host!r} resolved to no address")
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    for family, kind, proto, _, sockaddr in infos:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise TimeoutError(f"connecting to {address} timed out")
        sock = socket.socket(family, kind, proto)
        try:
            _connect_or_close(sock, sockaddr, wait)
        except OSError as exc:
            error = exc
            continue
        sock.settimeout(timeout)
        return sock
    raise error


def _connect_or_close(
    sock: socket.socket, to: str | tuple[object, ...], timeout: float | None
) -> None:
    try:
        sock.settimeout(timeout)
        sock.connect(to)
    except BaseException:
        sock.close()
        raise


class Connection(Generic[T]):
    """A connected stream socket that sends and receives whole messages.

    ``T`` is the message type of its codec, as for the async ``Connection``.

    To wrap a socket you made, it must be a connected ``SOCK_STREAM`` socket
    in blocking mode (timeout None or positive). TCP gets ``TCP_NODELAY``.
    Of ``limits`` only ``read_size`` applies: the codec carries its own
    frame limit, and the socket's timeout bounds time.

    **Timeouts.** The socket's timeout bounds each wait for the peer, not a
    whole call: a peer that trickles bytes keeps a receive going. A
    :class:`TimeoutError` from :meth:`receive` loses nothing (bytes read
    stay in the decoder) and the connection stays usable; one from
    :meth:`send` or :meth:`send_eof` may leave a message half sent, so the
    connection is broken afterwards.

    **Errors.** An ``OSError`` from the socket is raised as
    :class:`BrokenResourceError` chained from it, and breaks the
    connection: every later call raises :class:`BrokenResourceError`
    chained from that first cause. After :meth:`close`, every call raises
    :class:`ClosedResourceError`.

    One thread may send while another receives; two must not both send, or
    both receive, at once.
    """

    __slots__ = (
        "_broken",
        "_codec",
        "_decoder",
        "_ended",
        "_eof_sent",
        "_local",
        "_messages",
        "_peer",
        "_read_size",
        "_receive_fault",
        "socket",
    )

    def __init__(
        self,
        sock: socket.socket,
        *,
        codec: Codec[T] | None = None,
        limits: Limits | None = None,
    ) -> None:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"a Connection needs a stream socket, not {sock.type!r}")
        if sock.gettimeout() == 0:
            raise ValueError("a Connection needs a blocking socket, not timeout 0")
        #: The wrapped socket, for setsockopt() and the like.
        self.socket = sock
        self._codec = codec_or_raw(codec, DEFAULT_MAX_FRAME_SIZE)
        self._decoder = self._codec.decoder()
        self._read_size = (Limits() if limits is None else limits).read_size
        # One recv() often completes several messages; receive() returns one.
        self._messages: collections.deque[T] = collections.deque()
        self._ended = False  # the peer ended the stream cleanly
        self._eof_sent = False
        # A framing fault, raised once the messages before it are returned.
        self._receive_fault: RemoteProtocolError | None = None
        # What broke the whole connection: an OSError or a send timeout.
        self._broken: OSError | None = None
        # A connected socket's addresses never change: read them once, so
        # that they stay available after close, for logs.
        self._local = from_sockaddr(sock.family, sock.type, sock.getsockname())
        self._peer = from_sockaddr(sock.family, sock.type, sock.getpeername())
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # send() writes whole messages, so Nagle's algorithm would only
            # hold a small one back until the previous one is acknowledged:
            # the delayed-ACK stall of request/response protocols.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def local_address(self) -> Address | None:
        """This end's address; None for an unnamed Unix client."""
        return self._local

    @property
    def peer_address(self) -> Address | None:
        """The peer's address; None for an unnamed Unix peer."""
        return self._peer

    def send(self, message: T) -> None:
        """Encode ``message`` with the codec and send all of it.

        Raises the codec's :class:`LocalProtocolError`, with nothing sent,
        for a message it cannot frame; :class:`ClosedResourceError` after
        :meth:`close` or :meth:`send_eof`.
        """
        self._check_open()
        if self._eof_sent:
            raise ClosedResourceError("cannot send after send_eof()")
        self._check_unbroken()
        encoded = self._codec.encode(message)
        buffers: list[Buffer] = [encoded] if isinstance(encoded, bytes) else encoded
        with self._os_errors(timeout_breaks=True):
            self._send_all(buffers)

    def _send_all(self, buffers: list[Buffer]) -> None:
        # sendmsg() writes every buffer in one system call without joining
        # them, so a large payload is never copied. It may take only part
        # (with a timeout set, it often does): go on from where it stopped.
        views = [memoryview(buffer).cast("B") for buffer in buffers]
        try:
            while views:
                sent = self.socket.sendmsg(views)
                while views and sent >= len(views[0]):
                    sent -= len(views.pop(0))
                if sent:
                    views[0] = views[0][sent:]
        finally:
            # A raised error's traceback keeps this frame alive, and a live
            # view would stop the caller from resizing a bytearray it sent.
            for view in views:
                view.release()

    def send_eof(self) -> None:
        """Shut down sending: the peer reads EOF and may still answer; idempotent."""
        self._check_open()
        if self._eof_sent:
            return
        self._check_unbroken()
        with self._os_errors(timeout_breaks=True):
            self.socket.shutdown(socket.SHUT_WR)
        self._eof_sent = True

    def receive(self) -> T:
        """Return the next message, waiting for the peer as long as it takes.

        At a clean end of the stream, raises :class:`EndOfStream`, on this
        and every later call. A stream that ends inside a frame raises
        :class:`IncompleteFrame`. When the peer breaks the framing (e.g.
        :class:`FrameTooLarge`), the messages decoded before the fault are
        returned first, one per call, then the error is raised, its
        ``messages`` empty since they were returned. Every later receive
        raises the same error again, as the async ``Connection`` does: the
        peer stays the one at fault. Sending still works, e.g. to tell the
        peer what went wrong.
        """
        self._check_open()
        messages = self._messages
        while not messages:
            self._check_receivable()
            self._read()
        return messages.popleft()

    def _check_receivable(self) -> None:
        if self._ended:
            raise EndOfStream("the peer ended the stream")
        fault = self._receive_fault
        if fault is not None:
            # A fresh traceback each time, or it would grow with every call.
            raise fault.with_traceback(None)
        self._check_unbroken()

    def _read(self) -> None:
        with self._os_errors(timeout_breaks=False):
            data = self.socket.recv(self._read_size)
        try:
            if data:
                self._messages.extend(self._decoder.feed(data))
            else:
                self._decoder.eof()
                self._ended = True
        except RemoteProtocolError as exc:
            # Nothing valid is lost: receive() returns these before the error.
            self._messages.extend(exc.messages)
            exc.messages = []
            self._receive_fault = exc

    def __iter__(self) -> Iterator[T]:
        """Every message until the peer ends the stream; errors propagate."""
        while True:
            try:
                message = self.receive()
            except EndOfStream:
                return
            yield message

    def close(self) -> None:
        """Close the socket, dropping undelivered messages; idempotent.

        The address properties keep their values.
        """
        self.socket.close()
        self._messages.clear()

    def __enter__(self) -> Connection[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        # A closed or detached socket reports fileno -1.
        if self.socket.fileno() < 0:
            raise ClosedResourceError("the connection is closed")

    def _check_unbroken(self) -> None:
        if self._broken is not None:
            raise BrokenResourceError(
                f"the connection broke earlier: {self._broken}"
            ) from self._broken

    @contextlib.contextmanager
    def _os_errors(self, *, timeout_breaks: bool) -> Iterator[None]:
        """Translate an ``OSError`` from the open socket: the one place."""
        try:
            yield
        except OSError as exc:
            # The socket's own timeout has no errno: the peer was slow, and
            # only a send leaves the stream in an unknown state. A kernel
            # ETIMEDOUT (unanswered retransmissions or keepalives) is a
            # TimeoutError too, but it did break the connection.
            if isinstance(exc, TimeoutError) and exc.errno is None:
                if timeout_breaks:
                    self._broken = exc
                raise
            self._broken = exc
            raise translate_os_error(exc) from exc


def check_timeout(timeout: float | None) -> None:
    """Refuse a timeout that is not positive or None (NaN too)."""
    if timeout is not None and not timeout > 0:  # also refuses NaN
        raise ValueError(f"timeout must be positive or None, got {timeout}")
