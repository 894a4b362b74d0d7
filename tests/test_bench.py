"""The benchmark harness: its arithmetic, its arguments, and short real runs.

No test here asserts a speed; the smoke runs only check that traffic
flowed, that the outputs were written and that no process was left behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from benchmarks import emfile, micro, mqd, procs, report, run
from benchmarks.report import C_ROW
from benchmarks.servers import SERVERS

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------- arguments


def test_quick_is_a_reduced_matrix_and_flags_override_it() -> None:
    quick = run.matrix_for(run.parse_args(["--quick"]))
    full = run.matrix_for(run.parse_args([]))
    assert quick == run.QUICK
    assert full == run.FULL
    assert len(quick.sizes) * len(quick.concurrency) < len(full.sizes) * len(
        full.concurrency
    )
    tuned = run.matrix_for(
        run.parse_args(["--quick", "--repeat", "5", "--duration", "3"])
    )
    assert (tuned.repeat, tuned.duration, tuned.warmup) == (5, 3.0, run.QUICK.warmup)


def test_the_full_matrix_is_what_the_harness_promises() -> None:
    assert run.FULL.sizes == (64, 1024, 16 * 1024, 100 * 1024)
    assert run.FULL.concurrency == (1, 10, 100)
    assert run.FULL.repeat >= 3


@pytest.mark.parametrize(
    "argv",
    [["--repeat", "0"], ["--duration", "0"], ["--warmup", "-1"], ["--only", "("]],
)
def test_bad_arguments_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        run.parse_args(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_loads_fit_each_transport() -> None:
    udp = run.FULL.loads("udp")
    assert all(load.size <= run.MAX_UDP for load in udp)
    assert not any(load.pipeline for load in udp)
    assert 100 * 1024 in {load.size for load in run.FULL.loads("unixgram")}
    tcp = run.FULL.loads("tcp")
    assert any(load.pipeline for load in tcp)
    assert len(tcp) == 4 * 3 + len(run.FULL.pipelined)


def test_only_selects_rows_by_name_and_transport() -> None:
    rows = run.rows(["asyncio", "uvloop"], Path("/nonexistent/echo"))
    harness = run.Harness(
        run.QUICK,
        rows,
        ["loadgen"],
        run.parse_args(["--only", "^uvloop/protocol tcp$"]).only,
    )
    plan = list(harness.plan())
    assert [(t, [r.name for r in rs]) for t, rs, _ in plan] == [
        ("tcp", ["uvloop/protocol"])
    ]
    assert harness.total() == len(run.QUICK.loads("tcp")) * run.QUICK.repeat


def test_adding_a_server_is_one_entry() -> None:
    rows = run.rows(["asyncio"], None)
    names = {row.name for row in rows}
    assert names == {f"asyncio/{name}" for name in SERVERS}
    command = next(r for r in rows if r.name == "asyncio/protocol").command(
        "tcp://127.0.0.1:0"
    )
    assert command[-5:-2] == ["tcp://127.0.0.1:0", "--loop", "asyncio"]


# ------------------------------------------------------- arithmetic


def fake_run(
    row: str, rps: float, *, size: int = 64, transport: str = "tcp"
) -> dict[str, Any]:
    load = {"transport": transport, "size": size, "concurrency": 10, "pipeline": 0}
    return {
        "row": row,
        "load": load,
        "requests_per_s": rps,
        "mib_per_s": rps * size / 2**20,
        "p50_us": 100.0,
        "p99_us": 300.0,
        "errors": 0,
        "losses": 1,
        "cpu_pct": 50.0,
        "server_cpu_pct": 99.0,
    }


def test_medians_and_ratios_are_taken_within_the_run() -> None:
    runs = (
        [fake_run("asyncio/protocol", rps) for rps in (100.0, 300.0, 200.0)]
        + [fake_run("asyncio/streams", rps) for rps in (50.0, 1000.0, 60.0)]
        + [fake_run(C_ROW, rps) for rps in (400.0, 400.0, 400.0)]
    )
    cells = report.summarise(runs)
    assert [c.row for c in cells] == ["asyncio/protocol", "asyncio/streams", C_ROW]
    assert [c.median_rps for c in cells] == [200.0, 60.0, 400.0]
    ratios = report.ratios(cells, run.REFERENCE)
    assert ratios[0] == {"vs_reference": 1.0, "vs_c": 0.5}
    assert ratios[1] == {
        "vs_reference": pytest.approx(0.3),
        "vs_c": pytest.approx(0.15),
    }
    assert ratios[2] == {"vs_reference": None, "vs_c": 1.0}
    assert cells[0].losses == 3


def test_a_missing_reference_gives_no_ratio_rather_than_a_wrong_one() -> None:
    cells = report.summarise([fake_run("uvloop/streams", 10.0)])
    assert report.ratios(cells, run.REFERENCE)[0] == {
        "vs_reference": None,
        "vs_c": None,
    }
    assert report.ratio(5.0, 0.0) is None


def test_markdown_table_has_one_line_per_cell() -> None:
    runs = [fake_run("asyncio/protocol", 200.0), fake_run(C_ROW, 400.0)]
    runs += [fake_run("asyncio/protocol", 100.0, size=1024)]
    table = report.markdown(report.summarise(runs), run.REFERENCE)
    assert "### tcp 64 B c=10" in table
    assert "### tcp 1 KiB c=10" in table
    assert "| asyncio/protocol | 200 | 200-200 |" in table
    assert "| 0.50 |" in table  # protocol against C


def test_chart_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = [
        fake_run(row, rps, size=s)
        for row, rps in (("a/x", 1.0), (C_ROW, 2.0))
        for s in (64, 1024)
    ]
    path = report.chart(report.summarise(runs), tmp_path / "chart.png", "title")
    assert path is not None
    assert path.read_bytes().startswith(b"\x89PNG")


def test_machine_is_recorded() -> None:
    machine = report.machine()
    assert machine["cores"]
    assert machine["python"]
    assert machine["kernel"]


# ----------------------------------------------------------- real runs


def server_processes() -> set[int]:
    """PIDs of benchmark servers alive on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"benchmarks.servers" in cmdline or b"build/echo" in cmdline:
            found.add(int(entry.name))
    return found


def harness(out: Path, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "benchmarks.run", "--quick", "--repeat", "1"]
    argv += ["--duration", "0.3", "--warmup", "0.1", "--out", str(out), *args]
    return subprocess.Popen(
        argv, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def check_results(out: Path, rows: set[str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((out / "results.json").read_text())
    assert {r["row"] for r in record["runs"]} == rows
    assert not record["failures"]
    for result in record["runs"]:
        assert result["requests"] > 0
        assert result["errors"] == 0
    assert "| asyncio/protocol |" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")
    return record


@pytest.mark.timeout(120)
@pytest.mark.skipif(procs.compiler() is None, reason="no C compiler")
def test_smoke_run_with_the_c_load_generator_and_server(tmp_path: Path) -> None:
    before = server_processes()
    process = harness(tmp_path, "--only", "^(c/echo|asyncio/protocol) (tcp|unixgram)$")
    _, err = process.communicate(timeout=100)
    assert process.returncode == 0, err
    record = check_results(tmp_path, {"c/echo", "asyncio/protocol"})
    assert record["loadgen"] == "c"
    assert {r["transport"] for r in record["runs"]} == {"tcp", "unixgram"}
    assert server_processes() <= before


@pytest.mark.timeout(120)
def test_micro_runs_every_row_in_a_fresh_process() -> None:
    argv = [sys.executable, "-m", "benchmarks.micro", "--repeat", "1"]
    argv += ["--rounds", "40", "--pairs", "2"]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=100, cwd=ROOT, check=True
    )
    # A child's warnings (a task destroyed while pending) fail no exit code.
    assert "Task was destroyed" not in out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    expected = [f"{loop}/{row}" for loop in run.loops_available() for row in micro.ROWS]
    assert names == expected
    for row in rows[1:]:
        assert float(row.split("|")[2].replace(",", "")) > 0


def test_micro_refuses_bad_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--rounds", "1", "--pairs", "2"], ["--size", "0"]):
        with pytest.raises(SystemExit):
            micro.parse(argv)
    assert "--rounds must be" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_smoke_run_with_the_python_load_generator(tmp_path: Path) -> None:
    before = server_processes()
    process = harness(
        tmp_path, "--loadgen", "python", "--only", "^asyncio/protocol unix$"
    )
    _, err = process.communicate(timeout=100)
    assert process.returncode == 0, err
    record = check_results(tmp_path, {"asyncio/protocol"})
    assert record["loadgen"].startswith("python")
    assert server_processes() <= before


@pytest.mark.timeout(120)
def test_an_interrupted_run_stops_every_process_and_keeps_what_it_measured(
    tmp_path: Path,
) -> None:
    before = server_processes()
    process = harness(
        tmp_path, "--loadgen", "python", "--only", "^asyncio/(protocol|streams) tcp$"
    )
    assert process.stderr is not None
    seen = []
    for _ in range(50):  # bounded: the first run reports within seconds
        seen.append(process.stderr.readline())
        if seen[-1].startswith("[1/"):
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, "".join(seen) + rest
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["runs"]
    assert server_processes() <= before


def test_replot_redraws_a_finished_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = [fake_run("asyncio/protocol", 100.0), fake_run(C_ROW, 200.0)]
    record = {
        "machine": report.machine(),
        "matrix": attrs.asdict(run.QUICK),
        "quick": True,
        "loadgen": "c",
        "failures": [],
        "runs": runs,
    }
    (tmp_path / "results.json").write_text(json.dumps(record))
    run.replot([str(tmp_path)])
    assert "| asyncio/protocol | 100 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(120)
def test_lifecycle_measures_shutdown_and_every_deadline() -> None:
    argv = [sys.executable, "-m", "benchmarks.lifecycle", "--repeat", "1"]
    argv += ["--connections", "5", "--deadline", "0.05"]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=100, cwd=ROOT, check=True
    )
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    loops = run.loops_available()
    assert len([line for line in lines if line.endswith(" ms")]) == 2 * len(loops)
    deadlines = [line.split() for line in lines if line.endswith(" s")]
    assert [(d[0], d[1]) for d in deadlines] == [
        (loop, which) for loop in loops for which in ("idle", "frame", "send")
    ]
    for *_, seconds, _ in deadlines:
        assert float(seconds) >= 0.05  # no deadline cuts before its time


def test_emfile_tables_medians_and_shares_of_rounds() -> None:
    def one(lines: int, recovered: float | None) -> emfile.Round:
        return emfile.Round(
            lines=lines,
            records=lines // 2,
            window=2.0,
            survived=True,
            dropped=0,
            recovered=recovered,
        )

    rounds = {("asyncio", "asyncio"): [one(100, 1.0), one(300, None), one(200, 3.0)]}
    cells = [cell.strip() for cell in emfile.table(rounds).splitlines()[-1].split("|")]
    # lines, lines/s, records, survived, closed, recovered: medians and shares
    assert cells[3:9] == ["200", "100.0", "100", "yes", "0", "2/3 (median 2.00 s)"]


@pytest.mark.parametrize(
    "argv",
    [["--window", "0"], ["--connections", "0"], ["--limit", "8"], ["--repeat", "0"]],
)
def test_emfile_refuses_bad_bounds(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        emfile.parse(argv)


def emfile_children() -> set[int]:
    """PIDs of the servers benchmarks.emfile starts, alive on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"benchmarks.emfile" in cmdline and b"--child" in cmdline:
                    found.add(int(entry.name))
    return found


@pytest.mark.timeout(120)
def test_emfile_floods_every_row_and_leaves_no_server_behind() -> None:
    before = emfile_children()
    argv = [sys.executable, "-m", "benchmarks.emfile", "--repeat", "1"]
    argv += ["--window", "0.5", "--connections", "100"]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=100, cwd=ROOT, check=True
    )
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    names = [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows[1:]]
    expected = [(s, loop) for s in emfile.SERVERS for loop in run.loops_available()]
    assert names == expected, out.stdout
    for row in rows[1:]:
        assert row.split("|")[6].strip() == "yes", row  # survived
        if row.startswith("| aiosock"):
            assert row.split("|")[8].strip().startswith("yes"), row  # recovered
    assert emfile_children() <= before


# ------------------------------------------------- mqd against redis-server

CSV = (
    '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",'
    '"p95_latency_ms","p99_latency_ms","max_latency_ms"\n'
    '"LPUSH","27285.13","1.675","0.136","1.519","3.111","3.687","7.479"\n'
)


def test_mqd_reads_the_rate_from_redis_benchmarks_csv() -> None:
    assert mqd.requests_per_second(CSV, "lpush") == 27285.13
    with pytest.raises(RuntimeError, match="no rpush row"):
        mqd.requests_per_second(CSV, "rpush")
    with pytest.raises(RuntimeError, match="too few requests"):
        mqd.requests_per_second(CSV.replace("27285.13", "inf"), "lpush")


def test_mqd_plans_every_table_and_fsync_only_over_tcp() -> None:
    cells = mqd.plan_cells(mqd.parse_args([]))
    assert [c.label() for c in cells] == [
        "tcp -P 1",
        "tcp -P 16",
        "unix -P 1",
        "unix -P 16",
        "tcp -P 1 appendfsync always",
        "tcp -P 16 appendfsync always",
    ]
    assert [c.requests for c in cells] == [
        100_000,
        1_000_000,
        100_000,
        1_000_000,
        50_000,
        500_000,
    ]
    assert cells[-1].tests() == ("lpush", "rpush", "lpop", "rpop")
    quick = mqd.plan_cells(mqd.parse_args(["--quick", "--transports", "unix"]))
    assert [(c.label(), c.requests) for c in quick] == [
        ("unix -P 1", 10_000),
        ("unix -P 16", 100_000),
    ]


def test_mqd_interleaves_the_servers_and_keeps_the_test_order() -> None:
    args = mqd.parse_args(["--only", "^(lpush|lpop) tcp -P 1$", "--repeat", "2"])
    harness = mqd.Harness(mqd.plan_cells(args), args.repeat, args.only, "b")
    schedule = list(harness.schedule(harness.plan(False)))
    assert harness.total() == len(schedule) == 2 * 2 * 3
    assert [test for _, _, test, _ in schedule] == (["lpush"] * 3 + ["lpop"] * 3) * 2
    firsts = [server for i, (*_, server) in enumerate(schedule) if i % 3 == 0]
    assert firsts == ["redis-server", "mqd-uvloop", "mqd-uvloop", "mqd-asyncio"]
    assert harness.plan(True) == []


def mqd_run(server: str, test: str, rps: float, **cell: Any) -> dict[str, Any]:
    shape = mqd.Cell(**{"transport": "tcp", "pipeline": 1, "fsync": False, **cell})
    return {
        "server": server,
        "test": test,
        "cell": shape.label(),
        "requests_per_s": rps,
        "server_cpu_pct": 100.0,
        "benchmark_cpu_pct": 50.0,
    }


def test_mqd_tables_take_medians_ratios_and_judge_the_goals() -> None:
    p1 = mqd.Cell(transport="tcp", pipeline=1, fsync=False, requests=100)
    p16 = mqd.Cell(transport="tcp", pipeline=16, fsync=False, requests=100)
    runs = [mqd_run("redis-server", "lpush", rps, requests=100) for rps in (9, 10, 11)]
    runs += [mqd_run("mqd-uvloop", "lpush", rps, requests=100) for rps in (1, 7, 8)]
    runs += [mqd_run("redis-server", "rpush", 10.0, requests=100)]
    runs += [mqd_run("mqd-uvloop", "rpush", 3.0, requests=100)]
    runs += [{**mqd_run("mqd-asyncio", "rpush", 99.0, requests=100), "failed": "x"}]
    runs += [mqd_run(s, "lpop", 10.0, pipeline=16, requests=100) for s in mqd.SERVERS]
    text = mqd.tables([p1, p16], runs)
    assert "| lpush | 10 | 7 | 0.70 | - | - |" in text
    assert "| rpush | 10 | 3 | 0.30 | - | - |" in text  # the failed run is left out
    # Goals: the median of 0.70 and 0.30 falls short of 0.6; at -P 16 one test.
    assert "at -P 1: **missed**, the median ratio over 2 tests is 0.50." in text
    assert "at -P 16: **met**, the ratio is 1.00." in text
    assert "redis-server 100% / 50%" in text


def redis_processes() -> set[int]:
    """PIDs of the servers a benchmarks.mqd run starts, alive on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if b"aiosock-mqdbench-" in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
    return found


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-benchmark")),
    reason="redis-server or redis-benchmark is not installed",
)
def test_mqd_smoke_run_measures_every_server_and_leaves_none_behind(
    tmp_path: Path,
) -> None:
    before = redis_processes()
    argv = [sys.executable, "-m", "benchmarks.mqd", "--repeat", "1"]
    argv += ["--requests", "1000", "--pipelines", "1", "--transports", "tcp"]
    argv += ["--output", str(tmp_path)]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=100, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "### tcp -P 1 (" in out.stdout
    assert "### tcp -P 1 appendfsync always (" in out.stdout
    assert out.stdout.count("Goal: mqd-uvloop at least") == 2
    record = json.loads((tmp_path / "results.json").read_text())
    assert not record["failures"]
    measured = {(r["server"], r["test"], r["fsync"]) for r in record["runs"]}
    expected = {(s, t, False) for s in mqd.SERVERS for t in mqd.TESTS}
    expected |= {(s, t, True) for s in mqd.SERVERS for t in mqd.WRITES}
    assert measured == expected
    assert all(r["requests_per_s"] > 0 for r in record["runs"])
    assert (tmp_path / "results.md").read_text().strip() == out.stdout.strip()
    assert redis_processes() <= before


def test_batch_read_measures_each_loop() -> None:
    argv = [sys.executable, "-m", "benchmarks.batch_read", "--rounds", "20"]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    )
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == run.loops_available()
    assert all(float(line.split()[1]) > 0 for line in lines)
