"""CheckpointEngine: budgets, group commit, retries, backlog, read-your-writes, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

from livingai import (
    BacklogFullError,
    CheckpointCorruptError,
    CheckpointEngine,
    ClosedError,
    Codec,
    ConfigError,
    ExecutionNode,
    IndexStore,
    InvalidNodeError,
    MemoryStore,
    NodeType,
    SQLiteStore,
    Status,
    StoreError,
    WrongLoopError,
)
from livingai.testing import make_record
from livingai.testing.index_checks import T0, run_record, step_record
from tests.conftest import StoreFactory
from tests.faults import FaultyStore
from tests.services import until


def step(execution_id: str = "run", **fields: Any) -> ExecutionNode:
    return ExecutionNode(
        execution_id=execution_id, type=NodeType.PROMPT, status=Status.SUCCESS, **fields
    )


async def test_save_commits_and_loads_back(
    persistent_factory: StoreFactory,
) -> None:
    async with CheckpointEngine(persistent_factory()) as engine:
        node = step(output={"plan": ["a", "b"]})
        await engine.save(node, state=b"state-1")  # True or False: timing is not tested
        await engine.flush()
        assert engine.stats().in_budget + engine.stats().late == 1
        loaded = await engine.load(node.id)
        assert loaded is not None
        assert loaded.state == b"state-1"
        assert loaded.node.output == {"plan": ["a", "b"]}
    # A fresh engine reads it back from the store, not from any cache.
    async with CheckpointEngine(persistent_factory()) as fresh:
        cold = await fresh.load(node.id)
        assert cold is not None
        assert cold.state == b"state-1"
        assert cold.node.checkpoint is not None


async def test_hot_read_does_not_touch_the_store() -> None:
    store = FaultyStore(MemoryStore())
    async with CheckpointEngine(store) as engine:
        node = step()
        await engine.save(node, state=b"hot")
        for _ in range(3):
            loaded = await engine.load(node.id)
            assert loaded is not None
            assert loaded.state == b"hot"
        assert store.reads == 0


async def test_slow_store_returns_false_but_never_drops_the_write() -> None:
    store = FaultyStore(MemoryStore(), gated=True)
    async with CheckpointEngine(store, overhead_budget_ms=5) as engine:
        node = step()
        assert await engine.save(node, state=b"late state") is False
        assert engine.stats().backlog_writes == 1
        store.gate.set()
        await engine.flush()
        stats = engine.stats()
        assert (stats.saves, stats.in_budget, stats.late, stats.backlog_writes) == (1, 0, 1, 0)
        record = await store.inner.read(node.id)
        assert record is not None
        assert record.checkpoint is not None


async def test_concurrent_saves_share_commits() -> None:
    store = FaultyStore(MemoryStore(), gated=True)
    async with CheckpointEngine(store, overhead_budget_ms=5) as engine:
        nodes = [step(f"agent-{i}") for i in range(50)]
        results = await asyncio.gather(*(engine.save(n, state=b"s") for n in nodes))
        assert results == [False] * 50
        store.gate.set()
        await engine.flush()
        assert sum(store.appends) == 50
        assert len(store.appends) <= 2  # one transaction for everything queued
        assert engine.stats().commits == len(store.appends)


async def test_store_errors_are_retried_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore(MemoryStore(), failures=3)
    engine = CheckpointEngine(store, overhead_budget_ms=5, retry_max_delay_seconds=0.01)
    node = step()
    with caplog.at_level(logging.WARNING, logger="livingai"):
        assert await engine.save(node, state=b"x") is False
        await engine.flush()
    assert engine.stats().store_errors == 3
    assert len(await store.inner.history(node.id)) == 1
    assert any("retrying" in message for message in caplog.messages)
    assert any("succeeded after 3 failures" in message for message in caplog.messages)
    await engine.close()


async def test_full_backlog_refuses_the_save_loudly(caplog: pytest.LogCaptureFixture) -> None:
    store = FaultyStore(MemoryStore(), gated=True)
    engine = CheckpointEngine(store, overhead_budget_ms=5, max_backlog_bytes=10_000)
    first = step()
    assert await engine.save(first, state=b"a" * 6_000) is False
    second = step()
    with pytest.raises(BacklogFullError, match="refused"):
        await engine.save(second, state=b"b" * 6_000)
    assert "refused a save" in caplog.text
    assert engine.stats().refused == 1
    assert await engine.load(second.id) is None  # nothing of the refused save is kept
    store.gate.set()
    await engine.flush()
    assert await store.inner.read(first.id) is not None
    assert await store.inner.read(second.id) is None
    await engine.close()


async def test_versions_commit_in_save_order_even_when_the_first_is_large() -> None:
    store = MemoryStore()
    async with CheckpointEngine(store, overhead_budget_ms=1, offload_bytes=1024) as engine:
        node = step()
        big = os.urandom(200_000)
        await engine.save(node, state=big)  # compressed on a thread
        node.output = "second"
        await engine.save(node, state=b"small")  # compressed inline
        await engine.flush()
        history = await engine.history(node.id)
    assert [version.output for version in history] == [None, "second"]


async def test_reads_see_writes_still_queued() -> None:
    store = FaultyStore(MemoryStore(), gated=True)
    async with CheckpointEngine(store, overhead_budget_ms=1, hot_capacity=0) as engine:
        node = step("queued-run")
        assert await engine.save(node, state=b"queued") is False
        loaded = await engine.load(node.id)
        assert loaded is not None
        assert loaded.state == b"queued"
        latest = await engine.latest("queued-run")
        assert latest is not None
        assert latest.node.id == node.id
        assert [n.id for n in await engine.list_nodes("queued-run")] == [node.id]
        assert await engine.list_executions() == ["queued-run"]
        store.gate.set()


async def test_unserialisable_output_is_refused_naming_field_and_type() -> None:
    async with CheckpointEngine(MemoryStore()) as engine:
        node = step(output={"when": object()})
        with pytest.raises(InvalidNodeError, match=r"output .* type object"):
            await engine.save(node)
        with pytest.raises(InvalidNodeError, match="state must be bytes"):
            await engine.save(step(), state="not bytes")  # type: ignore[arg-type]
        assert engine.stats().saves == 0


async def test_saving_a_loaded_node_keeps_its_framed_checkpoint() -> None:
    async with CheckpointEngine(MemoryStore(), codec=Codec.ZLIB) as engine:
        node = step()
        await engine.save(node, state=b"kept")
        loaded = await engine.load(node.id)
        assert loaded is not None
        loaded.node.status = Status.FAILED
        await engine.save(loaded.node)
        again = await engine.load(node.id)
        assert again is not None
        assert (again.node.status, again.state) == (Status.FAILED, b"kept")
        bad = step(checkpoint=b"\x7fnot framed")
        with pytest.raises(InvalidNodeError, match="framed"):
            await engine.save(bad)


async def test_corrupt_blob_raises_naming_the_node_and_engine_keeps_working() -> None:
    store = MemoryStore()
    corrupt = make_record("run", "broken-node", checkpoint=b"\x01this is not zlib")
    await store.append([corrupt])
    async with CheckpointEngine(store) as engine:
        with pytest.raises(CheckpointCorruptError, match="broken-node"):
            await engine.load("broken-node")
        with pytest.raises(CheckpointCorruptError, match="broken-node"):
            await engine.latest("run")
        node = step("run")
        await engine.save(node, state=b"fine")
        await engine.flush()
        loaded = await engine.load(node.id)
        assert loaded is not None
        assert loaded.state == b"fine"


async def test_lifecycle_errors_are_exact() -> None:
    engine = CheckpointEngine(MemoryStore())
    await engine.close()
    await engine.close()
    with pytest.raises(ClosedError, match=r"CheckpointEngine\(.*\) was used after close\(\)"):
        await engine.save(step())
    with pytest.raises(ClosedError):
        await engine.load("anything")


async def test_close_gives_up_on_a_dead_store_counting_and_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore(MemoryStore(), failures=10**9)
    engine = CheckpointEngine(store, overhead_budget_ms=1, retry_max_delay_seconds=0.01)
    for _ in range(3):
        assert await engine.save(step(), state=b"doomed") is False
    await engine.close(abandon_after_seconds=0.2)
    assert engine.stats().abandoned == 3
    assert "3 queued writes were NOT stored" in caplog.text


def test_an_engine_belongs_to_one_event_loop(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    engine = CheckpointEngine(store)
    node = step()
    asyncio.run(engine.save(node, state=b"first loop"))

    async def second() -> None:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: engine.save(step(), state=b"second loop"),
            lambda: engine.load(node.id),
            engine.flush,
            lambda: engine.versions("run"),
        ]
        for call in calls:
            with pytest.raises(WrongLoopError, match="make one engine per event loop"):
                await call()
        assert [record.node_id for record in await store.list_nodes("run")] == [node.id]
        await engine.close()  # nothing is queued: closing from here is fine

    with caplog.at_level(logging.ERROR):
        asyncio.run(second())
    assert "Task was destroyed" not in caplog.text
    assert engine.stats().saves == 1


async def test_stats_report_latency_percentiles() -> None:
    async with CheckpointEngine(SQLiteStore(":memory:")) as engine:
        for _ in range(20):
            await engine.save(step(), state=os.urandom(100))
        stats = engine.stats()
        assert stats.saves == 20
        assert stats.save_ms["count"] == 20
        assert 0 < stats.save_ms["p50_ms"] <= stats.save_ms["max_ms"]
        assert stats.durable_ms["count"] == 20


def test_retry_backoff_is_bounded_after_any_number_of_failures() -> None:
    from livingai._core.commits import backoff_seconds

    assert 0.04 <= backoff_seconds(1, 2.0) <= 0.06  # 50 ms, with 20% jitter
    for failures in (100, 5000, 10**6):  # a store down for days: no overflow
        assert 1.6 <= backoff_seconds(failures, 2.0) <= 2.4


# -- the public API the runtime builds on ---------------------------------------------------


async def test_versions_is_the_whole_log_in_save_order_queued_included(
    persistent_factory: StoreFactory,
) -> None:
    store = FaultyStore(persistent_factory())
    async with CheckpointEngine(store, overhead_budget_ms=1, offload_bytes=64) as engine:
        tool = ExecutionNode(execution_id="log", type=NodeType.TOOL, status=Status.RUNNING)
        plan = step("log")
        await engine.save(tool)
        await engine.save(plan, state=b"small")
        await engine.flush()
        store.gate.clear()  # from here on everything stays queued
        tool.status = Status.SUCCESS
        await engine.save(tool)
        big = os.urandom(1000)
        assert await engine.save(plan, state=big) is False  # encoded on a codec thread
        versions = await engine.versions("log")
        assert [(v.id, v.status) for v in versions] == [
            (tool.id, Status.RUNNING),
            (plan.id, Status.SUCCESS),
            (tool.id, Status.SUCCESS),
            (plan.id, Status.SUCCESS),
        ]
        states = [await engine.decode_state(v) for v in versions]
        assert states == [None, b"small", None, big]
        assert await engine.versions("nothing-here") == []
        store.gate.set()
    async with CheckpointEngine(persistent_factory()) as fresh:
        again = await fresh.versions("log")
        assert [await fresh.decode_state(v) for v in again] == states


async def test_decode_state_names_a_corrupt_node() -> None:
    async with CheckpointEngine(MemoryStore()) as engine:
        node = step(checkpoint=b"\x01not zlib at all")
        with pytest.raises(CheckpointCorruptError, match=node.id):
            await engine.decode_state(node)


async def test_a_durable_save_waits_for_the_store_not_the_budget() -> None:
    store = FaultyStore(MemoryStore(), gated=True)
    async with CheckpointEngine(store, overhead_budget_ms=1) as engine:
        node = step()
        saving = asyncio.create_task(engine.save(node, state=b"intent", durable=True))
        with pytest.raises(TimeoutError):  # fifty budgets later it still waits
            await asyncio.wait_for(asyncio.shield(saving), 0.05)
        store.gate.set()
        assert await saving is True
        assert await store.inner.read(node.id) is not None
        stats = engine.stats()
        assert (stats.in_budget, stats.late) == (0, 1)  # committed after its budget


async def test_a_durable_save_that_cannot_land_raises() -> None:
    store = FaultyStore(MemoryStore(), failures=10**9)
    engine = CheckpointEngine(store, retry_max_delay_seconds=0.01)
    saving = asyncio.create_task(engine.save(step(), durable=True))
    await until(lambda: engine.stats().store_errors > 0, "a failed store write")
    await engine.close(abandon_after_seconds=0.1)
    with pytest.raises(StoreError, match="NOT stored"):
        await saving


# -- retention ------------------------------------------------------------------------------


class RetainingStore(FaultyStore):
    """A FaultyStore over a MemoryStore that can delete too; it notes how many appends had
    landed when delete_nodes was called."""

    inner: MemoryStore
    appends_at_deletion: int | None = None

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        return await self.inner.delete_executions(execution_ids)

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        return await self.inner.drop_checkpoints(execution_id, keep)

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        self.appends_at_deletion = len(self.appends)
        return await self.inner.delete_nodes(execution_id, node_ids)


async def test_delete_nodes_flushes_first_and_the_hot_cache_forgets_them() -> None:
    store = RetainingStore(MemoryStore())
    async with CheckpointEngine(store, overhead_budget_ms=1) as engine:
        elsewhere = step("other", id="shared")  # the same node id in another execution
        doomed, kept, shared = step("run"), step("run"), step("run", id="shared")
        await engine.save(elsewhere, state=b"other's")
        await engine.save(doomed, state=b"doomed 1")
        await engine.save(kept, state=b"kept")
        await engine.save(shared, state=b"run's")  # the newest "shared": the one cached
        await engine.flush()
        store.gate.clear()  # from here on every write stays queued
        doomed.output = "second"
        assert await engine.save(doomed, state=b"doomed 2") is False
        loaded = await engine.load(doomed.id)
        assert loaded is not None
        assert loaded.state == b"doomed 2"  # the queued version, from the hot cache
        appended = len(store.appends)
        deleting = asyncio.create_task(engine.delete_nodes("run", [doomed.id, "shared", "x"]))
        store.gate.set()
        # Both versions of `doomed`, the queued one included, and run's "shared".
        assert await deleting == 3
        assert store.appends_at_deletion == appended + 1  # the queued write landed first
        assert engine.stats().backlog_writes == 0
        assert await store.inner.history(doomed.id) == []
        # The hot cache forgot them: what the store holds now is what loads.
        assert await engine.load(doomed.id) is None
        left = await engine.load("shared")
        assert left is not None
        assert (left.node.execution_id, left.state) == ("other", b"other's")
        still = await engine.load(kept.id)
        assert still is not None
        assert still.state == b"kept"
        assert [node.id for node in await engine.list_nodes("run")] == [kept.id]
        latest = await engine.latest("run")
        assert latest is not None
        assert latest.node.id == kept.id
        # Saved again, a deleted node starts anew.
        await engine.save(doomed, state=b"doomed 3")
        await engine.flush()
        assert [v.output for v in await engine.history(doomed.id)] == ["second"]
        again = await engine.load(doomed.id)
        assert again is not None
        assert again.state == b"doomed 3"


async def test_delete_nodes_refuses_what_it_would_misread_and_stores_that_cannot() -> None:
    async with CheckpointEngine(RetainingStore(MemoryStore())) as engine:
        node = step("run")
        await engine.save(node, state=b"kept")
        wrong: list[tuple[str, Any, str]] = [
            ("run", node.id, "node_ids must be a sequence of node ids, not one string"),
            ("run", [node.id, 7], "node ids are strings; got 7"),
            ("run", [""], "node ids are non-empty strings"),
            ("", [node.id], "execution_id must be a non-empty string"),
        ]
        for execution_id, node_ids, message in wrong:
            with pytest.raises(ConfigError, match=message):
                await engine.delete_nodes(execution_id, node_ids)
        assert await engine.delete_nodes("run", []) == 0
        assert [v.id for v in await engine.versions("run")] == [node.id]
    async with CheckpointEngine(FaultyStore(MemoryStore())) as plain:
        await plain.save(step("run"))
        with pytest.raises(ConfigError, match="not a RetentionStore"):
            await plain.delete_nodes("run", ["anything"])


async def test_a_load_that_raced_a_save_does_not_keep_serving_the_older_version() -> None:
    store = FaultyStore(MemoryStore())
    async with CheckpointEngine(store) as engine:
        node = ExecutionNode(execution_id="e", type=NodeType.TOOL, id="e/1", status=Status.RUNNING)
        await engine.save(node, durable=True)
        store.read_gate.clear()
        loading = asyncio.create_task(engine.load("e/1"))  # reads RUNNING, then waits
        await until(lambda: store.reads == 1, "the load reading the store")
        node.status, node.output = Status.SUCCESS, "done"
        await engine.save(node, durable=True)
        store.read_gate.set()
        raced = await loading
        assert raced is not None
        assert raced.node.status is Status.RUNNING  # read before the save: older, as it was
        now = await engine.load("e/1")
        assert now is not None
        assert (now.node.status, now.node.output) == (Status.SUCCESS, "done")


async def test_a_save_that_does_not_wait_returns_at_once_and_still_commits() -> None:
    """wait=False: False while the store holds the commit up, the write committed in
    queue order once it answers, counted as any save; the record visible meanwhile."""
    store = FaultyStore(MemoryStore(), gated=True, poison=frozenset({"bad"}))
    async with CheckpointEngine(store) as engine:
        node = step(output={"answer": 42})
        assert await engine.save(node, wait=False) is False  # the store has not answered
        loaded = await engine.load(node.id)
        assert loaded is not None  # read-your-writes while it is queued
        assert loaded.node.output == {"answer": 42}
        with pytest.raises(ConfigError, match="durable save waits"):
            await engine.save(step(), durable=True, wait=False)
        later = step()
        saving = asyncio.create_task(engine.save(later, durable=True))
        store.gate.set()
        await saving  # the later durable save commits after the one not waited for
        assert [r.node_id for r in await store.inner.list_nodes("run")] == [node.id, later.id]
        stats = engine.stats()
        assert (stats.saves, stats.in_budget + stats.late) == (2, 2)
        # a rejected one is counted and logged, and the next flush raises
        await engine.save(step(id="bad"), wait=False)
        with pytest.raises(StoreError):
            await engine.flush()
        assert engine.stats().rejected == 1


async def test_a_store_without_an_index_is_listed_from_its_logs() -> None:
    """A store of one's own with only the CheckpointStore methods (no IndexStore): the
    engine works the open runs and the pages out from every log, the same answers an
    indexed store gives; queued run records count for the open runs."""
    plain, indexed = FaultyStore(MemoryStore()), MemoryStore()
    assert not isinstance(plain, IndexStore)
    records = [
        run_record(f"r{n}", status, agent=f"a{n % 2}", at=T0 + timedelta(seconds=n))
        for n, status in enumerate([Status.RUNNING, Status.SUCCESS, Status.PENDING, Status.FAILED])
    ]
    records.append(step_record("thread", "c", at=T0))
    for store in (plain, indexed):
        await store.append(records)
    async with CheckpointEngine(plain) as engine, CheckpointEngine(indexed) as reference:
        assert await engine.open_runs() == await reference.open_runs()
        assert [e.execution_id for e in await engine.open_runs()] == ["r0", "r2"]
        for query in ({"limit": 2}, {"status": "RUNNING"}, {"agent": "a1", "limit": 1}):
            assert await engine.list_page(**query) == await reference.list_page(**query)
        page = await engine.list_page(limit=2)
        rest = await engine.list_page(limit=2, cursor=page.cursor)
        assert [e.execution_id for e in page.entries + rest.entries] == ["r3", "r2", "r1", "thread"]
        plain.gate.clear()  # the store holds the next commit up
        finishing = asyncio.create_task(
            engine.save(ExecutionNode(id="r0/run", execution_id="r0", type=NodeType.MEMORY))
        )
        await until(lambda: engine.stats().backlog_writes == 1, "the save queued")
        assert [e.execution_id for e in await engine.open_runs()] == ["r0", "r2"]  # PENDING
        plain.gate.set()
        await finishing
        with pytest.raises(ConfigError, match="limit must be"):
            await engine.list_page(limit=0)
        with pytest.raises(ConfigError, match="cursor must be a page's cursor"):
            await engine.list_page(cursor=42)  # type: ignore[arg-type]
        late = await engine.list_page(cursor=(T0 + timedelta(seconds=2)).isoformat())
        assert [e.execution_id for e in late.entries] == ["r1", "thread", "r0"]  # below it
        with pytest.raises(ConfigError, match="status must be one of"):
            await engine.list_page(status="DONE")
