"""aiosock: stream and datagram sockets for asyncio, on a sans-IO core.

The public API is exactly what ``__all__`` lists; a test keeps it honest.
The asyncio layer is imported on first use, so that ``import aiosock.core``
(or ``aiosock.sync``) loads no event loop.
"""

import typing

from aiosock.core import (
    Address,
    AddressFamily,
    AiosockError,
    BrokenResourceError,
    Buffer,
    ClosedResourceError,
    Codec,
    DatagramError,
    DatagramStats,
    DatagramTooLarge,
    DatagramTruncated,
    DeadlineExceeded,
    Decoder,
    Delimited,
    Encoded,
    EndOfStream,
    FdAddress,
    FrameTooLarge,
    IncompleteFrame,
    LengthPrefixed,
    Limits,
    Lines,
    LocalProtocolError,
    LoopUnavailable,
    OverflowPolicy,
    Raw,
    RemoteProtocolError,
    SocketKind,
    TCPAddress,
    UDPAddress,
    UnixAddress,
    UnixDatagramAddress,
    parse_address,
    translate_os_error,
)

if typing.TYPE_CHECKING:
    from aiosock.aio import (
        Connection,
        DatagramProtocol,
        DatagramTransport,
        Endpoint,
        Protocol,
        Server,
        ServerState,
        ServerStats,
        Transport,
        connect,
        connect_datagram,
        create_connection,
        create_datagram_endpoint,
        create_server,
        loop_factory,
        open_datagram,
        run,
        serve,
    )

__version__ = "0.1.0"

_ASYNCIO_LAYER = frozenset(
    {
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
    }
)


def __getattr__(name: str) -> object:
    if name in _ASYNCIO_LAYER:
        import aiosock.aio

        value = getattr(aiosock.aio, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'aiosock' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ASYNCIO_LAYER})


__all__ = [
    "Address",
    "AddressFamily",
    "AiosockError",
    "BrokenResourceError",
    "Buffer",
    "ClosedResourceError",
    "Codec",
    "Connection",
    "DatagramError",
    "DatagramProtocol",
    "DatagramStats",
    "DatagramTooLarge",
    "DatagramTransport",
    "DatagramTruncated",
    "DeadlineExceeded",
    "Decoder",
    "Delimited",
    "Encoded",
    "EndOfStream",
    "Endpoint",
    "FdAddress",
    "FrameTooLarge",
    "IncompleteFrame",
    "LengthPrefixed",
    "Limits",
    "Lines",
    "LocalProtocolError",
    "LoopUnavailable",
    "OverflowPolicy",
    "Protocol",
    "Raw",
    "RemoteProtocolError",
    "Server",
    "ServerState",
    "ServerStats",
    "SocketKind",
    "TCPAddress",
    "Transport",
    "UDPAddress",
    "UnixAddress",
    "UnixDatagramAddress",
    "__version__",
    "connect",
    "connect_datagram",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "loop_factory",
    "open_datagram",
    "parse_address",
    "run",
    "serve",
    "translate_os_error",
]
