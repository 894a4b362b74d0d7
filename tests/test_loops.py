"""Choosing the event loop in one place."""

from __future__ import annotations

import asyncio
import inspect
import sys

import pytest

import aiosock
from aiosock.aio.loops import is_uvloop, loop_factory


async def which_loop() -> str:
    return "uvloop" if is_uvloop(asyncio.get_running_loop()) else "asyncio"


def test_run_uses_the_loop_asked_for() -> None:
    assert aiosock.run(which_loop(), loop="asyncio") == "asyncio"
    assert aiosock.run(which_loop(), loop="uvloop") == "uvloop"
    assert aiosock.run(which_loop()) == "uvloop"  # auto: uvloop is installed here


def test_auto_falls_back_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # importing it now fails
    assert aiosock.run(which_loop(), loop="auto") == "asyncio"
    coroutine = which_loop()
    with pytest.raises(RuntimeError, match=r"pip install 'aiosock\[uvloop\]'"):
        aiosock.run(coroutine, loop="uvloop")
    # Closed, not left to warn "never awaited" (warnings are errors here).
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


def test_unknown_loop_names_are_refused() -> None:
    with pytest.raises(ValueError, match="'auto', 'asyncio' or 'uvloop'"):
        loop_factory("trio")  # type: ignore[arg-type]


def test_no_global_policy_is_touched() -> None:
    policy = asyncio.get_event_loop_policy()
    aiosock.run(which_loop(), loop="uvloop")
    assert asyncio.get_event_loop_policy() is policy
