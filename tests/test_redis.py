"""RedisStore against real servers: the shared one (LIVINGAI_TEST_REDIS_URL) under a
throwaway key prefix, and private redis-servers that a test starts, kills and restarts.

No fakes and no sleeps standing in for synchronisation: tests wait for conditions (a
number of saves, a server answering PING), each wait bounded by a deadline, and every
process they start is stopped in a finally.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio

from livingai import (
    CheckpointCorruptError,
    CheckpointEngine,
    ClosedError,
    Codec,
    ExecutionNode,
    InvalidNodeError,
    NodeRecord,
    NodeType,
    RecordRejectedError,
    RecoveryEngine,
    RedisStore,
    Status,
    StoreError,
    StoreUnusableError,
    UsageRow,
)
from livingai._core.urls import mask_url
from livingai._stores import redis_keys as keys
from livingai._stores.redis_keys import client_name, pack, scan_pattern, unpack
from livingai.testing import assert_same, make_record
from tests.faults import FaultyStore
from tests.redis_support import (
    RedisServer,
    Saved,
    check_layout,
    delete_prefix,
    prefix_keys,
    redis_server_binary,
    run_agent,
    sync_client,
    verify_saved,
)
from tests.services import (
    REDIS_URL,
    need_server,
    run_processes,
    skip_or_fail,
    unique_name,
    until,
)

T = TypeVar("T")

SECONDS = 30.0  # bound on every wait
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix on the shared server, emptied afterwards."""
    need_server("Redis", REDIS_URL, 6379)
    name = unique_name("livingai-redis-test")
    try:
        yield name
    finally:
        delete_prefix(REDIS_URL, name)


def _need_binary() -> None:
    if redis_server_binary() is None:
        skip_or_fail("redis-server is not installed: the kill/restart tests need one of their own")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with an fsynced append-only file, not started yet."""
    _need_binary()
    with RedisServer(tmp_path / "redis") as private:
        yield private


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    """A client of the shared server for the tests' own commands (CLIENT LIST, ...)."""
    need_server("Redis", REDIS_URL, 6379)
    client: Any = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def eventually(probe: Callable[[], Awaitable[T]], what: str) -> T:
    """Poll `probe` until it returns something truthy, and return that; fail after SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECONDS
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {SECONDS}s waiting for {what}")
        await asyncio.sleep(0.005)


class Progress:
    """Counts saves across agents; a controller awaits `reached(n)`. At each of `holds`
    the agents wait until the controller calls `release(n)`: what it does there happens
    while they are still running, however fast they run."""

    def __init__(self, holds: Sequence[int] = ()) -> None:
        self.saves = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._gates = {target: asyncio.Event() for target in holds}

    async def saved(self) -> None:
        self.saves += 1
        for target, waiter in self._waiters:
            if self.saves >= target and not waiter.done():
                waiter.set_result(None)
        for target, gate in self._gates.items():
            if self.saves >= target:
                await gate.wait()

    def release(self, target: int) -> None:
        self._gates[target].set()

    async def reached(self, target: int) -> None:
        if self.saves >= target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await asyncio.wait_for(waiter, SECONDS)


async def connections_of(admin: Any, prefix: str) -> list[dict[str, Any]]:
    clients: list[dict[str, Any]] = await admin.client_list()
    return [c for c in clients if c.get("name") == client_name(prefix)]


# -- 1. server down at start ------------------------------------------------------------------


async def test_server_down_at_start_saves_queue_then_land_once(server: RedisServer) -> None:
    store = RedisStore(server.url, prefix="down", max_connections=2)
    engine = CheckpointEngine(store, overhead_budget_ms=10, retry_max_delay_seconds=0.05)
    saved: Saved = {}
    try:
        async with asyncio.timeout(SECONDS):
            await asyncio.gather(*(run_agent(engine, f"down-{a}", 4, saved) for a in range(3)))
            stats = engine.stats()
            assert stats.saves == 15
            assert stats.in_budget == 0  # every save returned False, none raised
            await until(lambda: engine.stats().store_errors >= 5, "failed store writes")
            # Failing calls give their connection back: a pool of 2 is not used up.
            for _ in range(10):
                with pytest.raises(StoreError, match=f"127.0.0.1:{server.port}"):
                    await store.read("anything")
            await asyncio.to_thread(server.start)
            await engine.flush()
        assert engine.stats().abandoned == 0
        assert engine.stats().backlog_writes == 0
        assert await verify_saved(store, saved) == []
        assert check_layout(server.url, "down") == []
    finally:
        await engine.close(abandon_after_seconds=5)


# -- 2. killed mid-run and restarted ----------------------------------------------------------


async def test_killed_mid_run_and_restarted_stores_every_save_once(server: RedisServer) -> None:
    server.start()
    store = RedisStore(server.url, prefix="kill")
    engine = CheckpointEngine(store, overhead_budget_ms=20, retry_max_delay_seconds=0.05)
    saved: Saved = {}
    progress = Progress()
    downtime: list[int] = []

    async def kill_then_restart() -> None:
        await progress.reached(60)
        server.kill()  # SIGKILL: acknowledged writes are in the fsynced append-only file
        downtime.append(progress.saves)
        await progress.reached(progress.saves + 60)  # agents keep saving meanwhile
        downtime.append(progress.saves)
        await asyncio.to_thread(server.start)  # same port, same directory

    agents = [run_agent(engine, f"kill-{a}", 30, saved, progress.saved) for a in range(6)]
    try:
        async with asyncio.timeout(2 * SECONDS):
            await asyncio.gather(kill_then_restart(), *agents)
            await engine.flush()
        stats = engine.stats()
        assert stats.saves == progress.saves == 240
        assert downtime[1] - downtime[0] >= 60
        assert stats.store_errors > 0  # the kill did bite
        assert stats.abandoned == 0
        assert await verify_saved(store, saved) == []
        assert check_layout(server.url, "kill") == []
    finally:
        await engine.close(abandon_after_seconds=5)


# -- 3. connections cut -----------------------------------------------------------------------


async def test_connections_cut_mid_run_lose_and_duplicate_nothing(prefix: str, admin: Any) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, max_connections=8)
    engine = CheckpointEngine(store, overhead_budget_ms=20, retry_max_delay_seconds=0.05)
    saved: Saved = {}
    cuts = (30, 60, 90, 120, 150)  # of 240 saves: the agents are still saving at each
    progress = Progress(holds=cuts)
    killed = 0

    async def cut_connections() -> None:
        nonlocal killed
        for target in cuts:
            await progress.reached(target)
            connections = await eventually(  # the store reconnected since the last cut
                lambda: connections_of(admin, prefix), "the store's connections"
            )
            for client in connections:
                killed += await admin.client_kill_filter(_id=client["id"])
            progress.release(target)

    agents = [run_agent(engine, f"{prefix}-{a}", 30, saved, progress.saved) for a in range(6)]
    try:
        async with asyncio.timeout(SECONDS):
            await asyncio.gather(cut_connections(), *agents)
            await engine.flush()
        assert killed >= 5
        assert engine.stats().abandoned == 0
        assert await verify_saved(store, saved) == []
        assert check_layout(REDIS_URL, prefix) == []
    finally:
        await engine.close(abandon_after_seconds=5)


# -- 4. many processes ------------------------------------------------------------------------


def test_many_processes_share_one_prefix(prefix: str) -> None:
    child = [sys.executable, "-W", "error", "-m", "tests.redis_support", "agents", REDIS_URL]
    outputs = run_processes(
        [[*child, prefix, f"proc-{n}", "8", "19"] for n in range(4)],  # 19 steps: 25 saves
        timeout=2 * SECONDS,  # per agent
    )
    saved: Saved = {}
    for out, _ in outputs:
        report = json.loads(out.splitlines()[-1])
        assert (report["saves"], report["abandoned"]) == (200, 0), report
        saved.update(report["saved"])

    async def verify() -> None:
        store = RedisStore(REDIS_URL, prefix=prefix)
        try:
            assert sorted(await store.list_executions()) == sorted(saved)
            assert len(saved) == 32
            assert await verify_saved(store, saved) == []
        finally:
            await store.close()

    asyncio.run(verify())
    assert check_layout(REDIS_URL, prefix) == []


# -- 5. the pool bound ------------------------------------------------------------------------


async def test_300_concurrent_calls_share_a_pool_of_4(prefix: str, admin: Any) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, max_connections=4)
    try:
        records = [make_record("pool", f"n{i}", checkpoint=bytes([0, i])) for i in range(10)]
        await store.append(records)
        async with asyncio.timeout(SECONDS):
            reads = await asyncio.gather(*(store.read(f"n{i % 10}") for i in range(300)))
            writes = [make_record("pool-writes", f"w{i}") for i in range(300)]
            await asyncio.gather(*(store.append([record]) for record in writes))
        for i, got in enumerate(reads):
            assert_same(got, records[i % 10])
        assert len(await store.list_versions("pool-writes")) == 300
        assert 1 <= len(await connections_of(admin, prefix)) <= 4
    finally:
        await store.close()
    assert await connections_of(admin, prefix) == []  # close() closed them all


async def test_a_cancelled_call_is_cancelled_whenever_the_cancel_lands(prefix: str) -> None:
    """On Python 3.11 redis-py's wait_for can swallow a cancel that lands as the reply
    arrives: the call must still end cancelled (a cancelled save must not look done)."""
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        await store.list_executions()  # connected, scripts loaded
        swallowed = cancelled = 0
        for i in range(400):  # cancel points spread over a round trip (0 to 0.6 ms)
            call = asyncio.ensure_future(store.list_executions())
            await asyncio.sleep(i % 40 * 0.000015)
            if not call.cancel():
                continue  # done before the cancel: nothing to deliver
            cancelled += 1
            with contextlib.suppress(asyncio.CancelledError):
                await call
            swallowed += not call.cancelled()
        assert cancelled > 0
        assert swallowed == 0, f"{swallowed} of {cancelled} cancels were swallowed"
    finally:
        await store.close()


# -- 6. the persistence warning ---------------------------------------------------------------


def _persistence_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no persistence" in r.getMessage()]


async def test_persistence_warning_is_logged_once(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livingai")
    client: Any = sync_client(REDIS_URL)
    try:
        save = client.config_get("save")["save"]
        appendonly = client.config_get("appendonly")["appendonly"]
    finally:
        client.close()
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        await asyncio.gather(*(store.read("nothing") for _ in range(20)))
        await store.append([make_record("warned")])
        await store.list_executions()
    finally:
        await store.close()
    logged = _persistence_warnings(caplog)
    if save or appendonly != "no":
        assert logged == []  # the shared server persists after all
        return
    assert len(logged) == 1, logged
    assert mask_url(REDIS_URL) in logged[0]
    assert "every checkpoint is lost when Redis restarts" in logged[0]
    assert "appendonly yes" in logged[0]
    assert "TieredStore" in logged[0]


async def test_no_warning_with_an_append_only_file(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livingai")
    server.start()
    store = RedisStore(server.url, prefix="aof")
    try:
        await store.append([make_record("aof")])
    finally:
        await store.close()
    assert _persistence_warnings(caplog) == []


async def test_config_not_permitted_skips_the_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _need_binary()
    caplog.set_level(logging.WARNING, logger="livingai")
    with RedisServer(tmp_path / "acl", appendonly=False) as server:  # no persistence
        server.start()
        client: Any = redis.Redis(port=server.port)
        client.execute_command("ACL SETUSER agent on >s3cret ~* +@all -config")
        client.close()
        store = RedisStore(f"redis://agent:s3cret@127.0.0.1:{server.port}/0", prefix="acl")
        try:
            record = make_record("acl", checkpoint=b"\x00acl")
            await store.append([record])
            assert_same(await store.latest_checkpoint("acl"), record)
        finally:
            await store.close()
    assert _persistence_warnings(caplog) == []
    assert "s3cret" not in caplog.text


# -- 7. TTL -----------------------------------------------------------------------------------


async def test_ttl_applies_to_every_key_and_is_refreshed(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, ttl_seconds=100)
    client: Any = sync_client(REDIS_URL)
    try:
        first = make_record("hot", "early", checkpoint=b"\x00a")
        await store.append([first, make_record("hot", "second"), make_record("other", "x")])
        await store.append([make_record("hot", "early")])
        keys = prefix_keys(REDIS_URL, prefix)
        assert len(keys) >= 10
        for key in keys:
            assert key.startswith(f"{prefix}:".encode())
            assert 0 < client.ttl(key) <= 100, key
        # An append to the execution renews every key of it, not only the ones it writes.
        renewed = [f"{prefix}:n:early", f"{prefix}:xr:hot", f"{prefix}:xc:hot"]
        for name in renewed:
            client.expire(name, 5)
        await store.append([make_record("hot", "later")])
        for name in renewed:
            assert client.ttl(name) > 5, name
        assert client.ttl(f"{prefix}:n:x") <= 100  # another execution: untouched, still set
        # Executions whose keys expired are hidden, then pruned by the next append.
        client.zadd(f"{prefix}:executions", {"gone": 0})
        client.zadd(f"{prefix}:touched", {"gone": 0})
        assert await store.list_executions() == ["hot", "other"]
        await store.append([make_record("hot", "prune")])
        assert client.zscore(f"{prefix}:executions", "gone") is None
        assert client.zscore(f"{prefix}:touched", "gone") is None
        assert_same(await store.read("early"), (await store.history("early"))[-1])
    finally:
        client.close()
        await store.close()


async def test_without_ttl_keys_do_not_expire(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    client: Any = sync_client(REDIS_URL)
    try:
        await store.append([make_record("cold", checkpoint=b"\x00c")])
        keys = prefix_keys(REDIS_URL, prefix)
        assert keys
        assert {client.ttl(key) for key in keys} == {-1}
    finally:
        client.close()
        await store.close()


# -- 8. the password stays secret -------------------------------------------------------------


async def test_password_is_masked_in_repr_and_errors() -> None:
    store = RedisStore("redis://user:secret@127.0.0.1:1/0")
    try:
        assert "secret" not in repr(store)
        assert "redis://user:***@127.0.0.1:1/0" in repr(store)
        with pytest.raises(StoreError) as failure:
            await store.append([make_record("e")])
        assert "secret" not in str(failure.value)
        assert "127.0.0.1:1" in str(failure.value)
        assert "secret" not in repr(failure.value.__cause__)
    finally:
        await store.close()


def test_mask_url_masks_every_form_of_password() -> None:
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("rediss://u:p%40ss@h/2?password=pw&db=2") == (
        "rediss://u:***@h/2?password=***&db=2"
    )
    assert mask_url("redis://u@h:6379/0") == "redis://u@h:6379/0"
    assert mask_url("unix:///tmp/redis.sock?db=1") == "unix:///tmp/redis.sock?db=1"
    assert mask_url("unix://u:pw@/tmp/r.sock?db=1") == "unix://u:***@/tmp/r.sock?db=1"
    assert mask_url("unix:///tmp/r.sock?password=pw") == "unix:///tmp/r.sock?password=***"


# -- the store's own promises -----------------------------------------------------------------


async def test_none_and_empty_values_round_trip_distinctly(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    base = make_record("exact", "a")
    empty = NodeRecord(
        version_id="v-empty",
        node_id="a",
        execution_id="exact",
        parent_id="",
        type=base.type,
        status=base.status,
        created_at=base.created_at,
        completed_at="",
        body="",
        model="",
        prompt_tokens=0,
        completion_tokens=0,
        cost=0.0,
        checkpoint=b"",
    )
    none = NodeRecord(
        version_id="v-none",
        node_id="b",
        execution_id="exact",
        parent_id=None,
        type=base.type,
        status=base.status,
        created_at=base.created_at,
        completed_at=None,
        body="{}",
        model=None,
        prompt_tokens=None,
        completion_tokens=None,
        cost=None,
        checkpoint=None,
    )
    try:
        await store.append([empty, none])
        assert await store.read("a") == empty
        assert await store.read("b") == none
        assert await store.latest_checkpoint("exact") == empty  # b"" is a checkpoint
        assert await store.list_versions("exact") == [empty, none]
    finally:
        await store.close()
    assert unpack(pack(empty), b"") == empty
    assert unpack(pack(none), None) == none
    with pytest.raises(ValueError, match="checkpoint"):
        unpack(pack(empty), None)
    with pytest.raises(ValueError, match="checkpoint"):
        unpack(pack(none), b"")


async def test_ids_with_separators_and_globs_never_collide(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    tricky = ["x", "x:xv", "xv:x", ":", "*", "[a]", "é ✓", "x\\y", "n:x"]
    records = [
        make_record(name, name, output=name, checkpoint=b"\x00" + name.encode()) for name in tricky
    ]
    try:
        await store.append(records)
        assert await store.list_executions() == tricky
        for record in records:
            assert [v.version_id for v in await store.list_versions(record.execution_id)] == [
                record.version_id
            ]
            assert_same(await store.read(record.node_id), record)
            assert_same(await store.latest_checkpoint(record.execution_id), record)
        assert check_layout(REDIS_URL, prefix) == []
    finally:
        await store.close()


async def test_a_node_id_reused_across_executions_keeps_one_history(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    first = make_record("exec-1", "shared", output=1)
    second = make_record("exec-2", "shared", output=2)
    try:
        await store.append([first])
        await store.append([second])
        assert_same(await store.read("shared"), second)
        assert [r.version_id for r in await store.history("shared")] == [
            first.version_id,
            second.version_id,
        ]
        assert [r.version_id for r in await store.list_nodes("exec-1")] == [first.version_id]
    finally:
        await store.close()


async def test_prefixes_isolate_stores(prefix: str) -> None:
    other_prefix = f"{prefix}-other"
    one = RedisStore(REDIS_URL, prefix=prefix)
    two = RedisStore(REDIS_URL, prefix=other_prefix)
    try:
        await one.append([make_record("mine", "node")])
        assert await two.list_executions() == []
        assert await two.read("node") is None
        assert prefix_keys(REDIS_URL, prefix)
        assert prefix_keys(REDIS_URL, other_prefix) == []
    finally:
        await one.close()
        await two.close()
        delete_prefix(REDIS_URL, other_prefix)


async def test_a_script_the_server_forgot_is_sent_again(server: RedisServer) -> None:
    server.start()
    store = RedisStore(server.url, prefix="flushed")
    client: Any = redis.Redis(port=server.port)
    try:
        await store.append([make_record("flushed", "one")])
        client.script_flush()
        await store.append([make_record("flushed", "two")])
        assert [r.node_id for r in await store.list_nodes("flushed")] == ["one", "two"]
    finally:
        client.close()
        await store.close()


async def test_a_client_passed_in_is_used_and_not_closed(prefix: str) -> None:
    client: Any = redis.asyncio.Redis.from_url(REDIS_URL)
    store = RedisStore(client=client, prefix=prefix)
    try:
        assert "127.0.0.1" in repr(store) or "localhost" in repr(store)
        record = make_record("given", checkpoint=b"\x00given")
        await store.append([record])
        await store.close()
        assert await client.ping() is True  # still open: it is the caller's
        async with RedisStore(client=client, prefix=prefix) as again:
            assert_same(await again.read(record.node_id), record)
    finally:
        await client.aclose()
    decoding = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses=False"):
            RedisStore(client=decoding)
    finally:
        await decoding.aclose()


async def test_every_call_after_close_raises_closed_error(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.append([make_record("closing")])
    await store.close()
    await store.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.append([]),
        lambda: store.append([make_record("closing")]),
        lambda: store.read("n"),
        lambda: store.list_nodes("closing"),
        lambda: store.list_versions("closing"),
        lambda: store.latest_checkpoint("closing"),
        store.list_executions,
        lambda: store.history("n"),
    ]
    for call in calls:
        with pytest.raises(ClosedError, match="used after close"):
            await call()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(prefix="")
    with pytest.raises(ValueError, match="ttl_seconds"):
        RedisStore(ttl_seconds=0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        RedisStore(ttl_seconds=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_connections"):
        RedisStore(max_connections=0)


# The first loop's sockets are left to the collector, which may run at any point of the
# test (not only at the gc.collect() that ends it): their ResourceWarnings are expected.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_store_works_across_event_loops(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    record = make_record("loops", checkpoint=b"\x00loop")
    asyncio.run(store.append([record]))  # this loop's connections stay with it

    async def second_loop() -> NodeRecord | None:
        try:
            return await store.read(record.node_id)  # a new pool on the new loop
        finally:
            await store.close()

    assert_same(asyncio.run(second_loop()), record)
    gc.collect()  # the first loop's sockets, closed by the collector within this test


def test_the_core_names_the_extra_when_redis_is_missing(tmp_path: Path) -> None:
    script = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "redis":
            raise ModuleNotFoundError(name)
        return None

sys.meta_path.insert(0, Blocker())
from livingai import MissingExtraError, RedisStore
try:
    RedisStore()
except MissingExtraError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=SECONDS,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "livingai[redis]"' in done.stdout


async def test_a_large_batch_goes_out_in_pieces_and_round_trips(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    blobs = [os.urandom(1_500_000) for _ in range(6)]  # 9 MB: 35 pieces of 256 KiB
    records = [make_record("large", f"big-{i}", checkpoint=b) for i, b in enumerate(blobs)]
    try:
        await store.append(records)
        versions = await store.list_versions("large")
        assert [v.checkpoint for v in versions] == blobs
        assert check_layout(REDIS_URL, prefix) == []
    finally:
        await store.close()


def test_pieces_regroup_a_command_without_losing_a_byte() -> None:
    chunks = [b"*3\r\n$7\r\n", os.urandom(10), b"\r\n", os.urandom(2500), b"", b"tail"]
    pieces = list(keys.pieces(chunks, size=1000))
    assert b"".join(b"".join(p) for p in pieces) == b"".join(chunks)
    assert [sum(len(part) for part in p) for p in pieces] == [1000, 1000, 524]
    assert list(keys.pieces([b"small"], size=1000)) == [[b"small"]]


async def test_a_dropped_idle_connection_is_replaced_without_an_error(
    prefix: str, admin: Any
) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    record = make_record("dropped")
    try:
        await store.append([record])
        killed = 0
        for client in await connections_of(admin, prefix):
            killed += await admin.client_kill_filter(_id=client["id"])
        assert killed == 1
        assert_same(await store.read(record.node_id), record)  # no StoreError
    finally:
        await store.close()


def test_scan_pattern_escapes_glob_characters() -> None:
    assert scan_pattern("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\:*"


# -- hardening: records Redis refuses, a damaged prefix, bad credentials, corruption --------


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server taking arguments of at most 1 MiB (proto-max-bulk-len)."""
    _need_binary()
    with RedisServer(tmp_path / "small", options=("--proto-max-bulk-len", "1mb")) as private:
        private.start()
        yield private


def _node(execution_id: str, node_id: str) -> ExecutionNode:
    node = ExecutionNode(execution_id=execution_id, type=NodeType.PROMPT, status=Status.SUCCESS)
    node.id = node_id
    return node


async def test_a_state_over_the_servers_argument_limit_is_refused_not_retried(
    small_server: RedisServer,
) -> None:
    big = os.urandom(2 * 1024 * 1024)  # incompressible: 2 MiB on the wire, over 1 MiB
    # Through a wrapper that declares no limits, the record reaches the store, which
    # refuses it; the records around it land.
    store = RedisStore(small_server.url, prefix="bulk")
    engine = CheckpointEngine(FaultyStore(store, gated=True), codec=Codec.NONE)
    try:
        for node_id in ("before", "big", "after"):
            state = big if node_id == "big" else b"small"
            assert await engine.save(_node("bulk", node_id), state=state) is False
        engine.store.gate.set()  # type: ignore[attr-defined]
        with pytest.raises(RecordRejectedError, match="proto-max-bulk-len"):
            await engine.flush()
        assert [r.node_id for r in await store.list_nodes("bulk")] == ["before", "after"]
        assert engine.stats().rejected == 1
    finally:
        await engine.close()
    # Straight on the store, the engine knows the server's limit and refuses at save().
    async with CheckpointEngine(RedisStore(small_server.url, prefix="bulk")) as direct:
        await direct.list_executions()  # connected: the limit is learned
        assert direct.limits.max_state_bytes < 1024 * 1024
        with pytest.raises(InvalidNodeError, match="keeps states of at most"):
            await direct.save(_node("bulk", "big"), state=big)


async def test_a_key_of_the_wrong_type_rejects_its_records_and_stores_nothing_of_them(
    prefix: str,
) -> None:
    client: Any = sync_client(REDIS_URL)
    client.set(f"{prefix}:xv:broken", "not a sorted set")  # someone else's key
    store = RedisStore(REDIS_URL, prefix=prefix)
    broken = make_record("broken", "b1", checkpoint=b"\x00b")
    fine = make_record("fine", "f1")
    try:
        with pytest.raises(RecordRejectedError, match=r"node b1: .*:xv:broken holds a string"):
            await store.append([fine, broken])
        # All or nothing: the batch failed before writing anything, so a retry of the
        # part that is fine stores it whole, and the broken record left no trace.
        await store.append([fine])
        assert_same(await store.read("f1"), fine)
        assert await store.read("b1") is None
        assert not client.hexists(f"{prefix}:xr:broken", broken.version_id)
        assert client.llen(f"{prefix}:n:b1") == 0
        client.delete(f"{prefix}:xv:broken")
        assert check_layout(REDIS_URL, prefix) == []
        await store.append([broken])  # once the key is mended, it is stored like any other
        assert_same(await store.read("b1"), broken)
    finally:
        client.close()
        await store.close()


async def test_an_engine_isolates_the_records_a_damaged_key_rejects(prefix: str) -> None:
    client: Any = sync_client(REDIS_URL)
    client.hset(f"{prefix}:n:victim", "not", "a list")
    try:
        async with CheckpointEngine(RedisStore(REDIS_URL, prefix=prefix)) as engine:
            results = await asyncio.gather(
                *(engine.save(_node("mixed", n), durable=True) for n in ("a", "victim", "b")),
                return_exceptions=True,
            )
            assert results[0] is True
            assert results[2] is True
            assert isinstance(results[1], RecordRejectedError)
            assert [n.id for n in await engine.list_nodes("mixed")] == ["a", "b"]
            assert engine.stats().rejected == 1
    finally:
        client.close()


async def test_a_garbage_counter_makes_the_store_unusable_not_silent(prefix: str) -> None:
    client: Any = sync_client(REDIS_URL)
    client.set(f"{prefix}:seq", "garbage")
    try:
        async with CheckpointEngine(RedisStore(REDIS_URL, prefix=prefix)) as engine:
            with pytest.raises(StoreUnusableError, match=r"seq holds .*garbage.*not a counter"):
                await engine.save(_node("count", "n"), durable=True)
            assert engine.stats().abandoned == 1
    finally:
        client.close()


async def test_a_wrong_password_is_an_unusable_store(tmp_path: Path) -> None:
    _need_binary()
    with RedisServer(
        tmp_path / "auth", appendonly=False, options=("--requirepass", "right-password")
    ) as server:
        server.start()
        for url in (
            f"redis://:wrong-password@127.0.0.1:{server.port}/0",
            f"redis://127.0.0.1:{server.port}/0",  # no password at all
        ):
            async with CheckpointEngine(RedisStore(url, prefix="auth")) as engine:
                with pytest.raises(StoreUnusableError, match="check the user and password") as e:
                    await engine.save(_node("auth", "n"), durable=True)
                assert "wrong-password" not in str(e.value)
                with pytest.raises(StoreUnusableError):
                    await engine.load("n")


async def test_a_checkpoint_of_the_wrong_length_is_corrupt_and_the_plan_goes_back(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with CheckpointEngine(RedisStore(REDIS_URL, prefix=prefix)) as engine:
        first, second = _node("cut", "first"), _node("cut", "second")
        await engine.save(first, state=b"good state", durable=True)
        await engine.save(second, state=b"newer state", durable=True)
    client: Any = sync_client(REDIS_URL)
    vid = client.get(f"{prefix}:xc:cut")
    client.hset(f"{prefix}:xb:cut", vid, b"\x00cut")  # shorter than it was written
    client.close()
    async with CheckpointEngine(RedisStore(REDIS_URL, prefix=prefix)) as fresh:
        with pytest.raises(CheckpointCorruptError, match="node second"):
            await fresh.load("second")
        with caplog.at_level(logging.ERROR, logger="livingai"):
            plan = await RecoveryEngine(fresh).plan("cut")
        assert plan.resume_node_id == "first"
        assert plan.state == b"good state"
        assert "checkpoint was" in caplog.text


# -- retention --------------------------------------------------------------------------------


def _priced(execution_id: str, node_id: str, day: int, model: str, cost: float) -> NodeRecord:
    node = ExecutionNode(
        execution_id=execution_id,
        type=NodeType.PROMPT,
        status=Status.SUCCESS,
        created_at=datetime(2026, 11, day, 12, 0, tzinfo=UTC),
        model=model,
        prompt_tokens=10,
        completion_tokens=1,
        cost=cost,
    )
    node.id = node_id
    return NodeRecord.from_node(node, b"\x00" + node_id.encode())


async def test_retention_leaves_a_sound_layout_and_no_key_behind(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, ttl_seconds=100)
    client: Any = sync_client(REDIS_URL)
    try:
        await store.append(
            [
                _priced("gone", "shared", 1, "m", 0.5),
                _priced("kept", "shared", 1, "m", 0.25),
                _priced("gone", "alone", 2, "only-gone", 1.0),
                _priced("kept", "k2", 1, "m", 0.25),
            ]
        )
        await store.acquire_lease("gone", "worker", 30)
        assert await store.delete_executions(["gone"]) == 2
        assert check_layout(REDIS_URL, prefix) == []
        left = {key.decode() for key in prefix_keys(REDIS_URL, prefix)}
        assert not [key for key in left if key.endswith(":gone")], left
        assert f"{prefix}:usage:d:2026-11-02" not in left  # its only day went with it
        assert client.zrange(f"{prefix}:usage:days", 0, -1) == [b"2026-11-01"]
        assert client.hgetall(f"{prefix}:usage:d:2026-11-01") == {
            b"m\0calls": b"2",
            b"m\0prompt": b"20",
            b"m\0completion": b"2",
            b"m\0cost": b"0.5",
        }
        assert await store.usage("total") == [UsageRow("total", 2, 20, 2, 0.5)]
        assert 0 < client.ttl(f"{prefix}:n:shared") <= 100  # rewritten, still expiring
        assert await store.drop_checkpoints("kept", 1) == 1
        assert check_layout(REDIS_URL, prefix) == []
        assert 0 < client.ttl(f"{prefix}:xc:kept") <= 100
        assert await store.delete_executions(["kept"]) == 2
        # What is left is what no execution owns: the counters, which never go back, and
        # the mark that the index holds every execution.
        left = {key.decode() for key in prefix_keys(REDIS_URL, prefix)}
        owned_by_none = {"seq", "fence", "ixv", "leasedv", "leased"}
        assert left <= {f"{prefix}:{key}" for key in owned_by_none}, left
    finally:
        client.close()
        await store.close()


async def test_retention_refuses_a_damaged_key_and_changes_nothing(prefix: str) -> None:
    client: Any = sync_client(REDIS_URL)
    store = RedisStore(REDIS_URL, prefix=prefix)
    day = "2026-11-01"
    try:
        await store.append([_priced("x", "a", 1, "m", 0.5), _priced("x", "b", 1, "m", 0.5)])
        saved = {key: client.dump(key) for key in prefix_keys(REDIS_URL, prefix)}
        damages: list[tuple[str, Callable[[str], object], str, Callable[[], Awaitable[int]]]] = [
            (
                "n:b",
                lambda key: client.set(key, "x"),
                "holds a string",
                lambda: store.delete_executions(["x"]),
            ),
            (
                f"usage:d:{day}",
                lambda key: client.set(key, "x"),
                "holds a string",
                lambda: store.delete_executions(["x"]),
            ),
            (
                "usage:x:x",
                lambda key: client.hset(key, f"{day}\0m\0calls", "many"),
                "not a counter",
                lambda: store.delete_executions(["x"]),
            ),
            (
                f"usage:d:{day}",
                lambda key: client.hset(key, "m\0calls", "many"),
                "not a counter",
                lambda: store.delete_executions(["x"]),
            ),
            (
                "xb:x",
                lambda key: client.set(key, "x"),
                "holds a string",
                lambda: store.drop_checkpoints("x", 0),
            ),
        ]
        for name, damage, message, retain in damages:
            key = f"{prefix}:{name}"
            damage(key)
            with pytest.raises(StoreUnusableError, match=f"{key}.*{message}"):
                await retain()
            client.restore(key, 0, saved[key.encode()], replace=True)
            # Refused before anything was written: every key is as it was.
            assert {k: client.dump(k) for k in prefix_keys(REDIS_URL, prefix)} == saved, name
        assert await store.delete_executions(["x"]) == 2
        assert check_layout(REDIS_URL, prefix) == []
    finally:
        client.close()
        await store.close()


async def test_leases_are_listed_from_their_index_and_older_ones_found_once(prefix: str) -> None:
    """leases() reads the lease index (no SCAN of the keyspace); a store whose leases
    were taken before the index existed has them added once, by one SCAN."""
    store = RedisStore(REDIS_URL, prefix=prefix)
    client = sync_client(REDIS_URL)
    try:
        first = await store.acquire_lease("x1", "w", 30.0)
        await store.acquire_lease("x2", "w", 30.0)
        assert [lease.execution_id for lease in await store.leases()] == ["x1", "x2"]
        assert client.zcard(f"{prefix}:leased") == 2
        await store.release_lease(first)
        assert [lease.execution_id for lease in await store.leases()] == ["x2"]
        assert client.zcard(f"{prefix}:leased") == 1
        client.delete(f"{prefix}:leased", f"{prefix}:leasedv")  # as before the index
        assert [lease.execution_id for lease in await store.leases()] == ["x2"]
        assert client.get(f"{prefix}:leasedv") == b"1"
        short = await store.acquire_lease("x3", "w", 0.05)
        await until(lambda: client.pttl(f"{prefix}:lease:x3") < 0, "the lease expired")
        assert [lease.execution_id for lease in await store.leases()] == ["x2"]
        assert client.zscore(f"{prefix}:leased", short.execution_id) is None  # pruned
    finally:
        client.close()
        await store.close()
