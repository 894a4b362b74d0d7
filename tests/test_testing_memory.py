"""In-memory pairs behave like stream sockets where a Protocol can tell."""

from __future__ import annotations

from aiosock import BrokenResourceError, Limits, Lines, Protocol, Transport
from aiosock.testing import memory_pair, turns_until


class Peer(Protocol):
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.calls: list[str] = []
        self.lost: Exception | bool | None = False
        self.keep_open = True

    def connection_made(self, transport: Transport) -> None:
        self.calls.append("made")

    def message_received(self, message: bytes) -> None:
        self.messages.append(message)

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc

    def pause_writing(self) -> None:
        self.calls.append("pause")

    def resume_writing(self) -> None:
        self.calls.append("resume")


async def test_delivery_is_framed_and_never_inside_send() -> None:
    a, b = Peer(), Peer()
    ta, _ = memory_pair(a, b, codec=Lines())
    assert a.calls == b.calls == ["made"]
    ta.send(b"one")
    ta.send(b"two")
    assert b.messages == []  # not yet: a later turn of the loop
    assert await turns_until(lambda: len(b.messages) == 2)
    assert b.messages == [b"one", b"two"]


async def test_a_reader_that_pauses_makes_the_writer_pause() -> None:
    a, b = Peer(), Peer()
    limits = Limits(write_high_water=100, write_low_water=10)
    ta, tb = memory_pair(a, b, limits=limits)
    tb.pause_reading()
    ta.send(b"x" * 150)
    assert a.calls[-1] == "pause"
    await turns_until(lambda: False, 10)
    assert b.messages == []
    tb.resume_reading()
    assert await turns_until(lambda: a.calls[-1] == "resume")
    assert b.messages == [b"x" * 150]


async def test_eof_then_close_then_abort() -> None:
    a, b = Peer(), Peer()
    ta, tb = memory_pair(a, b)
    ta.send(b"last")
    ta.send_eof()
    assert await turns_until(lambda: "eof" in b.calls)
    assert b.messages == [b"last"]
    tb.send(b"reply")  # b kept its side open
    assert await turns_until(lambda: a.messages == [b"reply"])
    tb.abort()
    assert await turns_until(lambda: a.lost is not False)
    assert isinstance(a.lost, BrokenResourceError)
    assert b.lost is None
