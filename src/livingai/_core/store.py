"""The store contract every backend implements.

A store only moves records: the engine does validation, encoding, caching and batching.
It is append-only: `append` adds new versions and never changes or deletes old ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .model import NodeRecord


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
