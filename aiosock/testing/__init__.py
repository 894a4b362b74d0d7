"""Tools for testing code built on aiosock, and aiosock itself.

- :mod:`aiosock.testing.streams`: a conformance suite for connected pairs
  of connections (``STREAM_CHECKS``), to hold any transport to aiosock's
  stream contract.
"""

from aiosock.testing.streams import CHECK_TIMEOUT, STREAM_CHECKS, PairMaker

__all__ = ["CHECK_TIMEOUT", "STREAM_CHECKS", "PairMaker"]
