"""The event loop, chosen in one place, and the signals that stop a program.

``aiosock.run(main, loop="auto")`` runs a coroutine on a new loop made by
:func:`loop_factory`: ``"asyncio"`` for the standard loop, ``"uvloop"``
for uvloop, ``"auto"`` for uvloop when it is installed. No global event
loop policy is read or set. This is the only module of aiosock that
imports uvloop.

``run()`` also turns SIGINT and SIGTERM into cancellation of ``main``, so
that a server stops gracefully on the first and at once on the second
with no signal code of the program's own (uvicorn's ``handle_exit`` does
the same with a flag that its main loop polls).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, Literal, TypeVar, overload

from aiosock.core.errors import LoopUnavailable

__all__ = ["LoopName", "is_uvloop", "loop_factory", "run"]

LoopName = Literal["auto", "asyncio", "uvloop"]
T = TypeVar("T")

logger = logging.getLogger("aiosock.run")

# What a terminal (Ctrl-C), a service manager (systemd, Docker, Kubernetes)
# or kill(1) sends to ask a program to stop.
_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# What signal.getsignal() gives: None for a handler not set from Python.
_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


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


@overload
def run(
    main: Coroutine[Any, Any, T],
    *,
    loop: LoopName = "auto",
    debug: bool | None = None,
    handle_signals: Literal[False],
) -> T: ...


@overload
def run(
    main: Coroutine[Any, Any, T],
    *,
    loop: LoopName = "auto",
    debug: bool | None = None,
    handle_signals: bool = True,
) -> T | None: ...


def run(
    main: Coroutine[Any, Any, T],
    *,
    loop: LoopName = "auto",
    debug: bool | None = None,
    handle_signals: bool = True,
) -> T | None:
    """Run ``main`` to completion on a new loop and close the loop.

    Like :func:`asyncio.run` (cancels leftover tasks, shuts down async
    generators and the default executor), with the loop chosen by name.

    With ``handle_signals`` (the default) and in the main thread, SIGINT
    and SIGTERM stop ``main`` while it runs. The first cancels it: a
    server's ``serve_forever()`` or ``async with`` then closes it
    gracefully. A second (and any later one) cancels it again, which cuts
    a graceful close short: the server aborts what is left at once. If
    ``main`` then ends cancelled by those signals alone, ``run()`` returns
    None; if it catches the cancellation and returns, its value. Each
    signal is logged on the ``aiosock.run`` logger. The handlers that were
    in place before are restored when ``main`` ends, so that Ctrl-C raises
    KeyboardInterrupt again afterwards. Outside the main thread, or on a
    loop that cannot handle signals, ``main`` runs without this. Pass
    ``handle_signals=False`` to handle signals yourself; ``run()`` then
    returns what ``main`` returns, and a signal does what it did before.
    """
    try:
        factory = loop_factory(loop)
    except (RuntimeError, ValueError):
        main.close()  # never awaited now: say so without a RuntimeWarning
        raise
    with asyncio.Runner(loop_factory=factory, debug=debug) as runner:
        if handle_signals and threading.current_thread() is threading.main_thread():
            return runner.run(_stopped_by_signals(main))
        return runner.run(main)


async def _stopped_by_signals(main: Coroutine[Any, Any, T]) -> T | None:
    """Await ``main`` with SIGINT and SIGTERM cancelling it; see :func:`run`.

    The loop's handlers replace the one that asyncio.Runner sets for SIGINT
    (it would raise KeyboardInterrupt on a second Ctrl-C), and that one is
    put back before the Runner looks for it.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # a coroutine that asyncio.Runner runs
    signals: list[signal.Signals] = []  # the ones that cancelled the task

    def stop(signum: signal.Signals) -> None:
        if task.done():  # main ended as the signal came: nothing to stop
            return
        if signals:
            logger.warning("%s again: closing now", signum.name)
        else:
            logger.info(
                "%s: shutting down gracefully (a second signal forces it)",
                signum.name,
            )
        if task.cancel():
            signals.append(signum)

    previous = _add_signal_handlers(loop, stop)
    try:
        return await main
    except asyncio.CancelledError:
        for _ in signals:
            task.uncancel()
        if signals and task.cancelling() == 0:  # nobody else cancelled it
            return None
        raise
    finally:
        _restore_signal_handlers(loop, previous)


def _add_signal_handlers(
    loop: asyncio.AbstractEventLoop, stop: Callable[[signal.Signals], None]
) -> dict[signal.Signals, _SignalHandler]:
    """Handle the shutdown signals on ``loop``; the handlers they had before.

    Handles none where the loop cannot (not on Unix, say).
    """
    previous: dict[signal.Signals, _SignalHandler] = {}
    try:
        for signum in _SHUTDOWN_SIGNALS:
            before = signal.getsignal(signum)
            loop.add_signal_handler(signum, stop, signum)
            previous[signum] = before
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        logger.debug("signals are not handled: %s", exc)
        _restore_signal_handlers(loop, previous)
        return {}
    return previous


def _restore_signal_handlers(
    loop: asyncio.AbstractEventLoop, previous: dict[signal.Signals, _SignalHandler]
) -> None:
    for signum, handler in previous.items():
        # The loop puts the default back; put back the one there was.
        loop.remove_signal_handler(signum)
        if handler is not None:
            signal.signal(signum, handler)


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is uvloop's, without importing uvloop."""
    return type(loop).__module__.partition(".")[0] == "uvloop"
