"""HotCache: LRU order, entry and byte bounds, TTL on an injected clock, O(1) operations."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest

from livingai import ConfigError
from livingai._core.cache import HotCache


class FakeClock:
    """A clock the test moves by hand; counts how often it is read."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


def _cache(
    capacity: int = 100, max_bytes: int = 10_000, ttl: float = 60.0, clock: FakeClock | None = None
) -> HotCache[str]:
    return HotCache(capacity, max_bytes, ttl, clock or FakeClock())


def _keys_in_lru_order(cache: HotCache[str], candidates: list[str]) -> list[str]:
    """Which candidates are still cached (without touching them, so order is not changed)."""
    return [key for key in candidates if key in cache._entries]


# -- LRU and the entry bound --------------------------------------------------------------


def test_get_returns_what_put_stored() -> None:
    cache = _cache()
    cache.put("a", "alpha", 5)
    cache.put("b", "beta", 4)
    assert cache.get("a") == "alpha"
    assert cache.get("b") == "beta"
    assert cache.get("missing") is None
    assert len(cache) == 2


def test_capacity_evicts_least_recently_put() -> None:
    cache = _cache(capacity=3)
    for key in "abcd":
        cache.put(key, key.upper(), 1)
    assert len(cache) == 3
    assert cache.get("a") is None
    assert [cache.get(k) for k in "bcd"] == ["B", "C", "D"]
    assert cache.bytes == 3


def test_get_refreshes_recency() -> None:
    cache = _cache(capacity=3)
    for key in "abc":
        cache.put(key, key.upper(), 1)
    assert cache.get("a") == "A"  # a is now the most recent; b is the least recent
    cache.put("d", "D", 1)
    assert cache.get("b") is None
    assert cache.get("a") == "A"
    assert cache.get("c") == "C"
    assert cache.get("d") == "D"


def test_put_of_existing_key_refreshes_recency() -> None:
    cache = _cache(capacity=3)
    for key in "abc":
        cache.put(key, key.upper(), 1)
    cache.put("a", "A2", 1)
    cache.put("d", "D", 1)
    assert cache.get("b") is None
    assert cache.get("a") == "A2"


def test_missed_get_does_not_change_order() -> None:
    cache = _cache(capacity=2)
    cache.put("a", "A", 1)
    cache.put("b", "B", 1)
    assert cache.get("zzz") is None
    cache.put("c", "C", 1)
    assert _keys_in_lru_order(cache, ["a", "b", "c"]) == ["b", "c"]


def test_capacity_zero_caches_nothing() -> None:
    cache = _cache(capacity=0)
    cache.put("a", "A", 1)
    assert len(cache) == 0
    assert cache.bytes == 0
    assert cache.get("a") is None


# -- the byte bound ---------------------------------------------------------------------------


def test_byte_bound_evicts_least_recent_until_within_bound() -> None:
    cache = _cache(capacity=100, max_bytes=100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.bytes == 80
    cache.put("c", "C", 40)  # 120 > 100: a goes, and only a
    assert cache.bytes == 80
    assert _keys_in_lru_order(cache, ["a", "b", "c"]) == ["b", "c"]
    cache.put("d", "D", 90)  # needs b and c both gone
    assert cache.bytes == 90
    assert len(cache) == 1
    assert cache.get("d") == "D"


def test_byte_bound_respects_recency() -> None:
    cache = _cache(capacity=100, max_bytes=100)
    cache.put("a", "A", 30)
    cache.put("b", "B", 30)
    cache.put("c", "C", 30)
    assert cache.get("a") == "A"  # b is now the least recent
    cache.put("d", "D", 30)
    assert _keys_in_lru_order(cache, ["a", "b", "c", "d"]) == ["a", "c", "d"]
    assert cache.bytes == 90


def test_value_exactly_at_byte_bound_is_cached_alone() -> None:
    cache = _cache(max_bytes=100)
    cache.put("a", "A", 10)
    cache.put("big", "BIG", 100)
    assert cache.get("big") == "BIG"
    assert cache.get("a") is None
    assert cache.bytes == 100


def test_oversized_value_is_not_cached_and_evicts_nothing() -> None:
    cache = _cache(max_bytes=100)
    cache.put("a", "A", 50)
    cache.put("huge", "HUGE", 101)
    assert cache.get("huge") is None
    assert cache.get("a") == "A"
    assert cache.bytes == 50
    assert len(cache) == 1


def test_oversized_replacement_drops_the_stale_value() -> None:
    cache = _cache(max_bytes=100)
    cache.put("a", "old", 50)
    cache.put("a", "new", 500)
    assert cache.get("a") is None  # never serve the old value for a newer save
    assert cache.bytes == 0


def test_replace_updates_byte_count() -> None:
    cache = _cache(max_bytes=1000)
    cache.put("a", "A", 300)
    cache.put("b", "B", 200)
    cache.put("a", "A2", 100)
    assert cache.bytes == 300
    assert len(cache) == 2
    assert cache.get("a") == "A2"
    cache.put("a", "A3", 700)
    assert cache.bytes == 900


def test_discard() -> None:
    cache = _cache()
    cache.put("a", "A", 7)
    cache.put("b", "B", 3)
    cache.discard("a")
    assert cache.get("a") is None
    assert cache.bytes == 3
    assert len(cache) == 1
    cache.discard("a")  # discarding a missing key is a no-op
    cache.discard("never")
    assert cache.bytes == 3
    assert cache.get("b") == "B"


@pytest.mark.parametrize(
    ("capacity", "max_bytes", "ttl", "named"),
    [
        (-1, 10, 1.0, "capacity"),
        (1, -1, 1.0, "max_bytes"),
        (1, 10, 0.0, "ttl_seconds"),
        (1, 10, -5.0, "ttl_seconds"),
    ],
)
def test_rejects_bad_bounds(capacity: int, max_bytes: int, ttl: float, named: str) -> None:
    with pytest.raises(ConfigError, match=f"^{named} must be"):
        HotCache[str](capacity, max_bytes, ttl)


# -- TTL on an injected clock -------------------------------------------------------------


def test_entry_expires_after_ttl() -> None:
    clock = FakeClock(now=500.0)
    cache = _cache(ttl=10.0, clock=clock)
    cache.put("a", "A", 8)
    clock.now = 509.999
    assert cache.get("a") == "A"
    clock.now = 510.0
    assert cache.get("a") is None
    assert len(cache) == 0  # the expired entry is dropped, and its bytes with it
    assert cache.bytes == 0


def test_get_does_not_extend_ttl_but_put_does() -> None:
    clock = FakeClock(now=0.0)
    cache = _cache(ttl=10.0, clock=clock)
    cache.put("a", "A", 1)
    cache.put("b", "B", 1)
    clock.now = 9.0
    assert cache.get("a") == "A"
    cache.put("b", "B2", 1)  # b lives until 19
    clock.now = 12.0
    assert cache.get("a") is None
    assert cache.get("b") == "B2"
    clock.now = 19.0
    assert cache.get("b") is None


def test_expiry_is_per_entry() -> None:
    clock = FakeClock(now=0.0)
    cache = _cache(ttl=5.0, clock=clock)
    cache.put("early", "E", 1)
    clock.now = 3.0
    cache.put("late", "L", 1)
    clock.now = 6.0
    assert cache.get("early") is None
    assert cache.get("late") == "L"


# -- O(1): no call walks the entries ------------------------------------------------------


class _NoScanDict(OrderedDict[str, tuple[float, int, str]]):
    """An OrderedDict that counts every way of walking its entries."""

    scans = 0

    def __iter__(self) -> Iterator[str]:
        self.scans += 1
        return super().__iter__()

    def __reversed__(self) -> Iterator[str]:
        self.scans += 1
        return super().__reversed__()

    def keys(self) -> Any:
        self.scans += 1
        return super().keys()

    def values(self) -> Any:
        self.scans += 1
        return super().values()

    def items(self) -> Any:
        self.scans += 1
        return super().items()


def test_get_and_put_read_the_clock_once_whatever_the_size() -> None:
    clock = FakeClock()
    cache = _cache(capacity=200_000, max_bytes=10**9, clock=clock)
    for i in range(100_000):
        cache.put(f"k{i}", "v", 1)
    assert clock.calls == 100_000  # exactly one clock read per put
    clock.calls = 0
    cache.put("one-more", "v", 1)
    assert clock.calls == 1
    clock.calls = 0
    assert cache.get("k50000") == "v"
    assert clock.calls == 1
    clock.calls = 0
    assert cache.get("absent") is None
    assert clock.calls == 0


def test_evictions_happen_one_at_a_time_without_scanning() -> None:
    size = 100_000
    clock = FakeClock()
    cache = _cache(capacity=size, max_bytes=size, clock=clock)
    entries = _NoScanDict()
    cache._entries = entries
    for i in range(size):
        cache.put(f"k{i}", "v", 1)
    assert len(cache) == size
    assert cache.bytes == size
    for i in range(1000):
        cache.put(f"new{i}", "v", 1)  # each put beyond the bound evicts exactly the oldest
        assert len(cache) == size
        assert cache.bytes == size
        assert f"k{i}" not in entries
        assert f"k{i + 1}" in entries
    assert cache.get(f"k{size - 1}") == "v"
    cache.discard("new0")
    assert entries.scans == 0  # no put, get or discard walked the entries
