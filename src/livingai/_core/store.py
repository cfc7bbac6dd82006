"""The store contract every backend implements.

A store only moves records: the engine does validation, encoding, caching and batching.
It is append-only: `append` adds new versions and never changes or deletes old ones.
The one exception is retention: a store that offers RetentionStore deletes whole
executions, every version of single nodes of an execution, or the state blobs of older
versions, when asked to, and nothing else ever does.

Failures are told apart by type, so that the engine knows what to do with them:
StoreError (transient: retried), RecordRejectedError (these records can never be stored:
the engine isolates and rejects them), StoreUnusableError (the store cannot work as
configured: callers are told). A store may declare `limits` (StoreLimits): the engine
then refuses larger values at save() with InvalidNodeError, before they reach the store.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from .listing import OPEN, ExecutionEntry, ExecutionPage, PageQuery
from .model import NodeRecord
from .usage import UsageBy, UsageRow

MAX_ID_BYTES = 1024  # on every store of ours: PostgreSQL's indexes hold at most ~2700
# bytes an entry, and one limit keeps executions movable between stores


@dataclass(frozen=True)
class StoreLimits:
    """The largest values a store keeps, in bytes (UTF-8 for ids and the JSON body)."""

    max_body_bytes: int  # input, output, error, usage and metadata, as JSON
    max_state_bytes: int  # one state, before compression (room is left for the framing)
    max_id_bytes: int = MAX_ID_BYTES  # each of the node, execution and parent ids

    def __and__(self, other: StoreLimits) -> StoreLimits:
        """What both stores keep (a tiered store writes to two)."""
        return StoreLimits(
            min(self.max_body_bytes, other.max_body_bytes),
            min(self.max_state_bytes, other.max_state_bytes),
            min(self.max_id_bytes, other.max_id_bytes),
        )


NO_LIMITS = StoreLimits(sys.maxsize, sys.maxsize, sys.maxsize)  # a store that says nothing


@dataclass(frozen=True)
class Lease:
    """One worker's hold on one execution, until `expires_at` (seconds since the epoch,
    by the store's clock). `token` grows with every acquisition of the execution: a write
    fenced with an older token is refused (FencedError)."""

    execution_id: str
    worker_id: str
    token: int
    expires_at: float


Fences = Mapping[str, int]  # execution id -> the lease token its writes are made under


def limits_of(store: object) -> StoreLimits:
    """The store's declared limits; a store that declares none is held to NO_LIMITS."""
    limits = getattr(store, "limits", None)
    return limits if isinstance(limits, StoreLimits) else NO_LIMITS


@runtime_checkable
class CheckpointStore(Protocol):
    """A handful of primitive async operations; the engine composes everything else."""

    async def append(self, records: Sequence[NodeRecord]) -> None:
        """Store every record as a new node version, all or none, in the given order.

        A record whose version_id is already stored is skipped, so a retried batch
        is never stored twice.
        """

    async def read(self, node_id: str) -> NodeRecord | None:
        """The latest version of a node, or None."""

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        """The latest version of each node of an execution, in first-seen order."""

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        """Every version of every node of an execution, in append order."""

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        """The most recently appended version with a checkpoint in the execution, or None."""

    async def list_executions(self) -> list[str]:
        """Every execution id, in first-seen order."""

    async def history(self, node_id: str) -> list[NodeRecord]:
        """Every version of a node, oldest first."""

    async def close(self) -> None:
        """Release connections; a closed store refuses further calls."""


@runtime_checkable
class LeaseStore(CheckpointStore, Protocol):
    """A store that also keeps leases: one worker at a time owns an execution, and a
    worker that lost its lease cannot write to it any more (fencing). Every store here is
    one; durable runs need one."""

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        """As CheckpointStore.append; with `fences`, first check, in the same transaction,
        that each named execution's lease is still held with that token (not taken, not
        released; expired is fine), and store nothing but raise FencedError naming them
        when one is not."""

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        """Take the execution's lease for `seconds` with a new token: when it is free, has
        expired, is held by this same worker (a restarted process takes its own back at
        once) or by `take_over` (a worker the caller knows is gone). LeaseHeldError, naming
        the holder, when another live worker holds it."""

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        """Extend a lease still held with its token, even one that expired meanwhile (a
        store outage kept its holder from renewing) if no one took it; None when it was
        lost (taken over, or released)."""

    async def release_lease(self, lease: Lease) -> None:
        """Let the lease go, if still held with its token; its token is never reused."""

    async def leases(self) -> list[Lease]:
        """Every live lease."""


@runtime_checkable
class UsageStore(CheckpointStore, Protocol):
    """A store that adds usage up itself (SQL on SQLite and PostgreSQL, counters kept at
    write time on Redis): costs by execution, model or day without reading every node.
    Every store here is one."""

    async def usage(
        self,
        by: UsageBy,
        *,
        execution_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """The sums of the versions that carry usage, grouped `by` "execution", "model",
        "day" (UTC) or "total", for the executions named (default: all) and created in
        [since, until) (Redis: to the day); sorted by key."""


@runtime_checkable
class RetentionStore(CheckpointStore, Protocol):
    """A store that can forget: the one way anything leaves the append-only log, for
    retention and garbage collection (a log that only grows fills its disk). Every
    store here is one."""

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        """Delete every version of these executions and everything kept for them (their row in
        the executions list, their lease, their usage counters); how many versions went.
        Unknown ids are ignored."""

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        """Remove the state blobs of all but the newest `keep` (>= 0) checkpointed versions of the
        execution; the versions themselves stay, as versions without a checkpoint. How many
        blobs went."""

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        """Delete every version of these nodes of the execution, and their usage; how many
        versions went. With delete_executions and drop_checkpoints, the one exception to
        the append-only log: it lets retention remove single checkpoints of a run (a
        LangGraph thread's) and keep the rest. Versions of the same node ids in other
        executions stay; node ids the execution does not have are ignored. Afterwards
        every read agrees: latest_checkpoint is the newest version left with a blob (or
        None), and an execution left without a version leaves list_executions (its lease
        stays: the run may still hold it)."""


@runtime_checkable
class IndexStore(CheckpointStore, Protocol):
    """A store that indexes its executions (ExecutionEntry: when each started, and its
    run record's agent and status) in the same atomic write that stores their versions,
    so that recovery and listing cost what they return, not what was ever run. Every
    store here is one. A store of your own that is not still works: the engine then
    works the answers out from every execution's log (the old cost)."""

    async def open_runs(self) -> list[ExecutionEntry]:
        """The entries of the executions whose run record's newest version is PENDING or
        RUNNING, oldest first (by started_at, then id)."""

    async def list_page(self, query: PageQuery) -> ExecutionPage:
        """The page `query` asks for: executions newest first (by started_at, then id),
        after its cursor, filtered by status and agent (a run record's) and by
        started_at; `query.limit` of them at most."""


async def open_runs_of(store: CheckpointStore) -> list[ExecutionEntry]:
    """The open runs of `store`: from its index when it is an IndexStore, else from
    every execution's log."""
    if isinstance(store, IndexStore):
        return await store.open_runs()
    found = [entry for entry in await _scan(store) if entry.status in OPEN]
    return sorted(found, key=lambda entry: entry.key)


async def page_of(store: CheckpointStore, query: PageQuery) -> ExecutionPage:
    """The page `query` asks for of `store`: from its index when it is an IndexStore,
    else from every execution's log."""
    if isinstance(store, IndexStore):
        return await store.list_page(query)
    return ExecutionPage.of(await _scan(store), query)


async def _scan(store: CheckpointStore) -> list[ExecutionEntry]:
    entries = []
    for execution_id in await store.list_executions():
        entry = ExecutionEntry.of(execution_id, await store.list_versions(execution_id))
        if entry is not None:
            entries.append(entry)
    return entries
