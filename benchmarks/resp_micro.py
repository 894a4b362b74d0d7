"""Commands per second through examples/mqd's RESP decoder and encoder.

Run:  python -m benchmarks.resp_micro [--commands 100000] [--pipeline 16]
                                      [--repeat 5]

Each row feeds ``--commands`` pipelined commands to a fresh decoder,
``--pipeline`` commands per read (redis-benchmark -P 16 sends 16), and
prints the best of ``--repeat`` runs in commands per second of the
process's CPU time. The rows: one command repeated (what redis-benchmark
sends), commands of different shapes mixed (what an application's
pipeline sends), inline PING (redis-benchmark's PING_INLINE), the same
commands cut into 1000-byte reads (commands split across reads), and the
encoder. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make aiosock importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from mqd.resp import Resp

LPUSH = [b"LPUSH", b"key", b"value"]
MIXED = [
    [b"LPUSH", b"queue:jobs", b"job-17"],
    [b"RPOP", b"queue:jobs"],
    [b"LRANGE", b"queue:jobs", b"0", b"-1"],
    [b"SET", b"user:1:name", b"x" * 100],
    [b"GET", b"user:1:name"],
    [b"PING"],
]


def wire(commands: list[list[bytes]]) -> bytes:
    codec = Resp()
    out = []
    for command in commands:
        encoded = codec.encode(command)
        out.append(encoded if isinstance(encoded, bytes) else b"".join(encoded))
    return b"".join(out)


def one_read(commands: list[list[bytes]], pipeline: int) -> list[bytes]:
    """One read of ``pipeline`` commands, cycling through ``commands``."""
    return [wire([commands[i % len(commands)] for i in range(pipeline)])]


def decode_rate(reads: list[bytes], commands: int, per_cycle: int) -> float:
    """Commands per CPU second, feeding ``reads`` over and over."""
    decoder = Resp().decoder()
    cycles = max(1, commands // per_cycle)
    feed = decoder.feed
    start = time.process_time()
    done = 0
    for _ in range(cycles):
        for data in reads:
            done += len(feed(data))
    elapsed = time.process_time() - start
    assert done == cycles * per_cycle, (done, cycles * per_cycle)
    return done / elapsed


def encode_rate(commands: int) -> float:
    encode = Resp().encode
    start = time.process_time()
    for _ in range(commands):
        encode(LPUSH)
    return commands / (time.process_time() - start)


def rows(commands: int, pipeline: int) -> dict[str, Callable[[], float]]:
    lpush = one_read([LPUSH], pipeline)
    mixed = one_read(MIXED, pipeline)
    inline = [b"PING\r\n" * pipeline]
    # 1000-byte reads of a stream of whole cycles: commands cut anywhere.
    stream = wire([MIXED[i % len(MIXED)] for i in range(6 * 100)])
    cut = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    return {
        f"decode LPUSH x{pipeline}": lambda: decode_rate(lpush, commands, pipeline),
        f"decode mixed x{pipeline}": lambda: decode_rate(mixed, commands, pipeline),
        f"decode PING inline x{pipeline}": lambda: decode_rate(
            inline, commands, pipeline
        ),
        "decode mixed, 1000-byte reads": lambda: decode_rate(cut, commands, 600),
        "encode LPUSH": lambda: encode_rate(commands),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--pipeline", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, measure in rows(args.commands, args.pipeline).items():
        best = max(measure() for _ in range(args.repeat))
        print(f"{name:34} {best:>12,.0f} commands/s")


if __name__ == "__main__":
    main()
