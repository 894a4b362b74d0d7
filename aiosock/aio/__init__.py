"""The asyncio layer: the only package of aiosock that imports asyncio."""

from aiosock.aio.client import connect, create_connection
from aiosock.aio.connection import Connection
from aiosock.aio.loops import loop_factory, run
from aiosock.aio.protocol import Protocol, Transport
from aiosock.aio.server import Server, create_server, serve

__all__ = [
    "Connection",
    "Protocol",
    "Server",
    "Transport",
    "connect",
    "create_connection",
    "create_server",
    "loop_factory",
    "run",
    "serve",
]
