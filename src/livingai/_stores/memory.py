"""MemoryStore: a store in a dict, for tests and experiments; gone with the process."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Sequence
from datetime import datetime

from .._core.leases import fenced, next_lease, still_held
from .._core.lifecycle import Closable
from .._core.listing import OPEN, ExecutionEntry, ExecutionPage, PageQuery
from .._core.model import NodeRecord
from .._core.retention import check_keep, execution_ids_to_delete, node_ids_to_delete
from .._core.store import Fences, Lease, StoreLimits
from .._core.usage import UsageBy, UsageRow, add_up, check_grouping


class MemoryStore(Closable):
    """A store in a dict: for tests and for trying things; gone when the process ends."""

    limits = StoreLimits(max_body_bytes=sys.maxsize, max_state_bytes=sys.maxsize)

    def __init__(self) -> None:
        # Each version is held once, by id, and indexed by id: dropping its checkpoint
        # replaces one entry. A node id may be reused by several executions.
        self._records: dict[str, NodeRecord] = {}  # version id -> record
        self._node_versions: dict[str, list[str]] = {}  # node id -> version ids, in order
        self._execution_versions: dict[str, list[str]] = {}  # in append order
        self._execution_nodes: dict[str, dict[str, str]] = {}  # node id -> its latest
        # version id in the execution; first-seen order
        self._checkpoints: dict[str, str] = {}  # execution id -> latest checkpointed version
        self._entries: dict[str, ExecutionEntry] = {}  # the index: execution id -> entry
        self._leases: dict[str, Lease] = {}  # kept when released: tokens never repeat
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        self._check_open()
        async with self._lock:
            if fences:
                lost = [x for x, t in fences.items() if not still_held(self._leases.get(x), t)]
                if lost:
                    raise fenced(self, lost)
            for record in records:
                vid = record.version_id
                if vid in self._records:
                    continue
                self._records[vid] = record
                self._node_versions.setdefault(record.node_id, []).append(vid)
                self._execution_versions.setdefault(record.execution_id, []).append(vid)
                self._execution_nodes.setdefault(record.execution_id, {})[record.node_id] = vid
                if record.checkpoint is not None:
                    self._checkpoints[record.execution_id] = vid
                entry = self._entries.get(record.execution_id)
                if entry is None:
                    entry = ExecutionEntry(record.execution_id, record.created_at)
                self._entries[record.execution_id] = entry.updated(record)

    async def read(self, node_id: str) -> NodeRecord | None:
        self._check_open()
        versions = self._node_versions.get(node_id)
        return self._records[versions[-1]] if versions else None

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        self._check_open()
        return [self._records[v] for v in self._execution_nodes.get(execution_id, {}).values()]

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        self._check_open()
        return [self._records[v] for v in self._execution_versions.get(execution_id, [])]

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        self._check_open()
        vid = self._checkpoints.get(execution_id)
        return None if vid is None else self._records[vid]

    async def list_executions(self) -> list[str]:
        self._check_open()
        return list(self._execution_nodes)

    async def history(self, node_id: str) -> list[NodeRecord]:
        self._check_open()
        return [self._records[v] for v in self._node_versions.get(node_id, [])]

    async def open_runs(self) -> list[ExecutionEntry]:
        self._check_open()
        opened = [e for e in self._entries.values() if e.status in OPEN]
        return sorted(opened, key=lambda e: e.key)

    async def list_page(self, query: PageQuery) -> ExecutionPage:
        self._check_open()
        return ExecutionPage.of(self._entries.values(), query)

    # -- retention ----------------------------------------------------------------------

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        self._check_open()
        ids = execution_ids_to_delete(execution_ids)
        deleted = 0
        async with self._lock:
            for execution_id in ids:
                gone = set(self._execution_versions.pop(execution_id, []))
                for node_id in self._execution_nodes.pop(execution_id, {}):
                    kept = [v for v in self._node_versions[node_id] if v not in gone]
                    if kept:
                        self._node_versions[node_id] = kept
                    else:
                        del self._node_versions[node_id]
                for vid in gone:
                    del self._records[vid]
                self._checkpoints.pop(execution_id, None)
                self._leases.pop(execution_id, None)
                self._entries.pop(execution_id, None)
                deleted += len(gone)
        return deleted

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        self._check_open()
        ids = node_ids_to_delete(execution_id, node_ids)
        async with self._lock:
            nodes = self._execution_nodes.get(execution_id, {})
            doomed = {node_id for node_id in ids if node_id in nodes}
            if not doomed:
                return 0
            versions = self._execution_versions[execution_id]
            gone = {v for v in versions if self._records[v].node_id in doomed}
            for node_id in doomed:
                del nodes[node_id]
                kept = [v for v in self._node_versions[node_id] if v not in gone]
                if kept:
                    self._node_versions[node_id] = kept
                else:
                    del self._node_versions[node_id]
            left = [v for v in versions if v not in gone]
            if self._checkpoints.get(execution_id) in gone:
                newest = next(
                    (v for v in reversed(left) if self._records[v].checkpoint is not None), None
                )
                if newest is None:
                    del self._checkpoints[execution_id]
                else:
                    self._checkpoints[execution_id] = newest
            for vid in gone:
                del self._records[vid]
            if left:
                self._execution_versions[execution_id] = left
                entry = ExecutionEntry.of(execution_id, [self._records[v] for v in left])
                assert entry is not None
                self._entries[execution_id] = entry  # what is left says what it is now
            else:  # nothing of it is left: it leaves the list of executions (not its lease)
                del self._execution_versions[execution_id]
                del self._execution_nodes[execution_id]
                del self._entries[execution_id]
        return len(gone)

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        self._check_open()
        keep = check_keep(keep)
        async with self._lock:
            versions = self._execution_versions.get(execution_id, [])
            checkpointed = [v for v in versions if self._records[v].checkpoint is not None]
            dropped = checkpointed[: max(0, len(checkpointed) - keep)]
            for vid in dropped:
                self._records[vid] = dataclasses.replace(self._records[vid], checkpoint=None)
            if keep == 0:
                self._checkpoints.pop(execution_id, None)
        return len(dropped)

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        self._check_open()
        current = self._leases.get(execution_id)
        lease = next_lease(current, execution_id, worker_id, seconds, time.time(), take_over)
        self._leases[execution_id] = lease
        return lease

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        self._check_open()
        if not still_held(self._leases.get(lease.execution_id), lease.token):
            return None
        renewed = Lease(lease.execution_id, lease.worker_id, lease.token, time.time() + seconds)
        self._leases[lease.execution_id] = renewed
        return renewed

    async def release_lease(self, lease: Lease) -> None:
        self._check_open()
        current = self._leases.get(lease.execution_id)
        if current is not None and current.token == lease.token:
            self._leases[lease.execution_id] = Lease(
                lease.execution_id, lease.worker_id, lease.token, 0.0
            )

    async def leases(self) -> list[Lease]:
        self._check_open()
        now = time.time()
        return [lease for lease in self._leases.values() if lease.expires_at > now]

    async def usage(
        self,
        by: UsageBy,
        *,
        execution_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        self._check_open()
        records = (
            self._records.values()
            if execution_ids is None
            else (
                self._records[v] for x in execution_ids for v in self._execution_versions.get(x, [])
            )
        )
        return add_up(records, check_grouping(by), since=since, until=until)

    async def close(self) -> None:
        await self._closing(_nothing)


async def _nothing() -> None:
    """A MemoryStore holds no connection: closing it only refuses further calls."""
