"""The data: numbered databases of lists, with expiry. No I/O, no loop.

A key holds a list (a ``deque`` of byte strings, never empty: a list that
empties is deleted, as in Redis) and may carry an expiry time in
milliseconds since the epoch. An expired key is gone for every reader:
:meth:`Database.get` deletes it on the way (Redis's lazy expiry), and
:meth:`Database.expire_some` sweeps a sample (its active expiry) so that
keys nobody reads do not stay in memory.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator

__all__ = ["DATABASES", "Database", "List"]

#: Redis's default "databases 16": SELECT 0 to 15.
DATABASES = 16

List = collections.deque[bytes]


class Database:
    """One numbered database: keys to lists, and their expiry times."""

    __slots__ = ("_clock", "expires", "lists")

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock  # milliseconds since the epoch
        self.lists: dict[bytes, List] = {}
        self.expires: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.lists)

    def get(self, key: bytes) -> List | None:
        """The list at ``key``; None if there is none or it has expired."""
        value = self.lists.get(key)
        expires = self.expires
        if value is not None and key in expires and expires[key] <= self._clock():
            self.delete(key)
            return None
        return value

    def create(self, key: bytes) -> List:
        """The list at ``key``, made empty if there is none (fill it at once)."""
        # get() inlined: every push comes here.
        value = self.lists.get(key)
        if value is not None and key in self.expires:
            value = self.get(key)
        if value is None:
            value = self.lists[key] = collections.deque()
        return value

    def delete(self, key: bytes) -> bool:
        """Remove ``key`` and its expiry; whether it was there."""
        self.expires.pop(key, None)
        return self.lists.pop(key, None) is not None

    def drop_if_empty(self, key: bytes, value: List) -> None:
        """Delete ``key`` if its list emptied: Redis keeps no empty lists."""
        if not value:
            self.delete(key)

    def keys(self) -> Iterator[bytes]:
        """Every key that has not expired (expired ones are removed)."""
        now = self._clock()
        for key in list(self.lists):
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= now:
                self.delete(key)
            else:
                yield key

    def expire_some(self, limit: int = 20) -> int:
        """Delete up to ``limit`` expired keys of a sample; how many went."""
        now, gone = self._clock(), 0
        for key in list(itertools.islice(self.expires, limit)):
            deadline = self.expires.pop(key)
            if deadline <= now:
                del self.lists[key]
                gone += 1
            else:  # to the back: the next sample looks at others
                self.expires[key] = deadline
        return gone

    def clear(self) -> None:
        self.lists.clear()
        self.expires.clear()
