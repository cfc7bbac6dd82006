"""RedisStore's index of executions (redis_index) beyond the conformance suite: the keys
it is made of, a store written before the index existed backfilled (on one server and
on a cluster), a backfill cut short taken up where it stopped, an old execution indexed
by the append that finds it unindexed, and executions whose keys expired hidden.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from livingai import ExecutionEntry, ExecutionPage, PageQuery, RedisStore, Status
from livingai._stores import redis_index
from livingai._stores.redis import INDEX
from livingai._stores.redis_buckets import bucket_prefixes, key_slot
from livingai._stores.redis_keys import scan_pattern
from livingai.testing.index_checks import T0, run_record, scanned, step_record, walk
from livingai.testing.redis_cluster import LocalRedisCluster
from tests.redis_cluster_support import delete_cluster_prefix
from tests.redis_support import delete_prefix, sync_client
from tests.services import REDIS_URL, need_server, unique_name

QUERIES = [
    PageQuery(limit=7),
    PageQuery(limit=4, status="RUNNING"),
    PageQuery(limit=4, status="SUCCESS", agent="shop"),
    PageQuery(limit=5, agent=""),
    PageQuery(limit=3, since=(T0 + timedelta(seconds=50)).isoformat()),
]


@pytest.fixture
def prefix() -> Iterator[str]:
    need_server("Redis", REDIS_URL, 6379)
    name = unique_name("livingai-index-test")
    try:
        yield name
    finally:
        delete_prefix(REDIS_URL, name)


async def _history(store: RedisStore, count: int, seed: int = 7) -> None:
    """`count` executions: runs of two agents in every status, and threads (not runs)."""
    rng = random.Random(seed)
    batch = []
    for n in range(count):
        at = T0 + timedelta(seconds=rng.randrange(100))
        if n % 5 == 4:
            batch.append(step_record(f"thread-{n}", "checkpoint", at=at))
        else:
            status = rng.choice(list(Status))
            agent = rng.choice(["travel", "shop"])
            batch += [run_record(f"run-{n}", Status.RUNNING, agent=agent, at=at)]
            batch += [
                step_record(f"run-{n}", "s1", at=at),
                run_record(f"run-{n}", status, at=at, agent=agent),
            ]
        if len(batch) >= 300:
            await store.append(batch)
            batch = []
    if batch:
        await store.append(batch)


async def _agrees(store: RedisStore) -> None:
    """The index answers what a scan of every log does."""
    entries = await scanned(store)
    opened = [e for e in entries if e.status in ("PENDING", "RUNNING")]
    assert await store.open_runs() == sorted(opened, key=lambda e: e.key)
    for query in QUERIES:
        want = ExecutionPage.of(entries, PageQuery(**{**query.__dict__, "limit": 1000}))
        assert await walk(store, query) == want.entries, query


def _drop_index(client: Any, p: str) -> int:
    """Delete the index of the layout under `p`: the store as an older version left it."""
    keys = [f"{p}:ie", f"{p}:ix", f"{p}:ixv", f"{p}:ixb"]
    for tag in ("ia:", "is:", "isa:"):
        keys += [k.decode() for k in client.scan_iter(match=scan_pattern(p, tag), count=1000)]
    return sum(int(client.delete(key)) for key in keys)


async def test_the_index_is_made_of_the_documented_keys(prefix: str) -> None:
    async with RedisStore(REDIS_URL, prefix=prefix) as store:
        await store.append([run_record("r", Status.RUNNING, agent="a"), step_record("t", "c")])
    client: Any = sync_client(REDIS_URL)
    try:
        started = T0.isoformat()
        assert client.hgetall(f"{prefix}:ie") == {
            b"r": f"{started}\0RUNNING\0a".encode(),
            b"t": f"{started}\0\0".encode(),
        }
        assert client.zrange(f"{prefix}:ix", 0, -1) == [f"{started}\0{x}".encode() for x in "rt"]
        assert client.zrange(f"{prefix}:ia:a", 0, -1) == [f"{started}\0r".encode()]
        assert client.zrange(f"{prefix}:ia:", 0, -1) == [f"{started}\0t".encode()]
        assert client.zrange(f"{prefix}:is:RUNNING", 0, -1) == [f"{started}\0r".encode()]
        assert client.zrange(f"{prefix}:isa:RUNNING:a", 0, -1) == [f"{started}\0r".encode()]
        # A store's first append finds it empty: every execution is indexed as it comes.
        assert client.get(f"{prefix}:ixv") == b"1"
    finally:
        client.close()


async def test_a_store_written_before_the_index_is_backfilled(prefix: str) -> None:
    client: Any = sync_client(REDIS_URL)
    try:
        async with RedisStore(REDIS_URL, prefix=prefix) as old:
            await _history(old, 300)
            assert _drop_index(client, prefix) > 0  # what an older livingai left behind
            # An old run goes on before the backfill reached it: that append indexes it.
            await old.append([step_record("run-0", "after-upgrade")])
        async with RedisStore(REDIS_URL, prefix=prefix) as store:
            await _agrees(store)  # the first index read backfills everything
        assert client.get(f"{prefix}:ixv") == b"1"
        assert client.get(f"{prefix}:ixb") is None
    finally:
        client.close()


async def test_a_backfill_cut_short_is_taken_up_where_it_stopped(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_index, "BACKFILL_CHUNK", 40)  # 100 executions: 3 calls
    client: Any = sync_client(REDIS_URL)
    try:
        async with RedisStore(REDIS_URL, prefix=prefix) as store:
            await _history(store, 100)
            _drop_index(client, prefix)
            # One chunk, as a process killed after its first backfill call leaves it.
            done, indexed = await store._call(0, INDEX, "backfill", "", "40")
        assert (int(done), int(indexed)) == (0, 40)
        assert client.get(f"{prefix}:ixv") is None
        assert client.get(f"{prefix}:ixb") is not None
        assert client.hlen(f"{prefix}:ie") == 40
        async with RedisStore(REDIS_URL, prefix=prefix) as fresh:
            await _agrees(fresh)  # goes on from the 41st execution, and indexes each once
        assert client.hlen(f"{prefix}:ie") == 100
        assert client.get(f"{prefix}:ixv") == b"1"
    finally:
        client.close()


async def test_a_cluster_written_before_the_index_is_backfilled(
    redis_cluster: LocalRedisCluster,
) -> None:
    name = unique_name("livingai-index-cluster")
    seed = redis_cluster.url.replace("redis+cluster://", "redis://")
    try:
        async with RedisStore(seed, prefix=name, cluster=True) as old:
            await _history(old, 120)
        for bucket in bucket_prefixes(name):
            client: Any = redis_cluster.client(redis_cluster.owner(key_slot(bucket)))
            try:
                _drop_index(client, bucket)
            finally:
                client.close()
        async with RedisStore(seed, prefix=name, cluster=True) as store:
            await _agrees(store)
    finally:
        delete_cluster_prefix(redis_cluster, name)


async def test_executions_whose_keys_expired_are_hidden_then_pruned(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, ttl_seconds=100)
    client: Any = sync_client(REDIS_URL)
    try:
        await store.append([run_record("gone", Status.RUNNING), run_record("kept", Status.RUNNING)])
        client.delete(f"{prefix}:xr:gone")  # as its keys expiring would
        client.zadd(f"{prefix}:touched", {"gone": 0})  # long since touched
        kept = ExecutionEntry("kept", T0.isoformat(), "agent", "RUNNING")
        assert await store.open_runs() == [kept]
        assert (await store.list_page(PageQuery(limit=1))).entries == [kept]
        assert client.hexists(f"{prefix}:ie", "gone")  # hidden, not yet pruned
        await store.append([step_record("kept", "later")])  # an append prunes it
        assert not client.hexists(f"{prefix}:ie", "gone")
        assert client.zrange(f"{prefix}:ix", 0, -1) == [f"{T0.isoformat()}\0kept".encode()]
        assert 0 < client.ttl(f"{prefix}:is:RUNNING") <= 100
    finally:
        client.close()
        await store.close()
