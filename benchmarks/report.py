"""Turning benchmark runs into medians, ratios, a table, a chart and a record.

A *cell* is one server row under one load (transport, message size,
concurrency, pipeline depth); its runs are the repetitions. Ratios are
taken between medians of the same run of the harness, never across runs.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

C_ROW = "c/echo"


@attrs.frozen(kw_only=True)
class Load:
    transport: str
    size: int
    concurrency: int
    pipeline: int = 0

    def label(self) -> str:
        depth = f" pipeline={self.pipeline}" if self.pipeline else ""
        return f"{self.transport} {human_size(self.size)} c={self.concurrency}{depth}"


@attrs.frozen(kw_only=True)
class Cell:
    """The repetitions of one row under one load, summarised."""

    row: str  # "loop/server", or "c/echo"
    load: Load
    rps: list[float]
    mibps: list[float]
    p50_us: list[float]
    p99_us: list[float]
    errors: int
    losses: int
    server_cpu: list[float]  # percent of one core
    loadgen_cpu: list[float]

    @property
    def median_rps(self) -> float:
        return statistics.median(self.rps) if self.rps else 0.0


def human_size(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def ratio(value: float, reference: float) -> float | None:
    """value / reference, or None where there is no reference to divide by."""
    return value / reference if reference > 0 else None


def summarise(runs: Iterable[dict[str, Any]]) -> list[Cell]:
    """Group raw runs into cells, keeping the order in which cells first appear."""
    groups: dict[tuple[str, Load], list[dict[str, Any]]] = {}
    for run in runs:
        key = (run["row"], Load(**run["load"]))
        groups.setdefault(key, []).append(run)
    return [
        Cell(
            row=row,
            load=load,
            rps=[r["requests_per_s"] for r in results],
            mibps=[r["mib_per_s"] for r in results],
            p50_us=[r["p50_us"] for r in results],
            p99_us=[r["p99_us"] for r in results],
            errors=sum(r["errors"] for r in results),
            losses=sum(r["losses"] for r in results),
            server_cpu=[r["server_cpu_pct"] for r in results],
            loadgen_cpu=[r["cpu_pct"] for r in results],
        )
        for (row, load), results in groups.items()
    ]


def ratios(
    cells: Sequence[Cell], reference_server: dict[str, str]
) -> dict[int, dict[str, float | None]]:
    """For each cell (by index): its median against the reference row and the C row.

    ``reference_server`` maps a socket kind's transports to the server that
    is the raw reference for it on each loop ("protocol", "datagram").
    """
    by_key = {(c.row, c.load): c for c in cells}
    out: dict[int, dict[str, float | None]] = {}
    for index, cell in enumerate(cells):
        loop = cell.row.partition("/")[0]
        ref_server = reference_server[cell.load.transport]
        ref = by_key.get((f"{loop}/{ref_server}", cell.load))
        c_cell = by_key.get((C_ROW, cell.load))
        out[index] = {
            "vs_reference": ratio(cell.median_rps, ref.median_rps) if ref else None,
            "vs_c": ratio(cell.median_rps, c_cell.median_rps) if c_cell else None,
        }
    return out


def markdown(cells: Sequence[Cell], reference_server: dict[str, str]) -> str:
    ratio_of = ratios(cells, reference_server)
    lines = []
    current: Load | None = None
    for index, cell in enumerate(cells):
        if cell.load != current:
            current = cell.load
            ref = reference_server[current.transport]
            lines += [
                "",
                f"### {current.label()}",
                "",
                f"| server | requests/s (median) | min-max | MiB/s | p50 µs | p99 µs "
                f"| vs {ref} same loop | vs C | server CPU % | loadgen CPU % "
                "| errors | losses |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
        r = ratio_of[index]
        spread = f"{min(cell.rps):,.0f}-{max(cell.rps):,.0f}"
        lines.append(
            f"| {cell.row} | {cell.median_rps:,.0f} | {spread} "
            f"| {median(cell.mibps):,.1f} | {median(cell.p50_us):,.0f} "
            f"| {median(cell.p99_us):,.0f} | {fmt_ratio(r['vs_reference'])} "
            f"| {fmt_ratio(r['vs_c'])} | {median(cell.server_cpu):.0f} "
            f"| {median(cell.loadgen_cpu):.0f} | {cell.errors} | {cell.losses} |"
        )
    return "\n".join(lines).lstrip("\n") + "\n"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def chart(cells: Sequence[Cell], path: Path, title: str) -> Path | None:
    """Grouped bars of requests/s per message size, one bar per server row.

    One panel per transport and concurrency, each with the rows that serve
    that transport; a row keeps its colour in every panel. Pipelined loads
    are left to the table. Returns None where matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return None
    plain = {(c.row, c.load): c.median_rps for c in cells if not c.load.pipeline}
    if not plain:
        return None
    rows = list(dict.fromkeys(row for row, _ in plain))
    colour = {row: f"C{i % 10}" for i, row in enumerate(rows)}
    transports = list(dict.fromkeys(load.transport for _, load in plain))
    levels = sorted({load.concurrency for _, load in plain})
    fig, axes = plt.subplots(
        len(transports),
        len(levels),
        figsize=(5.5 * len(levels), 3.6 * len(transports)),
        squeeze=False,
    )
    for (t, transport), (c, concurrency) in itertools.product(
        enumerate(transports), enumerate(levels)
    ):
        ax = axes[t][c]
        loads = sorted(
            {
                load
                for _, load in plain
                if (load.transport, load.concurrency) == (transport, concurrency)
            },
            key=lambda load: load.size,
        )
        here = [row for row in rows if any((row, load) in plain for load in loads)]
        width = 0.8 / max(1, len(here))
        for i, row in enumerate(here):
            offset = (i - (len(here) - 1) / 2) * width
            values = [plain.get((row, load), 0.0) for load in loads]
            ax.bar(
                [x + offset for x in range(len(loads))],
                values,
                width,
                color=colour[row],
            )
        ax.set_xticks(range(len(loads)), [human_size(load.size) for load in loads])
        ax.set_title(f"{transport}, c={concurrency}", fontsize=10)
        ax.set_ylabel("requests/s")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=colour[row]) for row in rows]
    fig.legend(handles, rows, loc="lower center", ncol=min(len(rows), 5), fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(
    out: Path, record: dict[str, Any], references: dict[str, str]
) -> Path | None:
    """Write results.md and results.png for a record; return the chart's path."""
    machine, matrix = record["machine"], record["matrix"]
    cells = summarise(r for r in record["runs"] if "failed" not in r)
    kind = "quick" if record["quick"] else "full"
    title = (
        f"aiosock benchmark ({kind}), {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}, uvloop {machine['uvloop']}"
    )
    header = (
        f"# {title}\n\nLoad generator: {record['loadgen']}; medians of "
        f"{matrix['repeat']} runs of {matrix['duration']:g} s after "
        f"{matrix['warmup']:g} s of warm-up. Ratios are taken within this run.\n\n"
    )
    (out / "results.md").write_text(header + markdown(cells, references))
    return chart(cells, out / "results.png", title)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("uvloop", "aiosock"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cc = shutil.which("cc")
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cc": subprocess.run(
            [cc, "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
        if cc
        else None,
        **versions,
    }
