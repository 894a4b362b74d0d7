"""Errors from opening a socket name the address they concern (issue 13).

Each keeps its type and errno, so that ``except ConnectionRefusedError``
and ``exc.errno`` work as before; only the message gains the address.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from pathlib import Path

import pytest

import aiosock
from aiosock import sync
from aiosock.core.errors import naming


def test_naming_keeps_the_type_errno_and_adds_the_address() -> None:
    refused = naming(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "tcp://h:1")
    assert type(refused) is ConnectionRefusedError
    assert refused.errno == errno.ECONNREFUSED
    assert str(refused) == "[Errno 111] refused: 'tcp://h:1'"
    bare = OSError("Multiple exceptions: a, b")
    named = naming(bare, "tcp://h:1")
    assert type(named) is OSError
    assert str(named) == "Multiple exceptions: a, b (tcp://h:1)"
    assert named.__cause__ is bare
    already = TimeoutError("connecting to tcp://h:1 timed out")
    assert naming(already, "tcp://h:1") is already


async def test_a_refused_connect_names_the_address() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        address = f"tcp://127.0.0.1:{port}"
        with pytest.raises(ConnectionRefusedError) as caught:
            await aiosock.connect(address)
        assert caught.value.errno == errno.ECONNREFUSED
        assert address in str(caught.value)
        with pytest.raises(ConnectionRefusedError) as blocking:
            await asyncio.to_thread(lambda: sync.connect(address, timeout=5))
        assert address in str(blocking.value)


async def test_a_unix_path_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    address = f"unix://{tmp_path / 'gone' / 'app.sock'}"
    with pytest.raises(FileNotFoundError) as caught:
        await aiosock.connect(address)
    assert address in str(caught.value)
    with pytest.raises(FileNotFoundError) as listening:
        await aiosock.serve(lambda conn: asyncio.sleep(0), address)
    assert address in str(listening.value)


async def test_a_port_in_use_is_named_for_streams_and_datagrams() -> None:
    async with await aiosock.serve(
        lambda conn: asyncio.sleep(0), "tcp://127.0.0.1:0"
    ) as server:
        taken = str(server.addresses[0])
        with pytest.raises(OSError, match="Address already in use") as caught:
            await aiosock.serve(lambda conn: asyncio.sleep(0), taken)
        assert caught.value.errno == errno.EADDRINUSE
        assert taken in str(caught.value)
    async with await aiosock.open_datagram("udp://127.0.0.1:0") as endpoint:
        used = str(endpoint.local_address)
        with pytest.raises(OSError, match="Address already in use") as datagram:
            await aiosock.open_datagram(used)
        assert datagram.value.errno == errno.EADDRINUSE
        assert used in str(datagram.value)
        with pytest.raises(OSError, match="Address already in use") as blocking:
            sync.open_datagram(used)
        assert used in str(blocking.value)


async def test_a_bad_descriptor_is_named() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)  # a number nothing holds now
    with pytest.raises(OSError, match="Bad file descriptor") as caught:
        await aiosock.connect(f"fd://{fd}")
    assert caught.value.errno == errno.EBADF
    assert f"fd://{fd}" in str(caught.value)


async def test_a_connect_timeout_names_the_address(tmp_path: Path) -> None:
    # A Unix listener whose backlog is full makes connect() wait for ever.
    path = str(tmp_path / "full.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(0)
        fillers = []
        try:
            for _ in range(8):  # a bound: the backlog is full well before
                filler = socket.socket(socket.AF_UNIX)
                filler.setblocking(False)
                fillers.append(filler)
                try:
                    filler.connect(path)
                except BlockingIOError:
                    break
            with pytest.raises(TimeoutError) as caught:
                await aiosock.connect(f"unix://{path}", timeout=0.05)
            assert str(caught.value) == (
                f"connecting to unix://{path} timed out after 0.05 s"
            )
        finally:
            for filler in fillers:
                filler.close()
