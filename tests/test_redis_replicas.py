"""wait_replicas on one Redis server with a replica (private redis-servers on spare
loopback ports): an acknowledged append is on the replica when append returns, and an
append that fewer replicas acknowledge than asked for fails as a transient StoreError
(the engine sends it again) instead of returning as if it were safe."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from livingai import CheckpointEngine, ExecutionNode, NodeType, RedisStore, Status, StoreError
from livingai.testing import make_record
from tests.redis_support import RedisServer, redis_server_binary, sync_client
from tests.services import skip_or_fail

SECONDS = 30.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica, the replica's link up (shared by the module's tests,
    which use prefixes of their own)."""
    if redis_server_binary() is None:
        skip_or_fail("redis-server is not installed: the replica tests start their own")
    tmp_path = tmp_path_factory.mktemp("replicas")
    fast = ("--repl-diskless-sync-delay", "0")  # a replica syncs at once, not after 5 s
    with RedisServer(tmp_path / "primary", appendonly=False, options=fast) as primary:
        primary.start()
        options = ("--replicaof", "127.0.0.1", str(primary.port), *fast)
        with RedisServer(tmp_path / "replica", appendonly=False, options=options) as replica:
            replica.start()
            client: Any = sync_client(replica.url)
            try:
                _until(lambda: client.info("replication")["master_link_status"] == "up")
            finally:
                client.close()
            yield primary, replica


def _until(condition: Any) -> None:
    import time

    deadline = time.monotonic() + SECONDS
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the replica"
        time.sleep(0.01)  # polling a condition, bounded by the deadline


async def test_an_acknowledged_append_is_on_the_replica(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    store = RedisStore(primary.url, prefix="w", wait_replicas=1, wait_timeout_ms=5000)
    client: Any = sync_client(replica.url)
    try:
        records = [make_record(f"exec-{n}", f"exec-{n}/s", checkpoint=b"\x00s") for n in range(5)]
        for record in records:
            await store.append([record])
            # Read at once from the replica: WAIT returned only once it had the batch.
            assert client.hexists(f"w:xr:{record.execution_id}", record.version_id)
        engine = CheckpointEngine(store)
        async with engine:
            node = ExecutionNode(execution_id="run", type=NodeType.PROMPT, status=Status.SUCCESS)
            assert await engine.save(node, durable=True)
        assert client.hlen("w:xr:run") == 1
    finally:
        client.close()
        await store.close()


async def test_too_few_replicas_make_the_append_fail_not_succeed(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, _ = pair
    store = RedisStore(primary.url, prefix="w2", wait_replicas=2, wait_timeout_ms=200)
    try:
        async with asyncio.timeout(SECONDS):
            with pytest.raises(
                StoreError, match="1 of 2 replicas acknowledged the batch within 200 ms"
            ):
                await store.append([make_record("lonely", "lonely/s")])
            # It is stored on the primary all the same, and a retry stores it once.
            assert len(await store.list_versions("lonely")) == 1
    finally:
        await store.close()
