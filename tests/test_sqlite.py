"""SQLiteStore specifics: WAL, migrations, errors that name the file, many processes."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from livingai import CheckpointEngine, SQLiteStore, StoreError
from livingai._stores.sqlite_sql import SCHEMA_VERSION
from livingai.testing import make_record
from tests.services import run_processes


async def test_new_file_gets_wal_and_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    store = SQLiteStore(path)
    await store.append([make_record("e")])
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_a_newer_schema_is_refused_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE keep (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="newer than this livingai"):
        await store.read("x")
    await store.close()
    with sqlite3.connect(path) as conn:
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
