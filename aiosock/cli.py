"""The command line: ``python -m aiosock serve echo ADDRESS...``.

Serves echo on every address until SIGINT or SIGTERM, then shuts down
gracefully (stop accepting, let connections finish, then abort). Prints
``listening on ADDRESS`` for each bound address once it is ready (port 0
resolved), so that a script can wait for that line.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from aiosock.aio.connection import Connection
from aiosock.aio.loops import LoopName, run
from aiosock.aio.protocol import Protocol, Transport
from aiosock.aio.server import DEFAULT_GRACE, Server, create_server, serve
from aiosock.core.addresses import Address, parse_address
from aiosock.core.codecs import Codec, LengthPrefixed, Lines, Raw

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


async def serve_echo(
    addresses: Sequence[Address], *, codec: Codec, api: str, grace: float
) -> None:
    server: Server
    if api == "protocol":
        server = await create_server(EchoProtocol, *addresses, codec=codec)
    else:
        server = await serve(echo, *addresses, codec=codec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        for address in server.addresses:
            print(f"listening on {address}", flush=True)
        await stop.wait()
        print("shutting down", flush=True)
        await server.aclose(grace)


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
        "--grace", type=float, default=DEFAULT_GRACE, help="seconds to finish on exit"
    )
    return parser.parse_args(argv)


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    loop: LoopName = args.loop
    try:
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
