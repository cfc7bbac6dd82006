"""The executions' index of a TieredStore, out of its two stores' (listing.py).

Each store indexes what it holds: the cold one lags by the queue on its way there, and
the hot one may have lost what it held (a restart without persistence, expiry). An
execution's entry is then put together from both: it started at the earlier of the two
started_at; its agent and status are the hot store's when it has a run record there
(newer), else the cold one's. When a page is filtered by status or agent, an entry only
one store listed is checked against the newest run record (`newest`, which reads the
hot store, the queue, then the cold store, as TieredStore.read does): the other store
may hold a newer one that no longer matches.

Pages are merged as sorted runs are: both stores are asked for the same page; what lies
above the higher of the two pages' last keys is complete in both, and the next round
asks both again from below there until the page is full or both are exhausted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable

from .._core.listing import (
    ExecutionEntry,
    ExecutionPage,
    PageQuery,
    agent_of,
    decode_cursor,
    encode_cursor,
)
from .._core.model import NodeRecord

Page = Callable[[PageQuery], Awaitable[tuple[ExecutionPage, ExecutionPage | None]]]
Newest = Callable[[str], Awaitable[NodeRecord | None]]  # an execution's newest run record

MAX_ROUNDS = 1000  # a page needs more only when nearly every entry fails its filter


def combined(cold: ExecutionEntry | None, hot: ExecutionEntry) -> ExecutionEntry:
    """One execution's entry, from the cold store's (if any) and the hot store's."""
    if cold is None:
        return hot
    started_at = min(cold.started_at, hot.started_at)
    source = hot if hot.status is not None else cold
    return ExecutionEntry(hot.execution_id, started_at, source.agent, source.status)


def union(
    cold: Iterable[ExecutionEntry], hot: Iterable[ExecutionEntry]
) -> dict[str, ExecutionEntry]:
    found = {entry.execution_id: entry for entry in cold}
    for entry in hot:
        found[entry.execution_id] = combined(found.get(entry.execution_id), entry)
    return found


async def checked(entry: ExecutionEntry, newest: Newest) -> ExecutionEntry:
    """`entry` with the agent and status of the execution's newest run record."""
    record = await newest(entry.execution_id)
    if record is None:
        return dataclasses.replace(entry, agent="", status=None)
    return dataclasses.replace(entry, agent=agent_of(record), status=record.status)


async def page(query: PageQuery, pages: Page, newest: Newest) -> ExecutionPage:
    """The page `query` asks for, from both stores' pages (`pages`: the hot one's, and
    the cold one's or None while it is down)."""
    filtered = query.status is not None or query.agent is not None
    found: list[ExecutionEntry] = []
    seen: set[str] = set()  # listed already (the stores may disagree on when one started)
    cursor = query.cursor
    for _ in range(MAX_ROUNDS):
        hot, cold = await pages(dataclasses.replace(query, cursor=cursor))
        cold_entries = [] if cold is None else cold.entries
        hot_ids = {entry.execution_id for entry in hot.entries}
        cold_ids = {entry.execution_id for entry in cold_entries}
        merged = union(cold_entries, hot.entries)
        ends = [p.cursor for p in (hot, cold) if p is not None and p.cursor is not None]
        bound = max((decode_cursor(end) for end in ends), default=None)  # complete above it
        for entry in sorted(merged.values(), key=lambda e: e.key, reverse=True):
            if bound is not None and entry.key < bound:
                break
            if entry.execution_id in seen:
                continue
            seen.add(entry.execution_id)
            if filtered and (entry.execution_id in hot_ids) != (entry.execution_id in cold_ids):
                entry = await checked(entry, newest)
                if not query.matches(entry):
                    continue
            found.append(entry)
            if len(found) > query.limit:
                return ExecutionPage.newest_first(found, query.limit)
        if bound is None:  # both stores are exhausted
            return ExecutionPage.newest_first(found, query.limit)
        cursor = encode_cursor(ExecutionEntry(bound[1], bound[0]))
    raise AssertionError("a page of a tiered store took more rounds than MAX_ROUNDS")
