"""PostgresStore specifics, against real servers: the shared one at POSTGRES_DSN, and
private clusters this file starts, SIGKILLs and restarts.

The conformance suite and the engine and recovery tests run against PostgreSQL too, via
the "postgres" store kind of conftest.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from livingai import (
    CheckpointCorruptError,
    CheckpointEngine,
    ClosedError,
    ExecutionNode,
    InvalidNodeError,
    NodeRecord,
    NodeType,
    PageQuery,
    PostgresStore,
    RecordRejectedError,
    RecoveryEngine,
    Status,
    StoreError,
    StoreUnusableError,
)
from livingai._stores.postgres_sql import SCHEMA_VERSION, mask_dsn, quote_ident, scrub, statements
from livingai.testing import assert_same, make_record
from livingai.testing.index_checks import run_record, scanned, step_record, walk
from tests.faults import FaultyStore
from tests.postgres_support import PrivateCluster, drop_schema
from tests.services import (
    POSTGRES_DSN,
    free_port,
    need_server,
    run_processes,
    unique_name,
    until,
)
from tests.test_package import _BLOCKING_PRELUDE, _marked_lines, _run_python


def step(execution_id: str, **fields: Any) -> ExecutionNode:
    return ExecutionNode(
        execution_id=execution_id, type=NodeType.PROMPT, status=Status.SUCCESS, **fields
    )


async def fetch(dsn: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (not the store's); its rows, if any."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query, args or None)
        return [] if cursor.description is None else await cursor.fetchall()


async def version_counts(dsn: str, schema: str) -> Counter[str]:
    """How many stored versions each node has."""
    rows = await fetch(dsn, f"SELECT node_id, count(*) FROM {quote_ident(schema)}.nodes GROUP BY 1")
    return Counter({str(node_id): int(count) for node_id, count in rows})


@pytest.fixture
def shared() -> Iterator[str]:
    """A fresh schema name on the shared server, dropped afterwards."""
    need_server("PostgreSQL", POSTGRES_DSN, 5432)
    schema = unique_name("livingai_test")
    try:
        yield schema
    finally:
        drop_schema(POSTGRES_DSN, schema)


@pytest.fixture
async def shared_store(shared: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    try:
        yield store
    finally:
        await store.close()


async def run_agents(
    engine: CheckpointEngine,
    agents: int,
    saves: int,
    saved: list[str],
    on_save: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """`agents` agents each save `saves` new nodes with a state; node ids go to `saved`."""

    async def agent(number: int) -> None:
        for index in range(saves):
            node = step(f"agent-{number}", output={"index": index})
            await engine.save(node, state=os.urandom(200))
            saved.append(node.id)
            if on_save is not None:
                await on_save(len(saved))

    await asyncio.gather(*(agent(n) for n in range(agents)))


# -- 1. the server is down when the store starts ---------------------------------------------


@pytest.mark.timeout(120)
async def test_saves_while_the_server_is_down_are_stored_once_it_is_up() -> None:
    with PrivateCluster() as cluster:  # initialised, not started: nothing listens yet
        store = PostgresStore(cluster.dsn, schema="lv", timeout=0.5)
        engine = CheckpointEngine(store, overhead_budget_ms=20, retry_max_delay_seconds=0.2)
        try:
            nodes = [step("down-at-start", output=i) for i in range(20)]
            for node in nodes:
                assert await engine.save(node, state=b"state") is False  # queued, no raise
            await until(lambda: engine.stats().store_errors >= 3, "store errors")
            assert engine.stats().backlog_writes == len(nodes)
            await asyncio.to_thread(cluster.start)
            async with asyncio.timeout(60):
                await engine.flush()
            assert await version_counts(cluster.dsn, "lv") == Counter({n.id: 1 for n in nodes})
            assert [n.id for n in await engine.list_nodes("down-at-start")] == [n.id for n in nodes]
            assert engine.stats().abandoned == 0
        finally:
            await engine.close(abandon_after_seconds=10)


# -- 2. the server is killed mid-run and restarted -------------------------------------------


@pytest.mark.timeout(180)
async def test_server_killed_mid_run_and_restarted_loses_and_repeats_nothing() -> None:
    with PrivateCluster() as cluster:
        await asyncio.to_thread(cluster.start)
        store = PostgresStore(cluster.dsn, schema="lv", timeout=1.0)
        engine = CheckpointEngine(store, overhead_budget_ms=20, retry_max_delay_seconds=0.2)
        saved: list[str] = []
        killed = asyncio.Event()
        restart_now = asyncio.Event()
        errors_at_kill = 0

        async def on_save(count: int) -> None:
            if count == 80:
                killed.set()
            if killed.is_set() and count >= 160:
                restart_now.set()

        async def operator() -> None:
            nonlocal errors_at_kill
            await killed.wait()
            await asyncio.to_thread(cluster.kill)
            errors_at_kill = engine.stats().store_errors
            await restart_now.wait()
            # The writer noticed the server was gone before it comes back.
            await until(lambda: engine.stats().store_errors > errors_at_kill, "a failed write")
            await asyncio.to_thread(cluster.start)

        try:
            await asyncio.gather(operator(), run_agents(engine, 8, 40, saved, on_save))
            async with asyncio.timeout(90):
                await engine.flush()
            stats = engine.stats()
            assert stats.abandoned == 0
            assert stats.store_errors > errors_at_kill
            assert len(saved) == 320
            assert await version_counts(cluster.dsn, "lv") == Counter(dict.fromkeys(saved, 1))
        finally:
            await engine.close(abandon_after_seconds=10)


# -- 3. connections cut by the server, mid-run ------------------------------------------------


@pytest.mark.timeout(120)
async def test_connections_cut_mid_run_the_engine_keeps_going(shared: str) -> None:
    application = f"livingai-cut-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(POSTGRES_DSN, schema=shared, application_name=application, max_size=4)
    engine = CheckpointEngine(store, overhead_budget_ms=20, retry_max_delay_seconds=0.2)
    saved: list[str] = []
    terminated: list[int] = []

    async def cut() -> None:
        rows = await fetch(
            POSTGRES_DSN,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = %s",
            application,
        )
        terminated.append(sum(1 for (done,) in rows if done))

    async def on_save(count: int) -> None:
        if count in (40, 120, 200):
            await cut()
            # Reads right after the cut go through too: a dead connection is replaced.
            assert isinstance(await store.list_executions(), list)

    try:
        await run_agents(engine, 8, 30, saved, on_save)
        async with asyncio.timeout(60):
            await engine.flush()
        assert len(terminated) == 3
        assert all(count >= 1 for count in terminated), terminated
        assert engine.stats().abandoned == 0
        assert await version_counts(POSTGRES_DSN, shared) == Counter(dict.fromkeys(saved, 1))
    finally:
        await engine.close(abandon_after_seconds=10)


# -- 4. many processes, one schema, all starting on an empty database ------------------------

_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from livingai import CheckpointEngine, ExecutionNode, NodeType, Status
    from livingai import PostgresStore

    async def main(dsn: str, schema: str, worker: str) -> None:
        store = PostgresStore(dsn, schema=schema)
        async with CheckpointEngine(store, overhead_budget_ms=20) as engine:
            async def agent(n: int) -> None:
                for i in range(25):
                    status = Status.SUCCESS if i == 24 else Status.RUNNING
                    node = ExecutionNode(execution_id=f"{worker}-{n}", type=NodeType.PROMPT,
                                         status=status, output=i)
                    await engine.save(node, state=bytes(2000))
            await asyncio.gather(*(agent(n) for n in range(8)))
        print("done", engine.stats().saves, engine.stats().abandoned)

    asyncio.run(main(*sys.argv[1:4]))
    """
)


@pytest.mark.timeout(180)
async def test_several_processes_share_one_schema_from_empty(shared: str) -> None:
    command = [sys.executable, "-c", _WORKER, POSTGRES_DSN, shared]
    outputs = await asyncio.to_thread(
        run_processes, [[*command, f"w{n}"] for n in range(4)], timeout=150
    )
    for out, _ in outputs:
        assert out.split() == ["done", "200", "0"], out
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    try:
        executions = await store.list_executions()
        assert sorted(executions) == sorted(f"w{w}-{n}" for w in range(4) for n in range(8))
        for execution in executions:
            nodes = await store.list_nodes(execution)
            assert len(nodes) == 25
            assert nodes[-1].status == "SUCCESS"
    finally:
        await store.close()
    rows = await fetch(POSTGRES_DSN, f"SELECT version FROM {quote_ident(shared)}.schema_version")
    assert rows == [(SCHEMA_VERSION,)]


# -- 5. latest checkpoint: the right node, from the partial index ----------------------------


@pytest.mark.timeout(120)
async def test_latest_checkpoint_among_many_is_the_last_appended_and_uses_the_index(
    shared: str, shared_store: PostgresStore
) -> None:
    store = shared_store
    target = "exec-many-checkpoints"
    want = None
    batch = []
    for i in range(500):
        # Node ids and creation times out of order, many versions per node: only the append
        # order tells which checkpoint is the latest.
        record = make_record(target, f"node-{(i * 37) % 50:02d}", checkpoint=bytes([0, i % 256]))
        record = dataclasses.replace(record, created_at=f"2024-01-01T00:00:{59 - i % 60:02d}Z")
        batch += [
            record,
            make_record(target, f"plain-{i % 7}"),  # later, but no checkpoint
            make_record(f"other-{i % 20}", f"o{i}", checkpoint=b"\x00other"),
        ]
        want = record
        if len(batch) >= 150:
            await store.append(batch)
            batch = []
            got = await store.latest_checkpoint(target)
            assert got is not None
            assert got.version_id == want.version_id
    await store.append(batch)
    assert want is not None
    assert_same(await store.latest_checkpoint(target), want)

    # The execution goes quiet while 500 others write 50,000 versions: walking the table
    # back from its end would now be slow; the partial index goes straight to the row.
    table = f"{quote_ident(shared)}.nodes"
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {table} (version_id, node_id, execution_id, type, status, created_at,"
            " body, checkpoint) SELECT 'filler-' || g, 'filler-' || g, 'filler-' || g % 500,"
            " 'PROMPT', 'SUCCESS', '2024-01-01T00:00:00+00:00', '{}',"
            " CASE WHEN g % 3 = 0 THEN '\\x00aa'::bytea END FROM generate_series(1, 50000) g"
        )
        await conn.execute(f"ANALYZE {table}")
        cursor = await conn.execute("EXPLAIN " + statements(shared).latest_checkpoint, (target,))
        plan = "\n".join(str(row[0]) for row in await cursor.fetchall())
    assert_same(await store.latest_checkpoint(target), want)
    assert "Index" in plan, plan
    assert "checkpoints_by_execution" in plan, plan


# -- 6. the body is queryable jsonb -----------------------------------------------------------


async def test_body_is_queryable_jsonb(shared: str, shared_store: PostgresStore) -> None:
    async with CheckpointEngine(shared_store) as engine:
        node = step("exec-json", output={"k": "välue ✓", "n": 3}, metadata={"tag": "x"})
        await engine.save(node)
        await engine.flush()
        table = f"{quote_ident(shared)}.nodes"
        rows = await fetch(
            POSTGRES_DSN,
            f"SELECT body->'output'->>'k', (body->'output'->>'n')::int, jsonb_typeof(body) "
            f"FROM {table} WHERE node_id = %s",
            node.id,
        )
        assert rows == [("välue ✓", 3, "object")]
        rows = await fetch(
            POSTGRES_DSN,
            f"SELECT node_id FROM {table} WHERE body @> %s::jsonb",
            '{"metadata": {"tag": "x"}}',
        )
        assert rows == [(node.id,)]


# -- 7. the password never shows ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://u:s3cret-pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p%40ss-word@h1,h2/db?sslmode=off", "postgres://u:***@h1,h2/db?sslmode=off"),
        ("postgresql://u@h/db?password=s3cret-pw&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("host=h password=s3cret-pw user=u", "host=h password=*** user=u"),
        ("host=h password = 'se cret\\' pw' user=u", "host=h password = *** user=u"),
        ("host=h user=u", "host=h user=u"),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked
    assert scrub(f"failed: {dsn}", dsn) == f"failed: {masked}"


def test_scrub_removes_the_password_wherever_it_appears() -> None:
    dsn = "postgresql://u:p%40ss-word@h/db"
    assert scrub("auth p@ss-word and p%40ss-word", dsn) == "auth *** and ***"


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://postgres:s3cret-pw@127.0.0.1:{port}/test",
        "host=127.0.0.1 port={port} user=postgres password=s3cret-pw dbname=test",
    ],
)
async def test_password_is_masked_in_repr_and_errors(template: str) -> None:
    dsn = template.format(port=free_port())  # nothing listens there
    store = PostgresStore(dsn, timeout=0.3)
    try:
        assert "s3cret-pw" not in repr(store)
        assert "***" in repr(store)
        with pytest.raises(StoreError) as info:
            await store.read("any")
        message = str(info.value)
        assert "s3cret-pw" not in message
        assert "***" in message
        assert "cannot connect" in message
        assert "Connection refused" in message
    finally:
        await store.close()


# -- 8. strings PostgreSQL cannot hold are refused at save ---------------------------------------


async def test_nul_in_a_node_is_refused_at_save_and_nothing_reaches_the_store(
    shared_store: PostgresStore,
) -> None:
    async with CheckpointEngine(shared_store) as engine:
        for field in ("input", "output", "metadata"):
            value: Any = {"k": "a\x00b"} if field == "metadata" else ["ok", "a\x00b"]
            with pytest.raises(InvalidNodeError, match=rf"{field} holds a NUL"):
                await engine.save(step("exec-nul", **{field: value}))
        fine = step("exec-nul", output="fine")
        await engine.save(fine)
        await engine.flush()
        stats = engine.stats()
        assert (stats.saves, stats.store_errors) == (1, 0)
        assert [n.id for n in await engine.list_nodes("exec-nul")] == [fine.id]


# -- schema, pools, lifecycle -------------------------------------------------------------------


async def test_schema_is_created_on_first_use_with_its_version(shared: str) -> None:
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    try:
        assert await store.list_executions() == []
    finally:
        await store.close()
    s = quote_ident(shared)
    assert await fetch(POSTGRES_DSN, f"SELECT version FROM {s}.schema_version") == [
        (SCHEMA_VERSION,)
    ]
    indexes = await fetch(
        POSTGRES_DSN, "SELECT indexname FROM pg_indexes WHERE schemaname = %s", shared
    )
    assert {"nodes_by_node", "nodes_by_execution", "checkpoints_by_execution"} <= {
        name for (name,) in indexes
    }


async def test_a_schema_named_with_quotes_and_dollars_migrates_and_adds_usage_up() -> None:
    need_server("PostgreSQL", POSTGRES_DSN, 5432)
    schema = unique_name("livingai_test_o'$$x")
    try:
        store = PostgresStore(POSTGRES_DSN, schema=schema)
        async with CheckpointEngine(store) as engine:
            await engine.save(step("exec-usage", model="m", prompt_tokens=3), durable=True)
            [row] = await engine.usage("day")
        assert (row.calls, row.prompt_tokens) == (1, 3)
        stats = await fetch(
            POSTGRES_DSN,
            "SELECT stxname FROM pg_statistic_ext WHERE stxnamespace = to_regnamespace(%s)",
            quote_ident(schema),
        )
        assert stats == [("usage_days",)]
    finally:
        drop_schema(POSTGRES_DSN, schema)


async def test_a_schema_created_beforehand_is_used(shared: str) -> None:
    await fetch(POSTGRES_DSN, f"CREATE SCHEMA {quote_ident(shared)}")
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    try:
        record = make_record("e")
        await store.append([record])
        assert_same(await store.read(record.node_id), record)
    finally:
        await store.close()


async def test_a_newer_schema_is_refused_not_touched(shared: str) -> None:
    s = quote_ident(shared)
    await fetch(POSTGRES_DSN, f"CREATE SCHEMA {s}")
    await fetch(
        POSTGRES_DSN,
        f"CREATE TABLE {s}.schema_version (only_row boolean PRIMARY KEY DEFAULT true, "
        "version integer NOT NULL)",
    )
    await fetch(
        POSTGRES_DSN, f"INSERT INTO {s}.schema_version (version) VALUES (%s)", SCHEMA_VERSION + 1
    )
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    try:
        with pytest.raises(StoreError, match="newer than this livingai"):
            await store.append([make_record("e")])
    finally:
        await store.close()
    tables = await fetch(
        POSTGRES_DSN, "SELECT tablename FROM pg_tables WHERE schemaname = %s", shared
    )
    assert tables == [("schema_version",)]
    assert await fetch(POSTGRES_DSN, f"SELECT version FROM {s}.schema_version") == [
        (SCHEMA_VERSION + 1,)
    ]


async def test_any_schema_name_is_quoted(shared: str) -> None:
    odd = shared + ' "Odd" name'
    store = PostgresStore(POSTGRES_DSN, schema=odd)
    try:
        record = make_record("e", checkpoint=b"\x00x")
        await store.append([record])
        assert_same(await store.latest_checkpoint("e"), record)
    finally:
        await store.close()
        drop_schema(POSTGRES_DSN, odd)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="dsn or a pool"):
        PostgresStore()
    with pytest.raises(ValueError, match="63 bytes"):
        PostgresStore(POSTGRES_DSN, schema="x" * 64)
    with pytest.raises(ValueError, match="min_size"):
        PostgresStore(POSTGRES_DSN, min_size=5, max_size=2)
    with pytest.raises(ValueError, match="timeout"):
        PostgresStore(POSTGRES_DSN, timeout=0)
    with pytest.raises(ValueError, match="invalid dsn") as info:
        PostgresStore("host=h password=s3cret-pw 'unterminated")
    assert "s3cret-pw" not in str(info.value)


async def test_every_call_after_close_raises_closed_error(shared_store: PostgresStore) -> None:
    await shared_store.append([make_record("e")])
    await shared_store.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: shared_store.append([make_record("e")]),
        lambda: shared_store.read("n"),
        lambda: shared_store.list_nodes("e"),
        lambda: shared_store.list_versions("e"),
        lambda: shared_store.latest_checkpoint("e"),
        lambda: shared_store.list_executions(),
        lambda: shared_store.history("n"),
    ]
    for call in calls:
        with pytest.raises(ClosedError):
            await call()


async def test_a_pool_passed_in_is_used_and_left_open(shared: str) -> None:
    async with AsyncConnectionPool(
        POSTGRES_DSN, min_size=1, max_size=2, open=False, kwargs={"autocommit": False}
    ) as pool:
        store = PostgresStore(pool=pool, schema=shared)
        assert "127.0.0.1" in repr(store)
        record = make_record("e", checkpoint=b"\x00p")
        await store.append([record])  # committed although the pool does not autocommit
        await store.close()
        assert not pool.closed
        async with pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT count(*) FROM {quote_ident(shared)}.nodes WHERE version_id = %s",
                (record.version_id,),
            )
            assert await cursor.fetchone() == (1,)


def test_the_store_works_across_event_loops(shared: str) -> None:
    """An engine belongs to one loop; the store under it may serve one loop after another
    (asyncio.run twice): each loop gets a pool of its own."""
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    first = make_record("loops", checkpoint=b"\x00first loop")
    asyncio.run(store.append([first]))  # through a pool opened on this loop

    async def second() -> NodeRecord | None:
        async with CheckpointEngine(store) as engine:
            await engine.save(step("loops"), state=b"second loop")
            await engine.flush()
            assert len(await store.list_nodes("loops")) == 2
            return await store.read(first.node_id)

    assert_same(asyncio.run(second()), first)


def test_without_the_extra_import_works_and_the_store_names_the_extra(tmp_path: Path) -> None:
    script = _BLOCKING_PRELUDE + textwrap.dedent(
        """
        import sys
        import livingai
        from livingai import MissingExtraError, PostgresStore

        try:
            PostgresStore("postgresql://127.0.0.1/x")
        except MissingExtraError as exc:
            print(f"ERROR={exc}")
        print("LOADED=" + ",".join(n for n in sys.modules if n.startswith("psycopg")))
        """
    )
    lines = _marked_lines(_run_python(script, "psycopg,psycopg_pool", cwd=tmp_path).stdout)
    assert 'pip install "livingai[postgres]"' in lines["ERROR"]
    assert lines["LOADED"] == ""


# -- hardening: records PostgreSQL refuses, stores it refuses, bounded waits, corruption ----


async def test_an_id_too_long_for_an_index_is_rejected_and_the_rest_land(shared: str) -> None:
    """A 10 KB execution id: `index row requires 10064 bytes`. Through a wrapper that
    declares no limits it reaches PostgreSQL; the engine isolates it and goes on."""
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    engine = CheckpointEngine(FaultyStore(store, gated=True), overhead_budget_ms=1)
    try:
        huge = step(os.urandom(5_000).hex())  # 10 KB that no index compression shrinks
        nodes = [step("fine"), huge, step("fine")]
        for node in nodes:
            assert await engine.save(node) is False
        engine.store.gate.set()  # type: ignore[attr-defined]
        with pytest.raises(RecordRejectedError, match="index row"):
            await engine.flush()
        assert [n.id for n in await engine.list_nodes("fine")] == [nodes[0].id, nodes[2].id]
        stats = engine.stats()
        assert (stats.rejected, stats.late, stats.backlog_writes) == (1, 2, 0)
    finally:
        await engine.close()
    async with CheckpointEngine(PostgresStore(POSTGRES_DSN, schema=shared)) as direct:
        with pytest.raises(InvalidNodeError, match="ids of at most 1024 bytes"):
            await direct.save(huge)  # refused up front, on the store itself


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("postgresql://no_such_role@127.0.0.1:{port}/test", 'role "no_such_role" does not exist'),
        ("postgresql://postgres@127.0.0.1:{port}/no_such_db", 'database "no_such_db"'),
    ],
)
async def test_a_store_the_server_refuses_is_unusable_at_once(dsn: str, says: str) -> None:
    need_server("PostgreSQL", POSTGRES_DSN, 5432)
    port = str(urlsplit(POSTGRES_DSN).port or 5432)
    async with asyncio.timeout(10):  # told, not retried for ever (nor waited out)
        async with CheckpointEngine(PostgresStore(dsn.format(port=port))) as engine:
            with pytest.raises(StoreUnusableError, match=says):
                await engine.save(step("refused"), durable=True)
            with pytest.raises(StoreUnusableError, match="check the URL, the user"):
                await engine.load("anything")
            assert engine.stats().abandoned == 1


@pytest.mark.timeout(120)
async def test_every_wait_is_bounded_when_the_server_goes_away() -> None:
    with PrivateCluster() as cluster:
        await asyncio.to_thread(cluster.start)
        store = PostgresStore(cluster.dsn, schema="lv")
        async with CheckpointEngine(store, hot_capacity=0) as engine:
            node = step("gone")
            await engine.save(node, state=b"s", durable=True)
            await asyncio.to_thread(cluster.kill)
            # Bounded by the pool's `timeout` (5 s) the first time; then the store asks
            # the server directly and is refused at once. The old store took 20 s each.
            for _ in range(3):
                async with asyncio.timeout(8):
                    with pytest.raises(StoreError):
                        await engine.load(node.id)
                    with pytest.raises(StoreError):
                        await RecoveryEngine(engine).plan("gone")
            await asyncio.to_thread(cluster.start)
            loaded = await engine.load(node.id)  # back: served again, nothing lost
            assert loaded is not None
            assert loaded.state == b"s"


async def test_a_corrupt_row_is_named_listed_as_failed_and_the_plan_goes_on(
    shared_store: PostgresStore, shared: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with CheckpointEngine(shared_store, hot_capacity=0) as engine:
        early = step("rot")
        await engine.save(early, state=b"early state")
        bent = step("rot")
        await engine.save(bent)
        last = step("rot")
        await engine.save(last, state=b"last state")
        await engine.flush()
        table = f"{quote_ident(shared)}.nodes"
        await fetch(POSTGRES_DSN, f"UPDATE {table} SET type = 'BOGUS' WHERE node_id = %s", bent.id)
        await fetch(
            POSTGRES_DSN,
            f"UPDATE {table} SET checkpoint = '\\x00dead'::bytea WHERE node_id = %s",
            last.id,
        )
        with pytest.raises(CheckpointCorruptError, match=bent.id):
            await engine.load(bent.id)
        with caplog.at_level(logging.ERROR, logger="livingai"):
            listed = await engine.list_nodes("rot")
        assert [n.id for n in listed] == [early.id, bent.id, last.id]
        assert listed[1].status is Status.FAILED
        assert listed[1].type is NodeType.TOOL  # unreadable type: taken as a side effect
        assert "BOGUS" in caplog.text
        plan = await RecoveryEngine(engine).plan("rot")
        assert plan.resume_node_id == early.id  # the newest checkpoint is corrupt
        assert plan.state == b"early state"
        assert [n.id for n in plan.skipped_nodes] == [bent.id]
        assert any("resuming from an earlier checkpoint" in w for w in plan.warnings)
        assert any(bent.id in w for w in plan.warnings)


async def test_runs_stored_before_the_index_are_found_after_the_upgrade(shared: str) -> None:
    """Migration 5 adds the index; the backfill fills it a chunk a statement (2,500
    executions), and one stopped half-way is finished by the next connection."""
    q = statements(shared)
    records = []
    for n in range(2500):
        status = Status.RUNNING if n % 3 == 0 else Status.SUCCESS
        records += [run_record(f"old-{n:04}", status, agent=f"agent-{n % 2}")]
        records += [step_record(f"old-{n:04}", "step")]
    records.append(step_record("thread", "checkpoint"))
    names = [field.name for field in dataclasses.fields(NodeRecord)]
    columns = ", ".join(names)
    values = ", ".join("%s::jsonb" if name == "body" else "%s" for name in names)
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:  # as livingai made it (4)
        conn.execute(q.create_schema)
        conn.execute(q.create_version_table)
        for script in q.migrations[:4]:
            conn.execute(script)
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {quote_ident(shared)}.nodes ({columns}) VALUES ({values})",
                [record.as_row() for record in records],
            )
        conn.execute(
            f"INSERT INTO {quote_ident(shared)}.executions (execution_id, first_seq) "
            f"SELECT execution_id, min(seq) FROM {quote_ident(shared)}.nodes GROUP BY 1"
        )
        conn.execute(q.migrations[4])  # an upgrade stopped after one chunk
        conn.execute(q.backfill)
        conn.execute(q.write_version, (SCHEMA_VERSION,))
        row = conn.execute(
            f"SELECT count(*) FROM {quote_ident(shared)}.executions WHERE started_at IS NULL"
        ).fetchone()
        assert row == (1501,)
    store = PostgresStore(POSTGRES_DSN, schema=shared)
    try:
        assert [e.execution_id for e in await store.open_runs()] == [
            f"old-{n:04}" for n in range(0, 2500, 3)
        ]
        page = await store.list_page(PageQuery(limit=2, agent="agent-1", status="SUCCESS"))
        assert [e.execution_id for e in page.entries] == ["old-2497", "old-2495"]
        listed = await walk(store, PageQuery(limit=1000))
        assert sorted(listed, key=lambda e: e.key) == sorted(
            await scanned(store), key=lambda e: e.key
        )
    finally:
        await store.close()
