"""The asyncio layer: the only package of aiosock that imports asyncio."""

from aiosock.aio.client import connect, create_connection
from aiosock.aio.connection import Connection
from aiosock.aio.datagram import (
    DatagramProtocol,
    DatagramTransport,
    create_datagram_endpoint,
)
from aiosock.aio.endpoint import Endpoint, connect_datagram, open_datagram
from aiosock.aio.loops import loop_factory, run
from aiosock.aio.protocol import Protocol, Transport
from aiosock.aio.server import (
    Server,
    ServerState,
    ServerStats,
    create_server,
    serve,
)

__all__ = [
    "Connection",
    "DatagramProtocol",
    "DatagramTransport",
    "Endpoint",
    "Protocol",
    "Server",
    "ServerState",
    "ServerStats",
    "Transport",
    "connect",
    "connect_datagram",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "loop_factory",
    "open_datagram",
    "run",
    "serve",
]
