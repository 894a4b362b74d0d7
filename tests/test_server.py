"""Servers: binding, Unix paths, adoption, handler failures, limits, shutdown.

Also running out of descriptors, in a child process whose limit is low.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import resource
import socket
import stat
import struct
import sys
from pathlib import Path

import pytest

import aiosock
from aiosock import Connection, Lines, TCPAddress, UnixAddress
from aiosock.aio.loops import LoopName, is_uvloop
from aiosock.testing.streams import turns_until

ROOT = Path(__file__).resolve().parent.parent


async def echo(connection: Connection) -> None:
    async for message in connection:
        await connection.send(message)


async def round_trip(address: str | aiosock.Address, message: bytes = b"ping") -> bytes:
    async with await aiosock.connect(address, codec=Lines(), timeout=10) as client:
        await client.send(message)
        return await client.receive()


async def receive_all(connection: Connection, most: int = 100) -> list[bytes]:
    """Up to ``most`` messages, until the stream ends (and raises)."""
    return [await connection.receive() for _ in range(most)]


async def test_several_addresses_at_once(tmp_path: Path, abstract_name: str) -> None:
    path = tmp_path / "s.sock"
    async with await aiosock.serve(
        echo,
        "tcp://127.0.0.1:0",
        f"unix://{path}",
        f"unix:@{abstract_name}",
        codec=Lines(),
    ) as server:
        tcp, unix, abstract = server.addresses
        assert isinstance(tcp, TCPAddress)
        assert tcp.port != 0
        assert unix == UnixAddress(path=str(path))
        assert abstract == UnixAddress(path=abstract_name, abstract=True)
        for address in server.addresses:
            assert await round_trip(address) == b"ping"
    assert not path.exists()  # removed on close: it was ours


async def test_every_family_on_one_port() -> None:
    async with await aiosock.serve(echo, "tcp://:0", codec=Lines()) as server:
        ports = {a.port for a in server.addresses if isinstance(a, TCPAddress)}
        hosts = {a.host for a in server.addresses if isinstance(a, TCPAddress)}
        assert len(ports) == 1
        assert hosts == {"0.0.0.0", "::"}
        port = ports.pop()
        assert await round_trip(f"tcp://127.0.0.1:{port}") == b"ping"
        assert await round_trip(f"tcp://[::1]:{port}") == b"ping"


async def test_a_name_binds_what_it_resolves_to() -> None:
    async with await aiosock.serve(echo, "tcp://localhost:0", codec=Lines()) as server:
        assert server.addresses
        for address in server.addresses:
            assert isinstance(address, TCPAddress)
            assert await round_trip(address) == b"ping"


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(str(path))  # bound, never listening, then gone: stale
    assert stat.S_ISSOCK(path.stat().st_mode)
    async with await aiosock.serve(echo, f"unix://{path}", codec=Lines()):
        assert await round_trip(f"unix://{path}") == b"ping"


async def test_a_live_server_s_path_is_refused(tmp_path: Path) -> None:
    path = f"unix://{tmp_path / 'live.sock'}"
    async with await aiosock.serve(echo, path, codec=Lines()):
        with pytest.raises(OSError, match="already listening"):
            await aiosock.serve(echo, path)
        assert await round_trip(path) == b"ping"  # the first one is untouched


async def test_a_file_that_is_not_a_socket_is_never_deleted(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a socket"):
        await aiosock.serve(echo, f"unix://{path}")
    assert path.read_text() == "keep me"


async def test_a_path_replaced_after_binding_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "moved.sock"
    server = await aiosock.serve(echo, f"unix://{path}", unix_mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    path.write_text("someone else's now")
    await server.aclose()
    assert path.read_text() == "someone else's now"


async def test_a_failed_bind_leaves_nothing_bound(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    with taken:
        port = taken.getsockname()[1]
        path = tmp_path / "first.sock"
        in_use = f"Address already in use: 'tcp://127.0.0.1:{port}'"
        with pytest.raises(OSError, match=in_use):
            await aiosock.serve(echo, f"unix://{path}", f"tcp://127.0.0.1:{port}")
        assert not path.exists()


async def test_adopting_a_listening_socket() -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    async with await aiosock.serve(echo, codec=Lines(), sock=listening) as server:
        assert server.addresses == [TCPAddress(host="127.0.0.1", port=port)]
        assert await round_trip(f"tcp://127.0.0.1:{port}") == b"ping"
    other = socket.create_server(("127.0.0.1", 0))
    port = other.getsockname()[1]
    async with await aiosock.serve(echo, f"fd://{other.detach()}", codec=Lines()):
        assert await round_trip(f"tcp://127.0.0.1:{port}") == b"ping"


async def test_adopting_a_socket_that_does_not_listen_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="not listening"):
            await aiosock.serve(echo, sock=sock)


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one address"):
        await aiosock.serve(echo)
    with pytest.raises(ValueError, match="datagram address"):
        await aiosock.serve(echo, "udp://127.0.0.1:0")
    with pytest.raises(ValueError, match="bad address"):
        await aiosock.serve(echo, "tcp://127.0.0.1")


async def test_a_failing_handler_is_logged_and_disturbs_no_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def picky(connection: Connection) -> None:
        message = await connection.receive()
        if message == b"boom":
            raise RuntimeError("handler exploded")
        await connection.send(message)

    async with await aiosock.serve(picky, "tcp://127.0.0.1:0", codec=Lines()) as server:
        address = server.addresses[0]
        async with await aiosock.connect(address, codec=Lines()) as victim:
            with caplog.at_level(logging.ERROR, logger="aiosock.connection"):
                await victim.send(b"boom")
                with pytest.raises(aiosock.EndOfStream):
                    await victim.receive()
        assert await round_trip(address, b"fine") == b"fine"
        assert server.is_serving()
    [record] = [r for r in caplog.records if r.name == "aiosock.connection"]
    assert "handler failed" in record.getMessage()
    assert "127.0.0.1" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_an_oversize_frame_closes_that_connection_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[BaseException] = []

    async def strict(connection: Connection) -> None:
        try:
            async for message in connection:
                await connection.send(message)
        except aiosock.FrameTooLarge as exc:
            errors.append(exc)

    codec = Lines(max_length=16)
    async with await aiosock.serve(strict, "tcp://127.0.0.1:0", codec=codec) as server:
        address = server.addresses[0]
        async with await aiosock.connect(address) as rogue:
            await rogue.send(b"ok\n" + b"x" * 1000 + b"\nmore\n")
            # Closed by the server, maybe with unread bytes (then reset).
            with pytest.raises((aiosock.EndOfStream, aiosock.BrokenResourceError)):
                await receive_all(rogue)
        assert await round_trip(address) == b"ping"
    assert len(errors) == 1
    assert isinstance(errors[0], aiosock.FrameTooLarge)


async def test_max_connections_holds_back_the_next_one() -> None:
    release = asyncio.Event()
    started: list[Connection] = []

    async def hold(connection: Connection) -> None:
        started.append(connection)
        await connection.send(b"hello")
        await release.wait()

    limits = aiosock.Limits(max_connections=1)
    async with await aiosock.serve(hold, "tcp://127.0.0.1:0", limits=limits) as server:
        address = server.addresses[0]
        first = await aiosock.connect(address)
        assert await first.receive() == b"hello"
        second = await aiosock.connect(address)  # in the backlog, not accepted
        pending = asyncio.create_task(second.receive())
        for _ in range(50):  # turns of the loop, not time
            await asyncio.sleep(0)
        assert not pending.done()
        assert len(started) == 1
        release.set()  # the first handler returns and its connection closes
        assert await pending == b"hello"
        assert len(started) == 2
        await first.aclose()
        await second.aclose()


async def test_shutdown_lets_a_busy_handler_finish_within_the_grace_period() -> None:
    started, go_on = asyncio.Event(), asyncio.Event()
    outcome: list[object] = []

    async def busy(connection: Connection[bytes]) -> None:
        outcome.append(await connection.receive())
        started.set()
        await go_on.wait()  # at work when the server begins to close
        outcome.append(connection.shutting_down)
        await connection.send(b"done")

    server = await aiosock.serve(busy, "tcp://127.0.0.1:0", codec=aiosock.Lines())
    address = server.addresses[0]
    async with await aiosock.connect(address, codec=aiosock.Lines()) as client:
        await client.send(b"work")
        await started.wait()
        closing = asyncio.create_task(server.aclose(grace=30))
        await asyncio.sleep(0)  # one turn: aclose() has begun
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):  # accepting stopped at once
            await aiosock.connect(address, timeout=5)
        assert not closing.done()  # waiting for the handler
        go_on.set()
        assert await client.receive() == b"done"
        await closing
    assert outcome == [b"work", True]
    assert server.connections == 0


async def test_shutdown_cancels_handlers_after_the_grace_period() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stubborn(connection: Connection) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await aiosock.serve(stubborn, "tcp://127.0.0.1:0")
    async with await aiosock.connect(server.addresses[0]) as client:
        await started.wait()
        await server.aclose(grace=0.01)
        assert cancelled.is_set()
        assert server.connections == 0
        with pytest.raises((aiosock.EndOfStream, aiosock.BrokenResourceError)):
            await client.receive()


async def test_serve_forever_ends_when_cancelled_and_closes_the_server() -> None:
    server = await aiosock.serve(echo, "tcp://127.0.0.1:0", codec=Lines())
    task = asyncio.create_task(server.serve_forever())
    assert await round_trip(server.addresses[0]) == b"ping"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.is_serving()
    with pytest.raises(ConnectionRefusedError):
        await aiosock.connect(server.addresses[0], timeout=5)


async def test_aclose_is_idempotent_and_every_call_waits_for_the_first(
    tmp_path: Path,
) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def stubborn(connection: Connection) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            # Cleaning up takes turns of the loop: aclose() waits for them.
            for _ in range(10):
                await asyncio.sleep(0)
            finished.set()

    path = tmp_path / "closing.sock"
    server = await aiosock.serve(stubborn, "tcp://127.0.0.1:0", f"unix://{path}")
    tcp = server.addresses[0]
    main = [t for t in asyncio.all_tasks() if t.get_name() == "aiosock server"]
    assert len(main) == 1  # the server's own task, which must end
    client = await aiosock.connect(tcp)
    await started.wait()

    async def close(grace: float) -> None:
        await server.aclose(grace)
        # Whichever call returns, the first one has finished closing.
        assert finished.is_set()
        assert server.connections == 0
        assert not server.is_serving()
        assert not path.exists()
        assert main[0].done()

    first = asyncio.create_task(close(0.01))  # the handler never ends by itself
    assert await turns_until(lambda: not server.is_serving())
    concurrent = asyncio.create_task(close(30))  # waits on the first one's grace
    async with asyncio.timeout(10):
        await asyncio.gather(first, concurrent)
        await close(30)  # and later
    assert main[0].exception() is None
    with pytest.raises((aiosock.EndOfStream, aiosock.BrokenResourceError)):
        await client.receive()  # its connection was aborted
    await client.aclose()
    with pytest.raises(ConnectionRefusedError):
        await aiosock.connect(tcp, timeout=5)


async def test_a_peer_that_vanishes_is_routine_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[aiosock.Address | None] = []

    async def watcher(connection: Connection) -> None:
        try:
            async for message in connection:
                await connection.send(message)
        finally:
            seen.append(connection.peer_address)  # still known after the end

    loop = asyncio.get_running_loop()
    path = f"unix:@aiosock-vanish-{os.urandom(8).hex()}"
    async with await aiosock.serve(watcher, "tcp://127.0.0.1:0", path) as server:
        for address in server.addresses:
            for _ in range(3):  # three peers that reset mid-conversation
                target: str | tuple[str, int]
                if isinstance(address, TCPAddress):
                    family, target = socket.AF_INET, (address.host, address.port)
                else:
                    assert isinstance(address, UnixAddress)
                    family, target = socket.AF_UNIX, "\0" + address.path
                with socket.socket(family) as rogue:
                    rogue.setblocking(False)
                    await loop.sock_connect(rogue, target)
                    await loop.sock_sendall(rogue, b"hello")
                    assert await loop.sock_recv(rogue, 5) == b"hello"
                    linger = struct.pack("ii", 1, 0)  # close() resets
                    rogue.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            assert await round_trip(address) == b"ping"  # still serving
    assert len(seen) == 8
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def serve_out_of_descriptors(loop: LoopName) -> None:
    """The server side of the test below, run in a child process.

    Serves echo on a free port, then takes every descriptor the process
    may open, prints ``listening on ADDRESS``, and gives the descriptors
    back when a line comes on stdin; it ends at EOF on stdin. Logs go to
    stderr, one line each.
    """
    logging.basicConfig(format="%(levelname)s %(message)s", level=logging.WARNING)

    async def main() -> None:
        commands: asyncio.Queue[bytes] = asyncio.Queue()

        def command() -> None:
            data = os.read(0, 100)
            if not data:
                asyncio.get_running_loop().remove_reader(0)
            commands.put_nowait(data)

        asyncio.get_running_loop().add_reader(0, command)
        async with await aiosock.serve(
            echo, "tcp://127.0.0.1:0", codec=Lines()
        ) as server:
            taken = _take_every_descriptor()
            print(f"listening on {server.addresses[0]}", flush=True)
            await commands.get()
            for fd in taken:
                os.close(fd)
            while await commands.get():
                pass
            print(f"accept_backoffs {server.stats.accept_backoffs}", flush=True)

    aiosock.run(main(), loop=loop)


# Descriptors the child may hold: few, so that running out is quick.
_FEW_DESCRIPTORS = 256


def _take_every_descriptor() -> list[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, _FEW_DESCRIPTORS), hard))
    taken: list[int] = []
    for _ in range(_FEW_DESCRIPTORS):
        try:
            taken.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            if exc.errno != errno.EMFILE:
                raise
            break
    assert taken, "no descriptor was free to take"
    return taken


def _most_back_offs(seconds: float) -> int:
    """How many back-offs fit in ``seconds`` if each delay doubles from 10 ms."""
    count, delay, total = 0, 0.01, 0.01
    while total <= seconds:
        count, delay = count + 1, min(2 * delay, 1.0)
        total += delay
    return count


async def test_out_of_descriptors_it_backs_off_longer_each_time_then_serves() -> None:
    loop = "uvloop" if is_uvloop(asyncio.get_running_loop()) else "asyncio"
    code = f"from tests.test_server import serve_out_of_descriptors as s; s({loop!r})"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    assert child.stderr is not None
    try:
        async with asyncio.timeout(30):
            ready = (await child.stdout.readline()).decode()
            assert ready.startswith("listening on "), ready
            # Connected by the kernel; the child cannot accept it yet.
            client = await aiosock.connect(ready.split()[-1], codec=Lines())
            await client.send(b"ping")
            first = (await child.stderr.readline()).decode()
            assert re.search(r"failed \(.*Too many open files\); backing off", first)
            # Then a line a second, with the count: few, as the delay grows.
            line = (await child.stderr.readline()).decode()
            more = re.search(r"(\d+) more failures? .* in the last (\S+) s", line)
            assert more, f"not a back-off: {line!r}"
            failures, seconds = int(more[1]), float(more[2])
            assert seconds >= 1.0
            assert failures <= _most_back_offs(seconds + 0.1), line
            child.stdin.write(b"give them back\n")
            await child.stdin.drain()
            assert await client.receive() == b"ping"  # accepted and served
            await client.aclose()
            child.stdin.close()
            counted = (await child.stdout.readline()).decode().split()
            assert counted[0] == "accept_backoffs"
            assert int(counted[1]) >= 1 + failures  # the first, then those told
            assert await child.wait() == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_a_listener_that_breaks_fails_the_server_which_still_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # shutdown() on a listening socket makes the kernel fail every later
    # accept() with EINVAL: an error the server has no way to go on from.
    listening = socket.create_server(("127.0.0.1", 0))
    handler_ended = asyncio.Event()
    started = asyncio.Event()

    async def hold(connection: Connection) -> None:
        started.set()
        try:
            await echo(connection)
        finally:
            handler_ended.set()

    server = await aiosock.serve(hold, sock=listening, codec=Lines())
    address = server.addresses[0]
    async with asyncio.timeout(10):
        client = await aiosock.connect(address, codec=Lines())
        await started.wait()
        listening.shutdown(socket.SHUT_RDWR)
        with pytest.raises(OSError, match="Invalid argument") as failure:
            await server.serve_forever()
        assert failure.value.errno == errno.EINVAL
        assert server.state is aiosock.ServerState.FAILED
        assert not server.is_serving()
        assert f"accept on {address} failed" in caplog.text
        # The connection accepted before goes on.
        await client.send(b"still here")
        assert await client.receive() == b"still here"
        await server.aclose(grace=0.01)
        await server.aclose()  # and again: idempotent
        assert state_of(server) is aiosock.ServerState.CLOSED
        assert handler_ended.is_set()
        assert server.connections == 0
        with pytest.raises((aiosock.EndOfStream, aiosock.BrokenResourceError)):
            await client.receive()
        await client.aclose()


def state_of(server: aiosock.Server) -> aiosock.ServerState:
    # Read anew: mypy would keep the state narrowed across an await.
    return server.state


async def test_the_state_follows_the_connection_limit_and_closing() -> None:
    release = asyncio.Event()

    async def hold(connection: Connection) -> None:
        await connection.send(b"in")
        await release.wait()

    limits = aiosock.Limits(max_connections=1)
    server = await aiosock.serve(
        hold, "tcp://127.0.0.1:0", codec=Lines(), limits=limits
    )
    assert server.state is aiosock.ServerState.PAUSED  # until its task starts
    assert server.is_serving()
    async with asyncio.timeout(10):
        first = await aiosock.connect(server.addresses[0], codec=Lines())
        assert await first.receive() == b"in"
        assert await turns_until(lambda: server.state is aiosock.ServerState.PAUSED)
        assert server.is_serving()
        assert repr(server) == f"<Server {server.addresses[0]} paused, 1 connections>"
        release.set()  # the handler returns: its connection closes
        assert await turns_until(lambda: server.state is aiosock.ServerState.SERVING)
        await first.aclose()
        closing = asyncio.create_task(server.aclose())
        assert await turns_until(lambda: server.state is aiosock.ServerState.CLOSING)
        assert not server.is_serving()
        await closing
    assert state_of(server) is aiosock.ServerState.CLOSED
    assert repr(server).endswith("closed, 0 connections>")


async def test_a_server_cannot_move_where_its_table_does_not_lead() -> None:
    server = await aiosock.serve(echo, "tcp://127.0.0.1:0")
    await server.aclose()
    with pytest.raises(RuntimeError, match="cannot go from closed to serving"):
        server._move(aiosock.ServerState.SERVING)


@pytest.mark.parametrize(
    ("name", "goes_on"),
    [
        ("ECONNABORTED", True),
        ("ENETUNREACH", True),
        ("EHOSTUNREACH", True),
        ("EPERM", True),
        ("ETIMEDOUT", True),
        ("EINVAL", False),
        ("EBADF", False),
        ("EMFILE", False),  # backs off instead
    ],
)
def test_accept_errors_of_a_connection_that_died_early_are_passed_over(
    name: str, goes_on: bool
) -> None:
    from aiosock.aio.server import _DEAD_ON_ARRIVAL

    assert (getattr(errno, name) in _DEAD_ON_ARRIVAL) is goes_on


async def test_max_connections_bounds_running_handlers_not_only_sockets() -> None:
    # Clients that reset mid-request free their sockets at once; their
    # handlers run on. A slot is free only when both are done.
    release = asyncio.Event()
    running = most = done = 0

    async def slow(conn: Connection) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        try:
            with contextlib.suppress(aiosock.BrokenResourceError):
                await conn.receive()
            await release.wait()  # slow work, after the client is gone
        finally:
            running -= 1
            done += 1

    limits = aiosock.Limits(max_connections=3)
    loop = asyncio.get_running_loop()
    async with await aiosock.serve(slow, "tcp://127.0.0.1:0", limits=limits) as server:
        address = server.addresses[0]
        assert isinstance(address, aiosock.TCPAddress)
        clients = []
        for _ in range(10):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, (address.host, address.port))
            await loop.sock_sendall(sock, b"request\n")
            clients.append(sock)
        assert await turns_until(lambda: running == 3)
        for sock in clients:  # a reset: SO_LINGER on, timeout 0
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            sock.close()
        assert await turns_until(lambda: server.connections == 0)
        assert not await turns_until(lambda: most > 3, 2_000)
        release.set()
        assert await turns_until(lambda: running == 0 and done >= 3)
    assert most == 3
