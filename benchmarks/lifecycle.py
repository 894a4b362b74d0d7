"""How long a server takes to shut down, and when its deadlines cut.

Run:  python -m benchmarks.lifecycle [--repeat 5] [--connections 100]
                                     [--deadline 0.5]

Shutdown: a server of each API (``serve`` with an ``async for`` echo
handler, ``create_server`` with an echo ``Protocol``) on each loop holds
``--connections`` idle TCP connections on 127.0.0.1, each answered once;
the figure is the wall-clock time of ``server.aclose(grace=30)``. The
connections are told, so it is not the grace period.

Deadlines: for each of idle (a client that says nothing), frame (a client
that sends a byte each 20 ms of a line that never ends) and send (a client
that never reads while the server sends), with the deadline set to
``--deadline`` seconds, the figure is the time from the client's last
useful act to the cut: for idle from connecting to the client seeing the
reset; for frame from the first byte of the line to the reset; for send
from connecting (the server fills the buffer within milliseconds) to the
handler's send raising. The idle deadline is checked so that it fires
between once and twice its length; the others fire at their length.

Medians of ``--repeat`` runs, per loop. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import socket
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

if __package__ in (None, ""):  # run as a script: make aiosock importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosock
from aiosock import Connection, Limits, Lines, Protocol, Transport
from aiosock.aio.loops import LoopName
from benchmarks.run import loops_available

LOCAL = "tcp://127.0.0.1:0"
GRACE = 30.0
DRIP_LIMIT = 1000  # bytes a slow client sends at most: 20 s at 20 ms each


async def echo(connection: Connection[bytes]) -> None:
    async for message in connection:
        await connection.send(message)


class Echo(Protocol[bytes]):
    def connection_made(self, transport: Transport[bytes]) -> None:
        self.transport = transport

    def message_received(self, message: bytes) -> None:
        self.transport.send(message)


async def flood(connection: Connection[bytes]) -> None:
    chunk = b"x" * 65536
    for _ in range(4096):  # far more than socket buffers hold
        await connection.send(chunk)


async def open_server(api: str, limits: Limits | None = None) -> aiosock.Server:
    if api == "stream":
        return await aiosock.serve(echo, LOCAL, codec=Lines(), limits=limits)
    return await aiosock.create_server(Echo, LOCAL, codec=Lines(), limits=limits)


async def shutdown_time(api: str, connections: int) -> float:
    server = await open_server(api)
    clients = []
    try:
        for _ in range(connections):
            client = await aiosock.connect(server.addresses[0], codec=Lines())
            clients.append(client)
            await client.send(b"hello")
            await client.receive()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.aclose(grace=GRACE)
        return loop.time() - started
    finally:
        for client in clients:
            client.abort()


async def until_cut(client: Connection[bytes]) -> None:
    with contextlib.suppress(aiosock.BrokenResourceError, aiosock.EndOfStream):
        await client.receive()


async def deadline_time(which: str, seconds: float) -> float:
    """Seconds from the client's last useful act to the server cutting it."""
    loop = asyncio.get_running_loop()
    if which == "send":
        limits = Limits(send_timeout=seconds)
        ended: asyncio.Future[float] = loop.create_future()

        async def flood_until_cut(connection: Connection[bytes]) -> None:
            try:
                await flood(connection)
            finally:
                ended.set_result(loop.time())

        async with await aiosock.serve(flood_until_cut, LOCAL, limits=limits) as server:
            address = server.addresses[0]
            assert isinstance(address, aiosock.TCPAddress)
            with socket.socket() as never_reads:
                never_reads.setblocking(False)
                started = loop.time()
                await loop.sock_connect(never_reads, (address.host, address.port))
                async with asyncio.timeout(GRACE):
                    return await ended - started
    if which == "idle":
        limits = Limits(idle_timeout=seconds)
    else:
        limits = Limits(frame_timeout=seconds)
    async with await open_server("stream", limits) as server:
        client = await aiosock.connect(server.addresses[0])
        async with client:
            cut = asyncio.create_task(until_cut(client))
            started = loop.time()
            if which == "frame":
                for _ in range(DRIP_LIMIT):
                    with contextlib.suppress(aiosock.BrokenResourceError):
                        await client.send(b"x")
                    await asyncio.wait([cut], timeout=0.02)
                    if cut.done():
                        break
            await cut
            return loop.time() - started


def measure(loop: LoopName, repeat: int, make: Callable[[], Awaitable[float]]) -> float:
    async def main() -> float:
        return await make()

    return statistics.median(
        aiosock.run(main(), loop=loop, handle_signals=False) for _ in range(repeat)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, choices=range(1, 51), default=5)
    parser.add_argument("--connections", type=int, choices=range(1, 1001), default=100)
    parser.add_argument("--deadline", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(f"shutdown of {args.connections} idle connections (grace {GRACE:g} s):")
    for loop in cast(list[LoopName], loops_available()):
        for api in ("stream", "protocol"):
            seconds = measure(
                loop,
                args.repeat,
                functools.partial(shutdown_time, api, args.connections),
            )
            print(f"  {loop:8} {api:9} {seconds * 1000:8.1f} ms")
    print(f"deadlines of {args.deadline:g} s, from the last useful act to the cut:")
    for loop in cast(list[LoopName], loops_available()):
        for which in ("idle", "frame", "send"):
            seconds = measure(
                loop,
                args.repeat,
                functools.partial(deadline_time, which, args.deadline),
            )
            print(f"  {loop:8} {which:6} {seconds:6.3f} s")


if __name__ == "__main__":
    main()
