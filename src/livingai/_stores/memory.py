"""MemoryStore: a store in a dict, for tests and experiments; gone with the process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from .._core.lifecycle import Closable
from .._core.model import NodeRecord
from .._core.store import StoreLimits


class MemoryStore(Closable):
    """A store in a dict: for tests and for trying things; gone when the process ends."""

    limits = StoreLimits(max_body_bytes=sys.maxsize, max_state_bytes=sys.maxsize)

    def __init__(self) -> None:
        self._versions: dict[str, list[NodeRecord]] = {}
        self._executions: dict[str, list[str]] = {}  # node ids, first-seen order
        self._execution_versions: dict[str, list[NodeRecord]] = {}
        self._checkpoints: dict[str, NodeRecord] = {}
        self._version_ids: set[str] = set()
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    async def append(self, records: Sequence[NodeRecord]) -> None:
        self._check_open()
        async with self._lock:
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

    async def close(self) -> None:
        await self._closing(_nothing)


async def _nothing() -> None:
    """A MemoryStore holds no connection: closing it only refuses further calls."""
