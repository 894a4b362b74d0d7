"""The core is sans-IO: importing it loads no event loop and no selector."""

from __future__ import annotations

import json
import subprocess
import sys

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
