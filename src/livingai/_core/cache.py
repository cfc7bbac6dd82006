"""The in-process hot cache: LRU with a per-entry TTL, bounded by entries and by bytes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import check_setting

V = TypeVar("V")


class HotCache(Generic[V]):
    """O(1) get and put; the least recently used entries go first when a bound is hit."""

    def __init__(
        self,
        capacity: int = 1024,
        max_bytes: int = 256 * 1024 * 1024,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_setting("capacity", capacity, minimum=0, whole=True)
        check_setting("max_bytes", max_bytes, minimum=0, whole=True)
        check_setting("ttl_seconds", ttl_seconds, minimum=0, inclusive=False)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, int, V]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, _, value = entry
        if self._clock() >= expires:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: V, size: int) -> None:
        """Insert or replace; a value larger than the whole byte bound is not cached."""
        self._remove(key)
        if size > self.max_bytes or self.capacity == 0:
            return
        self._entries[key] = (self._clock() + self.ttl_seconds, size, value)
        self.bytes += size
        while len(self._entries) > self.capacity or self.bytes > self.max_bytes:
            _, (_, evicted, _) = self._entries.popitem(last=False)
            self.bytes -= evicted

    def discard(self, key: str) -> None:
        self._remove(key)

    def discard_if(self, doomed: Callable[[V], bool]) -> None:
        """Forget every entry whose value is `doomed` (what the store no longer holds)."""
        for key in [key for key, (_, _, value) in self._entries.items() if doomed(value)]:
            self._remove(key)

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1]
