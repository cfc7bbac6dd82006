"""RedisStore's usage counters added up into rows (no I/O here): the USAGE script's
replies, from one bucket or from every bucket of a cluster, summed by group."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .._core.usage import UsageRow, utc_text

_COUNTERS = {"calls": 0, "prompt": 1, "completion": 2, "cost": 3}


class Sums:
    """Usage summed by group: calls, prompt, completion and cost."""

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {}

    def add_days(self, reply: list[Any], by: str) -> None:
        """A 'days' reply: day, then its counters "<model>\\0<counter>"."""
        for day, fields in zip(reply[::2], reply[1::2], strict=True):
            for (model, counter), value in _counters(fields, 2):
                group = model if by == "model" else day.decode() if by == "day" else "total"
                self._add(group, counter, value)

    def add_executions(self, reply: list[Any], by: str, first: int, last: int) -> None:
        """An 'executions' reply: execution id, then its counters
        "<day>\\0<model>\\0<counter>"; days outside [first, last] are left out."""
        for execution, fields in zip(reply[::2], reply[1::2], strict=True):
            for (day, model, counter), value in _counters(fields, 3):
                if not first <= int(day.replace("-", "")) <= last:
                    continue
                group = {"execution": execution.decode(), "model": model, "day": day}
                self._add(group.get(by, "total"), counter, value)

    def _add(self, group: str, counter: str, value: float) -> None:
        self._sums.setdefault(group, [0.0, 0.0, 0.0, 0.0])[_COUNTERS[counter]] += value

    def rows(self) -> list[UsageRow]:
        return [
            UsageRow(key, int(calls), int(prompt), int(completion), cost)
            for key, (calls, prompt, completion, cost) in sorted(self._sums.items())
        ]


def _counters(fields: list[bytes], parts: int) -> list[tuple[list[str], float]]:
    """(group parts + counter name, value) from an HGETALL reply of usage counters."""
    found = []
    for name, value in zip(fields[::2], fields[1::2], strict=True):
        split = name.decode().split("\0")
        if len(split) == parts and split[-1] in _COUNTERS:
            found.append((split, float(value)))
    return found


def day_number(moment: datetime | None, *, before: bool = False) -> int:
    """The UTC day of a bound as YYYYMMDD; an open bound is the widest."""
    if moment is None:
        return 99991231 if before else 0
    text = utc_text(moment - timedelta(microseconds=1) if before else moment)
    assert text is not None
    return int(text[:10].replace("-", ""))
