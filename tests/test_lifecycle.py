"""One lifecycle for the engine and every store, and ConfigError for every bad setting."""

from __future__ import annotations

import asyncio
import gc
import re
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from livingai import (
    CheckpointEngine,
    CheckpointStore,
    ClosedError,
    ConfigError,
    LivingAIError,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    TieredStore,
)
from livingai.testing import make_record
from tests.conftest import StoreFactory
from tests.postgres_support import drop_schema
from tests.redis_support import delete_prefix
from tests.services import POSTGRES_DSN, REDIS_URL, need_server, run_processes, unique_name


def _collect(held: list[object]) -> None:
    """Drop the last reference to what `held` holds, and collect it."""
    held.clear()
    gc.collect()


def _said(caught: list[warnings.WarningMessage], shown: str) -> list[str]:
    """What `caught` says of the object shown as `shown` collected open."""
    return [
        str(w.message)
        for w in caught
        if str(w.message).startswith(f"{shown} was collected without close()")
    ]


def _closed_message(thing: object) -> str:
    return "^" + re.escape(f"{thing!r} was used after close()") + "$"


async def test_async_with_closes_and_use_after_close_has_one_exact_message(
    store_factory: StoreFactory,
) -> None:
    store: Any = store_factory()
    async with store as entered:
        assert entered is store
        await store.append([make_record("life")])
    assert store.closed
    await store.close()  # again: nothing happens
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.append([make_record("life")]),
        lambda: store.read("n"),
        store.list_executions,
    ]
    for call in calls:
        with pytest.raises(ClosedError, match=_closed_message(store)):
            await call()
    with pytest.raises(ClosedError, match=_closed_message(store)):
        async with store:
            pass


async def test_the_engine_shares_the_lifecycle(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "life.db")
    async with CheckpointEngine(store) as engine:
        assert not engine.closed
    assert engine.closed
    assert store.closed
    await engine.close()
    with pytest.raises(ClosedError, match=_closed_message(engine)):
        await engine.versions("x")
    with pytest.raises(ClosedError, match=_closed_message(engine)):
        async with engine:
            pass


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_store_collected_open_warns(kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "open.db")
    await store.list_executions()  # in use: it holds threads, connections or data now
    shown = repr(store)
    held: list[object] = [store]
    del store
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _collect(held)
        # The store's worker thread may still hold it a moment: collected once it lets go.
        deadline = time.monotonic() + 10.0
        while not _said(caught, shown) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            gc.collect()
    said = [str(w.message) for w in caught]
    ours = _said(caught, shown)
    assert len(ours) == 1, said
    # Python 3.13's sqlite3 also tells of each connection the store left open.
    assert all(m.startswith("unclosed database") for m in said if m not in ours), said


_COLLECTED_OPEN = """
import asyncio, gc, sys, warnings
from livingai import open_store

async def main(url):
    store = open_store(url)
    await store.list_executions()
    shown = repr(store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del store
        gc.collect()
    ours = [str(w.message) for w in caught if str(w.message).startswith(shown)]
    print(ours[0] if ours else f"no warning for {shown}")

for url in sys.argv[1:]:
    asyncio.run(main(url))
"""


def test_server_stores_collected_open_warn(tmp_path: Path) -> None:
    """In a child: a store collected open leaks its pool, which is the point of the warning."""
    need_server("Redis", REDIS_URL, 6379)
    need_server("PostgreSQL", POSTGRES_DSN, 5432)
    name = unique_name("livingai_open")
    redis = f"{REDIS_URL}?prefix={name}"
    postgres = f"{POSTGRES_DSN}?schema={name}"
    try:
        out, _ = run_processes(
            [
                [
                    sys.executable,
                    "-c",
                    _COLLECTED_OPEN,
                    redis,
                    postgres,
                    f"tiered:{redis}|{postgres}",
                ]
            ],
            timeout=60,
        )[0]
    finally:
        delete_prefix(REDIS_URL, name)
        drop_schema(POSTGRES_DSN, name)
    lines = out.splitlines()
    assert len(lines) == 3, out
    for line, kind in zip(lines, ("RedisStore(", "PostgresStore(", "TieredStore("), strict=True):
        assert line.startswith(kind), line
        assert line.endswith("was collected without close(); use `async with` or await close()")
        assert name in line


async def test_an_engine_collected_open_warns() -> None:
    engine = CheckpointEngine(MemoryStore())
    await engine.list_executions()
    held: list[object] = [engine]
    del engine
    with pytest.warns(ResourceWarning) as caught:
        _collect(held)
    # Only this test's objects: the collector may close another test's leftovers here too.
    messages = sorted(
        str(w.message) for w in caught if "collected without close()" in str(w.message)
    )
    assert messages == [
        "CheckpointEngine(MemoryStore()) was collected without close(); "
        "use `async with` or await close()",
        "MemoryStore() was collected without close(); use `async with` or await close()",
    ]


def test_an_object_never_used_is_collected_quietly() -> None:
    """Built and dropped (a failed configuration, say): it holds nothing to warn about."""
    store = MemoryStore()
    engine = CheckpointEngine(store)
    del engine, store
    gc.collect()  # filterwarnings=error: a warning here would fail the test


# -- configuration errors -------------------------------------------------------------------

BAD_SETTINGS: list[tuple[str, Callable[[], object], str]] = [
    ("engine budget", lambda: CheckpointEngine(MemoryStore(), overhead_budget_ms=0), "overhead"),
    (
        "engine budget NaN",
        lambda: CheckpointEngine(MemoryStore(), overhead_budget_ms=float("nan")),
        "overhead",
    ),
    ("engine capacity", lambda: CheckpointEngine(MemoryStore(), hot_capacity=-1), "hot_capacity"),
    (
        "engine cache bytes",
        lambda: CheckpointEngine(MemoryStore(), hot_max_bytes=-1),
        "hot_max_bytes",
    ),
    ("engine ttl", lambda: CheckpointEngine(MemoryStore(), hot_ttl_seconds=0), "hot_ttl_seconds"),
    (
        "engine backlog",
        lambda: CheckpointEngine(MemoryStore(), max_backlog_bytes=0),
        "max_backlog_bytes",
    ),
    (
        "engine batch",
        lambda: CheckpointEngine(MemoryStore(), max_batch_bytes=1.5),  # type: ignore[arg-type]
        "max_batch_bytes",
    ),
    ("engine offload", lambda: CheckpointEngine(MemoryStore(), offload_bytes=-1), "offload_bytes"),
    (
        "engine retry",
        lambda: CheckpointEngine(MemoryStore(), retry_max_delay_seconds=0),
        "retry_max",
    ),
    ("engine exit", lambda: CheckpointEngine(MemoryStore(), exit_flush_seconds=-1), "exit_flush"),
    ("engine codec", lambda: CheckpointEngine(MemoryStore(), codec=9), "codec"),  # type: ignore[arg-type]
    ("sqlite synchronous", lambda: SQLiteStore(":memory:", synchronous="SOMETIMES"), "synchronous"),
    ("sqlite busy", lambda: SQLiteStore(":memory:", busy_timeout_seconds=-1), "busy_timeout"),
    ("redis prefix", lambda: RedisStore(prefix=""), "prefix"),
    ("redis ttl", lambda: RedisStore(ttl_seconds=0), "ttl_seconds"),
    ("redis pool", lambda: RedisStore(max_connections=True), "max_connections"),
    ("redis option", lambda: RedisStore("redis://127.0.0.1/0?no_such_option=1"), "no_such_option"),
    (
        "redis value",
        lambda: RedisStore("redis://127.0.0.1/0?socket_timeout=soon"),
        "socket_timeout",
    ),
    ("postgres none", lambda: PostgresStore(), "dsn or a pool"),
    ("postgres size", lambda: PostgresStore(POSTGRES_DSN, max_size=0), "max_size"),
    ("postgres timeout", lambda: PostgresStore(POSTGRES_DSN, timeout=0), "timeout"),
    ("postgres schema", lambda: PostgresStore(POSTGRES_DSN, schema="x" * 64), "63 bytes"),
    ("postgres dsn", lambda: PostgresStore("postgresql://h/db?no_such_option=1"), "invalid dsn"),
    (
        "tiered batch",
        lambda: TieredStore(MemoryStore(), MemoryStore(), batch_bytes=0),
        "batch_bytes",
    ),
]


@pytest.mark.parametrize(
    ("build", "named"), [s[1:] for s in BAD_SETTINGS], ids=[s[0] for s in BAD_SETTINGS]
)
def test_a_bad_setting_is_a_config_error_naming_it(build: Callable[[], object], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)) as caught:
        build()
    assert isinstance(caught.value, LivingAIError)
    assert isinstance(caught.value, ValueError)


async def test_stores_over_the_same_data_see_each_other_until_closed(
    persistent_factory: StoreFactory,
) -> None:
    """close() releases the store, not the data: a second store finds what the first wrote."""
    first: CheckpointStore = persistent_factory()
    record = make_record("kept")
    await first.append([record])
    await first.close()
    async with persistent_factory() as second:  # type: ignore[attr-defined]
        got = await second.read(record.node_id)
        assert got is not None
        assert got.version_id == record.version_id
