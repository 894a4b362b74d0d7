"""The load generator in Python, for machines without a C compiler.

Same command line and same JSON as ``loadgen.c`` (see its header), with
``"loadgen": "python"`` or ``"python-uvloop"`` so that every result says
which one produced it. It is slower than the C one and may itself be the
bottleneck: compare its ``cpu_pct`` with the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as a script: make aiosock importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosock import (
    Address,
    TCPAddress,
    UDPAddress,
    UnixAddress,
    UnixDatagramAddress,
    parse_address,
)
from aiosock.aio.loops import loop_factory
from benchmarks.servers import unix_target

HEADER = 4  # the pipelined frames' big-endian length header


class Recorder:
    """Counts and latencies inside the measured window only."""

    def __init__(self) -> None:
        self.measuring = False
        self.requests = self.sent = self.errors = self.losses = 0
        self.latencies: list[float] = []

    def done(self, started: float) -> None:
        if self.measuring:
            self.requests += 1
            self.latencies.append(time.perf_counter() - started)

    def send(self) -> float:
        if self.measuring:
            self.sent += 1
        return time.perf_counter()


class PingPong(asyncio.Protocol):
    """Ping-pong (pipeline 0) or K frames in flight (pipeline K)."""

    def __init__(self, rec: Recorder, size: int, pipeline: int) -> None:
        self.rec, self.size, self.pipeline = rec, size, pipeline
        self.frame = (size.to_bytes(HEADER, "big") if pipeline else b"") + b"x" * size
        self.pending = 0  # bytes of echo still due for the oldest request
        self.starts: list[float] = []
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)
        for _ in range(max(1, self.pipeline)):
            self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.starts.append(self.rec.send())
        self.transport.write(self.frame)

    def data_received(self, data: bytes) -> None:
        got = len(data)
        while got:
            if not self.pending:
                self.pending = len(self.frame)
            used = min(got, self.pending)
            self.pending -= used
            got -= used
            if not self.pending:
                self.rec.done(self.starts.pop(0))
                self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class Datagrams(asyncio.DatagramProtocol):
    """One datagram in flight; a reply later than the timeout is a loss."""

    def __init__(self, rec: Recorder, size: int, timeout: float) -> None:
        self.rec, self.size, self.timeout = rec, size, timeout
        self.seq = 0
        self.started = 0.0
        self.transport: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.seq += 1
        head = self.seq.to_bytes(8, "big")[-min(8, self.size) :] if self.size else b""
        self.started = self.rec.send()
        self.transport.sendto(head + b"x" * (self.size - len(head)))
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.timeout, self.expired)

    def expired(self) -> None:
        if self.rec.measuring:
            self.rec.losses += 1
        self.send()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        head = self.seq.to_bytes(8, "big")[-min(8, self.size) :] if self.size else b""
        if len(data) != self.size or not data.startswith(head):
            return  # a late reply to an earlier datagram
        assert self.timer is not None
        self.timer.cancel()
        self.rec.done(self.started)
        self.send()

    def error_received(self, exc: Exception) -> None:
        self.rec.errors += 1


def check_loopback(address: Address) -> None:
    if isinstance(address, TCPAddress | UDPAddress):
        if not ipaddress.ip_address(address.host.split("%")[0]).is_loopback:
            raise SystemExit(f"refusing {address}: not a loopback address")
    elif not isinstance(address, UnixAddress | UnixDatagramAddress):
        raise SystemExit(f"unsupported address {address}")


async def open_one(
    address: Address, rec: Recorder, args: argparse.Namespace, reply_to: str
) -> Any:
    loop = asyncio.get_running_loop()
    if isinstance(address, TCPAddress):
        _, proto = await loop.create_connection(
            lambda: PingPong(rec, args.size, args.pipeline), address.host, address.port
        )
        return proto
    if isinstance(address, UnixAddress):
        _, proto = await loop.create_unix_connection(
            lambda: PingPong(rec, args.size, args.pipeline), unix_target(address)
        )
        return proto
    make = lambda: Datagrams(rec, args.size, args.timeout_ms / 1000)  # noqa: E731
    if isinstance(address, UDPAddress):
        _, dproto = await loop.create_datagram_endpoint(
            make, remote_addr=(address.host, address.port)
        )
        return dproto
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # A path, not an abstract name: uvloop cannot answer an abstract sender
    # (libuv gives it no address length, so it reads all of sun_path).
    sock.bind(reply_to)
    assert isinstance(address, UnixDatagramAddress)
    sock.connect(unix_target(address))
    sock.setblocking(False)
    _, dproto = await loop.create_datagram_endpoint(make, sock=sock)
    return dproto


async def generate(args: argparse.Namespace, replies: str) -> dict[str, Any]:
    address = args.address
    rec = Recorder()
    conns = await asyncio.wait_for(
        asyncio.gather(
            *(
                open_one(address, rec, args, os.path.join(replies, str(i)))
                for i in range(args.connections)
            )
        ),
        5.0,
    )
    await asyncio.sleep(args.warmup)  # the warm-up is a time, not an event
    rec.measuring = True
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    await asyncio.sleep(args.duration)
    rec.measuring = False
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.abort() if isinstance(
                conn, PingPong
            ) else conn.transport.close()
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return report(args, rec, wall, cpu)


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6


def report(
    args: argparse.Namespace, rec: Recorder, wall: float, cpu: float
) -> dict[str, Any]:
    ordered = sorted(rec.latencies)
    kind = (
        "python-uvloop"
        if "uvloop" in type(asyncio.get_running_loop()).__module__
        else "python"
    )
    return {
        "loadgen": kind,
        "address": str(args.address),
        "transport": args.address.scheme,
        "connections": args.connections,
        "size": args.size,
        "pipeline": args.pipeline,
        "duration_s": round(wall, 3),
        "warmup_s": args.warmup,
        "requests": rec.requests,
        "requests_per_s": rec.requests / wall,
        "mib_per_s": rec.requests * args.size / 2**20 / wall,
        "p50_us": percentile(ordered, 0.50),
        "p90_us": percentile(ordered, 0.90),
        "p99_us": percentile(ordered, 0.99),
        "p999_us": percentile(ordered, 0.999),
        "max_us": ordered[-1] * 1e6 if ordered else 0.0,
        "mean_us": sum(ordered) / len(ordered) * 1e6 if ordered else 0.0,
        "errors": rec.errors,
        "losses": rec.losses,
        "sent": rec.sent,
        "cpu_pct": 100 * cpu / wall,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", type=parse_address, required=True)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--pipeline", type=int, default=0)
    parser.add_argument("--timeout-ms", type=int, default=1000)
    args = parser.parse_args(argv)
    check_loopback(args.address)
    if args.pipeline and isinstance(args.address, UDPAddress | UnixDatagramAddress):
        parser.error("--pipeline is for streams only")
    return args


def main() -> None:
    args = parse_args()
    with (
        asyncio.Runner(loop_factory=loop_factory("auto")) as runner,
        tempfile.TemporaryDirectory(prefix="aiosock-loadgen-") as replies,
    ):
        print(json.dumps(runner.run(generate(args, replies))), flush=True)


if __name__ == "__main__":
    main()
