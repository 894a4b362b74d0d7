"""CPU time of a read that completes several messages: the adapter's batch path.

Run:  python -m benchmarks.batch_read [--rounds 20000] [--lines 16]

A socket pair in one process, on each loop: an echo ``Protocol`` with the
``Lines`` codec on one end; on the other a client that writes ``--lines``
lines at once and reads every reply before it writes again. The figure is
the process's CPU time per round, in microseconds: the client's share is
the same whatever the adapter does, so a change shows in absolute terms,
not as a ratio of the server's cost. Compare two checkouts by running it
in each, interleaved; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

import aiosock
from aiosock import Lines, Protocol, Transport
from aiosock.aio.loops import LoopName, loop_factory
from benchmarks.run import loops_available


class Echo(Protocol[bytes]):
    def connection_made(self, transport: Transport[bytes]) -> None:
        self.transport = transport

    def message_received(self, message: bytes) -> None:
        self.transport.send(message)


async def rounds(count: int, lines: int) -> float:
    """CPU microseconds per round of ``lines`` lines there and back."""
    left, right = socket.socketpair()
    await aiosock.create_connection(Echo, f"fd://{left.detach()}", codec=Lines())
    loop = asyncio.get_running_loop()
    batch = b"".join(b"line %04d\n" % n for n in range(lines))
    with right:
        right.setblocking(False)
        start = time.process_time()
        for _ in range(count):
            await loop.sock_sendall(right, batch)
            got = 0
            while got < len(batch):
                got += len(await loop.sock_recv(right, 65536))
        return (time.process_time() - start) / count * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds", type=int, choices=range(1, 1_000_001), default=20000
    )
    parser.add_argument("--lines", type=int, choices=range(2, 1001), default=16)
    args = parser.parse_args(argv)
    for name in loops_available():
        loop: LoopName = name  # type: ignore[assignment]
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            cpu = runner.run(rounds(args.rounds, args.lines))
        print(f"{name:8} {cpu:8.2f} us per read of {args.lines} lines")


if __name__ == "__main__":
    main()
