"""mqd as a process: its command line, signals, crashes, and the programs of
the Redis distribution (redis-cli, redis-benchmark, redis-server), which
skip cleanly where they are not installed (``.ci/run`` installs them)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
MQD = ROOT / "examples" / "mqd"


# The daemon's own loop (the test's is chosen by the conftest).
LOOPS = pytest.mark.parametrize("daemon_loop", ["asyncio", "uvloop"])


def needs(program: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        shutil.which(program) is None, reason=f"{program} is not installed"
    )


class Running(NamedTuple):
    process: subprocess.Popen[str]
    port: int
    unix: Path


@contextmanager
def mqd(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Running]:
    """The daemon on a free TCP port and a Unix socket, until the block ends."""
    unix = tmp_path / "mqd.sock"
    argv = [sys.executable, str(MQD), "--listen", "tcp://127.0.0.1:0"]
    argv += ["--listen", f"unix://{unix}", "--log-level", "warning", *args]
    process = subprocess.Popen(
        argv,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        assert process.stdout is not None
        tcp = process.stdout.readline()
        assert tcp.startswith("listening on tcp://"), (tcp, process.stderr)
        assert process.stdout.readline() == f"listening on unix://{unix}\n"
        yield Running(process, int(tcp.rsplit(":", 1)[1]), unix)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def stop(running: Running, signum: signal.Signals = signal.SIGTERM) -> str:
    """Signal the daemon; it must exit 0 with no traceback. Its stderr."""
    running.process.send_signal(signum)
    _, err = running.process.communicate(timeout=30)
    assert running.process.returncode == 0, err
    assert "Traceback" not in err
    return err


def test_help_runs_as_the_readme_says() -> None:
    done = subprocess.run(
        [sys.executable, str(MQD), "--help"], capture_output=True, text=True, check=True
    )
    assert "--appendfsync" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "mqd", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT / "examples",
    )
    assert "--listen" in done.stdout


def test_a_bad_address_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(MQD), "--listen", "tcp://127.0.0.1:99999"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


@LOOPS
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_stops_it_cleanly(
    tmp_path: Path, signum: signal.Signals, daemon_loop: str
) -> None:
    pidfile = tmp_path / "mqd.pid"
    with mqd(tmp_path, "--pidfile", str(pidfile), "--loop", daemon_loop) as running:
        assert pidfile.read_text() == f"{running.process.pid}\n"
        client = redis.Redis(port=running.port, protocol=3)
        with client:
            assert client.rpush("q", "a") == 1
            stop(running, signum)
    assert not pidfile.exists()
    assert not running.unix.exists()


@needs("redis-cli")
def test_redis_cli_works_over_tcp_and_unix(tmp_path: Path) -> None:
    with mqd(tmp_path) as running:
        cli = ["redis-cli", "-p", str(running.port)]
        run = subprocess.run(
            [*cli, "RPUSH", "q", "a", "b"], capture_output=True, text=True
        )
        assert run.stdout == "2\n", run  # not a terminal: raw replies
        run = subprocess.run(
            ["redis-cli", "-s", str(running.unix), "LRANGE", "q", "0", "-1"],
            capture_output=True,
            text=True,
        )
        assert run.stdout == "a\nb\n", run
        stop(running)


def test_the_unix_socket_is_the_owners_alone(tmp_path: Path) -> None:
    with mqd(tmp_path) as running:
        assert running.unix.stat().st_mode & 0o777 == 0o700
        stop(running)


@needs("redis-benchmark")
def test_redis_benchmark_with_a_password(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    with mqd(tmp_path, "--requirepass-file", str(secret)) as running:
        base = ["redis-benchmark", "-p", str(running.port), "-t", "lpush", "-n", "500"]
        run = subprocess.run(
            [*base, "-a", "s3cret", "-q"], capture_output=True, text=True, timeout=60
        )
        assert "requests per second" in run.stdout, run
        assert "error" not in (run.stdout + run.stderr).lower(), run
        stop(running)


@needs("redis-cli")
def test_redis_cli_with_a_password_from_the_environment(tmp_path: Path) -> None:
    with mqd(tmp_path, env={"MQD_PASSWORD": "s3cret"}) as running:
        base = ["redis-cli", "--no-auth-warning", "-p", str(running.port)]
        run = subprocess.run([*base, "PING"], capture_output=True, text=True)
        assert "NOAUTH Authentication required." in run.stdout + run.stderr
        run = subprocess.run(
            [*base, "-a", "s3cret", "PING"], capture_output=True, text=True
        )
        assert run.stdout == "PONG\n", run
        stop(running)


@needs("redis-benchmark")
@LOOPS
@pytest.mark.timeout(120)
def test_redis_benchmark_runs_with_zero_errors(
    tmp_path: Path, daemon_loop: str
) -> None:
    with mqd(tmp_path, "--loop", daemon_loop) as running:
        tests = "ping_inline,ping_mbulk,lpush,rpush,lpop,rpop"
        for pipeline in ("1", "16"):
            run = subprocess.run(
                [
                    "redis-benchmark",
                    "-p",
                    str(running.port),
                    "-t",
                    tests,
                    "-n",
                    "2000",
                    "-c",
                    "10",
                    "-P",
                    pipeline,
                    "-q",
                ],
                capture_output=True,
                text=True,
                timeout=100,
            )
            assert run.returncode == 0, run
            assert "requests per second" in run.stdout, run
            assert "error" not in (run.stdout + run.stderr).lower(), run
        stop(running)


async def push_until_killed(
    port: int, name: str, acked: list[int], enough: asyncio.Event
) -> None:
    client = aioredis.Redis(port=port, protocol=3)
    try:
        for n in range(100_000):  # bounded: the test kills the daemon first
            await client.rpush(name, str(n))
            acked.append(n)
            if n == 100:
                enough.set()
    except (redis.ConnectionError, ConnectionError, OSError):
        pass  # the daemon was killed
    finally:
        await client.aclose(close_connection_pool=True)


@LOOPS
@pytest.mark.timeout(120)
async def test_every_acknowledged_push_survives_a_kill(
    tmp_path: Path, daemon_loop: str
) -> None:
    log = tmp_path / "mqd.aof"
    args = ("--appendonly", str(log), "--appendfsync", "always", "--loop", daemon_loop)
    acked: dict[str, list[int]] = {f"list-{n}": [] for n in range(4)}
    enough = asyncio.Event()  # one client has 100 pushes acknowledged
    with mqd(tmp_path, *args) as running:
        tasks = [
            asyncio.create_task(push_until_killed(running.port, name, numbers, enough))
            for name, numbers in acked.items()
        ]
        async with asyncio.timeout(60):
            await enough.wait()
        running.process.kill()  # SIGKILL: no flush, no goodbye
        await asyncio.gather(*tasks)
    with mqd(tmp_path, *args) as running:
        client = aioredis.Redis(port=running.port, protocol=2)
        async with client:
            for name, numbers in acked.items():
                stored = [int(x) for x in await client.lrange(name, 0, -1)]
                # Every acknowledged push, in order; at most the one in flight more.
                assert stored[: len(numbers)] == numbers
                assert len(stored) - len(numbers) in (0, 1)
        stop(running)


@needs("redis-server")
@needs("redis-cli")
@pytest.mark.timeout(120)
def test_the_log_loads_into_a_real_redis(tmp_path: Path) -> None:
    log = tmp_path / "mqd.aof"
    with mqd(tmp_path, "--appendonly", str(log)) as running:
        client = redis.Redis(port=running.port, protocol=3)
        with client:
            client.rpush("q", *[f"job-{n}" for n in range(100)])
            client.lpop("q", 10)
        third = redis.Redis(port=running.port, protocol=3, db=3)
        with third:
            third.lpush("other", "x", "y")
            third.expire("other", 3600)
        stop(running)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:  # bounded by the test's timeout
            if "Ready to accept connections" in line:
                break
        with log.open("rb") as stream:
            piped = subprocess.run(
                ["redis-cli", "-p", str(port), "--pipe"],
                stdin=stream,
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert "errors: 0" in piped.stdout, piped
        with redis.Redis(port=port) as real, redis.Redis(port=port, db=3) as third:
            expected = [f"job-{n}".encode() for n in range(10, 100)]
            assert real.lrange("q", 0, -1) == expected
            assert third.lrange("other", 0, -1) == [b"y", b"x"]
            assert 0 < third.ttl("other") <= 3600
    finally:
        server.terminate()
        server.communicate(timeout=30)


def readme_blocks() -> tuple[str, str]:
    """The daemon section's start command and its redis-py program."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The message-queue daemon", 1)[1].split("\n## ", 1)[0]
    start = section.split("```sh\n", 1)[1].split("```", 1)[0]
    program = section.split("```python\n", 1)[1].split("```", 1)[0]
    return start, program


@pytest.mark.timeout(60)
def test_the_readme_daemon_and_its_queue_run_as_written() -> None:
    start, program = readme_blocks()
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 6380)) == 0:
            pytest.skip("something listens on the README's port 6380 already")
    for leftover in (Path("/tmp/mqd.aof"), Path("/tmp/mqd.sock")):
        leftover.unlink(missing_ok=True)
    # "python" as the reader's shell finds it: this interpreter's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    daemon = subprocess.Popen(
        ["bash", "-c", f"exec {start}"],
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert daemon.stdout is not None
        first = daemon.stdout.readline()
        assert first == "listening on tcp://127.0.0.1:6380\n", daemon.stderr
        assert daemon.stdout.readline() == "listening on unix:///tmp/mqd.sock\n"
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
        )
        assert done.stdout == "working on b'resize photo 1'\n", done
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err
        log = Path("/tmp/mqd.aof").read_bytes()
        assert b"$14\r\nresize photo 1\r\n" in log  # what redis-cli --pipe takes
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        Path("/tmp/mqd.aof").unlink(missing_ok=True)
