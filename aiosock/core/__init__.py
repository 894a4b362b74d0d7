"""The sans-IO core: addresses, codecs, limits and errors.

Pure, synchronous and loop-free: nothing here imports an event loop or
touches a socket, so the asyncio layer and the blocking driver share it.
"""

from aiosock.core.addresses import (
    Address,
    AddressFamily,
    FdAddress,
    SocketKind,
    TCPAddress,
    UDPAddress,
    UnixAddress,
    UnixDatagramAddress,
    parse_address,
)
from aiosock.core.codecs import (
    Buffer,
    Codec,
    Decoder,
    Delimited,
    Encoded,
    LengthPrefixed,
    Lines,
    Raw,
)
from aiosock.core.datagrams import (
    DatagramStats,
)
from aiosock.core.errors import (
    AiosockError,
    BrokenResourceError,
    ClosedResourceError,
    DatagramError,
    DatagramTooLarge,
    DatagramTruncated,
    DeadlineExceeded,
    EndOfStream,
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
    LoopUnavailable,
    RemoteProtocolError,
    translate_os_error,
)
from aiosock.core.limits import Limits, OverflowPolicy

__all__ = [
    "Address",
    "AddressFamily",
    "AiosockError",
    "BrokenResourceError",
    "Buffer",
    "ClosedResourceError",
    "Codec",
    "DatagramError",
    "DatagramStats",
    "DatagramTooLarge",
    "DatagramTruncated",
    "DeadlineExceeded",
    "Decoder",
    "Delimited",
    "Encoded",
    "EndOfStream",
    "FdAddress",
    "FrameTooLarge",
    "IncompleteFrame",
    "LengthPrefixed",
    "Limits",
    "Lines",
    "LocalProtocolError",
    "LoopUnavailable",
    "OverflowPolicy",
    "Raw",
    "RemoteProtocolError",
    "SocketKind",
    "TCPAddress",
    "UDPAddress",
    "UnixAddress",
    "UnixDatagramAddress",
    "parse_address",
    "translate_os_error",
]
