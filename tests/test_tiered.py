"""TieredStore: durable once hot, cold filled behind in batches, merged reads, drain, close.

Most tests need no server: a MemoryStore (or a ForgetfulStore, which loses data the way a
Redis server does) is the hot store, SQLite or memory the cold one. The tests named
`test_redis_postgres_*` run Redis over PostgreSQL and skip without both servers
(`-k "not redis and not postgres"` leaves them out).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from livingai import (
    CheckpointEngine,
    CheckpointStore,
    ClosedError,
    ConfigError,
    ExecutionNode,
    MemoryStore,
    NodeRecord,
    NodeType,
    PageQuery,
    PostgresStore,
    RecordRejectedError,
    RecoveryEngine,
    SQLiteStore,
    Status,
    StoreError,
    TieredStore,
)
from livingai.testing import CONFORMANCE_TESTS, Check, assert_same, make_record
from livingai.testing.index_checks import T0, run_record
from tests.conftest import StoreFactory
from tests.faults import FaultyStore, IndexedFaultyStore
from tests.services import (
    POSTGRES_DSN,
    REDIS_URL,
    free_port,
    need_server,
    run_processes,
    unique_name,
)

EXECUTIONS = ["exec-0", "exec-1", "exec-2"]


class ForgetfulStore:
    """A hot store that loses data the way a Redis server does: `forget(n)` keeps only the
    last n records appended (a flush or a restart keeps none); with `keep` set it forgets
    after every append. What it holds is always the most recent part of what it got."""

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep
        self.log: list[NodeRecord] = []
        self.closed = False

    def _held(self) -> list[NodeRecord]:
        if self.closed:
            raise ClosedError("ForgetfulStore was used after close()")
        return self.log

    def forget(self, keep: int = 0) -> None:
        self.log = self.log[max(0, len(self.log) - keep) :] if keep else []

    async def append(self, records: Sequence[NodeRecord]) -> None:
        held = {record.version_id for record in self._held()}
        for record in records:
            if record.version_id not in held:
                held.add(record.version_id)
                self.log.append(record)
        if self.keep is not None:
            self.forget(self.keep)

    async def read(self, node_id: str) -> NodeRecord | None:
        history = await self.history(node_id)
        return history[-1] if history else None

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        latest: dict[str, NodeRecord] = {}  # first-seen order, newest version
        for record in await self.list_versions(execution_id):
            latest[record.node_id] = record
        return list(latest.values())

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        return [record for record in self._held() if record.execution_id == execution_id]

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        versions = await self.list_versions(execution_id)
        return next((r for r in reversed(versions) if r.checkpoint is not None), None)

    async def list_executions(self) -> list[str]:
        return list(dict.fromkeys(record.execution_id for record in self._held()))

    async def history(self, node_id: str) -> list[NodeRecord]:
        return [record for record in self._held() if record.node_id == node_id]

    async def close(self) -> None:
        self.closed = True


class KeptOpen(FaultyStore):
    """A store another TieredStore goes on using: close() leaves it open."""

    async def close(self) -> None:
        pass


class Retaining(FaultyStore):
    """A FaultyStore over a MemoryStore that can delete too: a cold store whose appends
    wait, fail or refuse, for the retention tests."""

    inner: MemoryStore

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        return await self.inner.delete_executions(execution_ids)

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        return await self.inner.drop_checkpoints(execution_id, keep)

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        return await self.inner.delete_nodes(execution_id, node_ids)


def workload() -> list[list[NodeRecord]]:
    """Six batches over three executions: nodes come back as new versions, every other
    round with a checkpoint."""
    return [
        [
            make_record(
                f"exec-{x}",
                f"x{x}-n{step % 4}",
                output=step,
                checkpoint=bytes([0, step]) if step % 2 == 0 else None,
            )
            for x in range(3)
        ]
        for step in range(6)
    ]


async def append_both(stores: Sequence[CheckpointStore], batches: list[list[NodeRecord]]) -> int:
    for batch in batches:
        for store in stores:
            await store.append(batch)
    return sum(len(batch) for batch in batches)


def ids(records: Sequence[NodeRecord]) -> list[str]:
    return [record.version_id for record in records]


async def view(store: CheckpointStore, executions: list[str]) -> dict[str, object]:
    """Every answer `store` gives about `executions`, as version ids."""
    seen: dict[str, object] = {"executions": await store.list_executions()}
    for execution_id in executions:
        versions = await store.list_versions(execution_id)
        latest = await store.latest_checkpoint(execution_id)
        seen[execution_id] = (
            ids(versions),
            ids(await store.list_nodes(execution_id)),
            None if latest is None else latest.version_id,
        )
        for node_id in dict.fromkeys(record.node_id for record in versions):
            read = await store.read(node_id)
            seen[node_id] = (
                None if read is None else read.version_id,
                ids(await store.history(node_id)),
            )
    return seen


async def settle() -> None:
    """Let background tasks run while they need no outside I/O (a few loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def reference() -> AsyncIterator[MemoryStore]:
    """One plain store given the same saves as the tiered one: what its reads must equal."""
    store = MemoryStore()
    yield store
    await store.close()


# -- durability and the cold copy -----------------------------------------------------------


async def test_a_save_is_durable_once_the_hot_store_has_it(tmp_path: Path) -> None:
    hot = MemoryStore()
    cold = FaultyStore(SQLiteStore(tmp_path / "cold.db"), gated=True)
    store = TieredStore(hot, cold, flush_interval_seconds=0)
    record = make_record("exec", "n", checkpoint=b"\x00s")
    await store.append([record])
    assert_same(await hot.read("n"), record)
    assert_same(await store.read("n"), record)
    assert (store.stats().pending_cold, cold.appends) == (1, [])
    assert await cold.inner.read("n") is None
    cold.gate.set()
    await store.drain()
    assert (store.stats().pending_cold, store.stats().moved, cold.appends) == (0, 1, [1])
    assert_same(await cold.inner.read("n"), record)
    await store.close()


async def test_the_cold_store_is_filled_behind_in_batches_in_order(tmp_path: Path) -> None:
    records = [make_record("exec", f"n{i}", output=i) for i in range(10)]
    size = records[0].size
    assert all(record.size == size for record in records)
    cold = FaultyStore(SQLiteStore(tmp_path / "cold.db"), gated=True)
    store = TieredStore(MemoryStore(), cold, batch_bytes=3 * size, flush_interval_seconds=0)
    for record in records:
        await store.append([record])
    assert (store.stats().pending_cold, store.stats().pending_cold_bytes, cold.appends) == (
        10,
        10 * size,
        [],
    )
    cold.gate.set()
    await store.drain()
    # Whatever the mover took before the gate opened, every batch is at most 3 records.
    assert sum(cold.appends) == 10
    assert max(cold.appends) <= 3
    assert len(cold.appends) <= 4
    assert (store.stats().cold_batches, store.stats().moved, store.stats().pending_cold) == (
        len(cold.appends),
        10,
        0,
    )
    assert ids(await cold.inner.list_versions("exec")) == ids(records)
    await store.close()


async def test_small_batches_wait_for_the_interval_unless_drained_or_full() -> None:
    cold = FaultyStore(MemoryStore())
    store = TieredStore(MemoryStore(), cold, batch_bytes=2500, flush_interval_seconds=3600)
    for i in range(3):
        await store.append([make_record("exec", f"small-{i}")])
    await settle()
    assert (cold.appends, store.stats().pending_cold) == ([], 3)
    await store.drain()  # a drain does not wait for the interval
    assert cold.appends == [3]
    big = [make_record("exec", f"big-{i}", checkpoint=bytes(1100)) for i in range(3)]
    await store.append(big)  # 3.3 kB queued: past batch_bytes, so a batch is due now
    await settle()
    assert (cold.appends, store.stats().pending_cold) == ([3, 2], 1)
    await store.close()
    assert cold.appends == [3, 2, 1]


async def test_cold_failures_are_retried_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, reference: MemoryStore
) -> None:
    cold = FaultyStore(SQLiteStore(tmp_path / "cold.db"), failures=3)
    store = TieredStore(MemoryStore(), cold, flush_interval_seconds=0, retry_max_delay_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="livingai"):
        await append_both([store, reference], workload())
        await store.drain()
    assert store.stats().cold_failures == 3
    assert "cold append of" in caplog.text
    assert "succeeded after 3 failures" in caplog.text
    assert await view(cold.inner, EXECUTIONS) == await view(reference, EXECUTIONS)
    await store.close()


async def test_a_failed_hot_append_raises_and_queues_nothing() -> None:
    hot = FaultyStore(MemoryStore(), failures=1)
    store = TieredStore(hot, MemoryStore(), flush_interval_seconds=0)
    record = make_record("exec", "n")
    with pytest.raises(StoreError):
        await store.append([record])
    assert store.stats().pending_cold == 0
    await store.append([record])  # the engine's retry
    await store.drain()
    assert ids(await store.cold.history("n")) == [record.version_id]
    await store.close()


# -- merged reads ---------------------------------------------------------------------------


async def test_reads_fall_back_to_the_cold_store_after_the_hot_store_is_flushed(
    tmp_path: Path,
    reference: MemoryStore,
) -> None:
    store = TieredStore(MemoryStore(), SQLiteStore(tmp_path / "cold.db"), flush_interval_seconds=0)
    await append_both([store, reference], workload())
    await store.drain()
    expected = await view(reference, EXECUTIONS)
    assert await view(store, EXECUTIONS) == expected  # in both stores: nothing twice
    await store.hot.close()
    store.hot = MemoryStore()  # the hot server was flushed, or restarted empty
    assert await view(store, EXECUTIONS) == expected
    # Saves after the flush come after the old ones, and their versions are the latest.
    later = [
        make_record("exec-0", "x0-n1", output="after", checkpoint=b"\x00late"),
        make_record("exec-0", "x0-new", output="new"),
    ]
    await append_both([store, reference], [later])
    assert await view(store, EXECUTIONS) == await view(reference, EXECUTIONS)
    await store.close()
    fresh = TieredStore(MemoryStore(), SQLiteStore(tmp_path / "cold.db"))
    assert await view(fresh, EXECUTIONS) == await view(reference, EXECUTIONS)
    await fresh.close()


async def test_reads_stay_complete_when_the_hot_store_goes_before_the_cold_copy(
    tmp_path: Path,
    reference: MemoryStore,
) -> None:
    cold = FaultyStore(SQLiteStore(tmp_path / "cold.db"), gated=True)
    store = TieredStore(MemoryStore(), cold, flush_interval_seconds=0)
    count = await append_both([store, reference], workload())
    await store.hot.close()
    store.hot = MemoryStore()
    assert store.stats().pending_cold == count
    expected = await view(reference, EXECUTIONS)
    assert await view(store, EXECUTIONS) == expected  # from this process's queue
    cold.gate.set()
    await store.drain()
    assert await view(store, EXECUTIONS) == expected  # from the cold store
    await store.close()
    fresh = TieredStore(MemoryStore(), SQLiteStore(tmp_path / "cold.db"))
    assert await view(fresh, EXECUTIONS) == expected
    await fresh.close()


async def test_the_cold_checkpoint_wins_over_an_older_one_the_hot_store_came_back_with(
    tmp_path: Path,
) -> None:
    """A hot server restored from an old snapshot holds an older checkpoint than cold."""
    store = TieredStore(MemoryStore(), SQLiteStore(tmp_path / "cold.db"), flush_interval_seconds=0)
    first = make_record("exec", "a", checkpoint=b"\x00first")
    second = make_record("exec", "b", checkpoint=b"\x00second")
    await store.append([first])
    await store.append([second])
    await store.drain()
    await store.hot.close()
    store.hot = MemoryStore()
    await store.hot.append([first])  # the snapshot was taken between the two saves
    assert_same(await store.latest_checkpoint("exec"), second)
    assert ids(await store.list_versions("exec")) == ids([first, second])
    assert ids(await store.list_nodes("exec")) == ids([first, second])
    await store.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_merged_reads_equal_one_store_through_flushes_and_moves(
    seed: int, tmp_path: Path, reference: MemoryStore
) -> None:
    """Random saves, partial losses of the hot store, a cold store that stalls and
    resumes: after every step each read equals that of one store given the same saves."""
    rng = random.Random(seed)
    hot = ForgetfulStore()
    cold = FaultyStore(SQLiteStore(tmp_path / "cold.db"))
    store = TieredStore(hot, cold, batch_bytes=600, flush_interval_seconds=0)
    for step in range(40):
        roll = rng.random()
        if roll < 0.15:
            hot.forget(rng.randint(0, len(hot.log)))
        elif roll < 0.25 and cold.gate.is_set():
            await store.drain()
        elif roll < 0.35:
            if cold.gate.is_set():
                cold.gate.clear()
            else:
                cold.gate.set()
        else:
            batch = []
            for _ in range(rng.randint(1, 3)):
                execution_id = rng.choice(EXECUTIONS)
                checkpoint = bytes([0, step]) if rng.random() < 0.4 else None
                node_id = f"{execution_id}-n{rng.randrange(6)}"
                batch.append(make_record(execution_id, node_id, output=step, checkpoint=checkpoint))
            await append_both([store, reference], [batch])
        assert await view(store, EXECUTIONS) == await view(reference, EXECUTIONS), f"step {step}"
    cold.gate.set()
    await store.drain()
    assert await view(cold.inner, EXECUTIONS) == await view(reference, EXECUTIONS)
    await store.close()


# -- the conformance suite, with the merge at work ----------------------------------------

HOT_STORES: dict[str, Callable[[], CheckpointStore]] = {
    "memory": MemoryStore,
    "keeps-last-2": lambda: ForgetfulStore(keep=2),  # loses all but the 2 latest records
    "keeps-none": lambda: ForgetfulStore(keep=0),  # loses everything at once
}


@pytest.fixture(
    params=[(hot, interval) for hot in HOT_STORES for interval in (0.0, 3600.0)],
    ids=lambda p: f"{p[0]}-hot-{'moving' if p[1] == 0 else 'queued'}",
)
async def local_tiered(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[TieredStore]:
    """Memory hot over SQLite cold, and hot stores that lose data; the cold store fills
    as it goes ("moving") or only at close ("queued")."""
    hot, interval = request.param
    store = TieredStore(
        HOT_STORES[hot](), SQLiteStore(tmp_path / "cold.db"), flush_interval_seconds=interval
    )
    yield store
    await store.close()


@pytest.mark.parametrize("check", CONFORMANCE_TESTS, ids=lambda check: check.__name__)
async def test_tiered_store_conforms(check: Check, local_tiered: TieredStore) -> None:
    await check(local_tiered)


# -- lifecycle ------------------------------------------------------------------------------


async def test_close_drains_then_closes_both_stores(tmp_path: Path, reference: MemoryStore) -> None:
    hot = MemoryStore()
    store = TieredStore(hot, SQLiteStore(tmp_path / "cold.db"), flush_interval_seconds=3600)
    count = await append_both([store, reference], workload())
    assert (store.stats().pending_cold, store.stats().moved) == (count, 0)
    await store.close()
    assert (store.stats().pending_cold, store.stats().moved, store.stats().abandoned) == (
        0,
        count,
        0,
    )
    with pytest.raises(ClosedError):
        await hot.read("x0-n0")
    with pytest.raises(ClosedError):
        await store.read("x0-n0")
    await store.close()  # twice is harmless
    cold = SQLiteStore(tmp_path / "cold.db")
    assert await view(cold, EXECUTIONS) == await view(reference, EXECUTIONS)
    await cold.close()


async def test_close_gives_up_after_its_timeout_and_counts_and_logs_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cold = FaultyStore(SQLiteStore(tmp_path / "cold.db"), gated=True)  # never opens
    store = TieredStore(MemoryStore(), cold, flush_interval_seconds=0)
    await store.append([make_record("exec", f"stuck-{i}") for i in range(3)])
    with caplog.at_level(logging.ERROR, logger="livingai"):
        await store.close(timeout_seconds=0.05)
    assert (store.stats().abandoned, store.stats().pending_cold, store.stats().moved) == (3, 0, 0)
    assert "3 records were NOT copied to the cold store" in caplog.text
    assert "stuck-0" in caplog.text
    with pytest.raises(ClosedError):
        await cold.inner.read("stuck-0")


async def test_drain_raises_when_the_cold_store_was_closed_under_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cold = MemoryStore()
    await cold.close()
    store = TieredStore(MemoryStore(), cold, flush_interval_seconds=0)
    await store.append([make_record("exec", "n")])
    with caplog.at_level(logging.ERROR, logger="livingai"):
        with pytest.raises(StoreError, match="NOT copied to the cold store"):
            await store.drain()
        await store.close()
    assert store.stats().abandoned == 1
    assert "the cold append was refused" in caplog.text


async def test_resync_copies_what_a_stopped_process_left_in_the_hot_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, reference: MemoryStore
) -> None:
    hot = MemoryStore()
    first_cold = SQLiteStore(tmp_path / "cold.db")
    gate = KeptOpen(first_cold)
    first = TieredStore(KeptOpen(hot), gate, flush_interval_seconds=0)
    batches = workload()
    await append_both([first, reference], batches[:3])
    await first.drain()  # the first half reaches the cold store...
    gate.gate.clear()
    left = await append_both([first, reference], batches[3:])  # ...the second does not
    with caplog.at_level(logging.ERROR, logger="livingai"):
        await first.close(timeout_seconds=0)  # the process stops
    assert first.stats().abandoned == left
    await first_cold.close()

    second = TieredStore(hot, SQLiteStore(tmp_path / "cold.db"), flush_interval_seconds=0)
    expected = await view(reference, EXECUTIONS)
    assert await view(second, EXECUTIONS) == expected  # hot-only records are read meanwhile
    assert await second.resync() == left
    assert await second.resync() == 0  # queued already
    await second.drain()
    assert await second.resync() == 0
    await second.close()
    cold = SQLiteStore(tmp_path / "cold.db")
    assert await view(cold, EXECUTIONS) == expected
    await cold.close()


def test_a_loop_ending_without_close_still_fills_the_cold_store(tmp_path: Path) -> None:
    """asyncio.run returning without close(): the mover copies the queue as it is
    cancelled; the store then works on a new loop."""
    store = TieredStore(
        MemoryStore(), SQLiteStore(tmp_path / "cold.db"), flush_interval_seconds=3600
    )
    records = [make_record("exec", f"n{i}") for i in range(5)]

    async def save() -> None:
        await store.append(records)

    asyncio.run(save())
    assert (store.stats().pending_cold, store.stats().moved) == (0, 5)

    async def read_and_close() -> list[NodeRecord]:
        await store.append([make_record("exec", "later")])
        await store.close()
        cold = SQLiteStore(tmp_path / "cold.db")
        try:
            return await cold.list_versions("exec")
        finally:
            await cold.close()

    stored = asyncio.run(read_and_close())
    assert [record.node_id for record in stored] == [*(f"n{i}" for i in range(5)), "later"]


def test_bad_settings_are_refused() -> None:
    for setting in (
        {"batch_bytes": 0},
        {"flush_interval_seconds": -1.0},
        {"retry_max_delay_seconds": 0.0},
        {"close_timeout_seconds": -1.0},
    ):
        name = next(iter(setting))
        with pytest.raises(ValueError, match=name):
            TieredStore(MemoryStore(), MemoryStore(), **setting)


async def test_an_engine_over_a_tiered_store_recovers_from_the_cold_store_alone(
    tmp_path: Path,
) -> None:
    def node(kind: NodeType) -> ExecutionNode:
        return ExecutionNode(execution_id="run", type=kind, status=Status.SUCCESS)

    prompt, resume, charge = node(NodeType.PROMPT), node(NodeType.MEMORY), node(NodeType.TOOL)
    cold = tmp_path / "cold.db"
    async with CheckpointEngine(TieredStore(MemoryStore(), SQLiteStore(cold))) as engine:
        await engine.save(prompt, state=b"s0")
        await engine.save(resume, state=b"s1")
        await engine.save(charge)
    # A new process whose hot store is empty: everything comes from the cold store.
    async with CheckpointEngine(TieredStore(MemoryStore(), SQLiteStore(cold))) as fresh:
        plan = await RecoveryEngine(fresh).plan("run")
        assert plan.resume_node_id == resume.id
        assert plan.state == b"s1"
        assert [n.id for n in plan.skipped_nodes] == [charge.id]
        loaded = await fresh.load(prompt.id)
        assert loaded is not None
        assert loaded.state == b"s0"


# -- Redis over PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[StoreFactory, StoreFactory, str]]:
    """Factories of Redis (hot) and PostgreSQL (cold) stores under one fresh name."""
    need_server("Redis", REDIS_URL, 6379)
    need_server("PostgreSQL", POSTGRES_DSN, 5432)
    from tests.tiered_support import tier_factories

    name = unique_name("livingai_test")
    with tier_factories(REDIS_URL, POSTGRES_DSN, name) as (hot, cold):
        yield hot, cold, name


async def test_redis_postgres_every_execution_is_complete_after_the_hot_keys_go(
    served: tuple[StoreFactory, StoreFactory, str],
) -> None:
    from tests.redis_support import Saved, delete_prefix, run_agent, verify_saved

    make_hot, make_cold, name = served
    saved: Saved = {}
    async with CheckpointEngine(TieredStore(make_hot(), make_cold())) as engine:
        await asyncio.gather(*(run_agent(engine, f"agent-{a}", 12, saved) for a in range(4)))
    # close() drained the queue into PostgreSQL.
    executions = list(saved)
    reader = TieredStore(make_hot(), make_cold())
    expected = await view(reader, executions)
    await reader.close()
    assert delete_prefix(REDIS_URL, name) > 0  # the Redis data is gone (only this test's)
    fresh = TieredStore(make_hot(), make_cold())
    assert await view(fresh, executions) == expected
    assert await verify_saved(fresh, saved) == []
    await fresh.close()
    cold = make_cold()
    assert await view(cold, executions) == expected
    await cold.close()


async def test_redis_postgres_a_read_sees_what_another_process_wrote_since(
    served: tuple[StoreFactory, StoreFactory, str],
) -> None:
    """A node this store still holds for the cold store may have been moved on by another
    process: the hot store, which has both, answers, not this store's queue."""
    make_hot, make_cold, _ = served
    first = TieredStore(make_hot(), make_cold(), flush_interval_seconds=3600)
    second = TieredStore(make_hot(), make_cold())
    try:
        await first.append([make_record("shared", "head", output=1)])
        assert first.stats().pending_cold == 1  # still waiting for the cold store
        newer = make_record("shared", "head", output=2)
        await second.append([newer])
        assert_same(await first.read("head"), newer)
    finally:
        await first.close()
        await second.close()


async def test_redis_postgres_reads_stay_complete_when_the_hot_keys_go_first(
    served: tuple[StoreFactory, StoreFactory, str],
    reference: MemoryStore,
) -> None:
    from tests.redis_support import delete_prefix

    make_hot, make_cold, name = served
    cold = FaultyStore(make_cold(), gated=True)
    store = TieredStore(make_hot(), cold, flush_interval_seconds=0)
    await append_both([store, reference], workload())
    assert delete_prefix(REDIS_URL, name) > 0  # before anything reached PostgreSQL
    expected = await view(reference, EXECUTIONS)
    assert await view(store, EXECUTIONS) == expected  # from the queue
    cold.gate.set()
    await store.drain()
    await store.close()
    fresh = TieredStore(make_hot(), make_cold())
    assert await view(fresh, EXECUTIONS) == expected
    await fresh.close()


_TIERED_WRITER = """
import asyncio, sys
from livingai import (CheckpointEngine, ExecutionNode, NodeType, PostgresStore, RedisStore,
                      Status, TieredStore)

async def main(url: str, dsn: str, name: str, worker: str) -> None:
    store = TieredStore(RedisStore(url, prefix=name), PostgresStore(dsn, schema=name))
    async with CheckpointEngine(store, overhead_budget_ms=5) as engine:
        async def agent(n: int) -> None:
            for i in range(15):
                node = ExecutionNode(execution_id=f"{worker}-{n}", type=NodeType.PROMPT,
                                     status=Status.SUCCESS, output=i)
                await engine.save(node, state=bytes(3000))
        await asyncio.gather(*(agent(n) for n in range(6)))
    print("done", engine.stats().saves, engine.stats().abandoned, store.stats().abandoned)

asyncio.run(main(*sys.argv[1:]))
"""


def test_redis_postgres_several_processes_lose_nothing(
    served: tuple[StoreFactory, StoreFactory, str],
) -> None:
    make_hot, make_cold, name = served
    command = [sys.executable, "-c", _TIERED_WRITER, REDIS_URL, POSTGRES_DSN, name]
    for out, _ in run_processes([[*command, f"w{n}"] for n in range(3)], timeout=120):
        assert out.split() == ["done", "90", "0", "0"]

    async def counts(make: StoreFactory) -> dict[str, int]:
        store = make()
        try:
            return {e: len(await store.list_nodes(e)) for e in await store.list_executions()}
        finally:
            await store.close()

    want = {f"w{w}-{n}": 15 for w in range(3) for n in range(6)}
    assert asyncio.run(counts(make_cold)) == want  # every process drained into PostgreSQL
    assert asyncio.run(counts(make_hot)) == want


# -- hardening: a cold store that is down or refuses a record -------------------------------


async def test_reads_serve_the_hot_store_while_the_cold_one_is_down(
    served: tuple[StoreFactory, StoreFactory, str], caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL unreachable: saves are acknowledged by Redis, and a plan of an execution
    Redis holds is made at once, not after the cold store's timeout."""
    make_hot, _, name = served
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    store = TieredStore(
        make_hot(),
        PostgresStore(dead, schema=name),
        flush_interval_seconds=0,
        close_timeout_seconds=0.2,
    )
    async with CheckpointEngine(store, hot_capacity=0, retry_max_delay_seconds=0.05) as engine:
        first = ExecutionNode(execution_id="hot-only", type=NodeType.PROMPT)
        tool = ExecutionNode(execution_id="hot-only", type=NodeType.TOOL, status=Status.SUCCESS)
        await engine.save(first, state=b"in redis", durable=True)
        await engine.save(tool, durable=True)
        with caplog.at_level(logging.WARNING, logger="livingai"):
            async with asyncio.timeout(5):
                plan = await RecoveryEngine(engine).plan("hot-only")
                loaded = await engine.load(first.id)
        assert plan.resume_node_id == first.id
        assert plan.state == b"in redis"
        assert [n.id for n in plan.skipped_nodes] == [tool.id]
        assert loaded is not None
        assert loaded.state == b"in redis"
        assert "reads serve the hot store" in caplog.text
        assert store.stats().cold_failures > 0
    assert store.stats().abandoned == 2  # never copied: counted, logged, in Redis only


async def test_a_record_the_cold_store_refuses_is_rejected_and_the_rest_copied() -> None:
    async with (
        MemoryStore() as hot,
        TieredStore(
            hot,
            FaultyStore(MemoryStore(), poison=frozenset({"refused"})),
            flush_interval_seconds=0,
        ) as store,
    ):
        records = [make_record("x", name) for name in ("a", "refused", "b")]
        await store.append(records)
        with pytest.raises(RecordRejectedError):
            await store.drain()
        stats = store.stats()
        assert (stats.moved, stats.rejected, stats.pending_cold) == (2, 1, 0)
        assert ids(await store.cold.list_versions("x")) == ids([records[0], records[2]])
        # The hot store still has it: reads list it, after what the cold store holds.
        assert sorted(ids(await store.list_versions("x"))) == sorted(ids(records))


# -- retention ------------------------------------------------------------------------------


async def test_retention_waits_for_the_cold_copy_then_applies_to_both_stores() -> None:
    cold = Retaining(MemoryStore(), gated=True)
    async with MemoryStore() as hot, TieredStore(hot, cold, flush_interval_seconds=0) as store:
        records = [make_record("x", f"n{i}", checkpoint=bytes([0, i])) for i in range(3)]
        await store.append(records)
        await store.append([make_record("y", "other")])
        deleting = asyncio.create_task(store.delete_executions(["x"]))
        await settle()
        # Deleting now would leave the queued copies to land in the cold store after it.
        assert not deleting.done()
        cold.gate.set()
        assert await deleting == 3
        for one in (hot, cold.inner, store):
            assert await one.list_versions("x") == []
            assert await one.list_executions() == ["y"]
        await store.append([make_record("y", "newer", checkpoint=b"\x00y2")])
        assert await store.drop_checkpoints("y", 0) == 1  # the queued one is dropped too
        for one in (hot, cold.inner, store):
            assert await one.latest_checkpoint("y") is None


async def test_retention_goes_on_past_a_record_the_cold_store_refused() -> None:
    cold = Retaining(MemoryStore(), poison=frozenset({"refused"}))
    async with MemoryStore() as hot, TieredStore(hot, cold, flush_interval_seconds=0) as store:
        await store.append([make_record("x", name) for name in ("a", "refused", "b")])
        assert await store.delete_executions(["x"]) == 3  # the hot store held all three
        assert store.stats().rejected == 1
        assert await store.list_versions("x") == []
        assert await hot.list_versions("x") == []


async def test_retention_needs_both_stores_able_to_delete() -> None:
    for hot, cold, named in (
        (MemoryStore(), FaultyStore(MemoryStore()), "the cold store FaultyStore"),
        (FaultyStore(MemoryStore()), MemoryStore(), "the hot store FaultyStore"),
    ):
        async with TieredStore(hot, cold) as store:
            await store.append([make_record("x")])
            with pytest.raises(ConfigError, match=named):
                await store.delete_executions(["x"])
            with pytest.raises(ConfigError, match=named):
                await store.drop_checkpoints("x", 1)
            assert len(await store.list_versions("x")) == 1


async def test_the_index_holds_while_the_cold_store_lags_and_after_the_hot_one_is_lost(
    tmp_path: Path,
) -> None:
    """The cold store has copied a run's start, not its end: the run is not open, and a
    page of running runs leaves it out; an entry only the cold store has is checked
    against the newest run record. A hot store that lost everything: the cold one answers."""
    cold = IndexedFaultyStore(SQLiteStore(tmp_path / "cold.db"))
    store = TieredStore(MemoryStore(), cold, flush_interval_seconds=0)
    try:
        await store.append([run_record("r1", Status.RUNNING, at=T0)])
        await store.drain()
        cold.gate.clear()  # the cold store stops taking copies
        await store.append([run_record("r1", Status.SUCCESS, at=T0)])
        await store.append([run_record("r2", Status.RUNNING, at=T0 + timedelta(seconds=1))])
        lagging = await cold.list_page(PageQuery())  # what the cold store has copied
        assert [e.status for e in lagging.entries] == ["RUNNING"]
        assert [e.execution_id for e in await store.open_runs()] == ["r2"]
        running = await store.list_page(PageQuery(status="RUNNING"))
        assert [e.execution_id for e in running.entries] == ["r2"]
        done = await store.list_page(PageQuery(status="SUCCESS"))
        assert [(e.execution_id, e.status) for e in done.entries] == [("r1", "SUCCESS")]
    finally:
        cold.gate.set()  # the copies land (also when an assertion above failed)
        await store.close()
    restarted = TieredStore(MemoryStore(), SQLiteStore(tmp_path / "cold.db"))  # hot: empty
    try:
        page = await restarted.list_page(PageQuery(limit=1))
        assert [(e.execution_id, e.status) for e in page.entries] == [("r2", "RUNNING")]
        assert page.cursor is not None
        rest = await restarted.list_page(PageQuery(limit=1, cursor=page.cursor))
        assert [(e.execution_id, e.status) for e in rest.entries] == [("r1", "SUCCESS")]
        assert [e.execution_id for e in await restarted.open_runs()] == ["r2"]
    finally:
        await restarted.close()
