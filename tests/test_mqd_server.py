"""mqd against a client no one here wrote: redis-py, in RESP2 and in RESP3.

The daemon runs in the test's own loop (both loops, as every async test
here), on TCP and on a Unix socket; redis-py's asyncio client talks to it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis
from mqd.server import Config, Daemon
from redis.exceptions import AuthenticationError, ResponseError

from aiosock import TCPAddress, UnixAddress
from aiosock.testing.streams import turns_until

PASSWORD = b"correct horse battery staple"


async def start(tmp_path: Path, **options: object) -> Daemon:
    config = Config(
        listen=["tcp://127.0.0.1:0", f"unix://{tmp_path}/mqd.sock"],
        **options,  # type: ignore[arg-type]
    )
    daemon = Daemon(config)
    await daemon.start()
    return daemon


async def until(condition: Callable[[], bool]) -> None:
    """Turn the loop until ``condition()`` holds (a bounded count of turns)."""
    assert await turns_until(condition), "never came true"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = await start(tmp_path)
    yield daemon
    await daemon.aclose()


def client_for(
    daemon: Daemon, protocol: int, *, unix: bool = False, **options: object
) -> aioredis.Redis:
    tcp, path = daemon.addresses
    if unix:
        assert isinstance(path, UnixAddress)
        return aioredis.Redis(unix_socket_path=path.path, protocol=protocol, **options)  # type: ignore[arg-type]
    assert isinstance(tcp, TCPAddress)
    return aioredis.Redis(host=tcp.host, port=tcp.port, protocol=protocol, **options)  # type: ignore[arg-type]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
async def r(
    daemon: Daemon, request: pytest.FixtureRequest
) -> AsyncIterator[aioredis.Redis]:
    client = client_for(daemon, request.param)
    yield client
    await client.aclose()


async def test_ping_and_echo(r: aioredis.Redis) -> None:
    assert await r.ping() is True
    assert await r.echo(b"hello") == b"hello"


async def test_a_queue_in_and_out(r: aioredis.Redis) -> None:
    assert await r.rpush("q", "a", "b", "c") == 3
    assert await r.lpop("q") == b"a"
    assert await r.rpop("q", 2) == [b"c", b"b"]
    assert await r.llen("q") == 0
    assert await r.exists("q") == 0


async def test_the_unix_socket_serves_too(daemon: Daemon) -> None:
    client = client_for(daemon, 3, unix=True)
    async with client:
        assert await client.lpush("k", "v") == 1
        assert await client.lrange("k", 0, -1) == [b"v"]


async def test_blocked_clients_are_served_first_come_first_served(
    daemon: Daemon,
) -> None:
    waiters = [client_for(daemon, 2 + n % 2) for n in range(3)]
    pusher = client_for(daemon, 3)
    try:
        tasks: list[asyncio.Future[object]] = []
        for waiter in waiters:
            tasks.append(asyncio.ensure_future(waiter.blpop(["jobs"], timeout=10)))
            # Each blocks before the next asks: the order is the test.
            await until(lambda: len(daemon.blocked.get((0, b"jobs"), ())) == len(tasks))
        assert await pusher.rpush("jobs", "1", "2", "3") == 3
        results = await asyncio.gather(*tasks)
        assert [tuple(cast(list[bytes], r)) for r in results] == [
            (b"jobs", b"1"),
            (b"jobs", b"2"),
            (b"jobs", b"3"),
        ]
    finally:
        for client in (*waiters, pusher):
            await client.aclose()


async def test_a_blocking_pop_times_out_with_null(r: aioredis.Redis) -> None:
    assert await r.blpop(["nothing"], timeout=0.05) is None
    # A timeout with decimals (redis-py types it as an int).
    blmove = ("BLMOVE", "no", "else", "LEFT", "LEFT", 0.05)
    assert await r.execute_command(*blmove) is None  # type: ignore[no-untyped-call]


async def test_the_reliable_queue_pattern(daemon: Daemon) -> None:
    # From the Redis documentation: move a job to a processing list while
    # working on it, remove it from there to acknowledge it.
    worker, producer = client_for(daemon, 3), client_for(daemon, 2)
    async with worker, producer:
        job = asyncio.ensure_future(
            worker.blmove("jobs", "processing", 10, "LEFT", "RIGHT")
        )
        await until(lambda: bool(daemon.blocked))
        await producer.rpush("jobs", "job-1")
        assert await job == b"job-1"
        assert await producer.lrange("processing", 0, -1) == [b"job-1"]
        assert await worker.lrem("processing", 1, "job-1") == 1
        assert await producer.exists("jobs", "processing") == 0


async def test_a_transaction_with_watch(daemon: Daemon) -> None:
    a, b = client_for(daemon, 3), client_for(daemon, 2)
    async with a, b:
        await a.rpush("q", "x")
        async with a.pipeline(transaction=True) as pipe:
            await pipe.watch("q")
            await b.rpush("q", "y")  # changes what a watches
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.lpop("q")
            with pytest.raises(Exception, match="Watched variable changed"):
                await pipe.execute()
        async with a.pipeline(transaction=True) as pipe:
            pipe.lpop("q")
            pipe.rpush("done", "x")
            assert await pipe.execute() == [b"x", 1]


async def test_publish_fans_out_to_every_subscriber(daemon: Daemon) -> None:
    publisher = client_for(daemon, 3)
    subscribers = [client_for(daemon, 2 + n % 2) for n in range(3)]
    pubsubs = [s.pubsub() for s in subscribers]
    try:
        for pubsub in pubsubs[:2]:
            await pubsub.subscribe("news")
        await pubsubs[2].psubscribe("n*")
        for pubsub in pubsubs:
            assert (await pubsub.get_message(timeout=5))["type"] in (
                "subscribe",
                "psubscribe",
            )
        assert await publisher.publish("news", "hello") == 3
        for pubsub in pubsubs:
            message = await pubsub.get_message(timeout=5)
            assert message is not None
            assert message["data"] == b"hello"
            assert message["channel"] == b"news"
    finally:
        for pubsub in pubsubs:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        for client in (publisher, *subscribers):
            await client.aclose()


@pytest.mark.parametrize(
    "garbage",
    [
        b"*1\r\n$-5\r\n",
        b"*1\r\nxyz\r\n",
        b"*99999999999\r\n",
        b'"unbalanced\r\n',
        b"*1\r\n$536870913\r\n",  # one byte over Redis's 512 MiB
        b"PING " + b"x" * 70_000,  # an inline line over 64 KiB, not ended
    ],
    ids=[
        "bulk-length",
        "not-a-bulk",
        "multibulk-length",
        "quotes",
        "oversize",
        "inline",
    ],
)
async def test_malformed_input_closes_only_that_connection(
    daemon: Daemon, garbage: bytes
) -> None:
    tcp = daemon.addresses[0]
    assert isinstance(tcp, TCPAddress)
    other = client_for(daemon, 3)
    async with other:
        assert await other.rpush("kept", "1") == 1
        reader, writer = await asyncio.open_connection(tcp.host, tcp.port)
        writer.write(garbage)
        reply = await asyncio.wait_for(reader.read(1000), 10)
        assert reply.startswith(b"-ERR Protocol error: "), reply
        assert await asyncio.wait_for(reader.read(1000), 10) == b""  # closed
        writer.close()
        assert await other.lrange("kept", 0, -1) == [b"1"]


async def test_a_password_is_required_when_set(tmp_path: Path) -> None:
    daemon = await start(tmp_path, requirepass=PASSWORD)
    try:
        anonymous = client_for(daemon, 2)
        async with anonymous:
            with pytest.raises(
                (AuthenticationError, ResponseError), match="Authentication required"
            ):
                await anonymous.rpush("q", "x")
        for protocol in (2, 3):
            wrong = client_for(daemon, protocol, password="wrong")
            async with wrong:
                with pytest.raises((AuthenticationError, ResponseError)):
                    await wrong.ping()
            right = client_for(daemon, protocol, password=PASSWORD.decode())
            async with right:
                assert await right.rpush("q", "x") >= 1
    finally:
        await daemon.aclose()


async def test_a_client_that_vanishes_while_blocked_is_forgotten(
    daemon: Daemon,
) -> None:
    tcp = daemon.addresses[0]
    assert isinstance(tcp, TCPAddress)
    with socket.create_connection((tcp.host, tcp.port)) as sock:
        sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")
        await until(lambda: bool(daemon.blocked))
    await until(lambda: not daemon.blocked)  # the close reached the daemon
    pusher = client_for(daemon, 3)
    async with pusher:
        assert await pusher.rpush("q", "kept") == 1
        assert await pusher.lrange("q", 0, -1) == [b"kept"]


async def test_a_restart_after_a_rewrite_gives_back_the_same_data(
    tmp_path: Path,
) -> None:
    log = tmp_path / "mqd.aof"
    options = {"appendonly": str(log), "appendfsync": "always"}
    daemon = await start(tmp_path, rewrite_min_size=4096, **options)
    expected: dict[str, list[bytes | str]] = {}
    try:
        client = client_for(daemon, 3)
        async with client:
            for n in range(200):  # pushes and pops: the log outgrows the data
                await client.rpush(f"q{n % 5}", b"x" * 50, f"{n}")
                await client.lpop(f"q{n % 5}")
            # The cron starts rewrites and installs them; writes go on
            # meanwhile, and some of them while one runs.
            assert daemon.log is not None
            rewrites, during = daemon.rewrites, 0
            async with asyncio.timeout(20):
                n = 0
                while daemon.rewrites == rewrites or not during:
                    during += daemon.log.rewrite_fd is not None
                    await client.rpush("during", f"{n}")
                    n += 1
            await client.rpush("after", "last")
            await client.expire("after", 3600)
            for key in [f"q{n}" for n in range(5)] + ["during", "after"]:
                expected[key] = await client.lrange(key, 0, -1)
    finally:
        await daemon.aclose()
    daemon = await start(tmp_path, **options)
    try:
        client = client_for(daemon, 2)
        async with client:
            for key, values in expected.items():
                assert await client.lrange(key, 0, -1) == values
            assert 0 < await client.ttl("after") <= 3600
    finally:
        await daemon.aclose()


async def test_the_idle_timeout_spares_blocked_clients_and_subscribers(
    tmp_path: Path,
) -> None:
    daemon = await start(tmp_path, timeout=0.2)
    try:
        tcp = daemon.addresses[0]
        assert isinstance(tcp, TCPAddress)
        idle = await asyncio.open_connection(tcp.host, tcp.port)
        blocked = await asyncio.open_connection(tcp.host, tcp.port)
        blocked[1].write(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")
        listener = client_for(daemon, 3).pubsub()
        await listener.subscribe("news")
        async with asyncio.timeout(10):
            assert await idle[0].read(100) == b""  # closed by the timeout
        # Cut a while ago; the others waited as long and are still here.
        pusher = client_for(daemon, 2)
        async with pusher:
            await pusher.rpush("q", "job")
            async with asyncio.timeout(10):
                reply = await blocked[0].readexactly(
                    len(b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n")
                )
            assert reply == b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n"
            assert await pusher.publish("news", "still there") == 1
        for _, writer in (idle, blocked):
            writer.close()
        await listener.aclose()  # type: ignore[no-untyped-call]
    finally:
        await daemon.aclose()
