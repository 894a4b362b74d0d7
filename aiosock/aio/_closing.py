"""``async with`` for every aiosock object that has ``aclose()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing"]


class AsyncClosing:
    """``async with thing:`` gives ``thing`` and awaits ``thing.aclose()`` on exit.

    The exit closes whether the block ended, raised or was cancelled;
    what ``aclose()`` raises replaces the block's exception, as in
    :func:`contextlib.aclosing`.
    """

    __slots__ = ()

    async def aclose(self) -> None:
        """Close; every class that mixes this in defines it (an abstract
        method: there is no ``aclose`` common to all of them to put here)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
