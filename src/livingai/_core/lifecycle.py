"""The one lifecycle of the engine and of every store.

`async with` closes on the way out; `close()` is idempotent; any use after it raises
ClosedError with one exact message, "<repr> was used after close()"; an object used and
then collected while still open warns with a ResourceWarning, as an unclosed file or
aiosqlite connection does (one built and never used holds nothing worth a warning). A
subclass sets `self._closed = False` as the last step of `__init__`, calls
`_check_open()` at the start of every operation, and implements `close()` as
`await self._closing(release)`: a close() that was cancelled or failed half way is
finished by the next one.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from .errors import ClosedError


class Closable(ABC):
    _closed = True  # until __init__ has finished
    _used = False  # set by the first operation
    _released = False  # set once close() has released everything

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} was used after close()")
        self._used = True

    async def _closing(self, release: Callable[[], Awaitable[None]]) -> None:
        """Refuse new work from now on, then `release`, once: a second close() after one
        that was cancelled or raised runs what was left."""
        self._closed = True
        if self._released:
            return
        await release()
        self._released = True

    @abstractmethod
    async def close(self) -> None:
        """Release what the object holds; safe to call twice."""

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self) -> None:
        if self._used and not self._closed:
            warnings.warn(
                f"{self!r} was collected without close(); use `async with` or await close()",
                ResourceWarning,
                stacklevel=2,
            )
