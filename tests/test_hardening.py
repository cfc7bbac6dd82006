"""The promises a careful user and a hostile input test: no save lost silently, one bad
record never blocks the rest, every wait bounded, every save counted once. The
store-specific halves (a real record a real server refuses, a store that cannot work)
are in each store's own test file."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from livingai import (
    BacklogFullError,
    CheckpointEngine,
    EngineStats,
    ExecutionNode,
    InvalidNodeError,
    MemoryStore,
    NodeType,
    RecordRejectedError,
    SQLiteStore,
    Status,
    StoreError,
    StoreLimits,
)
from tests.conftest import StoreFactory
from tests.faults import FaultyStore
from tests.services import ROOT, until


def step(execution_id: str = "run", node_id: str | None = None, **fields: Any) -> ExecutionNode:
    node = ExecutionNode(
        execution_id=execution_id, type=NodeType.PROMPT, status=Status.SUCCESS, **fields
    )
    if node_id is not None:
        node.id = node_id
    return node


def balanced(stats: EngineStats) -> bool:
    """Every save ended as exactly one thing, or is still queued."""
    return stats.saves == (
        stats.in_budget
        + stats.late
        + stats.rejected
        + stats.refused
        + stats.abandoned
        + stats.backlog_writes
    )


# -- 1. one record the store cannot accept --------------------------------------------------


async def test_a_rejected_record_is_isolated_the_rest_commit_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore(MemoryStore(), gated=True, poison=frozenset({"bad-3", "bad-7"}))
    async with CheckpointEngine(store, overhead_budget_ms=1) as engine:
        ids = [f"bad-{i}" if i in (3, 7) else f"good-{i}" for i in range(10)]
        for node_id in ids:
            assert await engine.save(step(node_id=node_id), state=b"s") is False
        store.gate.set()  # the ten go to the store as one batch
        with (
            caplog.at_level(logging.ERROR, logger="livingai"),
            pytest.raises(RecordRejectedError, match="injected rejection of bad-3"),
        ):
            await engine.flush()
        good = [node_id for node_id in ids if node_id.startswith("good")]
        assert [r.node_id for r in await store.inner.list_nodes("run")] == good
        stats = engine.stats()
        assert (stats.rejected, stats.late, stats.backlog_writes) == (2, 8, 0)
        assert balanced(stats)
        for bad in ("bad-3", "bad-7"):
            assert f"node {bad} (execution run" in caplog.text
            assert await engine.load(bad) is None  # not served from the hot cache either
        # Whoever waits for a rejected write hears of it; later saves go through.
        with pytest.raises(RecordRejectedError):
            await engine.save(step(node_id="bad-3"), durable=True)
        assert await engine.save(step(node_id="after"), durable=True) is True
        await engine.flush()  # nothing failed since: no error


async def test_a_store_that_rejects_everything_does_not_block_the_queue() -> None:
    everything = frozenset(f"n{i}" for i in range(50))
    store = FaultyStore(MemoryStore(), poison=everything)
    async with CheckpointEngine(store, overhead_budget_ms=1) as engine:
        results = await asyncio.gather(
            *(engine.save(step(node_id=f"n{i}")) for i in range(50)), return_exceptions=True
        )
        with pytest.raises(RecordRejectedError):
            await engine.save(step(node_id="n0"), durable=True)
        await until(lambda: engine.stats().backlog_writes == 0, "the queue to empty")
        stats = engine.stats()
        assert stats.rejected == 51
        assert all(r is False or isinstance(r, RecordRejectedError) for r in results)
        assert balanced(stats)


class TinyStore(MemoryStore):
    limits = StoreLimits(max_body_bytes=200, max_state_bytes=1000, max_id_bytes=40)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("id", "i" * 41, "id is 41 bytes; MemoryStore.. keeps ids of at most 40 bytes"),
        ("id", "é" * 21, "id is 42 bytes"),  # bytes, not characters
        ("execution_id", "x" * 41, "execution_id is 41 bytes"),
        ("parent_id", "p" * 41, "parent_id is 41 bytes"),
        ("output", "o" * 200, "take 2"),
        ("state", b"s" * 1001, "its state is 1001 bytes; .* keeps states of at most 1000"),
    ],
)
async def test_values_over_the_store_limits_are_refused_at_save(
    field: str, value: Any, says: str
) -> None:
    async with TinyStore() as store, CheckpointEngine(store) as engine:
        node = step()
        state = value if field == "state" else None
        if field != "state":
            setattr(node, field, value)
        with pytest.raises(InvalidNodeError, match=says):
            await engine.save(node, state=state)
        assert await store.list_executions() == []
        assert engine.stats().saves == 0


async def test_every_store_of_ours_caps_ids_at_1024_bytes(store_factory: StoreFactory) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        with pytest.raises(InvalidNodeError, match="at most 1024 bytes"):
            await engine.save(step(execution_id="x" * 1025))
        await engine.save(step(execution_id="x" * 1024), durable=True)  # the limit itself
        assert await engine.list_executions() == ["x" * 1024]


# -- 3. close() cancelled, close() bounded ------------------------------------------------


async def test_a_cancelled_close_abandons_and_logs_and_a_second_close_finishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = MemoryStore()
    store = FaultyStore(inner, gated=True)
    engine = CheckpointEngine(store, overhead_budget_ms=1)
    nodes = [step(node_id=f"queued-{i}") for i in range(3)]
    for node in nodes:
        assert await engine.save(node) is False
    with caplog.at_level(logging.ERROR, logger="livingai"), pytest.raises(TimeoutError):
        await asyncio.wait_for(engine.close(), 0.05)
    stats = engine.stats()
    assert (stats.abandoned, stats.backlog_writes) == (3, 0)
    assert balanced(stats)
    assert "3 queued writes were NOT stored: close() was cancelled" in caplog.text
    assert all(node.id in caplog.text for node in nodes)
    await engine.close()  # a second close() finishes whatever the first left undone
    assert inner.closed


async def test_ctrl_c_in_async_with_counts_and_logs_what_it_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ctrl-C under asyncio.run cancels the main task; a second Ctrl-C cancels close()."""
    store = FaultyStore(MemoryStore(), gated=True)
    engine = CheckpointEngine(store, overhead_budget_ms=1)
    saved = asyncio.Event()

    async def agent() -> None:
        async with engine:
            await engine.save(step(node_id="in-flight"))
            saved.set()
            await asyncio.Event().wait()  # the agent works until interrupted

    task = asyncio.create_task(agent())
    await saved.wait()
    task.cancel()  # first Ctrl-C: the body stops, __aexit__ starts close()
    await until(lambda: engine.closed, "close() to start")
    task.cancel()  # second Ctrl-C: close() itself is interrupted
    with caplog.at_level(logging.ERROR, logger="livingai"), pytest.raises(asyncio.CancelledError):
        await task
    assert engine.stats().abandoned == 1
    assert "1 queued writes were NOT stored: close() was cancelled" in caplog.text
    assert "in-flight" in caplog.text


async def test_close_is_bounded_by_default(caplog: pytest.LogCaptureFixture) -> None:
    store = FaultyStore(MemoryStore(), failures=10**9)  # down for good
    engine = CheckpointEngine(
        store, overhead_budget_ms=1, retry_max_delay_seconds=0.01, close_timeout_seconds=0.2
    )
    await engine.save(step(node_id="never"))
    await engine.close()  # no argument: close_timeout_seconds applies
    assert engine.stats().abandoned == 1
    assert "close() gave up after 0.2s" in caplog.text


# -- 4. SIGTERM -----------------------------------------------------------------------------

_SIGTERM_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from livingai import CheckpointEngine, ExecutionNode, NodeType, SQLiteStore, Status

    class Slow:  # every commit takes 20 ms: a burst leaves a backlog
        def __init__(self, inner):
            self.inner = inner
        def __getattr__(self, name):
            return getattr(self.inner, name)
        async def append(self, records):
            await asyncio.sleep(0.02)
            await self.inner.append(records)

    async def main(path, handle):
        engine = CheckpointEngine(
            Slow(SQLiteStore(path)), overhead_budget_ms=1, max_batch_bytes=2000,
            handle_sigterm=handle == "on",
        )
        late = 0
        for i in range(300):
            node = ExecutionNode(execution_id="burst", type=NodeType.PROMPT,
                                 status=Status.SUCCESS, id=f"n{i:03d}", output="x" * 100)
            late += not await engine.save(node)
        print(f"returned-false {late} queued {engine.stats().backlog_writes}", flush=True)
        await asyncio.Event().wait()  # until the signal

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _burst_then_sigterm(path: Path, handle: str) -> tuple[int, str, int]:
    """Run the child, SIGTERM it once its burst returned; its exit code, stderr and how
    many of its 300 saves are in the file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with subprocess.Popen(
        [sys.executable, "-c", _SIGTERM_CHILD, str(path), handle],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("returned-false"), line
        queued = int(line.split()[3])
        assert queued > 50, line  # a real backlog: many saves were still queued
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    with closing(sqlite3.connect(path)) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM nodes").fetchone()
    return child.returncode, err, int(stored)


def test_sigterm_stores_every_queued_save_then_exits_as_sigterm(tmp_path: Path) -> None:
    code, err, stored = _burst_then_sigterm(tmp_path / "term.db", "on")
    assert code == -signal.SIGTERM  # the usual status: killed by SIGTERM
    assert stored == 300, err
    assert "SIGTERM: storing the queued writes" in err
    assert "NOT stored" not in err


def test_without_the_handler_sigterm_ends_the_process_at_once(tmp_path: Path) -> None:
    code, err, stored = _burst_then_sigterm(tmp_path / "term.db", "off")
    assert code == -signal.SIGTERM
    assert stored < 300  # what was queued went with the process, as documented
    assert "SIGTERM" not in err


# -- 8. every save counted once -------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_counts_add_up_under_load_at_every_moment(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    poison = frozenset(f"a{a}-s{s}" for a in range(40) for s in range(50) if rng.random() < 0.02)
    store = FaultyStore(SQLiteStore(tmp_path / "load.db"), poison=poison)
    engine = CheckpointEngine(
        store, overhead_budget_ms=rng.choice([0.5, 2.0]), max_backlog_bytes=400_000
    )
    returned: dict[str, int] = {"true": 0, "false": 0, "raised": 0}
    refused: set[str] = set()

    async def agent(number: int) -> None:
        for i in range(50):
            node = step(f"agent-{number}", node_id=f"a{number}-s{i}")
            try:
                ok = await engine.save(node, state=os.urandom(rng.choice([10, 3000, 20_000])))
                returned["true" if ok else "false"] += 1
            except BacklogFullError:
                refused.add(node.id)
            except StoreError:
                returned["raised"] += 1
            if i % 7 == 0:
                assert balanced(engine.stats())
            if i % 10 == 0:
                store.gate.clear()
                await asyncio.sleep(0)
                store.gate.set()

    await asyncio.gather(*(agent(n) for n in range(40)))
    assert balanced(engine.stats())
    await engine.close()
    stats = engine.stats()
    assert balanced(stats)
    assert stats.backlog_writes == 0
    assert stats.saves == 2000
    assert stats.in_budget == returned["true"]  # True means committed in time, exactly
    assert stats.in_budget + stats.late + stats.rejected + stats.refused == 2000
    assert stats.refused == len(refused)
    assert stats.rejected == len(poison - refused)  # every poisoned save that was queued


# -- 10. the node's state, loaded or latest ----------------------------------------------


async def test_a_save_without_a_state_keeps_the_node_state(
    persistent_factory: StoreFactory,
) -> None:
    """load() and latest() agree: the state of a node is the newest one it was saved with."""
    async with CheckpointEngine(persistent_factory(), hot_capacity=0) as engine:
        node = step("agree")
        await engine.save(node, state=b"s")
        node.status = Status.FAILED
        await engine.save(node)  # a status change, no new state
        for engine_ in (engine,):
            loaded = await engine_.load(node.id)
            latest = await engine_.latest("agree")
            assert loaded is not None
            assert latest is not None
            assert (loaded.node.status, loaded.state) == (Status.FAILED, b"s")
            assert latest.state == loaded.state
        await engine.flush()
    async with CheckpointEngine(persistent_factory()) as fresh:  # from the store alone
        loaded = await fresh.load(node.id)
        assert loaded is not None
        assert (loaded.node.status, loaded.state) == (Status.FAILED, b"s")
        never = step("agree")
        await fresh.save(never)
        plain = await fresh.load(never.id)
        assert plain is not None
        assert plain.state is None


async def test_a_preframed_checkpoint_is_checked_whole() -> None:
    async with CheckpointEngine(MemoryStore()) as engine:
        node = step()
        await engine.save(node, state=b"x" * 100)
        loaded = await engine.load(node.id)
        assert loaded is not None
        assert loaded.node.checkpoint is not None
        good = loaded.node.checkpoint
        damaged = good[:-3] + bytes(3)  # right codec byte, wrong payload
        bad = step(checkpoint=damaged)
        with pytest.raises(InvalidNodeError, match="is not a blob framed by a livingai codec"):
            await engine.save(bad)
        again = step(checkpoint=good)
        await engine.save(again)  # a whole frame is taken as is
        kept = await engine.load(again.id)
        assert kept is not None
        assert kept.state == b"x" * 100
