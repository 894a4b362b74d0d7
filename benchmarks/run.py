"""The benchmark: every echo server under the same loads, side by side.

Run:  python -m benchmarks.run [--quick] [--only REGEX] [--out DIR]
      (``make bench`` sets up .venv and runs ``--quick``)

The matrix is server row x transport x message size x concurrency (and,
for streams, a pipelined load of length-prefixed frames). A row is a
server on a loop ("uvloop/protocol") or the C echo server ("c/echo"), the
physical limit of the machine. Each server runs in its own process pinned
to one CPU, the load generator on another; each load is repeated with the
rows interleaved, so that drift in a noisy machine hits every row alike.
Figures are medians with min-max; ratios (against the raw Protocol row on
the same loop, and against the C row) are taken inside this one run.

It writes results.json (every run, the machine), results.md (the tables)
and results.png (requests/s per message size, one bar per row) to --out,
by default benchmarks/results/<date-time>/. Traffic stays on 127.0.0.1 and
on Unix sockets in a temporary directory; every process is stopped by its
PID, also when the run is interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosock.aio.loops import loop_factory
from benchmarks import procs, report
from benchmarks.report import C_ROW, Load
from benchmarks.servers import ADAPTER_TRIALS, SERVERS

KIND = {"tcp": "stream", "unix": "stream", "udp": "datagram", "unixgram": "datagram"}
# The raw-callback server each row is held against, on its own loop.
REFERENCE = {
    "tcp": "protocol",
    "unix": "protocol",
    "udp": "datagram",
    "unixgram": "datagram",
}
# The largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes).
MAX_UDP = 65507
# Nothing runs for ever: servers stop by themselves after this.
SERVER_MAX_SECONDS = 4 * 3600


@attrs.frozen(kw_only=True)
class Matrix:
    transports: tuple[str, ...] = ("tcp", "unix", "udp", "unixgram")
    sizes: tuple[int, ...] = (64, 1024, 16 * 1024, 100 * 1024)
    concurrency: tuple[int, ...] = (1, 10, 100)
    # (frame payload, frames in flight, connections) for stream transports
    pipelined: tuple[tuple[int, int, int], ...] = ((64, 16, 10),)
    repeat: int = 3
    duration: float = 2.0
    warmup: float = 0.5

    def loads(self, transport: str) -> list[Load]:
        sizes = [s for s in self.sizes if transport != "udp" or s <= MAX_UDP]
        loads = [
            Load(transport=transport, size=size, concurrency=c)
            for size, c in itertools.product(sizes, self.concurrency)
        ]
        if KIND[transport] == "stream":
            loads += [
                Load(transport=transport, size=s, concurrency=c, pipeline=k)
                for s, k, c in self.pipelined
            ]
        return loads


FULL = Matrix()
# Under five minutes on 2 cores: 2 sizes, 1 concurrency, short runs.
QUICK = Matrix(
    sizes=(64, 16 * 1024), concurrency=(10,), pipelined=(), duration=1.0, warmup=0.3
)


@attrs.frozen(kw_only=True)
class Row:
    """A server to measure: its name, socket kinds, and command ("{}" = address)."""

    name: str
    kinds: frozenset[str]
    argv: tuple[str, ...]

    def command(self, address: str) -> list[str]:
        return [address if part == "{}" else part for part in self.argv]


def rows(
    loops: Sequence[str], echo: Path | None, *, adapters: bool = False
) -> list[Row]:
    limit = ("--max-seconds", str(SERVER_MAX_SECONDS))
    out = []
    if echo is not None:
        both = frozenset({"stream", "datagram"})
        out.append(Row(name=C_ROW, kinds=both, argv=(str(echo), "{}", *limit)))
    servers = SERVERS | ADAPTER_TRIALS if adapters else SERVERS
    for loop, (name, server) in itertools.product(loops, servers.items()):
        module = (sys.executable, "-m", "benchmarks.servers")
        argv = (*module, name, "{}", "--loop", loop, *limit)
        out.append(Row(name=f"{loop}/{name}", kinds=server.kinds, argv=argv))
    return out


def loops_available() -> list[str]:
    try:
        loop_factory("uvloop")
    except RuntimeError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def bind_address(transport: str, row: str, tmp: Path) -> str:
    if transport in ("unix", "unixgram"):
        return f"{transport}://{tmp / (row.replace('/', '-') + '.sock')}"
    return f"{transport}://127.0.0.1:0"


@attrs.define
class Harness:
    matrix: Matrix
    rows: list[Row]
    loadgen: list[str]
    only: re.Pattern[str] | None
    runs: list[dict[str, Any]] = attrs.field(factory=list)
    failures: list[str] = attrs.field(factory=list)

    def plan(self) -> Iterator[tuple[str, list[Row], list[Load]]]:
        for transport in self.matrix.transports:
            kind = KIND[transport]
            selected = [
                r
                for r in self.rows
                if (kind in r.kinds or (kind == "stream" and "framed" in r.kinds))
                and (self.only is None or self.only.search(f"{r.name} {transport}"))
            ]
            if selected:
                yield transport, selected, self.matrix.loads(transport)

    def total(self) -> int:
        return sum(
            len(list(self.schedule(rows, loads))) for _, rows, loads in self.plan()
        )

    def run(self, tmp: Path) -> None:
        server_cpu, loadgen_cpu = procs.pinning()
        total = self.total()
        for transport, selected, loads in self.plan():
            servers: dict[str, tuple[procs.Process, str]] = {}
            try:
                for row in selected:
                    address = bind_address(transport, row.name, tmp)
                    process = procs.Process(row.command(address), cpu=server_cpu)
                    servers[row.name] = (process, process.wait_ready())
                for load, rep, row in self.schedule(selected, loads):
                    if _stop_requested:
                        raise Interrupted
                    self.one(row.name, servers[row.name], load, loadgen_cpu)
                    print(
                        f"[{len(self.runs)}/{total}] {load.label()} {row.name} "
                        f"rep {rep + 1}: {self.last()}",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                for process, _ in servers.values():
                    process.stop()

    def schedule(
        self, selected: list[Row], loads: list[Load]
    ) -> Iterator[tuple[Load, int, Row]]:
        """Every run of one transport: each repetition rotates the row order,
        so that no row always goes first."""
        for load in loads:
            # A framed server decodes length-prefixed frames: pipelined loads only.
            rows = [r for r in selected if load.pipeline or "framed" not in r.kinds]
            for rep in range(self.matrix.repeat):
                shift = rep % len(rows) if rows else 0
                for row in rows[shift:] + rows[:shift]:
                    yield load, rep, row

    def one(
        self, row: str, server: tuple[procs.Process, str], load: Load, cpu: int | None
    ) -> None:
        process, address = server
        m = self.matrix
        argv = [
            *self.loadgen,
            "--address",
            address,
            "--connections",
            str(load.concurrency),
            "--size",
            str(load.size),
            "--duration",
            str(m.duration),
            "--warmup",
            str(m.warmup),
            "--pipeline",
            str(load.pipeline),
        ]
        before, start = process.cpu_seconds(), time.monotonic()
        try:
            result = procs.run_loadgen(
                argv, cpu=cpu, timeout=m.warmup + m.duration + 20
            )
        except RuntimeError as exc:
            self.failures.append(f"{row} {load.label()}: {exc}")
            result = {
                "requests_per_s": 0.0,
                "mib_per_s": 0.0,
                "p50_us": 0.0,
                "p99_us": 0.0,
                "errors": 1,
                "losses": 0,
                "cpu_pct": 0.0,
                "failed": str(exc),
            }
        wall = time.monotonic() - start
        result.update(
            row=row,
            load=attrs.asdict(load),
            server_cpu_pct=100 * (process.cpu_seconds() - before) / wall,
        )
        self.runs.append(result)

    def last(self) -> str:
        r = self.runs[-1]
        if "failed" in r:
            return f"FAILED ({r['failed'][:80]})"
        return (
            f"{r['requests_per_s']:,.0f} req/s, server {r['server_cpu_pct']:.0f}% CPU, "
            f"loadgen {r['cpu_pct']:.0f}%"
        )


def choose_loadgen(wanted: str) -> list[str]:
    binary = procs.build("loadgen") if wanted in ("auto", "c") else None
    if binary is not None:
        return [str(binary)]
    if wanted == "c":
        raise SystemExit("--loadgen c: no C compiler found")
    if wanted == "auto":
        print("no C compiler: using the Python load generator", file=sys.stderr)
    return [sys.executable, "-m", "benchmarks.pyloadgen"]


def regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"bad regular expression: {exc}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the reduced matrix (< 5 min)"
    )
    parser.add_argument("--only", type=regex, help="rows whose 'ROW TRANSPORT' matches")
    parser.add_argument("--out", type=Path, help="output directory")
    parser.add_argument("--repeat", type=int, help="repetitions of each cell (>= 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run")
    parser.add_argument("--loadgen", choices=["auto", "c", "python"], default="auto")
    parser.add_argument("--transports", type=_names, help="e.g. tcp,unix")
    parser.add_argument(
        "--adapters", action="store_true", help="add aiosock's adapter trial rows"
    )
    parser.add_argument("--sizes", type=_numbers, help="message sizes, e.g. 64,1024")
    parser.add_argument("--concurrency", type=_numbers, help="e.g. 10,100")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    for name in ("duration", "warmup"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 600:
            parser.error(f"--{name} must be between 0 and 600 seconds")
    if args.duration == 0:
        parser.error("--duration must be positive")
    return args


def _numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"numbers must be positive: {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = set(names) - set(KIND)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown transports: {sorted(unknown)}")
    return names


def matrix_for(args: argparse.Namespace) -> Matrix:
    base = QUICK if args.quick else FULL
    changes = {
        k: getattr(args, k)
        for k in ("repeat", "duration", "warmup", "transports", "sizes", "concurrency")
        if getattr(args, k) is not None
    }
    return attrs.evolve(base, **changes)


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop after the current run, keep the rest."""


_stop_requested = False


def _request_stop(signum: int, frame: FrameType | None) -> None:
    # Only a flag: an exception raised from a signal handler can land in
    # any bytecode, even in fork's clean-up inside Popen, and be lost.
    global _stop_requested
    _stop_requested = True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    matrix = matrix_for(args)
    out = args.out or procs.HERE / "results" / datetime.now().strftime("%Y%m%d-%H%M%S")
    # SIGINT too: a shell starts background jobs with it ignored, and then
    # Python installs no handler of its own.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _request_stop)
    echo = procs.build("echo")
    harness = Harness(
        matrix,
        rows(loops_available(), echo, adapters=args.adapters),
        choose_loadgen(args.loadgen),
        args.only,
    )
    server_cpu, loadgen_cpu = procs.pinning()
    print(
        f"{harness.total()} runs of {matrix.warmup + matrix.duration:g} s; "
        f"server on CPU {server_cpu}, load generator on CPU {loadgen_cpu}",
        file=sys.stderr,
    )
    status = 0
    with tempfile.TemporaryDirectory(prefix="aiosock-bench-") as tmp:
        try:
            harness.run(Path(tmp))
        except Interrupted:
            print("interrupted: writing what was measured", file=sys.stderr)
            status = 130
    write(out, harness, matrix, args)
    return status


def write(
    out: Path, harness: Harness, matrix: Matrix, args: argparse.Namespace
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": report.machine(),
        "matrix": attrs.asdict(matrix),
        "quick": args.quick,
        "loadgen": harness.runs[0].get("loadgen", "?") if harness.runs else "?",
        "failures": harness.failures,
        "runs": harness.runs,
    }
    (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    png = report.write_outputs(out, record, REFERENCE)
    for failure in harness.failures:
        print(f"failed: {failure}", file=sys.stderr)
    print(f"table: {out / 'results.md'}")
    print(f"chart: {png or 'not drawn (matplotlib missing)'}")
    print(f"data:  {out / 'results.json'}")


def replot(argv: Sequence[str] | None = None) -> None:
    """Redraw results.md and results.png of a finished run from its JSON."""
    parser = argparse.ArgumentParser(description=replot.__doc__)
    parser.add_argument("out", type=Path, help="a directory holding results.json")
    out = parser.parse_args(argv).out
    record = json.loads((out / "results.json").read_text())
    print(f"chart: {report.write_outputs(out, record, REFERENCE)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["replot"]:
        replot(sys.argv[2:])
    else:
        sys.exit(main())
