"""The command line: ``python -m aiosock serve echo ADDRESS...``.

Serves echo on every address until SIGINT or SIGTERM, then shuts down
gracefully (stop accepting, let connections finish for --grace seconds,
then abort); a second signal aborts at once. Stream addresses (tcp, unix)
and datagram addresses (udp, unixgram) mix freely: a datagram goes back
to its sender as it came, one frame of the codec per datagram; one that
does not decode is dropped (and counted). Prints
``loop: NAME`` (the event loop it runs on: asyncio or uvloop), then
``listening on ADDRESS`` for each bound address once it is ready (port 0
resolved), so that a script can wait for that line, and ``shutting down``
when the first signal comes. Logs go to stderr, from --log-level up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiosock.aio.connection import Connection
from aiosock.aio.datagram import (
    DatagramProtocol,
    DatagramTransport,
    create_datagram_endpoint,
)
from aiosock.aio.endpoint import Endpoint, open_datagram
from aiosock.aio.loops import LoopName, is_uvloop, run
from aiosock.aio.protocol import Protocol, Transport
from aiosock.aio.server import DEFAULT_GRACE, Server, create_server, serve
from aiosock.core.addresses import (
    Address,
    UDPAddress,
    UnixDatagramAddress,
    parse_address,
)
from aiosock.core.codecs import Codec, LengthPrefixed, Lines, Raw
from aiosock.core.datagrams import Received
from aiosock.core.errors import ClosedResourceError

__all__ = ["main"]

CODECS: dict[str, Codec] = {
    "raw": Raw(),
    "lines": Lines(),
    "length": LengthPrefixed(),
}


class EchoProtocol(Protocol):
    """Echo with the callback API: every message straight back."""

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def message_received(self, message: bytes) -> None:
        self.transport.send(message)


async def echo(connection: Connection) -> None:
    """Echo with the async API, until the peer ends its side."""
    async for message in connection:
        await connection.send(message)


class EchoDatagrams(DatagramProtocol):
    """Datagram echo with the callback API: each one back to its sender."""

    def connection_made(self, transport: DatagramTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, address: Address | None) -> None:
        # An unnamed Unix sender cannot be answered. One whose socket is gone
        # refuses the answer: error_received hears of it, nobody is left to
        # tell, and everyone else is still served.
        if address is not None:
            self.transport.send(data, address)


async def echo_datagrams(endpoint: Endpoint[Received]) -> None:
    """Datagram echo with the async API, until the endpoint is closed."""
    async for data, address in endpoint:
        if address is None:  # as above: an unnamed sender cannot be answered
            continue
        try:
            await endpoint.send(data, address)
        except ClosedResourceError:  # closed between a receive and its answer
            return
        except OSError:  # as above: a sender that is gone; go on
            continue


class _DatagramEcho:
    """One datagram address served with either API; closed by :meth:`aclose`."""

    def __init__(self) -> None:
        self.address: Address | None = None
        self._close: Callable[[], Awaitable[None]] | None = None

    async def start(self, address: Address, codec: Codec, api: str) -> None:
        if api == "protocol":
            transport, _ = await create_datagram_endpoint(
                EchoDatagrams, local=address, codec=codec
            )
            self.address = transport.local_address

            async def close() -> None:
                transport.close()

            self._close = close
            return
        endpoint = await open_datagram(address, codec=codec)
        self.address = endpoint.local_address
        task = asyncio.create_task(echo_datagrams(endpoint))

        async def stop() -> None:
            await endpoint.aclose()  # ends the task's async for
            await task

        self._close = stop

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


async def serve_echo(
    addresses: Sequence[Address], *, codec: Codec, api: str, grace: float
) -> None:
    """Serve echo on ``addresses`` until cancelled, then close them all.

    The stream server gets ``grace`` seconds to let its connections finish;
    cancelled again meanwhile, it aborts them at once.
    """
    streams = [a for a in addresses if not isinstance(a, DATAGRAM_ADDRESSES)]
    datagrams = [a for a in addresses if isinstance(a, DATAGRAM_ADDRESSES)]
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        bound: list[Address] = []
        if streams:
            server: Server
            if api == "protocol":
                server = await create_server(EchoProtocol, *streams, codec=codec)
            else:
                server = await serve(echo, *streams, codec=codec)
            # Closed last, with our grace rather than the default one.
            stack.push_async_callback(server.aclose, grace)
            bound += server.addresses
        for address in datagrams:
            echo_endpoint = _DatagramEcho()
            stack.push_async_callback(echo_endpoint.aclose)
            await echo_endpoint.start(address, codec, api)
            assert echo_endpoint.address is not None
            bound.append(echo_endpoint.address)
        # Which loop runs is seen nowhere else, and --loop picks it.
        print(f"loop: {'uvloop' if is_uvloop(loop) else 'asyncio'}", flush=True)
        for name in bound:
            print(f"listening on {name}", flush=True)
        try:
            await loop.create_future()  # run() cancels it on a signal
        except asyncio.CancelledError:
            print("shutting down", flush=True)
            raise


DATAGRAM_ADDRESSES = (UDPAddress, UnixDatagramAddress)

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m aiosock", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run a server")
    kinds = serve_cmd.add_subparsers(dest="kind", required=True)
    echo_cmd = kinds.add_parser("echo", help="send every message back")
    echo_cmd.add_argument("addresses", nargs="+", type=_address, metavar="ADDRESS")
    echo_cmd.add_argument(
        "--loop", choices=["auto", "asyncio", "uvloop"], default="auto"
    )
    echo_cmd.add_argument("--codec", choices=sorted(CODECS), default="raw")
    echo_cmd.add_argument("--api", choices=["protocol", "stream"], default="stream")
    echo_cmd.add_argument(
        "--grace",
        type=_seconds,
        default=DEFAULT_GRACE,
        help="seconds to finish on exit",
    )
    echo_cmd.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="warning",
        help="log this and worse to stderr",
    )
    return parser.parse_args(argv)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    loop: LoopName = args.loop
    try:
        # None when a signal stopped it: that is how it is meant to stop.
        run(
            serve_echo(
                args.addresses, codec=CODECS[args.codec], api=args.api, grace=args.grace
            ),
            loop=loop,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"aiosock: {exc}", file=sys.stderr)
        return 1
    return 0
