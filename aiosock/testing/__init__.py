"""Tools for testing code built on aiosock, and aiosock itself.

- :mod:`aiosock.testing.streams`: a conformance suite for connected pairs
  of connections (``STREAM_CHECKS``), to hold any transport to aiosock's
  stream contract.
- :mod:`aiosock.testing.datagrams`: a conformance suite for datagram
  endpoints (``DATAGRAM_CHECKS``): a pair maker gives a server and a
  client connected to it, and the checks hold them to aiosock's datagram
  contract (boundaries, addresses, refusals, overflow, closing).
- :mod:`aiosock.testing.memory`: connected pairs in memory
  (:func:`memory_pair` for protocols, :func:`memory_connection_pair` for
  connections), to test protocol code without sockets.
- :mod:`aiosock.testing.network`: datagram endpoints in memory
  (:class:`MemoryNetwork`, whose ``pair`` method fits the datagram suite).
"""

from aiosock.testing.datagrams import DATAGRAM_CHECKS, DatagramPair, DatagramPairMaker
from aiosock.testing.memory import memory_connection_pair, memory_pair
from aiosock.testing.network import MemoryDatagramTransport, MemoryNetwork
from aiosock.testing.streams import (
    CHECK_TIMEOUT,
    STREAM_CHECKS,
    Pair,
    PairMaker,
    turns_until,
)

__all__ = [
    "CHECK_TIMEOUT",
    "DATAGRAM_CHECKS",
    "STREAM_CHECKS",
    "DatagramPair",
    "DatagramPairMaker",
    "MemoryDatagramTransport",
    "MemoryNetwork",
    "Pair",
    "PairMaker",
    "memory_connection_pair",
    "memory_pair",
    "turns_until",
]
