"""Tools for testing code built on aiosock, and aiosock itself.

- :mod:`aiosock.testing.streams`: a conformance suite for connected pairs
  of connections (``STREAM_CHECKS``), to hold any transport to aiosock's
  stream contract.
- :mod:`aiosock.testing.memory`: connected pairs in memory
  (:func:`memory_pair` for protocols, :func:`memory_connection_pair` for
  connections), to test protocol code without sockets.
"""

from aiosock.testing.memory import memory_connection_pair, memory_pair
from aiosock.testing.streams import (
    CHECK_TIMEOUT,
    STREAM_CHECKS,
    Pair,
    PairMaker,
    turns_until,
)

__all__ = [
    "CHECK_TIMEOUT",
    "STREAM_CHECKS",
    "Pair",
    "PairMaker",
    "memory_connection_pair",
    "memory_pair",
    "turns_until",
]
