"""The event loop, chosen in one place.

``aiosock.run(main, loop="auto")`` runs a coroutine on a new loop made by
:func:`loop_factory`: ``"asyncio"`` for the standard loop, ``"uvloop"``
for uvloop, ``"auto"`` for uvloop when it is installed. No global event
loop policy is read or set. This is the only module of aiosock that
imports uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from aiosock.core.errors import LoopUnavailable

__all__ = ["LoopName", "is_uvloop", "loop_factory", "run"]

LoopName = Literal["auto", "asyncio", "uvloop"]
T = TypeVar("T")


def loop_factory(loop: LoopName = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A callable that makes a new event loop of the kind asked for.

    Raises :class:`LoopUnavailable` (a ``RuntimeError``) for ``"uvloop"``
    when uvloop is not installed, and :class:`ValueError` for an unknown name.
    """
    if loop == "asyncio":
        return asyncio.new_event_loop
    if loop not in ("auto", "uvloop"):
        raise ValueError(f"loop must be 'auto', 'asyncio' or 'uvloop', not {loop!r}")
    try:
        import uvloop
    except ImportError:
        if loop == "uvloop":
            raise LoopUnavailable(
                "loop='uvloop' needs uvloop: pip install 'aiosock[uvloop]'"
            ) from None
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(
    main: Coroutine[Any, Any, T], *, loop: LoopName = "auto", debug: bool | None = None
) -> T:
    """Run ``main`` to completion on a new loop and close the loop.

    Like :func:`asyncio.run` (cancels leftover tasks, shuts down async
    generators and the default executor), with the loop chosen by name.
    """
    try:
        factory = loop_factory(loop)
    except (RuntimeError, ValueError):
        main.close()  # never awaited now: say so without a RuntimeWarning
        raise
    with asyncio.Runner(loop_factory=factory, debug=debug) as runner:
        return runner.run(main)


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is uvloop's, without importing uvloop."""
    return type(loop).__module__.partition(".")[0] == "uvloop"
