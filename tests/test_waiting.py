"""WaitingLine: who is woken, in what order, and what cancellation does."""

from __future__ import annotations

import asyncio

from aiosock.aio._waiting import WaitingLine
from aiosock.testing import turns_until


async def wait(line: WaitingLine, woken: list[str], name: str) -> None:
    """Wait in ``line`` (park, await, leave if cancelled: the pattern
    ``wait()`` is); note ``name`` in ``woken`` when woken."""
    await line.wait()
    woken.append(name)


async def queue_up(
    line: WaitingLine, woken: list[str], *names: str
) -> dict[str, asyncio.Task[None]]:
    """A task per name waiting in ``line``, parked in the order given."""
    tasks = {}
    for name in names:
        tasks[name] = asyncio.create_task(wait(line, woken, name))
        assert await turns_until(lambda: len(line) == len(tasks))
    return tasks


async def settle(tasks: dict[str, asyncio.Task[None]]) -> None:
    """Cancel whatever still waits and let every task end."""
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_one_wake_up_wakes_the_first_waiter_only() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    woken: list[str] = []
    tasks = await queue_up(line, woken, "a", "b", "c")
    line.wake_one()
    assert await turns_until(lambda: woken == ["a"])
    line.wake_one()
    assert await turns_until(lambda: woken == ["a", "b"])
    assert not await turns_until(lambda: len(woken) > 2, 10)
    assert len(line) == 1
    await settle(tasks)
    assert len(line) == 0


async def test_a_wake_up_with_nobody_waiting_is_not_kept() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    line.wake_one()
    line.wake_all()
    woken: list[str] = []
    tasks = await queue_up(line, woken, "late")
    assert not await turns_until(lambda: bool(woken), 10)
    await settle(tasks)


async def test_waking_all_wakes_every_waiter_and_not_those_after() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    woken: list[str] = []
    tasks = await queue_up(line, woken, "a", "b", "c")
    line.wake_all()
    assert len(line) == 0
    tasks |= await queue_up(line, woken, "after")
    assert await turns_until(lambda: sorted(woken) == ["a", "b", "c"])
    assert not await turns_until(lambda: "after" in woken, 10)
    await settle(tasks)


async def test_a_cancelled_waiter_leaves_the_line_and_takes_no_wake_up() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    woken: list[str] = []
    tasks = await queue_up(line, woken, "a", "b", "c")
    tasks["b"].cancel()
    assert await turns_until(tasks["b"].done)
    assert tasks["b"].cancelled()
    assert len(line) == 2
    assert not await turns_until(lambda: bool(woken), 10)  # passed nothing on
    line.wake_one()
    line.wake_one()
    assert await turns_until(lambda: woken == ["a", "c"])
    await settle(tasks)


async def test_a_waiter_cancelled_before_it_left_is_skipped() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    woken: list[str] = []
    tasks = await queue_up(line, woken, "a", "b")
    tasks["a"].cancel()  # its waiter is cancelled; the task runs next turn
    line.wake_one()  # in the same turn: the wake-up goes to b
    assert await turns_until(lambda: woken == ["b"])
    assert tasks["a"].cancelled()
    assert len(line) == 0
    await settle(tasks)


async def test_a_woken_waiter_cancelled_before_it_ran_passes_the_wake_up_on() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    woken: list[str] = []
    tasks = await queue_up(line, woken, "a", "b", "c")
    line.wake_one()
    tasks["a"].cancel()  # in the same turn: woken, but it never runs
    assert await turns_until(lambda: woken == ["b"])
    assert tasks["a"].cancelled()
    assert not await turns_until(lambda: "c" in woken, 10)  # one wake-up, one waiter
    assert len(line) == 1
    await settle(tasks)


async def test_a_passed_on_wake_up_skips_waiters_cancelled_too() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    woken: list[str] = []
    tasks = await queue_up(line, woken, "a", "b", "c")
    line.wake_one()
    tasks["a"].cancel()
    tasks["b"].cancel()
    assert await turns_until(lambda: woken == ["c"])
    assert tasks["a"].cancelled()
    assert tasks["b"].cancelled()
    assert len(line) == 0


async def test_a_wake_up_passed_on_with_nobody_left_is_dropped() -> None:
    line = WaitingLine(asyncio.get_running_loop())
    woken: list[str] = []
    tasks = await queue_up(line, woken, "a")
    line.wake_all()
    tasks["a"].cancel()
    assert await turns_until(tasks["a"].done)
    tasks |= await queue_up(line, woken, "later")
    assert not await turns_until(lambda: bool(woken), 10)
    await settle(tasks)
