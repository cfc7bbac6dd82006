"""A latency histogram of fixed size: log-spaced buckets, about 2% relative error."""

from __future__ import annotations

import math

_GROWTH = 1.04  # each bucket is 4% wider than the last
_MIN_MS = 0.001  # 1 microsecond
_BUCKETS = int(math.log(600_000 / _MIN_MS, _GROWTH)) + 2  # up to 10 minutes


class Histogram:
    """Counts samples into buckets; memory does not grow with the number of samples."""

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.max_ms = 0.0

    def record(self, ms: float) -> None:
        if not math.isfinite(ms):
            ms = 600_000.0  # counted in the top bucket rather than crash the caller
        index = 0 if ms <= _MIN_MS else min(int(math.log(ms / _MIN_MS, _GROWTH)) + 1, _BUCKETS - 1)
        self._counts[index] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, pct: float) -> float:
        """The value below which `pct` percent of samples fall (bucket midpoint); 0 if empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(self.count * pct / 100.0))
        seen = 0
        for index, bucket in enumerate(self._counts):
            seen += bucket
            if seen >= rank:
                if index == 0:
                    return _MIN_MS
                low = _MIN_MS * _GROWTH ** (index - 1)
                return min(math.sqrt(low * low * _GROWTH), self.max_ms)
        return self.max_ms

    def summary(self) -> dict[str, float]:
        return {
            "count": float(self.count),
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "p99_ms": self.percentile(99),
            "max_ms": self.max_ms,
        }
