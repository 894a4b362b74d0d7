"""The core is sans-IO: importing it loads no event loop and no selector."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("asyncio", "selectors", "uvloop")


def test_core_imports_no_event_loop() -> None:
    # A fresh interpreter: this one has asyncio loaded by pytest-asyncio.
    code = (
        "import json, sys, aiosock.core, aiosock.core.codecs, aiosock.core.addresses;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert "aiosock.core" in loaded
    assert not {m for m in loaded if m.split(".")[0] in FORBIDDEN}


def test_only_the_loop_module_imports_uvloop() -> None:
    package = Path(__file__).parent.parent / "aiosock"
    importers = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+uvloop\b", path.read_text(), re.MULTILINE)
    }
    assert importers == {"aio/loops.py"}


def test_only_the_asyncio_layer_and_what_stands_on_it_import_asyncio() -> None:
    # The core and the blocking driver must not; the test kit and the
    # command line are built on the asyncio layer.
    package = Path(__file__).parent.parent / "aiosock"
    importers = {
        path.relative_to(package).parts[0]
        for path in package.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+asyncio\b", path.read_text(), re.MULTILINE)
    }
    assert importers <= {"aio", "testing", "cli.py"}
    assert "core" not in importers
    assert "sync" not in importers
