"""Blocking sockets over the core's codecs, with no event loop.

Handy in scripts, REPLs and threads; each call blocks the calling thread.
A stream :class:`Connection` sends and receives whole messages::

    with connect("tcp://127.0.0.1:8000", codec=LengthPrefixed(), timeout=5) as conn:
        conn.send(b"ping")
        reply = conn.receive()

A :class:`DatagramEndpoint` sends and receives datagrams, one message
each, with the semantics of the async :class:`aiosock.Endpoint`::

    with open_datagram("udp://127.0.0.1:9000", timeout=5) as server:
        data, sender = server.receive()
        server.send(data, sender)

    with connect_datagram("udp://127.0.0.1:9000", timeout=5) as client:
        client.send(b"ping")
        reply = client.receive()
"""

from aiosock.core.datagrams import Received
from aiosock.sync._datagram import DatagramEndpoint, connect_datagram, open_datagram
from aiosock.sync._stream import Connection, connect

__all__ = [
    "Connection",
    "DatagramEndpoint",
    "Received",
    "connect",
    "connect_datagram",
    "open_datagram",
]
