"""redis-benchmark against mqd on both loops and against redis-server, in one run.

Run:  python -m benchmarks.mqd [--repeat 3] [--quick] [--only REGEX]
                               [--pipelines 1,16] [--transports tcp,unix]
                               [--requests N] [--output DIR]

Three servers answer the same loads: redis-server (the reference, with
no persistence), mqd on uvloop and mqd on asyncio (``examples/mqd``). A
load is one redis-benchmark test of ``ping_inline, ping_mbulk, lpush,
rpush, lpop, rpop`` with 50 clients, at each pipeline depth (``-P``),
over TCP on 127.0.0.1 and over a Unix socket. Then the fsync rows: the
three servers restarted with an append-only log fsynced before replies go
out (redis-server ``--appendonly yes --appendfsync always``, mqd
``--appendonly PATH --appendfsync always``), under the four list tests
(each of them writes; the pings write nothing), over TCP only.

Each server runs pinned to one CPU, redis-benchmark on another; every
process is stopped by its PID, also when the run is interrupted. Within
a repetition the servers take turns test by test, in an order that
rotates, so that drift in a noisy machine hits them alike; the tests keep
redis-benchmark's order, so lpop and rpop find the lists that lpush and
rpush filled. A figure is the median over ``--repeat`` of redis-benchmark's
requests per second; a ratio is an mqd median over redis-server's, both
taken in this run.

It prints a Markdown table per (transport, pipeline depth, fsync) and,
under each, the goal of issue 14 that applies: mqd on uvloop at least 0.6
of redis-server at -P 1, at least 0.3 at -P 16, at least 0.5 with
appendfsync always, judged on the median of the table's per-test ratios.
``--output DIR`` also writes results.json and results.md there. It exits
1 if a run failed. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import procs, report
from benchmarks.run import regex

MQD = procs.ROOT / "examples" / "mqd"
TESTS = ("ping_inline", "ping_mbulk", "lpush", "rpush", "lpop", "rpop")
# The tests whose commands change data, so that they reach the log.
WRITES = ("lpush", "rpush", "lpop", "rpop")
CLIENTS = 50
REFERENCE = "redis-server"
SERVERS = (REFERENCE, "mqd-uvloop", "mqd-asyncio")
GOAL_SERVER = "mqd-uvloop"
# Issue 14's goals, as fractions of redis-server measured in the same run.
GOAL_AT_DEPTH = {1: 0.6, 16: 0.3}
GOAL_FSYNC = 0.5
# redis-server on this 2-core machine does ~100,000 requests/s at -P 1
# and ~1,000,000 at -P 16, about half that with appendfsync always: these
# take it a second or so per test, and mqd a few.
REQUESTS = 100_000
PIPELINED_REQUESTS = 1_000_000
QUICK_DIVISOR = 10
# A bound on one run, not a goal: no server here is slower than this.
SLOWEST_RATE = 1000.0  # requests per second
RUN_GRACE = 60.0  # seconds
# redis-server says so on stdout at its default log level (notice).
REDIS_READY = re.compile(r"Ready to accept connections")
MQD_READY = re.compile(r"^listening on (\S+)")


@attrs.frozen(kw_only=True)
class Cell:
    """One table: a transport, a pipeline depth, with or without fsync."""

    transport: str
    pipeline: int
    fsync: bool
    requests: int

    def label(self) -> str:
        fsync = " appendfsync always" if self.fsync else ""
        return f"{self.transport} -P {self.pipeline}{fsync}"

    def tests(self) -> tuple[str, ...]:
        return WRITES if self.fsync else TESTS

    def goal(self) -> float | None:
        return GOAL_FSYNC if self.fsync else GOAL_AT_DEPTH.get(self.pipeline)


def default_requests(pipeline: int, fsync: bool) -> int:
    requests = REQUESTS if pipeline == 1 else PIPELINED_REQUESTS
    return requests // 2 if fsync else requests


def plan_cells(args: argparse.Namespace) -> list[Cell]:
    """Every table of the run: all transports, then fsync over TCP."""
    out = []
    fsync_transports = [t for t in args.transports if t == "tcp"]
    for fsync, transports in ((False, args.transports), (True, fsync_transports)):
        for transport in transports:
            for pipeline in args.pipelines:
                requests = args.requests or default_requests(pipeline, fsync)
                if args.quick and not args.requests:
                    requests //= QUICK_DIVISOR
                out.append(
                    Cell(
                        transport=transport,
                        pipeline=pipeline,
                        fsync=fsync,
                        requests=requests,
                    )
                )
    return out


# ------------------------------------------------------------ servers


@attrs.frozen(kw_only=True)
class Running:
    name: str
    process: procs.Process
    port: int
    unix: Path


def free_port() -> int:
    # redis-server cannot be asked for port 0 (that turns TCP off); the
    # port could be taken between here and its bind, which would show.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(name: str, *, fsync: bool, tmp: Path, cpu: int | None) -> Running:
    """Start one server listening on TCP and a Unix socket; wait until it is."""
    home = tmp / (name + ("-fsync" if fsync else ""))
    home.mkdir()
    unix = home / "sock"
    if name == REFERENCE:
        port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port)]
        argv += ["--unixsocket", str(unix), "--unixsocketperm", "700"]
        argv += ["--dir", str(home), "--save", "", "--logfile", ""]
        if fsync:
            # Both rewrite their logs at Redis's defaults (in a child, when
            # the log doubled past 64 MiB): that cost is in both figures.
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        process = procs.Process(argv, cpu=cpu)
        process.wait_ready(ready=REDIS_READY)
        return Running(name=name, process=process, port=port, unix=unix)
    loop = name.removeprefix("mqd-")
    argv = [sys.executable, str(MQD), "--listen", "tcp://127.0.0.1:0"]
    argv += ["--listen", f"unix://{unix}", "--loop", loop, "--log-level", "warning"]
    if fsync:
        argv += ["--appendonly", str(home / "mqd.aof"), "--appendfsync", "always"]
    # The daemon and aiosock of this tree, whatever the environment holds.
    path = os.pathsep.join([str(procs.ROOT), str(procs.ROOT / "examples")])
    env = {**os.environ, "PYTHONPATH": path}
    process = procs.Process(argv, cpu=cpu, env=env)
    addresses = [process.wait_ready(ready=MQD_READY) for _ in range(2)]
    tcp = next(a for a in addresses if a.startswith("tcp://"))
    return Running(
        name=name, process=process, port=int(tcp.rsplit(":", 1)[1]), unix=unix
    )


# ------------------------------------------------------ redis-benchmark


def benchmark_argv(program: str, server: Running, cell: Cell, test: str) -> list[str]:
    if cell.transport == "tcp":
        address = ["-h", "127.0.0.1", "-p", str(server.port)]
    else:
        address = ["-s", str(server.unix)]
    load = ["-t", test, "-c", str(CLIENTS), "-n", str(cell.requests)]
    return [program, *address, *load, "-P", str(cell.pipeline), "--csv"]


def requests_per_second(out: str, test: str) -> float:
    """The rps of ``test`` in redis-benchmark's --csv output.

    The header is "test","rps","avg_latency_ms",...; a row per test, named
    in capitals. Raises RuntimeError if the row is missing or its rate is
    not finite (too few requests to time).
    """
    for row in csv.DictReader(io.StringIO(out)):
        if row.get("test", "").lower() == test:
            rate = float(row["rps"])
            if not math.isfinite(rate) or rate <= 0:
                raise RuntimeError(f"{test}: rate {row['rps']}: too few requests")
            return rate
    raise RuntimeError(f"no {test} row in redis-benchmark's output: {out[-300:]!r}")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -------------------------------------------------------------- harness


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop after the current run, keep the rest."""


_stop_requested = False


def _request_stop(signum: int, frame: FrameType | None) -> None:
    # Only a flag, as in benchmarks.run: an exception raised from a signal
    # handler can land inside Popen's clean-up and be lost.
    global _stop_requested
    _stop_requested = True


@attrs.define
class Harness:
    cells: list[Cell]
    repeat: int
    only: re.Pattern[str] | None
    program: str  # redis-benchmark
    runs: list[dict[str, Any]] = attrs.field(factory=list)
    failures: list[str] = attrs.field(factory=list)

    def plan(self, fsync: bool) -> list[tuple[Cell, str]]:
        return [
            (cell, test)
            for cell in self.cells
            if cell.fsync == fsync
            for test in cell.tests()
            if self.only is None or self.only.search(f"{test} {cell.label()}")
        ]

    def schedule(
        self, plan: list[tuple[Cell, str]]
    ) -> Iterator[tuple[int, Cell, str, str]]:
        """(repetition, cell, test, server) in the order they run: the server
        that goes first changes from test to test and from one repetition
        to the next."""
        for rep in range(self.repeat):
            for index, (cell, test) in enumerate(plan):
                shift = (rep + index) % len(SERVERS)
                for server in SERVERS[shift:] + SERVERS[:shift]:
                    yield rep, cell, test, server

    def total(self) -> int:
        return (
            len(SERVERS) * self.repeat * sum(len(self.plan(f)) for f in (False, True))
        )

    def run(self, tmp: Path) -> None:
        server_cpu, benchmark_cpu = procs.pinning()
        for fsync in (False, True):
            plan = self.plan(fsync)
            if not plan:
                continue
            servers: dict[str, Running] = {}
            try:
                for name in SERVERS:
                    servers[name] = start(name, fsync=fsync, tmp=tmp, cpu=server_cpu)
                for rep, cell, test, name in self.schedule(plan):
                    if _stop_requested:
                        raise Interrupted
                    self.one(servers[name], cell, test, rep, benchmark_cpu)
                    print(
                        f"[{len(self.runs)}/{self.total()}] {test} {cell.label()} "
                        f"{name} rep {rep + 1}: {self.last()}",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                for server in servers.values():
                    server.process.stop()

    def one(
        self, server: Running, cell: Cell, test: str, rep: int, cpu: int | None
    ) -> None:
        argv = benchmark_argv(self.program, server, cell, test)
        timeout = RUN_GRACE + cell.requests / SLOWEST_RATE
        result: dict[str, Any] = {
            "server": server.name,
            "test": test,
            "cell": cell.label(),
            **attrs.asdict(cell),
            "repetition": rep,
        }
        server_before, benchmark_before = (
            server.process.cpu_seconds(),
            children_cpu_seconds(),
        )
        start_time = time.monotonic()
        try:
            out = procs.run_to_end(argv, cpu=cpu, timeout=timeout)
            result["requests_per_s"] = requests_per_second(out, test)
        except RuntimeError as exc:
            self.failures.append(f"{server.name} {test} {cell.label()}: {exc}")
            result["failed"] = str(exc)
        wall = time.monotonic() - start_time
        result["seconds"] = wall
        result["server_cpu_pct"] = (
            100 * (server.process.cpu_seconds() - server_before) / wall
        )
        result["benchmark_cpu_pct"] = (
            100 * (children_cpu_seconds() - benchmark_before) / wall
        )
        self.runs.append(result)

    def last(self) -> str:
        r = self.runs[-1]
        if "failed" in r:
            return f"FAILED ({r['failed'][:80]})"
        return (
            f"{r['requests_per_s']:,.0f} req/s, server {r['server_cpu_pct']:.0f}% CPU, "
            f"redis-benchmark {r['benchmark_cpu_pct']:.0f}%"
        )


# --------------------------------------------------------------- tables


def medians(
    runs: list[dict[str, Any]], key: str = "requests_per_s"
) -> dict[tuple[str, str, str], float]:
    """(cell label, test, server) -> the median of ``key`` over its
    repetitions that did not fail."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in runs:
        if "failed" not in r:
            groups.setdefault((r["cell"], r["test"], r["server"]), []).append(r[key])
    return {k: statistics.median(v) for k, v in groups.items()}


def ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value and reference else None


def tables(cells: list[Cell], runs: list[dict[str, Any]]) -> str:
    """A Markdown table per cell that has runs, each with its goal line."""
    rps = medians(runs)
    cpu = medians(runs, "server_cpu_pct")
    client_cpu = medians(runs, "benchmark_cpu_pct")
    out = []
    for cell in cells:
        label = cell.label()
        tests = [t for t in cell.tests() if any((label, t, s) in rps for s in SERVERS)]
        if not tests:
            continue
        out.append(f"### {label} (redis-benchmark -c {CLIENTS} -n {cell.requests:,})\n")
        head = [f"{REFERENCE} req/s"]
        for server in SERVERS[1:]:
            head += [f"{server} req/s", "ratio"]
        out.append("| test | " + " | ".join(head) + " |")
        out.append("|---|" + "---:|" * len(head))
        ratios: list[float] = []
        for test in tests:
            reference = rps.get((label, test, REFERENCE))
            line = [_rate(reference)]
            for server in SERVERS[1:]:
                value = rps.get((label, test, server))
                share = ratio(value, reference)
                line += [_rate(value), "-" if share is None else f"{share:.2f}"]
                if server == GOAL_SERVER and share is not None:
                    ratios.append(share)
            out.append(f"| {test} | " + " | ".join(line) + " |")
        out.append("")
        # A server far below 100% is held back by redis-benchmark, which
        # has one thread: then the ratio says less about the server.
        loads = ", ".join(
            f"{s} {_pct(cpu, label, s)} / {_pct(client_cpu, label, s)}" for s in SERVERS
        )
        out.append(f"CPU, median over tests (server / redis-benchmark): {loads}.")
        out.append(goal_line(cell, ratios))
        out.append("")
    return "\n".join(out)


def goal_line(cell: Cell, ratios: list[float]) -> str:
    """Whether the median of the goal server's per-test ratios meets the
    cell's goal."""
    goal = cell.goal()
    if goal is None:
        return "No goal of issue 14 at this depth."
    where = "with appendfsync always" if cell.fsync else f"at -P {cell.pipeline}"
    wanted = f"{GOAL_SERVER} at least {goal:.1f} of {REFERENCE} {where}"
    if not ratios:
        return f"Goal: {wanted}: not measured."
    median = statistics.median(ratios)
    over = (
        "the ratio"
        if len(ratios) == 1
        else f"the median ratio over {len(ratios)} tests"
    )
    verdict = "met" if median >= goal else "missed"
    return f"Goal: {wanted}: **{verdict}**, {over} is {median:.2f}."


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _pct(cpu: dict[tuple[str, str, str], float], label: str, server: str) -> str:
    values = [v for (c, _, s), v in cpu.items() if c == label and s == server]
    return f"{statistics.median(values):.0f}%" if values else "-"


# ------------------------------------------------------------ arguments


def _numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"numbers must be positive: {text!r}")
    return values


def _transports(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = set(names) - {"tcp", "unix"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown transports: {sorted(unknown)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument(
        "--requests",
        type=int,
        help="-n of every run (default: 100,000 at -P 1, 1,000,000 deeper; "
        "half with fsync)",
    )
    parser.add_argument("--pipelines", type=_numbers, default=(1, 16))
    parser.add_argument("--transports", type=_transports, default=("tcp", "unix"))
    parser.add_argument(
        "--only",
        type=regex,
        help="runs whose 'TEST TRANSPORT -P N[ appendfsync always]' matches",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the requests, one repetition"
    )
    parser.add_argument("--output", type=Path, help="write results.json and .md here")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat must be 1 to 50")
    if args.requests is not None and not 1 <= args.requests <= 100_000_000:
        parser.error("--requests must be 1 to 100,000,000")
    if max(args.pipelines) > 1000:
        parser.error("--pipelines must be at most 1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [p for p in ("redis-server", "redis-benchmark") if not shutil.which(p)]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)}")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _request_stop)
    harness = Harness(
        plan_cells(args), args.repeat, args.only, shutil.which("redis-benchmark") or ""
    )
    server_cpu, benchmark_cpu = procs.pinning()
    print(
        f"{harness.total()} runs of redis-benchmark; servers on CPU {server_cpu}, "
        f"redis-benchmark on CPU {benchmark_cpu}",
        file=sys.stderr,
    )
    status = 0
    with tempfile.TemporaryDirectory(prefix="aiosock-mqdbench-") as tmp:
        try:
            harness.run(Path(tmp))
        except Interrupted:
            print("interrupted: reporting what was measured", file=sys.stderr)
            status = 130
    text = tables(harness.cells, harness.runs)
    print(text)
    for failure in harness.failures:
        print(f"failed: {failure}", file=sys.stderr)
    if args.output is not None:
        write(args.output, harness, text, args)
    return status or (1 if harness.failures else 0)


def write(out: Path, harness: Harness, text: str, args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": report.machine(),
        "redis_server": _version("redis-server"),
        "repeat": args.repeat,
        "only": args.only.pattern if args.only else None,
        "clients": CLIENTS,
        "failures": harness.failures,
        "runs": harness.runs,
    }
    (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "results.md").write_text(text + "\n")
    print(f"data: {out / 'results.json'}", file=sys.stderr)


def _version(program: str) -> str:
    done = subprocess.run([program, "--version"], capture_output=True, text=True)
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
