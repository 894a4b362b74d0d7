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
    Connection,
    FrameTooLarge,
    LocalProtocolError,
    RemoteProtocolError,
    Transport,
    sync,
)

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

    del calls
    assert_type(JsonLines().decoder(), JsonLinesDecoder)
