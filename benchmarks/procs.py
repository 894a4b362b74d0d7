"""Processes of a benchmark run: building, starting, pinning, measuring, stopping.

Every process started here is pinned to one CPU, asks the kernel to send
it SIGTERM should the harness die (so nothing outlives an interrupted
run), and is stopped by its PID: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
ROOT = HERE.parent

# Seconds a server may take to print READY: a cold Python start that
# imports uvloop takes well under one on this machine.
READY_TIMEOUT = 15.0
STOP_GRACE = 3.0
PR_SET_PDEATHSIG = 1
# What the echo servers print once they accept connections.
READY = re.compile(r"^READY (.*)")


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pinning() -> tuple[int | None, int | None]:
    """The CPUs for (server, load generator): different ones where there are two."""
    available = cpus()
    if len(available) < 2:
        return None, None
    return available[0], available[1]


def _child_setup(cpu: int | None) -> None:
    # Runs in the child between fork and exec.
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: an interrupted run may leave a server behind


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def build(name: str) -> Path | None:
    """Compile benchmarks/NAME.c into benchmarks/build/NAME when it is stale.

    Returns the binary, or None where no C compiler exists.
    """
    cc = compiler()
    if cc is None:
        return None
    source, binary = HERE / f"{name}.c", BUILD / name
    if binary.exists() and binary.stat().st_mtime >= max(
        p.stat().st_mtime for p in (source, HERE / "address.h")
    ):
        return binary
    BUILD.mkdir(exist_ok=True)
    command = [
        cc,
        "-O2",
        "-std=gnu11",
        "-Wall",
        "-Wextra",
        "-o",
        str(binary),
        str(source),
    ]
    subprocess.run(command, check=True)
    return binary


class Process:
    """One child process, pinned, whose CPU time can be sampled."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cpu: int | None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        # Bytes read from stdout by wait_ready but not yet looked at: one
        # read may bring several lines, and select() sees none of them.
        self.unread = b""
        # A file, not a pipe: a chatty child must never block on a full pipe
        # that nobody reads while it serves.
        self.errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
            preexec_fn=lambda: _child_setup(cpu),
            cwd=ROOT,
            env=env,
        )
        self.pid = self.popen.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time so far (Linux /proc), 0.0 elsewhere."""
        try:
            fields = (
                Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            )
        except OSError:
            return 0.0
        # Fields 14 and 15 of stat(5), counted after the ")" of the name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_ready(
        self, timeout: float = READY_TIMEOUT, *, ready: re.Pattern[str] = READY
    ) -> str:
        """Wait for a line of stdout in which ``ready`` finds a match (by
        default ``READY <address>``); return its first group, or the line
        where the pattern has none. Lines after it are kept for the next call.
        """
        deadline = time.monotonic() + timeout
        for line in self._lines(deadline):
            match = ready.search(line)
            if match:
                return (match.group(1) if ready.groups else line).strip()
        self.stop()
        raise RuntimeError(f"{' '.join(self.argv)} never became ready: {self.stderr()}")

    def _lines(self, deadline: float) -> Iterator[str]:
        """Lines of stdout until ``deadline`` or its end; raw reads, so that
        no buffer hides a line from select()."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        while True:
            while b"\n" in self.unread:
                line, self.unread = self.unread.split(b"\n", 1)
                yield line.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return
            chunk = os.read(fd, 65536)
            if not chunk:  # exited before it was ready
                return
            self.unread += chunk

    def stderr(self) -> str:
        """The end of what the process wrote to stderr so far."""
        self.errors.seek(0)
        return self.errors.read()[-2000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self.errors.close()


def run_to_end(argv: Sequence[str], *, cpu: int | None, timeout: float) -> str:
    """Run a program to its end, pinned; return its stdout.

    Raises RuntimeError, with the end of its stderr, if it exits non-zero
    or runs past ``timeout`` seconds (it is then stopped).
    """
    name = Path(argv[0]).name
    process = Process(argv, cpu=cpu)
    try:
        out, _ = process.popen.communicate(timeout=timeout)
        if process.popen.returncode != 0:
            code = process.popen.returncode
            raise RuntimeError(f"{name} failed ({code}): {process.stderr()}")
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} ran past {timeout:.0f} s") from None
    finally:
        process.stop()
    return out


def run_loadgen(
    argv: Sequence[str], *, cpu: int | None, timeout: float
) -> dict[str, Any]:
    """Run the load generator to the end and return its JSON object."""
    out = run_to_end(argv, cpu=cpu, timeout=timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result
