"""``python -m aiosock serve echo``: answers a plain socket client, stops on signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aiosock import TCPAddress, UnixAddress, parse_address

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def echo_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    argv = [sys.executable, "-m", "aiosock", "serve", "echo", *args]
    process = subprocess.Popen(
        argv, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        addresses: list[str] = []
        expected = sum(1 for a in args if "://" in a or a.startswith("unix:@"))
        # Blocking reads, bounded by the test's timeout: select() would not
        # see lines already in the text wrapper's buffer.
        while len(addresses) < expected:
            line = process.stdout.readline()
            assert line, "the server exited before it was listening"
            if line.startswith("listening on "):
                addresses.append(line.split()[-1])
        yield process, addresses
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
    loop: str, api: str, tmp_path: Path
) -> None:
    path = tmp_path / "echo.sock"
    with echo_server(
        "tcp://127.0.0.1:0",
        f"unix://{path}",
        f"unix:@aiosock-cli-{os.getpid()}",
        "--codec",
        "lines",
        "--api",
        api,
        "--loop",
        loop,
    ) as (process, addresses):
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


@pytest.mark.timeout(60)
def test_sigterm_also_stops_it() -> None:
    with echo_server("tcp://127.0.0.1:0", "--loop", "asyncio") as (process, addresses):
        with plain_client(addresses[0]) as client:
            client.sendall(b"raw bytes")
            assert client.recv(100) == b"raw bytes"
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.mark.timeout(60)
def test_a_bad_address_is_refused_clearly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiosock", "serve", "echo", "tcp://127.0.0.1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "missing port" in result.stderr
