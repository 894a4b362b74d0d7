"""Clients: errors on connect, timeouts, and no descriptor left behind."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

import aiosock
from aiosock import Connection, Lines


async def test_connection_refused_stays_an_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: refused
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await aiosock.connect(f"tcp://127.0.0.1:{port}")


async def test_a_missing_unix_path_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await aiosock.connect(f"unix://{tmp_path / 'nobody.sock'}")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("udp://127.0.0.1:53", "datagram address"),
        ("tcp://127.0.0.1:0", "needs a host and a port"),
        ("tcp://:80", "needs a host and a port"),
        ("tcp://127.0.0.1", "missing port"),
    ],
)
async def test_addresses_a_client_cannot_use(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await aiosock.connect(address)


async def test_adopting_a_datagram_socket_is_refused_and_leaves_it_open() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(ValueError, match="not a stream socket"):
            await aiosock.connect(f"fd://{sock.fileno()}")
        assert sock.fileno() >= 0
        sock.getsockname()  # still usable: not closed under us


async def test_connect_timeout(
    tmp_path: Path, open_sockets: Callable[[], set[str]]
) -> None:
    # A Unix listener whose backlog is full makes connect() wait for ever.
    path = str(tmp_path / "full.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(0)
        queued = []
        for _ in range(8):  # bounded: the backlog fills after one or two
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            if sock.connect_ex(path) != 0:
                sock.close()
                break
            queued.append(sock)
        before = open_sockets()
        with pytest.raises(TimeoutError):
            await aiosock.connect(f"unix://{path}", timeout=0.05)
        assert open_sockets() == before
        for sock in queued:
            sock.close()


async def echo(connection: Connection) -> None:
    async for message in connection:
        await connection.send(message)


@pytest.mark.timeout(120)
async def test_cancelling_anywhere_leaves_no_descriptor_behind(
    caplog: pytest.LogCaptureFixture, open_sockets: Callable[[], set[str]]
) -> None:
    rng = random.Random(7)

    async def session(address: aiosock.Address) -> None:
        async with await aiosock.connect(address, codec=Lines()) as client:
            for _ in range(5):
                await client.send(b"x" * rng.randint(0, 5000))
                await client.receive()

    async def serve_and_talk() -> None:
        async with await aiosock.serve(
            echo, "tcp://127.0.0.1:0", codec=Lines()
        ) as server:
            await session(server.addresses[0])

    before = open_sockets()
    for round in range(60):  # bounded: 60 cancellations at random points
        task = asyncio.create_task(serve_and_talk())
        for _ in range(rng.randint(0, 40)):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert open_sockets() == before, f"descriptors leaked in round {round}"
    assert "Task was destroyed" not in caplog.text
