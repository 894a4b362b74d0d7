"""The test set-up itself: every async test runs on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
# Importing a module mapped to None in sys.modules raises ImportError: a
# machine without uvloop, without uninstalling it.
WITHOUT_UVLOOP = "import sys\n\nsys.modules['uvloop'] = None\n"


async def test_runs_on_the_loop_its_id_names(request: pytest.FixtureRequest) -> None:
    loop = asyncio.get_running_loop()
    loop_id = request.node.callspec.id
    assert loop_id in {"asyncio", "uvloop"}
    assert (type(loop).__module__.split(".")[0] == "uvloop") == (loop_id == "uvloop")
    # The loop really runs tasks, not just exists.
    assert await asyncio.create_task(asyncio.sleep(0, result=42)) == 42


@pytest.mark.parametrize(
    ("prelude", "uvloop_outcome"),
    [("", "PASSED"), (WITHOUT_UVLOOP, "SKIPPED")],
    ids=["with-uvloop", "without-uvloop"],
)
def test_every_async_test_gets_both_ids(
    pytester: pytest.Pytester, prelude: str, uvloop_outcome: str
) -> None:
    # The prelude goes after the conftest's __future__ import, which must
    # stay first.
    head, sep, tail = CONFTEST.read_text().partition("\nimport ")
    pytester.makeconftest(head + "\n" + prelude + sep.lstrip("\n") + tail)
    pytester.makepyfile(
        """
        async def test_a():
            pass

        def test_sync():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-v",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.stdout.fnmatch_lines(
        [
            "*test_a?asyncio? PASSED*",
            f"*test_a?uvloop? {uvloop_outcome}*",
            "*test_sync PASSED*",
        ]
    )
