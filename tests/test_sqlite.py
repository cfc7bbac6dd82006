"""SQLiteStore specifics: WAL, migrations, errors that name the file, many processes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from livingai import (
    CheckpointCorruptError,
    CheckpointEngine,
    Codec,
    ExecutionEntry,
    ExecutionNode,
    NodeRecord,
    NodeType,
    PageQuery,
    RecordRejectedError,
    RecoveryEngine,
    SQLiteStore,
    Status,
    StoreError,
    StoreUnusableError,
)
from livingai._stores.sqlite_sql import SCHEMA_VERSION
from livingai.testing import make_record
from livingai.testing.index_checks import T0, run_record, scanned, step_record, walk
from tests.faults import FaultyStore
from tests.services import run_processes, skip_or_fail


async def test_new_file_gets_wal_and_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    store = SQLiteStore(path)
    await store.append([make_record("e")])
    await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_a_newer_schema_is_refused_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE keep (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="newer than this livingai"):
        await store.read("x")
    await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)


async def test_unopenable_path_names_the_file(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "x.db")
    with pytest.raises(StoreError, match="missing-dir"):
        await store.append([make_record("e")])
    await store.close()


def test_bad_synchronous_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore("x.db", synchronous="SOMETIMES")


async def test_memory_database_works_for_reads_and_writes() -> None:
    store = SQLiteStore(":memory:")
    record = make_record("e", checkpoint=b"\x00abc")
    await store.append([record])
    assert await store.read(record.node_id) is not None
    await store.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from livingai import CheckpointEngine, ExecutionNode, NodeType, SQLiteStore, Status

    async def main(path: str, worker: str) -> None:
        async with CheckpointEngine(SQLiteStore(path), overhead_budget_ms=5) as engine:
            async def agent(n: int) -> None:
                for i in range(25):
                    node = ExecutionNode(execution_id=f"{worker}-{n}", type=NodeType.PROMPT,
                                         status=Status.SUCCESS, output=i)
                    await engine.save(node, state=bytes(2000))
            await asyncio.gather(*(agent(n) for n in range(8)))
        print("done", engine.stats().saves, engine.stats().abandoned)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_several_processes_write_one_file_without_errors(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    command = [sys.executable, "-c", _WRITER, str(path)]
    for out, err in run_processes([[*command, f"w{n}"] for n in range(4)], timeout=90):
        assert out.split() == ["done", "200", "0"]
        assert "locked" not in err

    async def count() -> list[int]:
        async with CheckpointEngine(SQLiteStore(path)) as engine:
            return [len(await engine.list_nodes(e)) for e in await engine.list_executions()]

    assert asyncio.run(count()) == [25] * 32


# -- hardening: a record SQLite refuses, files it cannot use, corrupt rows ------------------


async def test_a_blob_over_the_length_limit_is_rejected_and_the_rest_land(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "limit.db")
    await store.list_executions()  # connected; now lower SQLITE_LIMIT_LENGTH on the writer
    await asyncio.wrap_future(
        store._writer.submit(  # the store's own connection, on its own thread
            lambda: store._writer_conn().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)
        )
    )
    engine = CheckpointEngine(FaultyStore(store, gated=True), codec=Codec.NONE)
    try:
        names = ["before", "big", "after"]
        for name in names:
            node = ExecutionNode(execution_id="len", type=NodeType.PROMPT, id=name)
            state = os.urandom(200_000) if name == "big" else b"small"
            assert await engine.save(node, state=state) is False
        engine.store.gate.set()  # type: ignore[attr-defined]
        with pytest.raises(RecordRejectedError, match="SQLITE_TOOBIG"):
            await engine.flush()
        assert [n.id for n in await engine.list_nodes("len")] == ["before", "after"]
        assert engine.stats().rejected == 1
    finally:
        await engine.close()


async def _told_unusable(store: SQLiteStore, says: str) -> None:
    """A save is told the store cannot work (not retried for ever), and so is a read;
    `async with` then exits at once."""
    async with asyncio.timeout(10), CheckpointEngine(store) as engine:
        node = ExecutionNode(execution_id="unusable", type=NodeType.PROMPT)
        with pytest.raises(StoreUnusableError, match=says) as caught:
            await engine.save(node, durable=True)
        assert store.path in str(caught.value)
        with pytest.raises(StoreUnusableError):
            await engine.load(node.id)
        assert engine.stats().abandoned == 1


async def test_a_file_that_is_not_a_database_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database" * 100)
    await _told_unusable(SQLiteStore(path), "not a SQLite database")
    assert path.read_bytes() == b"these are my notes, not a database" * 100  # untouched


async def test_a_missing_directory_is_unusable(tmp_path: Path) -> None:
    await _told_unusable(SQLiteStore(tmp_path / "no-such-dir" / "x.db"), "is its directory")


def _read_only(path: Path, on: bool) -> bool:
    """Make a file read-only, or writable again: by its mode, or, as root (whom modes do
    not stop), with chattr +i. False when that cannot be done here."""
    if os.geteuid() != 0:
        path.chmod(0o444 if on else 0o644)
        return True
    if shutil.which("chattr") is None:
        return False
    flag = "+i" if on else "-i"
    return (
        subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False).returncode
        == 0
    )


async def test_a_read_only_file_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    async with SQLiteStore(path) as store:
        await store.append([make_record("kept")])
    if not await asyncio.to_thread(_read_only, path, True):
        skip_or_fail("running as root, and chattr +i is not available to make a file read-only")
    try:
        async with asyncio.timeout(10), CheckpointEngine(SQLiteStore(path)) as engine:
            node = ExecutionNode(execution_id="ro", type=NodeType.PROMPT)
            with pytest.raises(StoreUnusableError, match="read-only") as caught:
                await engine.save(node, durable=True)
            assert str(path) in str(caught.value)
    finally:
        await asyncio.to_thread(_read_only, path, False)


async def test_a_corrupt_row_is_named_listed_as_failed_and_the_plan_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rot.db"
    async with CheckpointEngine(SQLiteStore(path), hot_capacity=0) as engine:
        nodes = [ExecutionNode(execution_id="rot", type=NodeType.PROMPT) for _ in range(3)]
        for node in nodes:
            await engine.save(node, state=node.id.encode(), durable=True)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE nodes SET body = '{not json' WHERE node_id = ?", (nodes[1].id,))
        conn.execute("UPDATE nodes SET created_at = 'yesterday' WHERE node_id = ?", (nodes[2].id,))
    async with CheckpointEngine(SQLiteStore(path), hot_capacity=0) as engine:
        for node, says in ((nodes[1], "JSONDecodeError"), (nodes[2], "yesterday")):
            with pytest.raises(CheckpointCorruptError, match=f"node {node.id}.*{says}"):
                await engine.load(node.id)
        listed = await engine.list_nodes("rot")
        assert [n.status for n in listed] == [Status.PENDING, Status.FAILED, Status.FAILED]
        plan = await RecoveryEngine(engine).plan("rot")
        assert plan.resume_node_id == nodes[0].id  # the checkpoints after it are unreadable
        assert plan.state == nodes[0].id.encode()
        assert len(plan.warnings) == 2


def _old_file(path: Path, runs: int) -> None:
    """A file as livingai made it before the executions' index (schema 4): `runs` runs,
    every third unfinished, and one execution that is not a run."""
    from livingai._stores import sqlite_sql

    records = []
    for n in range(runs):
        status = Status.RUNNING if n % 3 == 0 else Status.SUCCESS
        records.append(run_record(f"old-{n:04}", status, agent=f"agent-{n % 2}"))
        records.append(step_record(f"old-{n:04}", "step"))
    records.append(step_record("thread", "checkpoint"))
    with closing(sqlite3.connect(path)) as conn:
        for migration in sqlite_sql.MIGRATIONS[:4]:
            conn.executescript(migration)
        names = [field.name for field in dataclasses.fields(NodeRecord)]
        columns, marks = ", ".join(names), ", ".join("?" * len(names))
        conn.executemany(
            f"INSERT INTO nodes ({columns}) VALUES ({marks})", [r.as_row() for r in records]
        )
        executions = list(dict.fromkeys(r.execution_id for r in records))
        conn.executemany(
            "INSERT INTO executions (execution_id) VALUES (?)", [(x,) for x in executions]
        )
        conn.execute("PRAGMA user_version = 4")
        conn.commit()


async def test_runs_stored_before_the_index_are_found_after_the_upgrade(tmp_path: Path) -> None:
    """Migration 5 adds the index; the backfill fills it a chunk a transaction (2,500
    executions: three chunks), and one stopped half-way is finished by the next open."""
    from livingai._stores import sqlite_sql

    path = tmp_path / "old.db"
    _old_file(path, 2500)
    with closing(sqlite3.connect(path)) as conn:  # an upgrade stopped after one chunk
        for migration in sqlite_sql.MIGRATIONS[4:]:
            conn.executescript(migration)
        conn.execute(sqlite_sql.BACKFILL)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.commit()
        (left,) = conn.execute(
            "SELECT count(*) FROM executions WHERE started_at IS NULL"
        ).fetchone()
        assert left == 2501 - sqlite_sql.BACKFILL_CHUNK
    store = SQLiteStore(path)
    try:
        opened = [e.execution_id for e in await store.open_runs()]
        assert opened == [f"old-{n:04}" for n in range(0, 2500, 3)]
        page = await store.list_page(PageQuery(limit=2, agent="agent-1", status="SUCCESS"))
        assert [e.execution_id for e in page.entries] == ["old-2497", "old-2495"]  # 2499: RUNNING
        listed = await walk(store, PageQuery(limit=1000))  # three pages
        assert sorted(listed, key=lambda e: e.key) == sorted(
            await scanned(store), key=lambda e: e.key
        )
        assert ExecutionEntry("thread", T0.isoformat()) in listed  # not a run: no status
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        (left,) = conn.execute(
            "SELECT count(*) FROM executions WHERE started_at IS NULL"
        ).fetchone()
        assert left == 0
