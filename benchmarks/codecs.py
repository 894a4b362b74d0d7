"""Decode throughput of aiosock's codecs against asyncio's StreamReader.

Run:  python -m benchmarks.codecs [--repeat 7] [--mib 2]

For each codec and frame size (16 B, 256 B and 4 KiB of payload), the same
in-memory byte stream, cut into 64 KiB chunks as a socket would deliver
it, is decoded twice per repetition, interleaved:

- aiosock: one ``decoder.feed(chunk)`` per chunk;
- StreamReader: ``feed_data(chunk)`` per chunk, with a reader task doing
  what an asyncio-streams server does: ``readexactly`` (header, then
  payload) for length-prefixed frames, ``readline`` for lines,
  ``readuntil`` for other delimiters, ``read`` for raw chunks.

It prints frames/s and MB/s (wire bytes, 10**6) for each, as medians of
the repetitions, and the ratio aiosock / StreamReader of those medians.
Both sides run in this one process on the plain asyncio loop, so the
ratio holds on a noisy machine even where the absolute figures do not.
This is a benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make aiosock importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosock import Codec, Delimited, LengthPrefixed, Lines, Raw

CHUNK = 64 * 1024
FRAME_SIZES = (16, 256, 4096)

ReaderJob = Callable[[asyncio.StreamReader], Coroutine[Any, Any, int]]


async def read_length_prefixed(reader: asyncio.StreamReader) -> int:
    frames = 0
    try:
        while True:
            header = await reader.readexactly(4)
            await reader.readexactly(int.from_bytes(header, "big"))
            frames += 1
    except asyncio.IncompleteReadError:
        return frames


async def read_lines(reader: asyncio.StreamReader) -> int:
    frames = 0
    while await reader.readline():
        frames += 1
    return frames


async def read_until_nul(reader: asyncio.StreamReader) -> int:
    frames = 0
    try:
        while True:
            await reader.readuntil(b"\0")
            frames += 1
    except asyncio.IncompleteReadError:
        return frames


async def read_raw(reader: asyncio.StreamReader) -> int:
    chunks = 0
    while await reader.read(CHUNK):
        chunks += 1
    return chunks


# name, codec, the StreamReader job doing the same, payload byte, sizes.
# Raw has no frames: its messages are the chunks, whatever the payload.
CASES: list[tuple[str, Codec, ReaderJob, bytes, tuple[int, ...]]] = [
    ("LengthPrefixed", LengthPrefixed(), read_length_prefixed, b"p", FRAME_SIZES),
    ("Lines", Lines(), read_lines, b"l", FRAME_SIZES),
    ("Delimited(NUL)", Delimited(delimiter=b"\0"), read_until_nul, b"d", FRAME_SIZES),
    ("Raw", Raw(), read_raw, b"r", (CHUNK,)),
]


def make_chunks(codec: Codec, payload: bytes, total: int) -> tuple[list[bytes], int]:
    """``total`` bytes or so of whole frames, in socket-sized chunks."""
    encoded = codec.encode(payload)
    frame = encoded if isinstance(encoded, bytes) else b"".join(encoded)
    count = max(1, total // len(frame))
    wire = frame * count
    return [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)], count


def time_aiosock(codec: Codec, chunks: list[bytes]) -> tuple[float, int]:
    decoder = codec.decoder()
    feed = decoder.feed
    frames = 0
    start = time.perf_counter()
    for chunk in chunks:
        frames += len(feed(chunk))
    decoder.eof()
    return time.perf_counter() - start, frames


async def time_stream_reader(job: ReaderJob, chunks: list[bytes]) -> tuple[float, int]:
    # The reader's limit is raised to one chunk and more, so that it never
    # refuses a frame; feeding waits for the reader to drain each chunk, as
    # a transport paused above the limit would.
    reader = asyncio.StreamReader(limit=2 * CHUNK)
    start = time.perf_counter()
    task = asyncio.create_task(job(reader))
    for chunk in chunks:
        reader.feed_data(chunk)
        await asyncio.sleep(0)
    reader.feed_eof()
    frames = await task
    return time.perf_counter() - start, frames


def measure(repeat: int, total: int, only: str | None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    loop = asyncio.new_event_loop()
    try:
        for name, codec, job, byte, sizes in CASES:
            if only and only.lower() not in name.lower():
                continue
            for size in sizes:
                chunks, count = make_chunks(codec, byte * size, total)
                wire = sum(map(len, chunks))
                ours: list[float] = []
                theirs: list[float] = []
                for _ in range(repeat):  # interleaved, so drift hits both
                    seconds, ours_frames = time_aiosock(codec, chunks)
                    ours.append(seconds)
                    seconds, their_frames = loop.run_until_complete(
                        time_stream_reader(job, chunks)
                    )
                    theirs.append(seconds)
                    if not ours_frames == their_frames == count:
                        raise SystemExit(f"{name}: frame counts differ")
                rows.append(row(name, size, count, wire, ours, theirs))
                print(format_row(rows[-1]), flush=True)
    finally:
        loop.close()
    return rows


def row(
    name: str, size: int, count: int, wire: int, ours: list[float], theirs: list[float]
) -> dict[str, object]:
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    return {
        "codec": name,
        "frame": size,
        "aiosock_fps": count / ours_s,
        "aiosock_mbps": wire / ours_s / 1e6,
        "reader_fps": count / theirs_s,
        "reader_mbps": wire / theirs_s / 1e6,
        "ratio": theirs_s / ours_s,
    }


HEADER = (
    "| codec | frame | aiosock frames/s | aiosock MB/s "
    "| StreamReader frames/s | StreamReader MB/s | ratio |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)


def format_row(r: dict[str, object]) -> str:
    return (
        f"| {r['codec']} | {r['frame']} B | {r['aiosock_fps']:,.0f} "
        f"| {r['aiosock_mbps']:,.1f} | {r['reader_fps']:,.0f} "
        f"| {r['reader_mbps']:,.1f} | {r['ratio']:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per row (median)")
    parser.add_argument("--mib", type=float, default=2.0, help="MiB decoded per run")
    parser.add_argument("--only", help="only codecs whose name contains this")
    args = parser.parse_args()
    if args.repeat < 1 or args.mib <= 0:
        parser.error("--repeat and --mib must be positive")
    print(
        f"Python {sys.version.split()[0]}, {args.repeat} runs per row, "
        f"{args.mib:g} MiB per run in {CHUNK // 1024} KiB chunks; "
        "medians; ratio = aiosock / StreamReader"
    )
    print(HEADER, flush=True)
    measure(args.repeat, int(args.mib * 2**20), args.only)


if __name__ == "__main__":
    main()
