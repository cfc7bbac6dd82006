"""MemoryStore: a store in a dict, for tests and experiments; gone with the process."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import datetime

from .._core.leases import fenced, next_lease
from .._core.lifecycle import Closable
from .._core.model import NodeRecord
from .._core.store import Fences, Lease, StoreLimits
from .._core.usage import UsageBy, UsageRow, add_up, check_grouping


class MemoryStore(Closable):
    """A store in a dict: for tests and for trying things; gone when the process ends."""

    limits = StoreLimits(max_body_bytes=sys.maxsize, max_state_bytes=sys.maxsize)

    def __init__(self) -> None:
        self._versions: dict[str, list[NodeRecord]] = {}
        self._executions: dict[str, list[str]] = {}  # node ids, first-seen order
        self._execution_versions: dict[str, list[NodeRecord]] = {}
        self._checkpoints: dict[str, NodeRecord] = {}
        self._version_ids: set[str] = set()
        self._leases: dict[str, Lease] = {}  # kept when released: tokens never repeat
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        self._check_open()
        async with self._lock:
            if fences:
                lost = [x for x, token in fences.items() if self._token(x) != token]
                if lost:
                    raise fenced(self, lost)
            for record in records:
                if record.version_id in self._version_ids:
                    continue
                self._version_ids.add(record.version_id)
                versions = self._versions.setdefault(record.node_id, [])
                if not versions:
                    self._executions.setdefault(record.execution_id, []).append(record.node_id)
                versions.append(record)
                self._execution_versions.setdefault(record.execution_id, []).append(record)
                if record.checkpoint is not None:
                    self._checkpoints[record.execution_id] = record

    async def read(self, node_id: str) -> NodeRecord | None:
        self._check_open()
        versions = self._versions.get(node_id)
        return versions[-1] if versions else None

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        self._check_open()
        return [self._versions[n][-1] for n in self._executions.get(execution_id, [])]

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        self._check_open()
        return list(self._execution_versions.get(execution_id, []))

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        self._check_open()
        return self._checkpoints.get(execution_id)

    async def list_executions(self) -> list[str]:
        self._check_open()
        return list(self._executions)

    async def history(self, node_id: str) -> list[NodeRecord]:
        self._check_open()
        return list(self._versions.get(node_id, []))

    def _token(self, execution_id: str) -> int | None:
        lease = self._leases.get(execution_id)
        live = lease is not None and lease.expires_at > time.time()
        return lease.token if lease is not None and live else None

    async def acquire_lease(self, execution_id: str, worker_id: str, seconds: float) -> Lease:
        self._check_open()
        lease = next_lease(
            self._leases.get(execution_id), execution_id, worker_id, seconds, time.time()
        )
        self._leases[execution_id] = lease
        return lease

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        self._check_open()
        if self._token(lease.execution_id) != lease.token:
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
        everything = (r for versions in self._versions.values() for r in versions)
        records = (
            everything
            if execution_ids is None
            else (r for x in execution_ids for r in self._execution_versions.get(x, []))
        )
        return add_up(records, check_grouping(by), since=since, until=until)

    async def close(self) -> None:
        await self._closing(_nothing)


async def _nothing() -> None:
    """A MemoryStore holds no connection: closing it only refuses further calls."""
