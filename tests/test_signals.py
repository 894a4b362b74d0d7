"""``aiosock.run()`` and SIGINT/SIGTERM: the first closes gracefully, the second now.

A signal goes to this very process only from inside ``main``, while
run()'s handlers are installed; the second-signal tests run a program of
their own (tests/programs/stubborn.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from test_cli import ROOT, plain_client  # a sibling

import aiosock
from aiosock.aio.loops import LoopName

LOOPS: list[LoopName] = ["asyncio", "uvloop"]
SIGNALS = [signal.SIGTERM, signal.SIGINT]
NAMES = [signum.name for signum in SIGNALS]
STUBBORN = Path(__file__).parent / "programs" / "stubborn.py"


def handlers() -> tuple[Any, Any]:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


async def echo(connection: aiosock.Connection[bytes]) -> None:
    async for message in connection:
        await connection.send(message)


async def forever() -> None:
    await asyncio.get_running_loop().create_future()


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "aiosock.run"]


def signal_soon(signum: signal.Signals) -> None:
    """This process gets ``signum`` once the running task next waits."""
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signum)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("signum", SIGNALS, ids=NAMES)
def test_a_signal_closes_the_server_and_run_returns_none(
    loop: LoopName,
    signum: signal.Signals,
    tmp_path: Path,
    open_sockets: Callable[[], set[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aiosock.run")
    path = tmp_path / "echo.sock"
    before, sockets = handlers(), open_sockets()
    left: list[set[asyncio.Task[Any]]] = []

    async def main() -> None:
        server = await aiosock.serve(echo, f"unix://{path}")
        try:
            async with server:
                assert path.exists()
                signal_soon(signum)
                await server.serve_forever()
        finally:
            left.append(asyncio.all_tasks() - {asyncio.current_task()})

    assert aiosock.run(main(), loop=loop) is None
    assert left == [set()]  # the server's tasks are done, not cancelled later
    assert not path.exists()
    assert handlers() == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert open_sockets() == sockets
    assert [(r.levelname, r.getMessage()) for r in ours(caplog)] == [
        ("INFO", f"{signum.name}: shutting down gracefully (a second signal forces it)")
    ]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_main_that_catches_the_cancellation_returns_its_value(
    loop: LoopName,
) -> None:
    async def main() -> int:
        signal_soon(signal.SIGTERM)
        try:
            await forever()
        except asyncio.CancelledError:
            return 7
        return 0

    # Typed T | None: None when a signal ended main.
    returned: int | None = aiosock.run(main(), loop=loop)
    assert returned == 7


@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancellation_not_from_a_signal_still_raises(loop: LoopName) -> None:
    async def main() -> None:
        signal_soon(signal.SIGTERM)
        try:
            await forever()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # someone else's cancellation, on top of the signal's
            await forever()

    with pytest.raises(asyncio.CancelledError):
        aiosock.run(main(), loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_second_signal_cuts_the_grace_short(
    loop: LoopName, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosock.run")
    path = tmp_path / "stubborn.sock"
    started = time.monotonic()

    async def stubborn(connection: aiosock.Connection[bytes]) -> None:
        await connection.send(b"!")  # the client knows the handler runs
        await asyncio.Event().wait()  # ignores shutdown

    async def main() -> None:
        server = await aiosock.serve(stubborn, f"unix://{path}")
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            assert await reader.readexactly(1) == b"!"
            signal_soon(signal.SIGTERM)
            try:
                await forever()
            finally:
                signal_soon(signal.SIGINT)
                await server.aclose(grace=60)
        finally:
            assert await reader.read() == b""  # aborted: the client sees it end
            writer.close()

    assert aiosock.run(main(), loop=loop) is None
    assert time.monotonic() - started < 10  # nowhere near the grace
    assert not path.exists()
    assert [(r.levelname, r.getMessage()) for r in ours(caplog)] == [
        ("INFO", "SIGTERM: shutting down gracefully (a second signal forces it)"),
        ("WARNING", "SIGINT again: closing now"),
    ]


@pytest.mark.parametrize("loop", LOOPS)
def test_the_handler_there_was_before_is_put_back(loop: LoopName) -> None:
    seen: list[int] = []

    def record(signum: int, frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:

        async def main() -> None:
            signal_soon(signal.SIGTERM)
            await forever()

        assert aiosock.run(main(), loop=loop) is None
        assert signal.getsignal(signal.SIGTERM) is record  # not SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == []  # run() had the signal, not the handler it replaced


@pytest.mark.parametrize("loop", LOOPS)
def test_without_signal_handling_the_program_keeps_its_own_handler(
    loop: LoopName,
) -> None:
    seen: list[int] = []

    def record(signum: int, frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:

        async def main() -> str:
            assert signal.getsignal(signal.SIGTERM) is record  # run() left it
            os.kill(os.getpid(), signal.SIGTERM)
            # Python runs a signal handler between bytecodes of the main
            # thread: a few turns of the loop (a bound, not a clock) suffice.
            for _ in range(1000):
                if seen:
                    return "done"
                await asyncio.sleep(0)
            return "never seen"

        # Typed T: without signal handling run() returns what main returns.
        returned: str = aiosock.run(main(), loop=loop, handle_signals=False)
        assert signal.getsignal(signal.SIGTERM) is record
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert returned == "done"
    assert seen == [signal.SIGTERM]


@pytest.mark.parametrize("loop", LOOPS)
def test_in_a_worker_thread_signals_are_left_alone(loop: LoopName) -> None:
    before = handlers()
    results: list[object] = []

    async def main() -> str:
        results.append(handlers())
        return "done"

    def work() -> None:
        try:
            results.append(aiosock.run(main(), loop=loop))
        except BaseException as exc:
            results.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert results == [before, "done"]
    assert handlers() == before


# ------------------------------------------------------------ second signal


def expect(stream: IO[str], text: str) -> str:
    """Read lines from ``stream`` until one that contains ``text``; that line.

    Blocking reads, bounded by the test's timeout.
    """
    while True:
        line = stream.readline()
        assert line, f"the program exited before it said {text!r}"
        if text in line:
            return line


@contextlib.contextmanager
def stubborn_program(loop: str, address: str) -> Iterator[subprocess.Popen[str]]:
    # This tree's aiosock, not the one the environment may have installed.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, str(STUBBORN), "--loop", loop, address],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("second", SIGNALS, ids=NAMES)
def test_a_second_signal_ends_a_stubborn_program_at_once(
    loop: str,
    second: signal.Signals,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    path = tmp_path / "stubborn.sock"
    with stubborn_program(loop, f"unix://{path}") as process:
        assert process.stdout is not None
        assert process.stderr is not None
        address = expect(process.stdout, "listening on ").split()[-1]
        with plain_client(address) as client:
            expect(process.stdout, "handler started")
            process.send_signal(signal.SIGTERM)
            expect(process.stderr, "SIGTERM: shutting down gracefully")
            signalled = time.monotonic()
            process.send_signal(second)
            _, err = process.communicate(timeout=30)
            elapsed = time.monotonic() - signalled
            with contextlib.suppress(ConnectionResetError):  # a reset ends it too
                assert client.recv(100) == b""
    record_property("second_signal_to_exit_s", round(elapsed, 3))
    print(f"second signal to exit: {elapsed:.3f} s")
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"{second.name} again: closing now" in err
    assert not path.exists()
    assert elapsed < 10  # the grace is 60 s
