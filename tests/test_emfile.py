"""Out of descriptors: the back-off is logged in a few lines, and the server lives.

The rate limiter (aiosock.core.ratelimit) runs on a clock the tests move
by hand; the server is flooded in a child process whose descriptor limit
is 64, on each loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import aiosock
from aiosock import Connection
from aiosock.aio.loops import LoopName, loop_factory
from aiosock.core.ratelimit import Ongoing, Recovered, RepeatedFailures, Started

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ------------------------------------------------------------- the limiter


def test_the_first_failure_is_told_at_once_then_a_count_a_second(
    clock: Clock,
) -> None:
    failures = RepeatedFailures(clock=clock, interval=1.0)
    assert not failures.failing
    assert failures.failed() == Started()
    assert failures.failing
    for _ in range(7):  # steps a float adds exactly
        clock.now += 0.125
        assert failures.failed() is None  # 0.125 .. 0.875 s after the line
    clock.now += 0.125
    assert failures.failed() == Ongoing(failures=8, seconds=1.0)
    clock.now += 2.5
    assert failures.failed() == Ongoing(failures=1, seconds=2.5)


def test_the_run_ends_when_it_worked_and_nothing_failed_for_an_interval(
    clock: Clock,
) -> None:
    failures = RepeatedFailures(clock=clock, interval=1.0)
    assert failures.settle() is None  # no run
    failures.failed()
    clock.now += 0.5
    failures.failed()
    assert failures.settle() is None  # nothing worked since
    clock.now += 0.25
    failures.succeeded()
    assert failures.settle() == 0.75  # ask again then
    clock.now += 0.5
    failures.succeeded()  # the first success counts, not the last
    assert failures.settle() == 0.25
    clock.now += 0.25
    assert failures.settle() == Recovered(failures=2, seconds=0.75)
    assert not failures.failing
    assert failures.settle() is None
    assert failures.failed() == Started()  # a new run


def test_a_failure_after_a_success_keeps_the_run_going(clock: Clock) -> None:
    failures = RepeatedFailures(clock=clock, interval=1.0)
    failures.failed()
    clock.now += 0.125
    failures.succeeded()
    clock.now += 0.125
    assert failures.failed() is None  # counted, not a new run
    clock.now += 1.0
    assert failures.settle() is None  # no success since that failure
    failures.succeeded()
    assert failures.settle() == Recovered(failures=2, seconds=1.25)


def test_failing_and_working_in_turn_is_one_run_told_once_a_second(
    clock: Clock,
) -> None:
    # One descriptor freed, one connection accepted, the next accept
    # failing: every 10 ms for 5 s.
    failures = RepeatedFailures(clock=clock, interval=1.0)
    told: list[Started | Ongoing | Recovered | float | None] = []
    for _ in range(500):
        told.append(failures.failed())
        clock.now += 0.005
        failures.succeeded()
        told.append(failures.settle())
        clock.now += 0.005
    lines = [t for t in told if isinstance(t, Started | Ongoing | Recovered)]
    assert lines[0] == Started()
    assert all(isinstance(line, Ongoing) for line in lines[1:])
    assert 4 <= len(lines) <= 6
    assert sum(line.failures for line in lines[1:] if isinstance(line, Ongoing)) < 500
    clock.now += 1.0
    recovered = failures.settle()
    assert isinstance(recovered, Recovered)
    assert recovered.failures == 500
    assert recovered.seconds == pytest.approx(4.995)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_the_interval_must_be_positive(clock: Clock, interval: float) -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        RepeatedFailures(clock=clock, interval=interval)


# --------------------------------------------------- a server in a child

# The descriptor limit of the child: the figure, low enough that
# a hundred and fifty clients run it out.
LIMIT = 64
FLOOD = 150


async def _echo(connection: Connection) -> None:
    async for message in connection:
        await connection.send(message)


def serve_at_few_descriptors(loop: LoopName) -> None:
    """The server of the test below, run in a child process.

    Limits itself to ``LIMIT`` descriptors, serves echo on a free port,
    prints ``listening on ADDRESS`` and serves until EOF on stdin. Logs
    go to stderr at INFO, a line each (a traceback would add lines).
    """
    logging.basicConfig(format="%(levelname)s %(name)s %(message)s", level=logging.INFO)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        eof = asyncio.Event()

        def command() -> None:
            if not os.read(0, 100):
                eof.set()

        loop.add_reader(0, command)
        async with await aiosock.serve(_echo, "tcp://127.0.0.1:0") as server:
            print(f"listening on {server.addresses[0]}", flush=True)
            await eof.wait()
            loop.remove_reader(0)

    aiosock.run(main(), loop=loop)


class Lines:
    """The lines a child writes to a pipe, each read within a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.seen: list[str] = []

    def next(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"no line within {timeout} s: {self.seen}")
            data = os.read(self.fd, 65536)
            if not data:
                raise EOFError(f"the child ended: {self.seen}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.seen.append(line.decode())
        return self.seen[-1]

    def until(self, pattern: str, most: int = 100) -> str:
        """The next line that matches, reading at most ``most`` lines."""
        for _ in range(most):
            if re.search(pattern, line := self.next()):
                return line
        raise AssertionError(f"no line matched {pattern!r}: {self.seen}")


@pytest.fixture(params=["asyncio", "uvloop"])
def child_loop(request: pytest.FixtureRequest) -> LoopName:
    loop: LoopName = request.param
    try:
        loop_factory(loop)
    except RuntimeError:
        pytest.skip(f"{loop} is not installed")
    return loop


@pytest.fixture
def child(child_loop: LoopName) -> Iterator[subprocess.Popen[bytes]]:
    code = "from tests.test_emfile import serve_at_few_descriptors as serve;"
    code += f"serve({child_loop!r})"
    with subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _echoes(port: int) -> bool:
    with _connect(port) as client:
        client.sendall(b"ping")
        return client.recv(100) == b"ping"


@pytest.mark.timeout(90)
def test_a_flood_past_the_descriptor_limit_logs_little_and_the_server_recovers(
    child: subprocess.Popen[bytes],
) -> None:
    assert child.stdout is not None
    assert child.stderr is not None
    ready = Lines(child.stdout.fileno()).next()
    assert ready.startswith("listening on tcp://"), ready
    port = int(ready.rsplit(":", 1)[1])
    log = Lines(child.stderr.fileno())
    flood: list[socket.socket] = []
    try:
        started = time.monotonic()
        # Every one completes in the kernel's backlog: the server holds a
        # descriptor for each one it accepts, until it runs out.
        flood.extend(_connect(port) for _ in range(FLOOD))
        first = log.until("WARNING")
        assert re.search(r"accept on tcp://\S+ failed \(.*Too many open files", first)
        # Two more lines, each after at least a second of failures.
        for _ in range(2):
            line = log.until("more failure")
            assert re.search(r"\d+ more failures? \(Too many open files\)", line)
        window = time.monotonic() - started
        assert len(log.seen) <= 2 + window, log.seen
        assert child.poll() is None, "the server died"
    finally:
        for sock in flood:
            sock.close()
    assert _echoes(port)
    recovered = log.until("recovered")
    assert re.search(r"INFO aiosock\S* accept on \S+ recovered after \d+", recovered)
    assert not [line for line in log.seen if "Traceback" in line]
    assert child.poll() is None
    assert child.stdin is not None
    child.stdin.close()  # EOF: the child closes the server and ends
    assert child.wait(timeout=30) == 0
