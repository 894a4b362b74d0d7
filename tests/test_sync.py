"""The blocking driver, over real sockets: TCP v4 and v6, Unix, fd://.

Nothing here sleeps to synchronise: a peer is either the other end of a
socketpair, a connection accepted in the test's own thread, or a handler
in a background thread that the ``peers`` fixture joins.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from aiosock.core.addresses import TCPAddress, UnixAddress, parse_address
from aiosock.core.codecs import Buffer, Codec, Delimited, LengthPrefixed, Lines, Raw
from aiosock.core.errors import (
    AiosockError,
    BrokenResourceError,
    ClosedResourceError,
    EndOfStream,
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
)
from aiosock.sync import Connection, connect

# Seconds any one blocking step may take before the test fails instead of
# hanging; generous, since the machine is shared.
TIMEOUT = 10.0
# A short timeout for tests that wait for one on purpose.
SHORT = 0.2
# Bounds every read loop: far more reads than any test needs.
MAX_READS = 100_000
BIG = 4 * 1024 * 1024

Handler = Callable[[socket.socket], None]


# ------------------------------------------------------------------ peers


class Peers:
    """Handlers run in background threads, joined when the test ends."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def run(self, handler: Handler, sock: socket.socket) -> None:
        """Run ``handler(sock)`` in a thread, then close ``sock``."""
        sock.settimeout(TIMEOUT)

        def target() -> None:
            try:
                with sock:
                    handler(sock)
            except BaseException as exc:  # reported by join()
                self._errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def accept(self, listener: socket.socket, handler: Handler) -> None:
        """Accept one connection on ``listener`` in a thread, and handle it."""

        def accept_one(listener: socket.socket) -> None:
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(TIMEOUT)
                handler(sock)

        self.run(accept_one, listener)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(TIMEOUT)
        assert not any(thread.is_alive() for thread in self._threads)
        if self._errors:
            raise self._errors[0]


@pytest.fixture
def peers() -> Iterator[Peers]:
    running = Peers()
    yield running
    running.join()


def read_to_eof(sock: socket.socket) -> bytes:
    received = bytearray()
    for _ in range(MAX_READS):
        data = sock.recv(65536)
        if not data:
            return bytes(received)
        received += data
    raise AssertionError("the stream never ended")


def echo(sock: socket.socket) -> None:
    for _ in range(MAX_READS):
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)
    raise AssertionError("the stream never ended")


def answer_after_eof(reply: Callable[[bytes], bytes]) -> Handler:
    """A handler that reads to EOF, then sends ``reply(what it read)``."""

    def handler(sock: socket.socket) -> None:
        sock.sendall(reply(read_to_eof(sock)))

    return handler


# -------------------------------------------------------------- listeners

TRANSPORTS = ["tcp4", "tcp6", "unix", "abstract", "fd"]


def listen(transport: str, tmp_path: Path) -> tuple[socket.socket, str]:
    """A listening socket, and the address string a client connects to."""
    if transport == "tcp4":
        sock = socket.create_server(("127.0.0.1", 0))
        return sock, f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    if transport == "tcp6":
        try:
            sock = socket.create_server(("::1", 0), family=socket.AF_INET6)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        return sock, f"tcp://[::1]:{sock.getsockname()[1]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if transport == "unix":
        path = str(tmp_path / "s.sock")
        sock.bind(path)
        address = f"unix://{path}"
    else:
        name = f"aiosock-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = f"unix:@{name}"
    sock.listen()
    return sock, address


def serve(transport: str, tmp_path: Path, peers: Peers, handler: Handler) -> str:
    """Start ``handler`` for one connection; return the address to connect to."""
    if transport == "fd":
        ours, theirs = socket.socketpair()
        peers.run(handler, theirs)
        return f"fd://{ours.detach()}"
    listener, address = listen(transport, tmp_path)
    peers.accept(listener, handler)
    return address


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected Unix stream sockets: the client's end and the peer."""
    ours, theirs = socket.socketpair()
    ours.settimeout(TIMEOUT)
    theirs.settimeout(TIMEOUT)
    with ours, theirs:
        yield ours, theirs


def nothing_to_read(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def wire(codec: Codec, messages: list[bytes]) -> bytes:
    out = bytearray()
    for message in messages:
        encoded = codec.encode(message)
        out += encoded if isinstance(encoded, bytes) else b"".join(encoded)
    return bytes(out)


# ------------------------------------------------------------- round trips

# One message of 3000 bytes takes the gather-write path of the framed codecs.
MESSAGES = [b"hello", b"", b"x" * 3000, b"last one"]
CODECS: list[Codec] = [
    Raw(),
    Lines(),
    LengthPrefixed(),
    Delimited(delimiter=b"\r\n\r\n"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: type(codec).__name__)
def test_round_trip(transport: str, codec: Codec, tmp_path: Path, peers: Peers) -> None:
    address = serve(transport, tmp_path, peers, echo)
    with connect(address, codec=codec, timeout=TIMEOUT) as conn:
        for message in MESSAGES:
            conn.send(message)
        if isinstance(codec, Raw):
            # Raw messages are chunks, cut wherever the stream was cut.
            expected, received = b"".join(MESSAGES), b""
            for _ in range(MAX_READS):
                if len(received) >= len(expected):
                    break
                received += conn.receive()
            assert received == expected
        else:
            assert [conn.receive() for _ in MESSAGES] == MESSAGES
        conn.send_eof()
        with pytest.raises(EndOfStream):
            conn.receive()


@pytest.mark.parametrize(
    "make", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"]
)
def test_large_message_is_written_whole(
    make: Callable[[bytes], Buffer], tmp_path: Path, peers: Peers
) -> None:
    codec = LengthPrefixed(max_size=2 * BIG)
    payload = bytes(range(256)) * (BIG // 256)
    message = make(payload)
    assert isinstance(codec.encode(message), list)  # a gather write
    address = serve("tcp4", tmp_path, peers, answer_after_eof(lambda data: data))
    # With a timeout the socket is non-blocking underneath, so 4 MiB goes out
    # in several partial sendmsg() calls that must resume where they stopped.
    with connect(address, codec=codec, timeout=TIMEOUT) as conn:
        conn.send(cast(bytes, message))  # any buffer, at run time
        conn.send_eof()
        assert conn.receive() == payload
        with pytest.raises(EndOfStream):
            conn.receive()


def test_sent_bytearray_can_be_resized_after_an_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    conn = Connection(ours, codec=LengthPrefixed(max_size=2 * BIG))
    theirs.close()
    message = bytearray(BIG)
    with pytest.raises(BrokenResourceError):
        conn.send(cast(bytes, message))  # any buffer, at run time
    message.extend(b"more")  # BufferError if a memoryview still held it


# ---------------------------------------------------------------- receiving


def test_messages_from_one_recv_come_out_one_per_receive(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    codec = LengthPrefixed(header_size=2)
    messages = [b"message %d" % n for n in range(100)]
    theirs.sendall(wire(codec, messages))
    conn = Connection(ours, codec=codec)
    assert conn.receive() == messages[0]
    assert nothing_to_read(ours)  # the first recv() took every message
    assert [conn.receive() for _ in messages[1:]] == messages[1:]
    assert nothing_to_read(ours)


def test_end_of_stream_is_repeatable(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(b"one\ntwo\n")
    theirs.close()
    conn = Connection(ours, codec=Lines())
    assert list(conn) == [b"one", b"two"]
    for _ in range(3):
        with pytest.raises(EndOfStream):
            conn.receive()
    assert list(conn) == []


def test_end_inside_a_frame_raises_incomplete_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    codec = LengthPrefixed()
    cut = struct.pack(">I", 10) + b"abc"
    theirs.sendall(wire(codec, [b"whole"]) + cut)
    theirs.close()
    conn = Connection(ours, codec=codec)
    assert conn.receive() == b"whole"
    with pytest.raises(IncompleteFrame) as caught:
        conn.receive()
    assert caught.value.partial == cut
    with pytest.raises(IncompleteFrame) as later:
        conn.receive()
    assert later.value is caught.value


def test_oversize_frame_comes_after_the_messages_before_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    codec = LengthPrefixed(max_size=16)
    theirs.sendall(wire(codec, [b"first", b"second"]) + struct.pack(">I", 1000))
    conn = Connection(ours, codec=codec)
    assert conn.receive() == b"first"
    assert conn.receive() == b"second"
    with pytest.raises(FrameTooLarge) as caught:
        conn.receive()
    assert (caught.value.size, caught.value.limit) == (1000, 16)
    assert caught.value.messages == []  # both were returned already
    for _ in range(2):
        with pytest.raises(FrameTooLarge) as later:
            conn.receive()
        assert later.value is caught.value
    conn.send(b"too large")  # the sending side still works
    assert theirs.recv(100) == wire(codec, [b"too large"])


def test_unframable_message_sends_nothing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    conn = Connection(ours, codec=Lines())
    with pytest.raises(LocalProtocolError):
        conn.send(b"two\nlines")
    assert nothing_to_read(theirs)
    conn.send(b"one line")
    assert theirs.recv(100) == b"one line\n"


# ------------------------------------------------------ half-close and close


def test_send_eof_lets_the_peer_answer(tmp_path: Path, peers: Peers) -> None:
    address = serve("tcp4", tmp_path, peers, answer_after_eof(lambda d: d.upper()))
    with connect(address, codec=Lines(), timeout=TIMEOUT) as conn:
        conn.send(b"ping")
        conn.send_eof()
        conn.send_eof()  # idempotent
        with pytest.raises(ClosedResourceError, match="send_eof"):
            conn.send(b"late")
        assert conn.receive() == b"PING"
        with pytest.raises(EndOfStream):
            conn.receive()


def test_close_is_idempotent_and_final(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    conn = Connection(ours)
    conn.close()
    conn.close()
    assert ours.fileno() == -1
    calls: list[Callable[[], object]] = [
        conn.receive,
        lambda: conn.send(b"x"),
        conn.send_eof,
        lambda: list(conn),
    ]
    for call in calls:
        with pytest.raises(ClosedResourceError):
            call()
    assert theirs.recv(1) == b""  # the peer sees the end


def test_context_manager_closes(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    with pytest.raises(KeyError), Connection(ours) as conn:
        raise KeyError
    assert ours.fileno() == -1
    with pytest.raises(ClosedResourceError):
        conn.receive()


# ------------------------------------------------------------------ failures


def tcp_listener() -> tuple[socket.socket, str]:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock, f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def test_peer_reset_breaks_the_connection() -> None:
    listener, address = tcp_listener()
    with listener, connect(address, timeout=TIMEOUT) as conn:
        peer, _ = listener.accept()
        # Linger 0: close() sends a reset instead of a clean end.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        with pytest.raises(BrokenResourceError) as caught:
            conn.receive()
        cause = caught.value.__cause__
        assert isinstance(cause, ConnectionResetError)
        for call in (conn.receive, lambda: conn.send(b"x"), conn.send_eof):
            with pytest.raises(BrokenResourceError) as later:
                call()
            assert later.value.__cause__ is cause


def test_send_to_a_closed_peer_breaks_the_connection(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.close()
    conn = Connection(ours)
    with pytest.raises(BrokenResourceError) as caught:
        conn.send(b"anyone?")
    assert isinstance(caught.value.__cause__, BrokenPipeError)


def test_receive_timeout_keeps_the_connection(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    ours.settimeout(SHORT)
    codec = LengthPrefixed()
    conn = Connection(ours, codec=codec)
    with pytest.raises(TimeoutError) as caught:
        conn.receive()
    assert not isinstance(caught.value, AiosockError)
    whole = wire(codec, [b"split message"])
    theirs.sendall(whole[:6])
    with pytest.raises(TimeoutError):
        conn.receive()  # half a frame is read and kept
    theirs.sendall(whole[6:])
    assert conn.receive() == b"split message"
    conn.send(b"still fine")
    assert theirs.recv(100) == wire(codec, [b"still fine"])


def test_send_timeout_breaks_the_connection(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    ours.settimeout(SHORT)
    conn = Connection(ours, codec=LengthPrefixed(max_size=2 * BIG))
    with pytest.raises(TimeoutError) as caught:
        conn.send(bytes(BIG))  # more than the socket buffers; nobody reads
    for call in (conn.receive, lambda: conn.send(b"x"), conn.send_eof):
        with pytest.raises(BrokenResourceError) as later:
            call()
        assert later.value.__cause__ is caught.value


# ----------------------------------------------------------------- connect


def test_connect_to_a_closed_port_is_refused() -> None:
    # Bound but not listening: the port stays ours, and refuses.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectionRefusedError):
            connect(f"tcp://127.0.0.1:{sock.getsockname()[1]}", timeout=TIMEOUT)


def test_connect_to_a_missing_unix_path_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        connect(f"unix://{tmp_path}/missing.sock")


@pytest.mark.parametrize(
    ("address", "match"),
    [
        ("udp://127.0.0.1:53", "datagram endpoint"),
        ("unixgram:@log", "datagram endpoint"),
        ("tcp://127.0.0.1:0", "has port 0, which only a server"),
        ("tcp://:8000", "has no host, which only a server"),
    ],
)
def test_connect_refuses_unusable_addresses(address: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        connect(address)


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_connect_refuses_a_non_positive_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        connect("tcp://127.0.0.1:9", timeout=timeout)


def test_fd_that_is_not_a_stream_is_left_open() -> None:
    fd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM).detach()
    with pytest.raises(ValueError, match="stream"):
        connect(f"fd://{fd}")
    with socket.socket(fileno=fd) as sock:  # still open, still a datagram socket
        assert sock.type == socket.SOCK_DGRAM


def test_connection_refuses_a_non_blocking_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    ours.setblocking(False)
    with pytest.raises(ValueError, match="blocking"):
        Connection(ours)


# --------------------------------------------------------------- addresses


def test_tcp_addresses_and_nodelay() -> None:
    listener, address = tcp_listener()
    with listener, connect(address, timeout=TIMEOUT) as conn:
        peer, _ = listener.accept()
        with peer:
            assert conn.peer_address == parse_address(address)
            assert conn.local_address == TCPAddress(
                host="127.0.0.1", port=peer.getpeername()[1]
            )
            nodelay = conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert nodelay
    assert conn.peer_address == parse_address(address)  # kept after close


def test_tcp6_addresses(tmp_path: Path) -> None:
    listener, address = listen("tcp6", tmp_path)
    with listener, connect(parse_address(address), timeout=TIMEOUT) as conn:
        peer, _ = listener.accept()
        with peer:
            assert conn.peer_address == parse_address(address)
            assert conn.local_address == TCPAddress(
                host="::1", port=peer.getpeername()[1]
            )


@pytest.mark.parametrize("transport", ["unix", "abstract"])
def test_unix_addresses(transport: str, tmp_path: Path) -> None:
    listener, address = listen(transport, tmp_path)
    with listener, connect(address, timeout=TIMEOUT) as conn:
        peer, _ = listener.accept()
        with peer:
            assert conn.local_address is None  # an unnamed client
            assert conn.peer_address == parse_address(address)
            assert isinstance(conn.peer_address, UnixAddress)
