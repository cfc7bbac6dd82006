"""Usage and costs added up: the rows a store's `usage()` answers with, and the same sums
over records in memory, for the stores and queues that keep records in Python (no I/O).

A version counts once when it carries usage (a model, tokens or a cost): steps record
it on the version that holds their outcome, never on an intent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .errors import ConfigError
from .model import NodeRecord

UsageBy = Literal["execution", "model", "day", "total"]
GROUPINGS: tuple[UsageBy, ...] = ("execution", "model", "day", "total")


@dataclass(frozen=True)
class UsageRow:
    """The sums of one group: an execution id, a model ("" for calls without one), a day
    (YYYY-MM-DD, UTC) or "total"."""

    key: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float

    def __add__(self, other: UsageRow) -> UsageRow:
        return UsageRow(
            self.key,
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost + other.cost,
        )


def check_grouping(by: str) -> UsageBy:
    if by not in GROUPINGS:
        raise ConfigError(f"usage is grouped by one of {', '.join(GROUPINGS)}; got {by!r}")
    return by


def utc_text(moment: datetime | None) -> str | None:
    """A bound as stored times are written (ISO 8601, UTC), so that text compares as time."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.isoformat()


def has_usage(record: NodeRecord) -> bool:
    return (
        record.model is not None
        or record.prompt_tokens is not None
        or record.completion_tokens is not None
        or record.cost is not None
    )


def group_key(record: NodeRecord, by: UsageBy) -> str:
    if by == "execution":
        return record.execution_id
    if by == "model":
        return record.model or ""
    if by == "day":
        return record.created_at[:10]
    return "total"


def add_up(
    records: Iterable[NodeRecord],
    by: UsageBy,
    *,
    execution_ids: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[UsageRow]:
    """The usage rows of `records`, grouped `by`, within the filters; sorted by key."""
    wanted = None if execution_ids is None else set(execution_ids)
    low, high = utc_text(since), utc_text(until)
    sums: dict[str, UsageRow] = {}
    for record in records:
        if not has_usage(record):
            continue
        if wanted is not None and record.execution_id not in wanted:
            continue
        if (low is not None and record.created_at < low) or (
            high is not None and record.created_at >= high
        ):
            continue
        key = group_key(record, by)
        row = UsageRow(
            key,
            1,
            record.prompt_tokens or 0,
            record.completion_tokens or 0,
            record.cost or 0.0,
        )
        sums[key] = sums[key] + row if key in sums else row
    return [sums[key] for key in sorted(sums)]


def merge(*parts: Iterable[UsageRow]) -> list[UsageRow]:
    """Rows of the same key added together; sorted by key."""
    sums: dict[str, UsageRow] = {}
    for part in parts:
        for row in part:
            sums[row.key] = sums[row.key] + row if row.key in sums else row
    return [sums[key] for key in sorted(sums)]
