"""What a server out of descriptors logs: plain asyncio against aiosock.

Run:  python -m benchmarks.emfile [--repeat 3] [--window 3] [--connections 200]
                                  [--limit 64] [--only REGEX]

Each row is an echo server on a loop: ``asyncio`` (``asyncio.start_server``,
as its documentation shows, backlog 100 by default) and ``aiosock``
(``aiosock.serve``, backlog 1024), each on the asyncio loop and on uvloop.
Every measurement starts the server afresh in a child process, which
lowers its ``RLIMIT_NOFILE`` to ``--limit`` (64), logs to stderr through
``logging.basicConfig`` at INFO (asyncio's default exception handler logs
through the ``asyncio`` logger, a traceback with each record) and prints
``READY PORT``. The harness then opens ``--connections`` connections to
it on 127.0.0.1, more than the child has descriptors for, without
waiting for them; holds them ``--window`` seconds; and counts what the
child wrote to stderr in that window: lines, which is what an operator's
log receives, and records (lines with the record prefix; the rest are
traceback lines). It closes the flood and checks that the server
recovered: a fresh client gets its bytes echoed within
``--recover-timeout`` seconds, retrying while the server still refuses.

It prints a table of medians over ``--repeat`` rounds (rows interleaved):
log lines in the window, lines per second, records, whether the child was
still running after the window, how many of the flood's connections the
server had closed by then (uvloop's own accept path, under
``asyncio.start_server``, closes the waiting connections when out of
descriptors: libuv's reserved-descriptor trick, silent), and whether (in
how many rounds, and after how long) it recovered. Nothing here asserts
a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import resource
import signal
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path

import attrs

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosock
from aiosock.aio.loops import LoopName, loop_factory
from benchmarks import procs
from benchmarks.run import loops_available
from benchmarks.servers import echo_aiosock, echo_stream

SERVERS = ("asyncio", "aiosock")
# What each log record starts with; the lines between are tracebacks.
RECORD = "LOG "
# A child stops by itself after this long, should the harness vanish.
CHILD_MAX_SECONDS = 600.0
MESSAGE = b"ping\n"


# ------------------------------------------------------------ the child


async def _start(server: str) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Start the echo server of kind ``server``; its port and how to close it."""
    if server == "asyncio":
        plain = await asyncio.start_server(echo_stream, "127.0.0.1", 0)

        async def close_plain() -> None:
            plain.close()

        return plain.sockets[0].getsockname()[1], close_plain
    served = await aiosock.serve(echo_aiosock, "tcp://127.0.0.1:0")
    address = served.addresses[0]
    assert isinstance(address, aiosock.TCPAddress)
    return address.port, lambda: served.aclose(grace=0)


async def _serve(server: str) -> None:
    port, close = await _start(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {port}", flush=True)
    try:
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHILD_MAX_SECONDS)
    finally:
        await close()


def child(server: str, loop: LoopName, limit: int) -> None:
    logging.basicConfig(
        format=f"{RECORD}%(levelname)s %(name)s: %(message)s", level=logging.INFO
    )
    # Before the loop exists, as for a process started with this limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(_serve(server))


# ----------------------------------------------------------- the harness


@attrs.frozen(kw_only=True)
class Round:
    lines: int  # written to stderr in the window
    records: int  # of those, the ones that start a log record
    window: float  # seconds, as measured
    survived: bool  # the child still ran at the end of the window
    dropped: int  # flood connections the server had closed by then
    recovered: float | None  # seconds until a fresh client was echoed


def flood(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port``, started and not waited for.

    Those past the server's backlog stay half-open while the kernel
    retries them: what a crowd of real clients would do too.
    """
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def dropped(socks: list[socket.socket]) -> int:
    """How many of the flood's connections the server closed (EOF or reset)."""
    count = 0
    for sock in socks:
        try:
            count += sock.recv(1, socket.MSG_PEEK) == b""
        except ConnectionResetError:
            count += 1
        except OSError:  # still open (EAGAIN), or not even connected yet
            pass
    return count


def echoed(port: int, timeout: float) -> bool:
    """Whether one fresh client gets ``MESSAGE`` back within ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        client.sendall(MESSAGE)
        received = b""
        while len(received) < len(MESSAGE):
            data = client.recv(len(MESSAGE) - len(received))
            if not data:
                return False
            received += data
        return received == MESSAGE


def recovery(port: int, timeout: float) -> float | None:
    """Seconds until a fresh client is echoed; None if not within ``timeout``."""
    start = time.monotonic()
    deadline = start + timeout
    for _ in range(1000):  # bounded; each try takes 20 ms at least
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with suppress(OSError):
            if echoed(port, left):
                return time.monotonic() - start
        time.sleep(0.02)  # refused or reset: the server is not back yet
    return None


def measure(server: str, loop: str, args: argparse.Namespace) -> Round:
    argv = [sys.executable, "-m", "benchmarks.emfile", "--child", server]
    argv += ["--loop", loop, "--limit", str(args.limit)]
    process = procs.Process(argv, cpu=procs.pinning()[0])
    try:
        port = int(process.wait_ready())
        errors = process.errors.fileno()
        # Sizes, not reads: the child shares the file's offset.
        before, start = os.fstat(errors).st_size, time.monotonic()
        socks = flood(port, args.connections)
        try:
            time.sleep(max(0.0, start + args.window - time.monotonic()))
            after, window = os.fstat(errors).st_size, time.monotonic() - start
            survived = process.popen.poll() is None
            closed = dropped(socks)
        finally:
            for sock in socks:
                sock.close()
        recovered = recovery(port, args.recover_timeout) if survived else None
        lines = os.pread(errors, after - before, before).decode().splitlines()
    finally:
        process.stop()
    return Round(
        lines=len(lines),
        records=sum(line.startswith(RECORD) for line in lines),
        window=window,
        survived=survived,
        dropped=closed,
        recovered=recovered,
    )


def table(rounds: dict[tuple[str, str], list[Round]]) -> str:
    out = [
        "| server | loop | log lines in the window | lines/s | records "
        "| survived | closed by the server | recovered |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for (server, loop), runs in rounds.items():
        lines = statistics.median(r.lines for r in runs)
        rate = statistics.median(r.lines / r.window for r in runs)
        records = statistics.median(r.records for r in runs)
        survived = sum(r.survived for r in runs)
        closed = statistics.median(r.dropped for r in runs)
        times = [r.recovered for r in runs if r.recovered is not None]
        recovered = _share(len(times), len(runs))
        if times:
            recovered += f" (median {statistics.median(times):.2f} s)"
        out.append(
            f"| {server} | {loop} | {lines:g} | {rate:,.1f} | {records:g} "
            f"| {_share(survived, len(runs))} | {closed:g} | {recovered} |"
        )
    return "\n".join(out)


def _share(count: int, total: int) -> str:
    if count == total:
        return "yes"
    return "no" if count == 0 else f"{count}/{total}"


def _raise_own_limit(connections: int) -> None:
    """The harness holds the flood itself: make room for it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + 100  # and what the harness opens besides
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"--connections {connections}: the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 21))
    parser.add_argument("--window", type=float, default=3.0, help="seconds, 0.1-60")
    parser.add_argument("--connections", type=int, default=200, help="1-5000")
    parser.add_argument("--limit", type=int, default=64, help="RLIMIT_NOFILE, 32-1024")
    parser.add_argument("--recover-timeout", type=float, default=10.0, help="1-60 s")
    parser.add_argument("--only", type=re.compile, help="rows SERVER/LOOP to run")
    parser.add_argument("--child", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args(argv)
    if not 0.1 <= args.window <= 60:
        parser.error("--window must be 0.1 to 60 seconds")
    if not 1 <= args.connections <= 5000:
        parser.error("--connections must be 1 to 5000")
    if not 32 <= args.limit <= 1024:
        parser.error("--limit must be 32 to 1024")
    if not 1 <= args.recover_timeout <= 60:
        parser.error("--recover-timeout must be 1 to 60 seconds")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.child:
        child(args.child, args.loop, args.limit)
        return
    _raise_own_limit(args.connections)
    keys = [
        (server, loop)
        for server in SERVERS
        for loop in loops_available()
        if args.only is None or args.only.search(f"{server}/{loop}")
    ]
    rounds: dict[tuple[str, str], list[Round]] = {key: [] for key in keys}
    for repetition in range(args.repeat):
        for server, loop in keys:
            rounds[server, loop].append(measure(server, loop, args))
        print(f"round {repetition + 1}/{args.repeat} done", file=sys.stderr)
    print(
        f"{args.connections} connections held {args.window:g} s against a server "
        f"limited to {args.limit} descriptors; medians of {args.repeat}:"
    )
    print(table(rounds))


if __name__ == "__main__":
    main()
