"""The echo servers the benchmark measures, one process per run.

Run:  python -m benchmarks.servers NAME ADDRESS [--loop asyncio|uvloop]
                                    [--max-seconds N]

It binds ADDRESS (an aiosock address string; port 0 picks a free port),
prints ``READY <address>`` with the port really bound, and echoes until
SIGTERM or SIGINT (or N seconds, 3600 by default), then exits 0.
``SERVERS`` holds the references, written the way the asyncio
documentation shows with nothing of aiosock in their path (``protocol``,
``buffered``, ``streams``, ``streams-framed``, ``datagram``), and
aiosock's own rows (``aiosock-*``), one line each; ``ADAPTER_TRIALS``
forces one adapter, to measure the choice ``adapter_for`` makes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import stat
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, cast

import attrs

if __package__ in (None, ""):  # run as a script: make aiosock importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosock
import aiosock.aio.server
from aiosock import (
    Address,
    TCPAddress,
    UDPAddress,
    UnixAddress,
    UnixDatagramAddress,
    parse_address,
)
from aiosock.aio.loops import loop_factory
from aiosock.aio.protocol import (
    BufferedPassThroughAdapter,
    PassThroughAdapter,
    StreamAdapter,
)

# What asyncio's selector transports and uvloop read per call; the streams
# server asks for as much so that it is not held back by a small read.
READ_SIZE = 256 * 1024

Close = Callable[[], Awaitable[None]]
Start = Callable[[Address], Awaitable[tuple[Address, Close]]]
StreamHandler = (
    Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | None
)


@attrs.frozen
class Server:
    """How to start one echo server, and the socket kinds it serves."""

    start: Start
    # "stream": any stream load; "framed": only pipelined loads, whose
    # length-prefixed frames it decodes; "datagram".
    kinds: frozenset[str]


# ------------------------------------------------------------ protocols


class EchoProtocol(asyncio.Protocol):
    """The plain Protocol path: asyncio allocates each chunk it reads."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class EchoBufferedProtocol(asyncio.BufferedProtocol):
    """The BufferedProtocol path: one reused receive buffer per connection."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self.buffer = bytearray(READ_SIZE)
        self.view = memoryview(self.buffer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        # A copy: a transport may keep what it could not send yet, and the
        # buffer is overwritten by the next read.
        self.transport.write(self.buffer[:nbytes])


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def echo_frames(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """What an asyncio-streams server does with length-prefixed frames."""
    try:
        while True:
            header = await reader.readexactly(4)
            payload = await reader.readexactly(int.from_bytes(header, "big"))
            writer.write(header + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def echo_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


# --------------------------------------------------------------- starting


def unix_target(address: UnixAddress | UnixDatagramAddress) -> str:
    return "\0" + address.path if address.abstract else address.path


def remove_stale_socket(address: UnixAddress | UnixDatagramAddress) -> None:
    if address.abstract:
        return
    with suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(address.path).st_mode):
            os.unlink(address.path)


def bound(
    server: asyncio.base_events.Server | socket.socket, template: Address
) -> Address:
    sock = server if isinstance(server, socket.socket) else server.sockets[0]
    if isinstance(template, TCPAddress | UDPAddress):
        host, port = sock.getsockname()[:2]
        return attrs.evolve(template, host=host, port=port)
    return template


def closer(close: Callable[[], None]) -> Close:
    async def closing() -> None:
        close()

    return closing


def stream_starter(
    make: Callable[[], asyncio.BaseProtocol] | None, handler: StreamHandler = None
) -> Start:
    """A starter for a protocol factory, or for a streams ``handler``."""

    async def start(address: Address) -> tuple[Address, Close]:
        loop = asyncio.get_running_loop()
        server: asyncio.base_events.Server
        if isinstance(address, TCPAddress):
            if make is None:
                server = await asyncio.start_server(
                    handler or echo_stream, address.host, address.port, limit=READ_SIZE
                )
            else:
                server = await loop.create_server(make, address.host, address.port)
            for sock in server.sockets:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif isinstance(address, UnixAddress):
            remove_stale_socket(address)
            if make is None:
                server = await asyncio.start_unix_server(
                    handler or echo_stream, unix_target(address), limit=READ_SIZE
                )
            else:
                server = await loop.create_unix_server(make, unix_target(address))
        else:
            raise SystemExit(f"not a stream address: {address}")
        return bound(server, address), closer(server.close)

    return start


async def start_datagram(address: Address) -> tuple[Address, Close]:
    # Both loops get a socket made here: uvloop cannot bind a Unix
    # datagram socket by path itself (uvloop#403), and the same code path
    # keeps the two loops comparable.
    if isinstance(address, UDPAddress):
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((address.host, address.port))
    elif isinstance(address, UnixDatagramAddress):
        remove_stale_socket(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(unix_target(address))
    else:
        raise SystemExit(f"not a datagram address: {address}")
    sock.setblocking(False)
    # Room for bursts from 100 clients without drops on the receive side.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(EchoDatagramProtocol, sock=sock)
    return bound(sock, address), closer(transport.close)


def aiosock_starter(
    api: str, codec: aiosock.Codec, adapter: type[StreamAdapter] | None = None
) -> Start:
    """aiosock's own echo server: the callback or the async API.

    ``adapter`` forces the asyncio adapter class instead of the one aiosock
    picks for the loop, to measure that choice (one process per server, so
    the override touches nothing else).
    """

    async def start(address: Address) -> tuple[Address, Close]:
        if adapter is not None:
            aiosock.aio.server.adapter_for = lambda *_: adapter  # type: ignore[attr-defined,assignment]
        if api == "protocol":
            server = await aiosock.create_server(EchoAiosock, address, codec=codec)
        else:
            server = await aiosock.serve(echo_aiosock, address, codec=codec)
        return server.addresses[0], lambda: server.aclose(grace=1)

    return start


class EchoAiosock(aiosock.Protocol):
    def connection_made(self, transport: aiosock.Transport) -> None:
        self.transport = transport

    def message_received(self, message: bytes) -> None:
        self.transport.send(message)


async def echo_aiosock(connection: aiosock.Connection) -> None:
    async for message in connection:
        await connection.send(message)


class EchoAiosockDatagram(aiosock.DatagramProtocol):
    def connection_made(self, transport: aiosock.DatagramTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, address: Address | None) -> None:
        self.transport.send(data, address)


def datagram_socket_options(sock: socket.socket) -> None:
    # As start_datagram does for the references, so the kernel's receive
    # queue is the same size for every row.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)


async def start_aiosock_datagram(address: Address) -> tuple[Address, Close]:
    """aiosock's callback API: ``DatagramProtocol`` on aiosock's transport."""
    transport, _ = await aiosock.create_datagram_endpoint(
        EchoAiosockDatagram, local=address
    )
    datagram_socket_options(transport.get_extra_info("socket"))
    assert transport.local_address is not None
    return transport.local_address, closer(transport.close)


async def start_aiosock_endpoint(address: Address) -> tuple[Address, Close]:
    """aiosock's async API: ``async for`` over an ``Endpoint``, ``await send``."""
    endpoint = await aiosock.open_datagram(address)
    datagram_socket_options(endpoint.transport.get_extra_info("socket"))

    async def echo() -> None:
        async for data, sender in endpoint:
            # A Unix client that has left refuses its answer; serve the rest.
            with suppress(OSError):
                await endpoint.send(data, sender)

    task = asyncio.create_task(echo())

    async def close() -> None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await endpoint.aclose()

    assert endpoint.local_address is not None
    return endpoint.local_address, close


STREAM, FRAMED = frozenset({"stream"}), frozenset({"framed"})
DATAGRAM = frozenset({"datagram"})
SERVERS: dict[str, Server] = {
    "protocol": Server(stream_starter(EchoProtocol), STREAM),
    "buffered": Server(stream_starter(EchoBufferedProtocol), STREAM),
    "streams": Server(stream_starter(None), STREAM),
    "streams-framed": Server(stream_starter(None, echo_frames), FRAMED),
    "datagram": Server(start_datagram, DATAGRAM),
    "aiosock-protocol": Server(aiosock_starter("protocol", aiosock.Raw()), STREAM),
    "aiosock-connection": Server(aiosock_starter("stream", aiosock.Raw()), STREAM),
    "aiosock-protocol-framed": Server(
        aiosock_starter("protocol", aiosock.LengthPrefixed()), FRAMED
    ),
    "aiosock-connection-framed": Server(
        aiosock_starter("stream", aiosock.LengthPrefixed()), FRAMED
    ),
    "aiosock-datagram": Server(start_aiosock_datagram, DATAGRAM),
    "aiosock-endpoint": Server(start_aiosock_endpoint, DATAGRAM),
}


# The adapter choice measured: not in the default matrix, --adapters adds them.
ADAPTER_TRIALS: dict[str, Server] = {
    "aiosock-plain": Server(
        aiosock_starter("protocol", aiosock.Raw(), PassThroughAdapter), STREAM
    ),
    "aiosock-buffered": Server(
        aiosock_starter("protocol", aiosock.Raw(), BufferedPassThroughAdapter), STREAM
    ),
}


# ------------------------------------------------------------------ main


async def serve(server: Server, address: Address, max_seconds: float) -> None:
    actual, close = await server.start(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {actual}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        pass
    finally:
        await close()
        if isinstance(actual, UnixAddress | UnixDatagramAddress):
            remove_stale_socket(actual)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=sorted(SERVERS | ADAPTER_TRIALS))
    parser.add_argument("address", type=parse_address)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        server = (SERVERS | ADAPTER_TRIALS)[args.server]
        runner.run(serve(server, args.address, args.max_seconds))


if __name__ == "__main__":
    main()
