"""A repeated failure told in a few log lines, not one line per failure.

:class:`RepeatedFailures` is told of each failure and each success of
something that is retried (accepting, for a server out of descriptors)
and answers what, if anything, to log now:

- the first failure of a run: at once (:class:`Started`);
- while failures go on: at most one line per ``interval``, with how many
  came since the last line (:class:`Ongoing`);
- the end of the run (:class:`Recovered`), once something worked after
  the last failure and nothing failed for ``interval``: one line with
  the run's count and length.

Waiting out the interval before calling a run over keeps a server that
fails and succeeds in turn (a descriptor is freed, one connection is
accepted, the next accept fails again, every 10 ms) in one run, told once
a second, rather than two lines per turn.

Loop-free: the time comes from the ``clock`` it is given, so a test can
drive it without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = [
    "DEFAULT_INTERVAL",
    "Ongoing",
    "Recovered",
    "RepeatedFailures",
    "Started",
]

# 1 s: a line a second is what an operator can read as it scrolls, and
# what asyncio's own accept retry (1 s) would log at best.
DEFAULT_INTERVAL = 1.0


@attrs.frozen
class Started:
    """The first failure of a run: tell it at once."""


@attrs.frozen(kw_only=True)
class Ongoing:
    """Failures go on: ``failures`` of them in the ``seconds`` since the last line."""

    failures: int
    seconds: float


@attrs.frozen(kw_only=True)
class Recovered:
    """The run is over: ``failures`` in all, ``seconds`` from the first
    failure to the first success after the last one."""

    failures: int
    seconds: float


class RepeatedFailures:
    """Runs of one kind of failure, and when to tell of them (see the module)."""

    __slots__ = (
        "_began",
        "_clock",
        "_failed_at",
        "_failures",
        "_interval",
        "_told_at",
        "_untold",
        "_worked_at",
    )

    def __init__(
        self, *, clock: Callable[[], float], interval: float = DEFAULT_INTERVAL
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self._clock = clock
        self._interval = interval
        self._began: float | None = None  # the run's first failure; None: no run
        self._failures = 0  # in the run
        self._untold = 0  # failures since the last line
        self._told_at = 0.0  # when the last line was due
        self._failed_at = 0.0  # the run's last failure
        self._worked_at: float | None = None  # first success since that one

    @property
    def failing(self) -> bool:
        """Whether a run is going on: it failed and was not yet told recovered."""
        return self._began is not None

    def failed(self) -> Started | Ongoing | None:
        """Count a failure; return what to tell now, or None for nothing yet."""
        now = self._clock()
        self._failed_at = now
        self._worked_at = None
        self._failures += 1
        if self._began is None:
            self._began = self._told_at = now
            return Started()
        self._untold += 1
        if now - self._told_at < self._interval:
            return None
        told = Ongoing(failures=self._untold, seconds=now - self._told_at)
        self._untold, self._told_at = 0, now
        return told

    def succeeded(self) -> None:
        """Note that it worked; :meth:`settle` then tells when the run is over."""
        if self._began is not None and self._worked_at is None:
            self._worked_at = self._clock()

    def settle(self) -> Recovered | float | None:
        """End the run if it is over, and return it to tell.

        Otherwise return the seconds after which to ask again (the run may
        be over by then), or None if there is nothing to wait for: no run,
        or no success since its last failure.
        """
        if self._began is None or self._worked_at is None:
            return None
        left = self._failed_at + self._interval - self._clock()
        if left > 0:
            return left
        told = Recovered(failures=self._failures, seconds=self._worked_at - self._began)
        self._began = self._worked_at = None
        self._failures = self._untold = 0
        return told
