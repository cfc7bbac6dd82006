"""The store contract every backend implements, and the in-memory store for tests.

A store only moves records: the engine does validation, encoding, caching and batching.
It is append-only: `append` adds new versions and never changes or deletes old ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ._errors import ClosedError
from ._model import NodeRecord


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


class MemoryStore:
    """A store in a dict: for tests and for trying things; gone when the process ends."""

    def __init__(self) -> None:
        self._versions: dict[str, list[NodeRecord]] = {}
        self._executions: dict[str, list[str]] = {}  # node ids, first-seen order
        self._execution_versions: dict[str, list[NodeRecord]] = {}
        self._checkpoints: dict[str, NodeRecord] = {}
        self._version_ids: set[str] = set()
        self._lock = asyncio.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("MemoryStore was used after close()")

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
        self._closed = True
