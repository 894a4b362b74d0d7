"""A conformance suite for datagram endpoints: :class:`~aiosock.Endpoint` pairs.

Give it a *pair maker*: a callable that takes ``limits=`` and returns an
async context manager yielding a :class:`DatagramPair`, a server and a
client connected to it, and it holds them to the contract every aiosock
datagram endpoint keeps, whatever carries it (UDP, Unix datagram sockets,
a socketpair, memory)::

    @pytest.mark.parametrize("check", DATAGRAM_CHECKS, ids=lambda c: c.__name__)
    async def test_my_transport(check):
        await check(my_pair_maker)

The server is bound (``receive()`` gives ``(data, sender)``, ``send``
needs an address) unless the pair says ``server_connected``: both ends
of a socketpair are connected to each other, and the checks then hold
the server to the connected contract instead. Every kind can be
refused: a check closes the server and the client hears of it.

Each check makes its own pairs, bounds its own time (``CHECK_TIMEOUT``)
and the turns of the loop it waits for a datagram, and raises
``AssertionError`` with a message when the contract is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

import attrs

from aiosock.aio.endpoint import Endpoint
from aiosock.core.addresses import Address, UDPAddress, UnixDatagramAddress
from aiosock.core.errors import (
    ClosedResourceError,
    DatagramTooLarge,
)
from aiosock.core.limits import Limits, OverflowPolicy
from aiosock.testing.streams import (
    CHECK_TIMEOUT,
    _expect,
    _soon,
    _woken_then_cancelled,
    turns_until,
)

__all__ = [
    "DATAGRAM_CHECKS",
    "DatagramPair",
    "DatagramPairMaker",
    "check_a_woken_receiver_cancelled_passes_the_datagram_on",
    "check_aclose_is_idempotent_and_safe_under_cancellation",
    "check_bound_and_connected_endpoints",
    "check_boundaries_at_every_size",
    "check_cancelled_receive_loses_no_datagram",
    "check_closing_wakes_blocked_receivers",
    "check_full_queue_counts_every_datagram",
    "check_oversize_send_raises_before_sending",
    "check_receive_after_close_raises_with_datagrams_queued",
    "check_refusal_surfaces_once",
    "check_sending_goes_on_after_a_refusal",
    "check_use_after_close",
]

# Turns of the loop a datagram may take to arrive, or a refusal to be
# reported: a bound, not a clock. On loopback and in memory a datagram
# needs a few; one that waited for room in a Unix peer's queue, dozens.
_ARRIVAL_TURNS = 100_000
# Turns a receive with nothing to receive must stay waiting to count as
# waiting: far more than any datagram in flight needs to land.
_QUIET_TURNS = 100


@attrs.frozen(kw_only=True)
class DatagramPair:
    """Two endpoints of one kind, as a pair maker yields them.

    ``client`` is connected to ``server``. ``server`` is bound, so it
    receives ``(data, sender)`` and answers the sender, unless
    ``server_connected`` says it is connected to the client, as the ends
    of ``socket.socketpair(AF_UNIX, SOCK_DGRAM)`` are: then it receives
    bytes and sends without an address.
    """

    server: Endpoint[Any]
    client: Endpoint[bytes]
    server_connected: bool = False


class DatagramPairMaker(Protocol):
    """Opens a :class:`DatagramPair` on entry and closes both ends on exit.

    ``limits`` (None: the defaults) is given to both endpoints; the
    overflow check sets a small ``datagram_queue``. Each call makes a new
    pair with addresses of its own, which the endpoints of pairs made
    before can reach: a check holds two at once to send from a stranger.
    """

    def __call__(
        self, *, limits: Limits | None = None
    ) -> AbstractAsyncContextManager[DatagramPair]: ...


async def check_boundaries_at_every_size(make_pair: DatagramPairMaker) -> None:
    """Datagrams from empty to the largest arrive whole and apart, both ways.

    Two datagrams of each size are sent before either is read, to the
    server, which answers each to the sender it saw.
    """
    rng = random.Random(2024)
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server, client = pair.server, pair.client
        largest = min(client.max_datagram_size, server.max_datagram_size)
        # 1472 and 1473: an Ethernet MTU's UDP payload and one past it.
        wanted = {0, 1, 2, 1472, 1473, largest // 2, largest - 1, largest}
        sizes = sorted(size for size in wanted if 0 <= size <= largest)
        for size in sizes:
            sent = [rng.randbytes(size), rng.randbytes(size)]
            for data in sent:
                await client.send(data)
            got = [await _receive_at_server(pair, f"a {size}-byte datagram")]
            got.append(await _receive_at_server(pair, f"a second {size}-byte one"))
            assert [data for data, _ in got] == sent, f"{size}-byte datagrams changed"
            for data, sender in got:
                await server.send(data, sender)
            echoed = [await _receive_now(client, f"the {size}-byte answers")]
            echoed.append(await _receive_now(client, f"the {size}-byte answers"))
            assert echoed == sent, f"{size}-byte answers changed on the way"
        count = 2 * len(sizes)
        counted = (client.stats.sent, server.stats.received)
        assert counted == (count, count), f"client to server counted {counted}"
        counted = (server.stats.sent, client.stats.received)
        assert counted == (count, count), f"server to client counted {counted}"


async def check_bound_and_connected_endpoints(make_pair: DatagramPairMaker) -> None:
    """A connected end sends without an address and receives bytes; a bound
    one needs an address and receives ``(data, sender)``.

    A connected end refuses to send elsewhere (``ValueError``, nothing
    sent) and hears only its peer; the sender a bound server sees is the
    client's ``local_address`` when the client has one.
    """
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server, client = pair.server, pair.client
        assert client.transport.connected, "the client is not connected"
        assert server.transport.connected is pair.server_connected, (
            f"the server says connected={server.transport.connected}, "
            f"the pair says {pair.server_connected}"
        )
        for end in (client, server) if pair.server_connected else (client,):
            await _refuses_to_send_elsewhere(end)
        if not pair.server_connected:
            assert server.peer_address is None, "a bound server has a peer"
            if server.local_address is not None:
                assert client.peer_address == server.local_address, (
                    f"client's peer {client.peer_address}, "
                    f"server's address {server.local_address}"
                )
            await _expect(ValueError, server.send(b"where to?"), "send() to nowhere")
            assert server.stats.sent == 0, "a send without an address went out"
        await client.send(b"hello")
        data, sender = await _receive_at_server(pair, "the client's datagram")
        assert data == b"hello", f"the server got {data!r}"
        if not pair.server_connected and client.local_address is not None:
            assert sender == client.local_address, (
                f"the server saw {sender}, the client is {client.local_address}"
            )
            await _send_as_a_stranger(make_pair, client)
        # The stranger's datagram went first: this must be the next to arrive.
        await server.send(b"answer", sender)
        answer = await _receive_now(client, "the answer")
        assert answer == b"answer", f"a connected receive() gave {answer!r}"


async def _refuses_to_send_elsewhere(end: Endpoint[Any]) -> None:
    elsewhere = _elsewhere(end.peer_address or end.local_address)
    sent = end.stats.sent
    await _expect(ValueError, end.send(b"astray", elsewhere), f"send() to {elsewhere}")
    assert end.stats.sent == sent, "a connected endpoint sent elsewhere"


async def _send_as_a_stranger(
    make_pair: DatagramPairMaker, client: Endpoint[bytes]
) -> None:
    """Send ``client`` a datagram from a server it is not connected to."""
    async with make_pair() as other:
        # Linux refuses it at once between Unix sockets (EPERM); UDP drops it.
        with contextlib.suppress(OSError):
            await other.server.send(b"stranger", client.local_address)


def _elsewhere(address: Address | None) -> Address:
    """An address of the same kind as ``address`` that is not it."""
    if isinstance(address, UDPAddress):
        return UDPAddress(host=address.host, port=address.port % 65535 + 1)
    name = "aiosock-check-elsewhere"
    if isinstance(address, UnixDatagramAddress) and address.path == name:
        name += "-2"
    return UnixDatagramAddress(path=name, abstract=True)


async def check_refusal_surfaces_once(make_pair: DatagramPairMaker) -> None:
    """A datagram to a closed server is refused, once, and the client stays open.

    ``ConnectionRefusedError`` comes from ``send()`` itself (Linux between
    Unix sockets) or, after an ICMP port unreachable, from the next
    ``receive()``; after that a receive waits as before.
    """
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        client = pair.client
        await pair.server.aclose()
        await _refused(client, surfacing_on="receive")
        await _stays_quiet(client)
        assert not client.transport.is_closing(), "a refusal closed the endpoint"


async def check_sending_goes_on_after_a_refusal(make_pair: DatagramPairMaker) -> None:
    """After a refusal the client sends again, and each datagram is refused once.

    A refusal belongs to one datagram: the endpoint stays usable, so the
    next datagram to the closed server is sent and refused in its turn,
    this time surfacing on the next ``send()`` where it is not immediate.
    """
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        client = pair.client
        await pair.server.aclose()
        await _refused(client, surfacing_on="receive")
        await _refused(client, surfacing_on="send")
        await _stays_quiet(client)
        assert client.stats.errors == 2, f"{client.stats.errors} errors, not 2"


async def _refused(
    client: Endpoint[bytes], *, surfacing_on: Literal["receive", "send"]
) -> None:
    """Send to a peer that is gone: the refusal is counted once and raised once."""
    errors = client.stats.errors
    try:
        await client.send(b"anyone there?")
    except ConnectionRefusedError:  # refused at once
        pass
    except Exception as exc:
        raise AssertionError(
            f"send() to a closed peer raised {exc!r}, not ConnectionRefusedError"
        ) from exc
    else:
        reported = await turns_until(lambda: client.stats.errors > errors)
        assert reported, "no refusal for a datagram to a closed peer"
        if surfacing_on == "receive":
            call: Awaitable[object] = client.receive()
        else:
            call = client.send(b"and now?")
        await _expect(ConnectionRefusedError, call, f"the next {surfacing_on}()")
    assert client.stats.errors == errors + 1, (
        f"one refusal counted {client.stats.errors - errors} times"
    )


async def check_full_queue_counts_every_datagram(make_pair: DatagramPairMaker) -> None:
    """A reader that falls behind loses datagrams by its policy, all counted.

    With the queue full, DROP_NEWEST keeps the first datagrams and
    DROP_OLDEST the last; either way ``received == delivered + dropped``.
    """
    queue, count = 4, 50
    async with asyncio.timeout(CHECK_TIMEOUT):
        await _overflow(make_pair, OverflowPolicy.DROP_NEWEST, queue, range(queue))
        kept = range(count - queue, count)
        await _overflow(make_pair, OverflowPolicy.DROP_OLDEST, queue, kept)


async def _overflow(
    make_pair: DatagramPairMaker, policy: OverflowPolicy, queue: int, kept: range
) -> None:
    """Send ``kept.stop`` datagrams to a server that reads none until all arrived."""
    count = kept.stop
    limits = Limits(datagram_queue=queue, datagram_overflow=policy)
    async with make_pair(limits=limits) as pair:
        server = pair.server
        for i in range(count):
            await pair.client.send(b"%d" % i)
        arrived = await turns_until(lambda: server.stats.received == count)
        assert arrived, f"{server.stats.received} of {count} datagrams arrived"
        delivered = [
            (await _receive_at_server(pair, f"datagram {i} of the queue"))[0]
            for i in range(queue)
        ]
        await _stays_quiet(server)
        assert delivered == [b"%d" % i for i in kept], f"{policy.name} kept {delivered}"
        stats = server.stats
        assert stats.received == len(delivered) + stats.dropped, (
            f"{policy.name}: received {stats.received}, "
            f"delivered {len(delivered)}, dropped {stats.dropped}"
        )


async def check_oversize_send_raises_before_sending(
    make_pair: DatagramPairMaker,
) -> None:
    """One byte past ``max_datagram_size`` raises DatagramTooLarge; nothing goes."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server, client = pair.server, pair.client
        await client.send(b"hello")
        _, sender = await _receive_at_server(pair, "the client's datagram")
        for end, address in ((client, None), (server, sender)):
            limit, sent = end.max_datagram_size, end.stats.sent
            try:
                await end.send(bytes(limit + 1), address)
            except DatagramTooLarge as exc:
                said = (exc.size, exc.limit)
            else:
                raise AssertionError(f"a datagram of {limit + 1} bytes was taken")
            assert said == (limit + 1, limit), f"DatagramTooLarge said {said}"
            assert end.stats.sent == sent, "the oversize datagram was counted as sent"
        # Nothing went out: the next datagram each way is the next to arrive.
        await client.send(b"after")
        data, _ = await _receive_at_server(pair, "the datagram after")
        assert data == b"after", f"the server got {len(data)} bytes, not b'after'"
        await server.send(b"back", sender)
        data = await _receive_now(client, "the answer after")
        assert data == b"back", f"the client got {len(data)} bytes, not b'back'"


async def check_use_after_close(make_pair: DatagramPairMaker) -> None:
    """After aclose(), send() and receive() raise ClosedResourceError and
    ``async for`` ends at once, on either end."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server, client = pair.server, pair.client
        address = None if pair.server_connected else _elsewhere(server.local_address)
        for end, target in ((server, address), (client, None)):
            await end.aclose()
            await _expect(ClosedResourceError, end.receive(), "receive() after close")
            send = end.send(b"late", target)
            await _expect(ClosedResourceError, send, "send() after close")
            assert [item async for item in end] == [], "iterated a closed endpoint"


async def check_receive_after_close_raises_with_datagrams_queued(
    make_pair: DatagramPairMaker,
) -> None:
    """aclose() ends receiving even with datagrams queued: they are not read."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server = pair.server
        await pair.client.send(b"unread")
        await pair.client.send(b"unread too")
        arrived = await turns_until(lambda: server.stats.received == 2)
        assert arrived, "the datagrams never arrived"
        await server.aclose()
        await _expect(ClosedResourceError, server.receive(), "receive() after close")
        assert [item async for item in server] == [], "iterated a closed endpoint"


async def check_closing_wakes_blocked_receivers(make_pair: DatagramPairMaker) -> None:
    """aclose() wakes a receive() waiting in another task (ClosedResourceError)
    and ends an ``async for`` there, after the datagrams it got."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server, client = pair.server, pair.client

        async def iterate() -> list[bytes]:
            return [_payload(item) async for item in server]

        blocked = asyncio.create_task(client.receive())
        iterating = asyncio.create_task(iterate())
        await client.send(b"one")
        await client.send(b"two")
        arrived = await turns_until(lambda: server.stats.received == 2)
        assert arrived, "the datagrams never arrived"
        assert not blocked.done(), "receive() returned with nothing sent"
        await client.aclose()
        await _expect(ClosedResourceError, blocked, "the blocked receive()")
        await server.aclose()
        got = await _soon(iterating, "async for went on after close")
        assert got == [b"one", b"two"], f"async for got {got} before the end"


async def check_aclose_is_idempotent_and_safe_under_cancellation(
    make_pair: DatagramPairMaker,
) -> None:
    """aclose() twice is fine; a cancelled aclose() still closes, so that the
    peer's next datagram is refused."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server, client = pair.server, pair.client
        closing = asyncio.create_task(server.aclose())
        await asyncio.sleep(0)  # one turn: aclose() is now waiting
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await _expect(ClosedResourceError, server.receive(), "a cancelled aclose()")
        await server.aclose()
        await _refused(client, surfacing_on="receive")
        await client.aclose()
        await client.aclose()
        await _expect(ClosedResourceError, client.receive(), "receive() after close")


async def check_cancelled_receive_loses_no_datagram(
    make_pair: DatagramPairMaker,
) -> None:
    """A receive() cancelled as datagrams arrive leaves them for the next one."""
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        server = pair.server
        receiving = asyncio.create_task(server.receive())
        waiting = not await turns_until(receiving.done, _QUIET_TURNS)
        assert waiting, "receive() returned with nothing sent"
        await pair.client.send(b"first")
        await pair.client.send(b"second")
        arrived = await turns_until(lambda: server.stats.received == 2)
        assert arrived, "the datagrams never arrived"
        receiving.cancel()  # usually before the woken task runs again
        try:
            got = [_payload(await receiving)]
        except asyncio.CancelledError:
            got = []
        while len(got) < 2:
            got.append(_payload(await _receive_now(server, "a datagram")))
        assert got == [b"first", b"second"], f"after cancelling, got {got}"


async def check_a_woken_receiver_cancelled_passes_the_datagram_on(
    make_pair: DatagramPairMaker,
) -> None:
    """A receive() cancelled in the turn its datagram arrives leaves the
    datagram to the next receive() waiting, whichever came first.

    As the stream check of the same name (a timeout in the receiver's
    caller does this): the cancellation is scheduled just before the
    datagram is sent, just after, and as a timer due at once.
    """
    async with asyncio.timeout(CHECK_TIMEOUT), make_pair() as pair:
        await _woken_then_cancelled(
            pair.server.receive,
            pair.client.send,
            "datagram",
            _QUIET_TURNS,
            _ARRIVAL_TURNS,
            _payload,
        )


# ------------------------------------------------------------ helpers


async def _receive_now(endpoint: Endpoint[Any], what: str) -> Any:
    """``endpoint.receive()``, which must end within ``_ARRIVAL_TURNS`` turns."""
    return await _soon(endpoint.receive(), f"{what} never arrived", _ARRIVAL_TURNS)


async def _receive_at_server(pair: DatagramPair, what: str) -> tuple[bytes, Any]:
    """The next datagram at the server, and what to give send() to answer it."""
    item = await _receive_now(pair.server, what)
    if pair.server_connected:
        assert isinstance(item, bytes), f"a connected receive() gave {item!r}"
        return item, None
    assert isinstance(item, tuple), f"a bound receive() gave {item!r}, not a tuple"
    data, sender = item
    assert isinstance(data, bytes), f"a bound receive() gave data {data!r}"
    assert sender is not None, "a bound server cannot answer an unnamed client"
    return data, sender


def _payload(item: object) -> bytes:
    """The data of what either kind of server receives."""
    data = item[0] if isinstance(item, tuple) else item
    assert isinstance(data, bytes), f"received {item!r}"
    return data


async def _stays_quiet(endpoint: Endpoint[Any]) -> None:
    """A receive() on ``endpoint`` waits: nothing is left to receive."""
    receiving = asyncio.create_task(endpoint.receive())
    if await turns_until(receiving.done, _QUIET_TURNS):
        error = receiving.exception()
        got = repr(error) if error is not None else repr(receiving.result())
        raise AssertionError(f"receive() with nothing to receive gave {got}")
    receiving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receiving


DATAGRAM_CHECKS: tuple[Callable[[DatagramPairMaker], Awaitable[None]], ...] = (
    check_boundaries_at_every_size,
    check_bound_and_connected_endpoints,
    check_refusal_surfaces_once,
    check_sending_goes_on_after_a_refusal,
    check_full_queue_counts_every_datagram,
    check_oversize_send_raises_before_sending,
    check_use_after_close,
    check_receive_after_close_raises_with_datagrams_queued,
    check_closing_wakes_blocked_receivers,
    check_aclose_is_idempotent_and_safe_under_cancellation,
    check_cancelled_receive_loses_no_datagram,
    check_a_woken_receiver_cancelled_passes_the_datagram_on,
)
