"""Typed messages: a codec decides the message type, and every API carries it.

The codec is :mod:`json_lines` (JSON values, one per line), whose messages
are not bytes. Each API is driven with it over real sockets, and
``assert_type`` makes the mypy run of ``make test`` check what each API is
typed to carry.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import assert_type

import pytest
from json_lines import Json, JsonLines, JsonLinesDecoder

import aiosock
from aiosock import (
    Address,
    Connection,
    DatagramError,
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
    Transport,
    sync,
)
from aiosock.aio.datagram import SocketDatagramTransport
from aiosock.core.datagrams import Received

README = Path(__file__).parent.parent / "README.md"
VALUES: list[Json] = [{"id": 1, "tags": ["a", "b"]}, [1, 2.5, None], "line\nbreak", 7]


async def echo_json(conn: Connection[Json]) -> None:
    async for value in conn:
        await conn.send({"echo": value})


async def test_a_handler_and_a_client_exchange_values() -> None:
    async with await aiosock.serve(
        echo_json, "tcp://127.0.0.1:0", codec=JsonLines()
    ) as server:
        address = server.addresses[0]
        async with await aiosock.connect(address, codec=JsonLines()) as conn:
            assert_type(conn, Connection[Json])
            for value in VALUES:
                await conn.send(value)
            replies = [await conn.receive() for _ in VALUES]
    assert replies == [{"echo": value} for value in VALUES]


class Collect(aiosock.Protocol[Json]):
    """Keeps the values it gets; a server answers each with its type's name."""

    def __init__(self, *, answer: bool = False) -> None:
        self.answer = answer
        self.got: list[Json] = []
        self.lost: asyncio.Future[Exception | None] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_made(self, transport: Transport[Json]) -> None:
        self.transport = transport

    def message_received(self, message: Json) -> None:
        self.got.append(message)
        if self.answer:
            self.transport.send(type(message).__name__)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def test_the_callback_api_gets_values(abstract_name: str) -> None:
    protocols: list[Collect] = []

    def make() -> Collect:
        protocols.append(Collect(answer=True))
        return protocols[-1]

    server = await aiosock.create_server(
        make, f"unix:@{abstract_name}", codec=JsonLines()
    )
    async with server:
        transport, client = await aiosock.create_connection(
            Collect, server.addresses[0], codec=JsonLines()
        )
        assert_type(transport, Transport[Json])
        for value in VALUES:
            transport.send(value)
        transport.send_eof()
        # The server answers each value, then closes at EOF.
        assert await asyncio.wait_for(client.lost, 10) is None
    assert protocols[0].got == VALUES
    assert client.got == ["dict", "list", "str", "int"]


async def test_values_before_a_bad_line_arrive_then_the_stream_ends() -> None:
    async with (
        await aiosock.serve(
            echo_json, "tcp://127.0.0.1:0", codec=JsonLines()
        ) as server,
        await aiosock.connect(server.addresses[0]) as raw,
    ):
        # The bad line comes last, so the server has read every byte
        # when it closes: a clean EOF, not a reset.
        await raw.send(b'1\n"two"\nnot json\n')
        replies = b"".join([chunk async for chunk in raw])
    assert replies == b'{"echo":1}\n{"echo":"two"}\n'


def test_the_blocking_driver_carries_values(tmp_path: Path) -> None:
    path = tmp_path / "json.sock"

    async def main(ready: asyncio.Future[None]) -> None:
        async with await aiosock.serve(
            echo_json, f"unix://{path}", codec=JsonLines()
        ) as server:
            ready.set_result(None)
            await asyncio.to_thread(client, str(server.addresses[0]))

    def client(address: str) -> None:
        with sync.connect(address, codec=JsonLines(), timeout=10) as conn:
            assert_type(conn, sync.Connection[Json])
            conn.send({"n": 1})
            assert conn.receive() == {"echo": {"n": 1}}
            conn.send_eof()
            assert list(conn) == []

    async def run() -> None:
        ready = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(main(ready), 10)

    asyncio.run(run())


def test_the_decoder_keeps_the_codec_contract() -> None:
    decoder = JsonLines().decoder()
    assert decoder.feed(b'{"a"') == []
    assert decoder.buffered == 4
    with pytest.raises(RemoteProtocolError, match="not JSON") as caught:
        decoder.feed(b":1}\n2\n{oops}\n3\n")
    assert caught.value.messages == [{"a": 1}, 2]
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"4\n")
    with pytest.raises(FrameTooLarge) as too_long:
        JsonLines(max_length=8).decoder().feed(b'[1]\n"0123456789"\n')
    assert too_long.value.messages == [[1]]
    with pytest.raises(LocalProtocolError, match="longer than max_length"):
        JsonLines(max_length=8).encode("0123456789")


def test_the_readme_shows_the_codec_as_it_is_tested() -> None:
    import json_lines

    source = inspect.getsource(json_lines)
    body = source[source.index("import json") :]
    assert body in README.read_text(), "README's 'Writing a codec' is stale"


def _typing_only() -> None:
    """Never run: what mypy must accept and refuse, checked by ``make test``.

    mypy --strict warns of an unused ``type: ignore``: each one below
    proves that the call it sits on is refused.
    """

    async def bytes_handler(conn: Connection[bytes]) -> None:
        assert_type(await conn.receive(), bytes)

    async def calls() -> None:
        await aiosock.serve(bytes_handler, "tcp://:0")
        await aiosock.serve(echo_json, "tcp://:0", codec=JsonLines())
        # No codec means bytes: a handler of JSON values does not fit.
        await aiosock.serve(echo_json, "tcp://:0")  # type: ignore[arg-type]
        # A codec of values does not fit a handler of bytes.
        codec = JsonLines()
        await aiosock.serve(bytes_handler, "tcp://:0", codec=codec)  # type: ignore[arg-type]
        conn = await aiosock.connect("tcp://127.0.0.1:1")
        assert_type(conn, Connection[bytes])
        await conn.send({"not": "bytes"})  # type: ignore[arg-type]
        values = await aiosock.connect("tcp://127.0.0.1:1", codec=JsonLines())
        assert_type(values, Connection[Json])
        assert_type(sync.connect("unix:@x"), sync.Connection[bytes])
        transport, _ = await aiosock.create_datagram_endpoint(RawPeer, local="udp://:0")
        assert_type(transport, SocketDatagramTransport[bytes])
        transport.send({"not": "bytes"}, "udp://127.0.0.1:1")  # type: ignore[arg-type]

    def blocking_datagrams() -> None:
        bound = sync.open_datagram("udp://:0")
        assert_type(bound, sync.DatagramEndpoint[tuple[bytes, Address | None], bytes])
        assert_type(bound, sync.DatagramEndpoint[sync.Received, bytes])
        # No codec means bytes: a JSON value is refused.
        bound.send({"not": "bytes"}, "udp://127.0.0.1:1")  # type: ignore[arg-type]
        connected = sync.connect_datagram("udp://127.0.0.1:1")
        assert_type(connected, sync.DatagramEndpoint[bytes, bytes])
        assert_type(connected.receive(), bytes)
        connected.send({"not": "bytes"})  # type: ignore[arg-type]
        values = sync.connect_datagram("udp://127.0.0.1:1", codec=JsonLines())
        assert_type(values.receive(), Json)
        values.send(b"bytes are no JSON value")  # type: ignore[arg-type]

    del calls, blocking_datagrams
    assert_type(JsonLines().decoder(), JsonLinesDecoder)


# -------------------------------------------------------------- datagrams
#
# One datagram is one value: with a codec, a datagram that is not exactly
# one frame is a DatagramError in its place, and the endpoint goes on.

#: Datagrams that are not one JSON line, what each DatagramError says, and
#: the type of its cause: the codec's error, or none when the frames were
#: good but too many.
NOT_ONE_VALUE: list[tuple[bytes, str, type[object]]] = [
    (b"not json\n", "not JSON", RemoteProtocolError),
    (b"1\n2\n", "holds 2 frames, not one", type(None)),
    (b"[1", "does not decode", IncompleteFrame),  # a line cut short
]


def datagram_address(kind: str, tmp_path: Path, abstract_name: str) -> str:
    if kind == "udp":
        return "udp://127.0.0.1:0"
    if kind == "unixgram-path":
        return f"unixgram://{tmp_path / 'values.dgram'}"
    return f"unixgram:@{abstract_name}"


@pytest.mark.parametrize("kind", ["udp", "unixgram-path"])
def test_the_blocking_datagram_driver_carries_values(
    kind: str, tmp_path: Path, abstract_name: str
) -> None:
    local = datagram_address(kind, tmp_path, abstract_name)
    with sync.open_datagram(local, codec=JsonLines(), timeout=10) as server:
        assert_type(server, sync.DatagramEndpoint[sync.Received[Json], Json])
        address = server.local_address
        assert address is not None
        with sync.connect_datagram(address, codec=JsonLines(), timeout=10) as client:
            assert_type(client, sync.DatagramEndpoint[Json, Json])
            for value in VALUES:
                client.send(value)
                got, sender = server.receive()
                assert_type(got, Json)
                assert (got, sender) == (value, client.local_address)
                server.send({"echo": got}, sender)
                assert client.receive() == {"echo": value}
            with sync.connect_datagram(address, timeout=10) as raw:
                for datagram, _, _ in NOT_ONE_VALUE:
                    raw.send(datagram)
                raw.send(b'"after"\n')
                # Each raises in its place in the order; the endpoint goes on.
                for datagram, why, cause in NOT_ONE_VALUE:
                    with pytest.raises(DatagramError, match=why) as caught:
                        server.receive()
                    assert caught.value.address == raw.local_address
                    assert caught.value.size == len(datagram)
                    assert type(caught.value.__cause__) is cause
                assert server.receive() == ("after", raw.local_address)
        assert server.stats.errors == len(NOT_ONE_VALUE)
        assert server.stats.received == len(VALUES) + len(NOT_ONE_VALUE) + 1


class ValuesPeer(aiosock.DatagramProtocol[Json]):
    """Keeps the values it gets and the first datagram that failed; a
    server answers each value to its sender."""

    def __init__(self, *, expect: int = 0, answer: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.expect, self.answer = expect, answer
        self.got: list[Json] = []
        self.all_in: asyncio.Future[None] = loop.create_future()
        self.failed: asyncio.Future[Exception] = loop.create_future()
        self.lost: asyncio.Future[Exception | None] = loop.create_future()

    def connection_made(self, transport: aiosock.DatagramTransport[Json]) -> None:
        self.transport = transport

    def datagram_received(self, message: Json, address: Address | None) -> None:
        self.got.append(message)
        if self.answer:
            self.transport.send({"echo": message}, address)
        if len(self.got) == self.expect:
            self.all_in.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if not self.failed.done():
            self.failed.set_result(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


class RawPeer(aiosock.DatagramProtocol):
    """Bytes, no codec: sends what a values peer cannot take."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[Exception | None] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


@pytest.mark.parametrize("kind", ["udp", "unixgram-abstract"])
async def test_the_datagram_callback_api_carries_values(
    kind: str, tmp_path: Path, abstract_name: str
) -> None:
    transport, server = await aiosock.create_datagram_endpoint(
        lambda: ValuesPeer(answer=True),
        local=datagram_address(kind, tmp_path, abstract_name),
        codec=JsonLines(),
    )
    assert_type(transport, SocketDatagramTransport[Json])
    address = transport.local_address
    # Not one value: the server hears why, and goes on.
    raw_transport, raw = await aiosock.create_datagram_endpoint(RawPeer, remote=address)
    assert_type(raw_transport, SocketDatagramTransport[bytes])
    raw_transport.send(b"not json\n")
    failure = await asyncio.wait_for(server.failed, 10)
    assert isinstance(failure, DatagramError)
    assert failure.address == raw_transport.local_address
    raw_transport.close()
    assert await asyncio.wait_for(raw.lost, 10) is None
    client_transport, client = await aiosock.create_datagram_endpoint(
        lambda: ValuesPeer(expect=len(VALUES)), remote=address, codec=JsonLines()
    )
    for value in VALUES:
        client_transport.send(value)
    await asyncio.wait_for(client.all_in, 10)
    assert server.got == VALUES
    assert client.got == [{"echo": value} for value in VALUES]
    assert transport.stats.errors == 1
    for closing, peer in [(client_transport, client), (transport, server)]:
        closing.close()
        assert await asyncio.wait_for(peer.lost, 10) is None


@pytest.mark.parametrize("kind", ["udp", "unixgram-abstract"])
async def test_the_async_endpoint_carries_values(
    kind: str, tmp_path: Path, abstract_name: str
) -> None:
    local = datagram_address(kind, tmp_path, abstract_name)
    async with await aiosock.open_datagram(local, codec=JsonLines()) as server:
        assert_type(server, aiosock.Endpoint[Received[Json], Json])
        assert server.local_address is not None
        async with await aiosock.connect_datagram(
            server.local_address, codec=JsonLines()
        ) as client:
            assert_type(client, aiosock.Endpoint[Json, Json])
            async with asyncio.timeout(10):
                for value in VALUES:
                    await client.send(value)
                    got, sender = await server.receive()
                    assert_type(got, Json)
                    assert got == value
                    await server.send({"echo": got}, sender)
                    assert await client.receive() == {"echo": value}
                raw = await aiosock.connect_datagram(server.local_address)
                async with raw:
                    await raw.send(b"not json\n")
                    await raw.send(b'"after"\n')
                    with pytest.raises(DatagramError, match="not JSON"):
                        await server.receive()
                    # async for skips what does not decode; the value after comes.
                    async for got, _ in server:
                        assert got == "after"
                        break
    assert server.stats.errors == 1


async def _endpoint_typing_only() -> None:
    """Never run: what mypy accepts and refuses of the async endpoints."""
    bound = await aiosock.open_datagram("udp://127.0.0.1:0")
    assert_type(bound, aiosock.Endpoint[Received, bytes])
    assert_type(await bound.receive(), tuple[bytes, Address | None])
    await bound.send({"not": "bytes"}, "udp://127.0.0.1:1")  # type: ignore[arg-type]
    connected = await aiosock.connect_datagram("udp://127.0.0.1:1")
    assert_type(connected, aiosock.Endpoint[bytes, bytes])
    await connected.send({"not": "bytes"})  # type: ignore[arg-type]
    values = await aiosock.connect_datagram("udp://127.0.0.1:1", codec=JsonLines())
    assert_type(await values.receive(), Json)
    await values.send(b"bytes are no JSON value")  # type: ignore[arg-type]
