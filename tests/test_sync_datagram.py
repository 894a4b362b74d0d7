"""What only the blocking datagram endpoint has: no event loop, socket
timeouts, a close from another thread, wrapping a socket you made.

What it shares with the async endpoint is held by one set of tests run
against both (test_datagram_behaviour.py). Every socket has a timeout, so
a lost datagram fails a test instead of hanging it; nothing sleeps to
synchronise. Traffic goes only to loopback and Unix sockets.
"""

from __future__ import annotations

import json
import math
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiosock.core.addresses import UDPAddress
from aiosock.core.codecs import Codec
from aiosock.core.errors import AiosockError, ClosedResourceError
from aiosock.core.limits import Limits
from aiosock.sync import (
    DatagramEndpoint,
    Received,
    connect_datagram,
    open_datagram,
)

# Seconds any one blocking step may take before the test fails instead of
# hanging; generous, since the machine is shared.
TIMEOUT = 10.0
# A short timeout for tests that wait for one on purpose.
SHORT = 0.2
# Bounds every loop that waits for the kernel to push back.
MAX_SENDS = 100_000

Pair = tuple[DatagramEndpoint[bytes], DatagramEndpoint[bytes]]


# ---------------------------------------------------------------- helpers


def adopt(
    sock: socket.socket,
    *,
    codec: Codec | None = None,
    limits: Limits | None = None,
    timeout: float = TIMEOUT,
) -> DatagramEndpoint[bytes]:
    """A connected endpoint on ``sock``, which it then owns."""
    return connect_datagram(
        f"fd://{sock.detach()}", codec=codec, limits=limits, timeout=timeout
    )


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Two connected endpoints on a Unix datagram socketpair, via fd://."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with adopt(left) as a, adopt(right) as b:
        yield a, b


def udp_sockaddr(endpoint: DatagramEndpoint[Received]) -> tuple[str, int]:
    address = endpoint.local_address
    assert isinstance(address, UDPAddress)
    return address.host, address.port


def wait_until_blocked(thread: threading.Thread) -> None:
    """Return once ``thread`` sleeps in the kernel, not waiting for a lock.

    Linux names the kernel function a thread sleeps in (its wait channel);
    ``0`` while it runs, a futex wait while it waits for the GIL or a lock.
    """
    wchan = Path(f"/proc/self/task/{thread.native_id}/wchan")
    deadline = time.monotonic() + TIMEOUT
    where = "not read"
    while time.monotonic() < deadline:
        where = wchan.read_text()
        if where not in ("", "0") and "futex" not in where:
            return
    raise AssertionError(f"the thread never blocked in the kernel (at {where})")


def closed_udp_port() -> int:
    """A loopback UDP port nobody is bound to (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_socket_error(sock: socket.socket) -> None:
    """Return once the kernel holds an error for ``sock`` (POLLERR)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    events = poller.poll(TIMEOUT * 1000)
    assert events, "no error arrived"
    assert events[0][1] & select.POLLERR


# ---------------------------------------------------------------- purity


def test_importing_the_blocking_layer_loads_no_event_loop() -> None:
    # A fresh interpreter: this one has asyncio loaded by pytest-asyncio.
    code = "import json, sys, aiosock.sync; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert "aiosock.sync" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("asyncio", "uvloop")}


# ------------------------------------------------------------ round trips


# ------------------------------------------------------------------ sizes

# ------------------------------------------------------ truncation, codecs


# ----------------------------------------------------------- bound, connected


def test_icmp_refusal_surfaces_on_the_next_send_once() -> None:
    port = closed_udp_port()
    with connect_datagram(f"udp://127.0.0.1:{port}", timeout=SHORT) as client:
        client.send(b"one")
        wait_for_socket_error(client.socket)
        with pytest.raises(ConnectionRefusedError):
            client.send(b"two")  # refused before it was sent
        assert (client.stats.sent, client.stats.errors) == (1, 1)
        with pytest.raises(TimeoutError):
            client.receive()  # the error was raised once, by the send


# -------------------------------------------------------------- timeouts


def test_a_receive_timeout_loses_nothing(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, timeout=SHORT) as endpoint:
        with pytest.raises(TimeoutError) as caught:
            endpoint.receive()
        assert not isinstance(caught.value, AiosockError)
        theirs.send(b"late")
        assert endpoint.receive() == b"late"
        assert (endpoint.stats.received, endpoint.stats.errors) == (1, 0)


def test_a_send_waits_for_room_until_its_timeout(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with adopt(ours, timeout=SHORT) as endpoint:
        # Nobody reads: the peer's queue fills (net.unix.max_dgram_qlen).
        for count in range(MAX_SENDS):
            try:
                endpoint.send(b"%d" % count)
            except TimeoutError:
                break
        else:
            raise AssertionError("the peer's queue never filled")
        assert endpoint.stats.sent == count
        assert [theirs.recv(100) for _ in range(count)] == [
            b"%d" % n for n in range(count)
        ]
        endpoint.send(b"room again")  # the timed-out one was never sent
        assert theirs.recv(100) == b"room again"


def test_the_timeout_is_limits_read_timeout_unless_given() -> None:
    limits = Limits(read_timeout=SHORT)
    with open_datagram("udp://127.0.0.1:0", limits=limits) as endpoint:
        assert endpoint.socket.gettimeout() == SHORT
        with pytest.raises(TimeoutError):
            endpoint.receive()
    with open_datagram("udp://127.0.0.1:0", limits=limits, timeout=TIMEOUT) as given:
        assert given.socket.gettimeout() == TIMEOUT
    with open_datagram("udp://127.0.0.1:0") as default:
        assert default.socket.gettimeout() is None


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan])
def test_a_timeout_that_is_not_positive_is_refused(
    timeout: float, open_sockets: Callable[[], set[str]]
) -> None:
    before = open_sockets()
    with pytest.raises(ValueError, match="timeout must be positive"):
        open_datagram("udp://127.0.0.1:0", timeout=timeout)
    with pytest.raises(ValueError, match="timeout must be positive"):
        connect_datagram("udp://127.0.0.1:9", timeout=timeout)
    assert open_sockets() == before


# ------------------------------------------------------------------ close


def test_the_context_manager_closes(pair: Pair) -> None:
    a, _ = pair
    with pytest.raises(KeyError), a:
        raise KeyError
    with pytest.raises(ClosedResourceError):
        a.receive()


@pytest.mark.parametrize("timeout", [None, TIMEOUT], ids=["blocking", "timeout"])
def test_close_from_another_thread_ends_a_blocked_iteration(
    timeout: float | None,
) -> None:
    server = open_datagram("udp://127.0.0.1:0", timeout=timeout)
    target = udp_sockaddr(server)
    got: queue.Queue[object] = queue.Queue()

    def serve() -> None:
        try:
            for item in server:
                got.put(item)
        except BaseException as exc:  # reported through the queue
            got.put(exc)
        else:
            got.put("ended")

    thread = threading.Thread(target=serve, daemon=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        thread.start()
        try:
            client.sendto(b"one", target)
            sender = UDPAddress(host="127.0.0.1", port=client.getsockname()[1])
            assert got.get(timeout=TIMEOUT) == (b"one", sender)
            wait_until_blocked(thread)  # in the next receive
            server.close()
            assert got.get(timeout=TIMEOUT) == "ended"
        finally:
            server.close()
            if thread.is_alive():
                # Should close() not have woken it, a datagram still would:
                # the blocked call keeps the socket, and its port, alive.
                client.sendto(b"release", target)
            thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_close_does_not_shut_down_an_adopted_socket(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    # Whoever handed the descriptor over may share the socket (a prefork
    # server does); closing the endpoint must leave it working for them.
    with socket.socket(fileno=os.dup(ours.fileno())) as shared:
        shared.settimeout(TIMEOUT)
        endpoint = adopt(ours)
        endpoint.close()
        theirs.send(b"still open")
        assert shared.recv(100) == b"still open"


# -------------------------------------------------------- Unix paths, fd://


def test_wrapping_a_socket_you_made(
    raw_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = raw_pair
    with DatagramEndpoint[bytes](ours) as endpoint:
        endpoint.send(b"wrapped")
        assert theirs.recv(100) == b"wrapped"
    assert ours.fileno() == -1  # the endpoint owned it
    with socket.socket() as stream, pytest.raises(ValueError, match="datagram"):
        DatagramEndpoint[bytes](stream)
    blocking = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with blocking:
        blocking.setblocking(False)
        with pytest.raises(ValueError, match="blocking socket"):
            DatagramEndpoint[bytes](blocking)
