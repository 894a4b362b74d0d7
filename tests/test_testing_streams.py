"""The stream conformance suite, run over every kind of stream socket on both loops."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

import aiosock
from aiosock import Codec, Connection
from aiosock.testing.memory import memory_connection_pair
from aiosock.testing.streams import STREAM_CHECKS, Pair, PairMaker

Check = Callable[[PairMaker], Awaitable[None]]


def served_pair(address: Callable[[], str]) -> PairMaker:
    """Pairs made by aiosock's own server and client on ``address()``."""

    @asynccontextmanager
    async def make(codec: Codec) -> AsyncIterator[Pair]:
        accepted: asyncio.Queue[Connection] = asyncio.Queue()
        release = asyncio.Event()

        async def handler(connection: Connection) -> None:
            await accepted.put(connection)
            await release.wait()

        server = await aiosock.serve(handler, address(), codec=codec)
        try:
            client = await aiosock.connect(server.addresses[0], codec=codec)
            try:
                yield client, await accepted.get()
            finally:
                await client.aclose()
        finally:
            release.set()
            await server.aclose(grace=5)

    return make


@asynccontextmanager
async def socketpair_pair(codec: Codec) -> AsyncIterator[Pair]:
    """Both ends of socket.socketpair(), adopted through fd:// addresses."""
    left, right = socket.socketpair()
    a = await aiosock.connect(f"fd://{left.detach()}", codec=codec)
    b = await aiosock.connect(f"fd://{right.detach()}", codec=codec)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


def unix_path() -> str:
    # A short directory of its own: sun_path holds 107 bytes at most.
    return f"unix://{tempfile.mkdtemp(prefix='aiosock-')}/s.sock"


PAIRS: dict[str, PairMaker] = {
    "tcp4": served_pair(lambda: "tcp://127.0.0.1:0"),
    "tcp6": served_pair(lambda: "tcp://[::1]:0"),
    "unix": served_pair(unix_path),
    "abstract": served_pair(
        lambda: f"unix:@aiosock-test-{os.getpid()}-{os.urandom(4).hex()}"
    ),
    "socketpair": socketpair_pair,
    "memory": memory_connection_pair,
}


@pytest.mark.parametrize("check", STREAM_CHECKS, ids=lambda check: check.__name__[6:])
@pytest.mark.parametrize("transport", PAIRS)
async def test_stream_conformance(transport: str, check: Check) -> None:
    await check(PAIRS[transport])
