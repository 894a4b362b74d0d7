"""``python -m aiosock serve echo``: answers a plain socket client, stops on signals."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from aiosock import (
    TCPAddress,
    UDPAddress,
    UnixAddress,
    UnixDatagramAddress,
    parse_address,
)
from aiosock.aio.server import DEFAULT_GRACE

ROOT = Path(__file__).resolve().parent.parent


class Started(NamedTuple):
    process: subprocess.Popen[str]
    addresses: list[str]  # as it printed them, port 0 resolved
    loop: str  # the event loop it said it runs on


@contextmanager
def echo_server(*args: str) -> Iterator[Started]:
    argv = [sys.executable, "-m", "aiosock", "serve", "echo", *args]
    process = subprocess.Popen(
        argv, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        addresses: list[str] = []
        loop = ""
        expected = sum(1 for a in args if "://" in a or ":@" in a)
        # Blocking reads, bounded by the test's timeout: select() would not
        # see lines already in the text wrapper's buffer.
        while len(addresses) < expected:
            line = process.stdout.readline()
            assert line, "the server exited before it was listening"
            if line.startswith("listening on "):
                addresses.append(line.split()[-1])
            elif line.startswith("loop: "):
                loop = line.split()[-1]
        yield Started(process, addresses, loop)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def plain_client(address: str) -> socket.socket:
    parsed = parse_address(address)
    if isinstance(parsed, TCPAddress):
        return socket.create_connection((parsed.host, parsed.port), timeout=10)
    assert isinstance(parsed, UnixAddress)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect("\0" + parsed.path if parsed.abstract else parsed.path)
    return sock


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)  # one byte at a time: never past the line
        assert chunk, "the server closed the connection"
        data += chunk
    return data


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("api", ["protocol", "stream"])
def test_echo_answers_a_plain_socket_client(
    loop: str, api: str, tmp_path: Path, abstract_name: str
) -> None:
    path = tmp_path / "echo.sock"
    with echo_server(
        "tcp://127.0.0.1:0",
        f"unix://{path}",
        f"unix:@{abstract_name}",
        "--codec",
        "lines",
        "--api",
        api,
        "--loop",
        loop,
    ) as (process, addresses, _):
        assert len(addresses) == 3
        for address in addresses:
            with plain_client(address) as client:
                client.sendall(b"hello\nworld\n")
                assert read_line(client) == b"hello\n"
                assert read_line(client) == b"world\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "shutting down" in out
    assert not path.exists()


_names = itertools.count()


def datagram_client(address: str, directory: Path) -> socket.socket:
    """A plain datagram socket connected to ``address``, named so it can be answered."""
    parsed = parse_address(address)
    if isinstance(parsed, UDPAddress):
        family = socket.AF_INET6 if ":" in parsed.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.settimeout(10)
        sock.connect((parsed.host, parsed.port))
        return sock
    assert isinstance(parsed, UnixDatagramAddress)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(10)
    sock.bind(str(directory / f"client-{next(_names)}"))  # never a name reused
    sock.connect("\0" + parsed.path if parsed.abstract else parsed.path)
    return sock


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("api", ["protocol", "stream"])
def test_datagram_echo_answers_a_plain_socket_beside_streams(
    loop: str, api: str, tmp_path: Path, abstract_name: str
) -> None:
    path = tmp_path / "echo.dgram"
    clients = tmp_path / "clients"
    clients.mkdir()
    with echo_server(
        "udp://127.0.0.1:0",
        f"unixgram://{path}",
        f"unixgram:@{abstract_name}",
        "tcp://127.0.0.1:0",
        "--codec",
        "lines",
        "--api",
        api,
        "--loop",
        loop,
    ) as (process, addresses, _):
        assert [a.split(":")[0] for a in addresses] == [
            "tcp",
            "udp",
            "unixgram",
            "unixgram",
        ]
        with plain_client(addresses[0]) as client:  # streams still served
            client.sendall(b"stream\n")
            assert read_line(client) == b"stream\n"
        for address in addresses[1:]:
            with datagram_client(address, clients) as client:
                client.send(b"one\n")
                client.send(b"not a line")  # no frame: dropped, not fatal
                client.send(b"two\n")
                assert client.recv(100) == b"one\n"
                assert client.recv(100) == b"two\n"
        # A sender that cannot be answered (its name is gone) harms nobody.
        with datagram_client(addresses[2], clients) as gone:
            os.unlink(gone.getsockname())
            gone.send(b"lost\n")
        with datagram_client(addresses[2], clients) as client:
            client.send(b"still here\n")
            assert client.recv(100) == b"still here\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "shutting down" in out
    assert not path.exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_datagram_echo_alone(loop: str, tmp_path: Path) -> None:
    with echo_server("udp://[::1]:0", "--loop", loop) as (process, addresses, _):
        with datagram_client(addresses[0], tmp_path) as client:
            client.send(b"")
            assert client.recv(100) == b""
            client.send(b"x" * 65000)
            assert client.recv(70000) == b"x" * 65000
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.mark.timeout(60)
def test_sigterm_also_stops_it() -> None:
    with echo_server("tcp://127.0.0.1:0", "--loop", "asyncio") as (
        process,
        addresses,
        _,
    ):
        with plain_client(addresses[0]) as client:
            client.sendall(b"raw bytes")
            assert client.recv(100) == b"raw bytes"
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tcp://127.0.0.1"], "missing port"),
        (["tcp://127.0.0.1:0", "--grace", "-1"], "'-1' is not a number of seconds"),
        (["tcp://127.0.0.1:0", "--grace", "nan"], "'nan' is not a number of seconds"),
        (["tcp://127.0.0.1:0", "--grace", "soon"], "'soon' is not a number"),
        (["tcp://127.0.0.1:0", "--log-level", "nonsense"], "invalid choice"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiosock", "serve", "echo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_an_address_in_use_is_named_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "aiosock", "serve", "echo", address],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"aiosock: [Errno {errno.EADDRINUSE}] Address already in use: '{address}'\n"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_it_runs_on_the_loop_asked_for(loop: str) -> None:
    argv = ("tcp://127.0.0.1:0", "--loop", loop)
    with echo_server(*argv) as (process, _, running):
        assert running == loop
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["protocol", "stream"])
def test_a_short_grace_ends_a_connection_still_open_at_sigterm(api: str) -> None:
    argv = ("tcp://127.0.0.1:0", "--api", api, "--grace", "0.05")
    with (
        echo_server(*argv) as (process, addresses, _),
        plain_client(addresses[0]) as client,
    ):
        client.sendall(b"hello")
        assert client.recv(100) == b"hello"  # served: the connection is open
        process.send_signal(signal.SIGTERM)
        # Well before the default grace, which would still be waiting.
        out, err = process.communicate(timeout=DEFAULT_GRACE / 2)
        assert process.returncode == 0, err
        assert "shutting down" in out
        with contextlib.suppress(ConnectionResetError):  # a reset ends it too
            assert client.recv(100) == b""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["protocol", "stream"])
def test_a_long_grace_is_not_waited_for_by_idle_connections(api: str) -> None:
    argv = ("tcp://127.0.0.1:0", "--api", api, "--grace", "30")
    with echo_server(*argv) as (process, addresses, _):
        assert process.stdout is not None
        with plain_client(addresses[0]) as client:
            client.sendall(b"hello")
            assert client.recv(100) == b"hello"
            process.send_signal(signal.SIGTERM)
            assert process.stdout.readline() == "shutting down\n"
            # Told of the shutdown, the idle connection ends at once.
            assert client.recv(100) == b""
        process.communicate(timeout=DEFAULT_GRACE / 2)
    assert process.returncode == 0


# How long a server whose clients sit idle may take to exit after a signal,
# given a grace of 30 s: its handlers hear of the shutdown at once, so the
# grace is not what it waits for.
EXIT_WITHIN = 10.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_ends_it_with_clients_mid_conversation(
    loop: str,
    signum: signal.Signals,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    path = tmp_path / "echo.sock"
    argv = ("tcp://127.0.0.1:0", f"unix://{path}", "--codec", "lines")
    with (
        echo_server(*argv, "--loop", loop, "--grace", "30") as (process, addresses, _),
        contextlib.ExitStack() as stack,
    ):
        clients = [stack.enter_context(plain_client(a)) for a in addresses * 10]
        for number, client in enumerate(clients):
            client.sendall(b"line %d\n" % number)
            assert read_line(client) == b"line %d\n" % number
            if number % 4 >= 2:  # half of them in the middle of the next message
                client.sendall(b"half a li")
        signalled = time.monotonic()
        process.send_signal(signum)
        try:
            out, err = process.communicate(timeout=EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_WITHIN} s after {signum.name}")
        elapsed = time.monotonic() - signalled
        for client in clients:
            with contextlib.suppress(ConnectionResetError):  # a reset ends it too
                assert client.recv(100) == b""
    record_property("signal_to_exit_s", round(elapsed, 3))
    print(f"{signum.name} to exit: {elapsed:.3f} s")
    assert process.returncode == 0, err
    assert "shutting down" in out
    assert "Traceback" not in err
    assert not path.exists()


_LOG_LINE = (
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<name>[\w.]+): .*"
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("level", [None, "info", "debug"])
def test_logs_go_to_stderr_from_the_level_asked_for(level: str | None) -> None:
    argv = ["tcp://127.0.0.1:0", "--loop", "asyncio"]
    if level is not None:
        argv += ["--log-level", level]
    with echo_server(*argv) as (process, _, _):
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    lines = [re.fullmatch(_LOG_LINE, line) for line in err.splitlines()]
    assert all(lines), err  # every line in the format
    logged = {(m["level"], m["name"]) for m in lines if m is not None}
    if level is None:  # warning: a clean shutdown says nothing
        assert not logged
        return
    assert ("INFO", "aiosock.run") in logged
    assert "INFO aiosock.run: SIGTERM: shutting down gracefully" in err
    # asyncio names its selector at debug level.
    assert (("DEBUG", "asyncio") in logged) == (level == "debug")
