"""Out of descriptors: the back-off is logged in a few lines.

The rate limiter (aiosock.core.ratelimit) runs on a clock the tests move
by hand.
"""

from __future__ import annotations

import pytest

from aiosock.core.ratelimit import Ongoing, Recovered, RepeatedFailures, Started


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ------------------------------------------------------------- the limiter


def test_the_first_failure_is_told_at_once_then_a_count_a_second(
    clock: Clock,
) -> None:
    failures = RepeatedFailures(clock=clock, interval=1.0)
    assert not failures.failing
    assert failures.failed() == Started()
    assert failures.failing
    for _ in range(7):  # steps a float adds exactly
        clock.now += 0.125
        assert failures.failed() is None  # 0.125 .. 0.875 s after the line
    clock.now += 0.125
    assert failures.failed() == Ongoing(failures=8, seconds=1.0)
    clock.now += 2.5
    assert failures.failed() == Ongoing(failures=1, seconds=2.5)


def test_the_run_ends_when_it_worked_and_nothing_failed_for_an_interval(
    clock: Clock,
) -> None:
    failures = RepeatedFailures(clock=clock, interval=1.0)
    assert failures.settle() is None  # no run
    failures.failed()
    clock.now += 0.5
    failures.failed()
    assert failures.settle() is None  # nothing worked since
    clock.now += 0.25
    failures.succeeded()
    assert failures.settle() == 0.75  # ask again then
    clock.now += 0.5
    failures.succeeded()  # the first success counts, not the last
    assert failures.settle() == 0.25
    clock.now += 0.25
    assert failures.settle() == Recovered(failures=2, seconds=0.75)
    assert not failures.failing
    assert failures.settle() is None
    assert failures.failed() == Started()  # a new run


def test_a_failure_after_a_success_keeps_the_run_going(clock: Clock) -> None:
    failures = RepeatedFailures(clock=clock, interval=1.0)
    failures.failed()
    clock.now += 0.125
    failures.succeeded()
    clock.now += 0.125
    assert failures.failed() is None  # counted, not a new run
    clock.now += 1.0
    assert failures.settle() is None  # no success since that failure
    failures.succeeded()
    assert failures.settle() == Recovered(failures=2, seconds=1.25)


def test_failing_and_working_in_turn_is_one_run_told_once_a_second(
    clock: Clock,
) -> None:
    # One descriptor freed, one connection accepted, the next accept
    # failing: every 10 ms for 5 s.
    failures = RepeatedFailures(clock=clock, interval=1.0)
    told: list[Started | Ongoing | Recovered | float | None] = []
    for _ in range(500):
        told.append(failures.failed())
        clock.now += 0.005
        failures.succeeded()
        told.append(failures.settle())
        clock.now += 0.005
    lines = [t for t in told if isinstance(t, Started | Ongoing | Recovered)]
    assert lines[0] == Started()
    assert all(isinstance(line, Ongoing) for line in lines[1:])
    assert 4 <= len(lines) <= 6
    assert sum(line.failures for line in lines[1:] if isinstance(line, Ongoing)) < 500
    clock.now += 1.0
    recovered = failures.settle()
    assert isinstance(recovered, Recovered)
    assert recovered.failures == 500
    assert recovered.seconds == pytest.approx(4.995)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_the_interval_must_be_positive(clock: Clock, interval: float) -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        RepeatedFailures(clock=clock, interval=interval)
