"""Fault injection around a real store: it delays, fails or rejects appends, then passes
them on. It declares no limits, so the engine sends it whatever the store behind would
refuse: what the store itself does about it is what is tested."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from livingai import (
    CheckpointStore,
    ExecutionEntry,
    ExecutionPage,
    IndexStore,
    NodeRecord,
    PageQuery,
    RecordRejectedError,
    StoreError,
)


class FaultyStore:
    """Wraps a real store: appends wait for `gate`, fail while `failures_left` > 0, and
    are refused for good when they hold a node whose id is in `poison`; reads answer
    once `read_gate` is set."""

    def __init__(
        self,
        inner: CheckpointStore,
        *,
        failures: int = 0,
        gated: bool = False,
        poison: frozenset[str] = frozenset(),
    ) -> None:
        self.inner = inner
        self.poison = poison
        self.failures_left = failures
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.read_gate = asyncio.Event()  # reads answer once it is set
        self.read_gate.set()
        self.appends: list[int] = []  # batch sizes of successful appends
        self.reads = 0

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r})"

    async def append(self, records: Sequence[NodeRecord]) -> None:
        await self.gate.wait()
        if self.failures_left > 0:
            self.failures_left -= 1
            raise StoreError("injected failure: store is down")
        bad = [record.node_id for record in records if record.node_id in self.poison]
        if bad:
            raise RecordRejectedError(f"injected rejection of {', '.join(bad)}")
        await self.inner.append(records)
        self.appends.append(len(records))

    async def read(self, node_id: str) -> NodeRecord | None:
        self.reads += 1
        record = await self.inner.read(node_id)
        await self.read_gate.wait()  # read, not answered yet: a save may come in between
        return record

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


class IndexedFaultyStore(FaultyStore):
    """A FaultyStore that passes the executions' index on too (an IndexStore)."""

    async def open_runs(self) -> list[ExecutionEntry]:
        return await self._indexed().open_runs()

    async def list_page(self, query: PageQuery) -> ExecutionPage:
        return await self._indexed().list_page(query)

    def _indexed(self) -> IndexStore:
        assert isinstance(self.inner, IndexStore)
        return self.inner
