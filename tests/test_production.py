"""The README's "Running in production" server, run as written, stopped by signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def production_program() -> str:
    section = README.read_text().split("## Running in production", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_the_readme_production_server_runs_as_written(
    tmp_path: Path, signum: signal.Signals
) -> None:
    path = tmp_path / "echo.sock"
    argv = [sys.executable, "-c", production_program(), f"unix://{path}"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        assert process.stderr is not None
        assert process.stderr.readline() == f"INFO root: listening on unix://{path}\n"
        for _ in range(3):
            client = socket.socket(socket.AF_UNIX)
            clients.append(client)
            client.settimeout(10)
            client.connect(str(path))
            client.sendall(b"hi\n")
            assert client.recv(10) == b"hi\n"
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
        for client in clients:  # told of the shutdown, each handler ended
            assert client.recv(10) == b""
    finally:
        for client in clients:
            client.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert not path.exists()
    assert "INFO aiosock.server:" in err
    assert "ServerStats(connections=0, accepted=3," in err
    assert "messages_in=3, messages_out=3, bytes_in=9, bytes_out=9)" in err
