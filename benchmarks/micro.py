"""CPU time per echo round trip, client and server in one process.

Run:  python -m benchmarks.micro [--repeat 5] [--rounds 20000] [--size 1024]
                                 [--only REGEX]

Each measurement is a fresh process (pinned to one CPU where it can be):
``--pairs`` Unix socket pairs, an echo server of the row's kind on one
end of each and a minimal ``BufferedProtocol`` client on the other, which
sends ``--size`` bytes and sends again when all of them came back, until
``--rounds`` round trips are done. The figure is round trips per second
of the process's CPU time, so a machine that steals time from the VM
changes it less than it changes the harness's wall-clock rates.

A fresh process per measurement matters: glibc serves asyncio's 256 KiB
read allocation with mmap until its dynamic threshold has been raised,
which whatever ran before in the process may or may not have done.

It prints the median of the repetitions (rows interleaved) and the ratios
to asyncio streams and to the raw ``Protocol`` on the same loop. The
client's share of the cost is the same in every row, so these ratios
understate the servers' own differences. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make aiosock importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosock
import aiosock.aio.client
from aiosock.aio.loops import loop_factory
from aiosock.aio.protocol import (
    BufferedPassThroughAdapter,
    BufferedStreamAdapter,
    PassThroughAdapter,
    StreamAdapter,
)
from benchmarks.run import loops_available
from benchmarks.servers import EchoAiosock, EchoProtocol, echo_aiosock, echo_stream

Attach = Callable[[socket.socket], Awaitable[None]]
CHILD_TIMEOUT = 120.0  # seconds for one measurement, a bound not a goal

# The echo tasks of a measurement. The loop keeps only weak references to
# tasks, and asyncio's StreamReaderProtocol only a weak one to its reader:
# a task waiting on its reader is then garbage that the collector may
# destroy mid-run ("Task was destroyed but it is pending").
_tasks: set[asyncio.Task[None]] = set()


def _keep(task: asyncio.Task[None]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class Client(asyncio.BufferedProtocol):
    """Sends ``size`` bytes, waits for all of them back, ``rounds`` times."""

    def __init__(self, size: int, rounds: int, done: asyncio.Future[None]) -> None:
        self.message = b"x" * size
        self.left = rounds
        self.pending = size
        self.done = done
        self.buffer = bytearray(64 * 1024)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.transport.write(self.message)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.pending -= nbytes
        if self.pending > 0:
            return
        self.left -= 1
        if self.left == 0:
            self.done.set_result(None)
            return
        self.pending = len(self.message)
        self.transport.write(self.message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed early"))


async def _protocol(sock: socket.socket) -> None:
    await asyncio.get_running_loop().connect_accepted_socket(EchoProtocol, sock)


async def _streams(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock, limit=256 * 1024)
    _keep(asyncio.get_running_loop().create_task(echo_stream(reader, writer)))


def _aiosock(api: str, adapter: type[StreamAdapter] | None = None) -> Attach:
    async def attach(sock: socket.socket) -> None:
        if adapter is not None:  # force the choice, to measure it
            aiosock.aio.client.adapter_for = lambda *_: adapter  # type: ignore[attr-defined,assignment]
        address = f"fd://{sock.detach()}"
        if api == "connection":
            connection = await aiosock.connect(address)
            _keep(asyncio.get_running_loop().create_task(echo_aiosock(connection)))
        else:
            await aiosock.create_connection(EchoAiosock, address)

    return attach


ROWS: dict[str, Attach] = {
    "protocol": _protocol,
    "streams": _streams,
    "aiosock-protocol": _aiosock("protocol"),
    "aiosock-connection": _aiosock("connection"),
    # The adapter choice (adapter_for), with the Raw pass-through variants.
    "aiosock-plain": _aiosock("protocol", PassThroughAdapter),
    "aiosock-buffered": _aiosock("protocol", BufferedPassThroughAdapter),
    "aiosock-plain-decoding": _aiosock("protocol", StreamAdapter),
    "aiosock-buffered-decoding": _aiosock("protocol", BufferedStreamAdapter),
}


async def measure(row: str, pairs: int, size: int, rounds: int) -> float:
    """Round trips per CPU second for ``row`` (in this process)."""
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[None]] = []
    clients: list[Client] = []
    for _ in range(pairs):
        server_end, client_end = socket.socketpair()
        await ROWS[row](server_end)
        finished: asyncio.Future[None] = loop.create_future()
        done.append(finished)
        client = Client(size, rounds // pairs, finished)
        clients.append(client)
        await loop.create_unix_connection(
            functools.partial(_same, client), sock=client_end
        )
    # Collect now, not mid-run: the timing starts from a clean heap, and
    # anything the echo servers failed to keep alive is gone before it.
    gc.collect()
    start = time.process_time()
    await asyncio.wait_for(asyncio.gather(*done), CHILD_TIMEOUT)
    elapsed = time.process_time() - start
    for client in clients:
        client.transport.close()
    return pairs * (rounds // pairs) / elapsed


def _same(client: Client) -> Client:
    return client


def child(args: argparse.Namespace) -> None:
    runner = asyncio.Runner(loop_factory=loop_factory(args.loop))
    with runner:
        rate = runner.run(measure(args.child, args.pairs, args.size, args.rounds))
    print(json.dumps({"rate": rate}))


def run_child(row: str, loop: str, args: argparse.Namespace) -> float:
    argv = [sys.executable, "-m", "benchmarks.micro", "--child", row, "--loop", loop]
    argv += ["--pairs", str(args.pairs), "--size", str(args.size)]
    argv += ["--rounds", str(args.rounds)]
    cpus = sorted(os.sched_getaffinity(0))

    def pin() -> None:
        os.sched_setaffinity(0, {cpus[0]})

    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT + 30,
        preexec_fn=pin,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{loop}/{row} failed:\n{out.stderr}")
    rate: float = json.loads(out.stdout.splitlines()[-1])["rate"]
    return rate


def table(rates: dict[tuple[str, str], list[float]]) -> str:
    median = {key: statistics.median(values) for key, values in rates.items()}

    def ratio(loop: str, row: str, reference: str) -> str:
        base = median.get((loop, reference))
        return f"{median[loop, row] / base:.2f}" if base else "-"

    lines = [
        "| row | round trips per CPU s (median) | min-max | vs streams | vs protocol |",
        "|---|---:|---:|---:|---:|",
    ]
    for (loop, row), values in rates.items():
        lines.append(
            f"| {loop}/{row} | {median[loop, row]:,.0f} "
            f"| {min(values):,.0f}-{max(values):,.0f} "
            f"| {ratio(loop, row, 'streams')} | {ratio(loop, row, 'protocol')} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, choices=range(1, 51))
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=10, choices=range(1, 101))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--only", type=re.compile, help="rows LOOP/ROW to run")
    parser.add_argument("--child", choices=sorted(ROWS), help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args(argv)
    if not 1 <= args.size <= 1024 * 1024:
        parser.error("--size must be 1 B to 1 MiB")
    if not args.pairs <= args.rounds <= 10_000_000:
        parser.error("--rounds must be at least --pairs and at most 10,000,000")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.child:
        child(args)
        return
    keys = [
        (loop, row)
        for loop in loops_available()
        for row in ROWS
        if args.only is None or args.only.search(f"{loop}/{row}")
    ]
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in keys}
    for repetition in range(args.repeat):
        for loop, row in keys:
            rates[loop, row].append(run_child(row, loop, args))
        print(f"repetition {repetition + 1}/{args.repeat} done", file=sys.stderr)
    print(table(rates))


if __name__ == "__main__":
    main()
