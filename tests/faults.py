"""Fault injection around a real store: it delays or fails appends, then passes them on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from livingai import CheckpointStore, NodeRecord, StoreError


class FaultyStore:
    """Wraps a real store: appends wait for `gate` and fail while `failures_left` > 0."""

    def __init__(self, inner: CheckpointStore, *, failures: int = 0, gated: bool = False) -> None:
        self.inner = inner
        self.failures_left = failures
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.appends: list[int] = []  # batch sizes of successful appends
        self.reads = 0

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r})"

    async def append(self, records: Sequence[NodeRecord]) -> None:
        await self.gate.wait()
        if self.failures_left > 0:
            self.failures_left -= 1
            raise StoreError("injected failure: store is down")
        await self.inner.append(records)
        self.appends.append(len(records))

    async def read(self, node_id: str) -> NodeRecord | None:
        self.reads += 1
        return await self.inner.read(node_id)

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        return await self.inner.list_nodes(execution_id)

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        return await self.inner.list_versions(execution_id)

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        return await self.inner.latest_checkpoint(execution_id)

    async def list_executions(self) -> list[str]:
        return await self.inner.list_executions()

    async def history(self, node_id: str) -> list[NodeRecord]:
        return await self.inner.history(node_id)

    async def close(self) -> None:
        await self.inner.close()
