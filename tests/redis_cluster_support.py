"""Redis Cluster for the tests: one throwaway 3-primary cluster a test process
(livingai.testing.redis_cluster), started when a test first needs it (the session
fixture `redis_cluster` of tests/conftest.py, or the "redis-cluster" store kind) and
stopped when the session ends; stores over a throwaway prefix on it; the layout's
invariants checked bucket by bucket.

Without redis-server or redis-cli the tests that need a cluster skip, saying so (under
LIVINGAI_REQUIRE_SERVICES=1 they fail instead).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator
from typing import Any

from livingai import CheckpointStore, RedisStore
from livingai._stores.redis_buckets import bucket_prefixes, key_slot
from livingai._stores.redis_keys import scan_pattern
from livingai.testing.redis_cluster import LocalRedisCluster, missing_binaries
from tests.redis_support import check_layout
from tests.services import skip_or_fail

_session: LocalRedisCluster | None = None


def need_binaries() -> None:
    missing = missing_binaries()
    if missing:
        skip_or_fail(
            f"{' and '.join(missing)} not found: the Redis Cluster tests start a cluster "
            "of their own (apt-get install redis-server)"
        )


def session_cluster() -> LocalRedisCluster:
    """The cluster of this test process: 3 primaries, no replicas; started once."""
    global _session
    if _session is None:
        need_binaries()
        # No replicas, and a primary is thought gone only after 15 s: nothing here is
        # meant to fail over, not even on a machine slowed down by other suites.
        _session = LocalRedisCluster(masters=3, node_timeout_ms=15_000).start()
        atexit.register(stop_session_cluster)  # if the fixture below never ran
    return _session


def stop_session_cluster() -> None:
    global _session
    if _session is not None:
        _session.stop()
        _session = None


def cluster_url(cluster: LocalRedisCluster, prefix: str) -> str:
    return f"{cluster.url}?prefix={prefix}"


def cluster_factory(
    cluster: LocalRedisCluster, prefix: str
) -> Iterator[Callable[[], CheckpointStore]]:
    """Stores over one prefix of the cluster; every key under it is deleted afterwards."""
    seed = cluster.url.replace("redis+cluster://", "redis://")
    try:
        yield lambda: RedisStore(seed, prefix=prefix, cluster=True)
    finally:
        delete_cluster_prefix(cluster, prefix)


def delete_cluster_prefix(cluster: LocalRedisCluster, prefix: str) -> int:
    """UNLINK every key under `prefix` on every primary (a slot at a time); how many."""
    deleted = 0
    for node in cluster.primaries():
        client: Any = cluster.client(node)
        try:
            by_slot: dict[int, list[bytes]] = {}
            for key in client.scan_iter(match=scan_pattern(prefix), count=1000):
                by_slot.setdefault(key_slot(key.decode()), []).append(key)
            for keys in by_slot.values():
                deleted += int(client.unlink(*keys))
        finally:
            client.close()
    return deleted


def prefix_keys(cluster: LocalRedisCluster, prefix: str) -> list[bytes]:
    found: list[bytes] = []
    for node in cluster.primaries():
        client: Any = cluster.client(node)
        try:
            found += client.scan_iter(match=scan_pattern(prefix), count=1000)
        finally:
            client.close()
    return found


def check_cluster_layout(cluster: LocalRedisCluster, prefix: str) -> list[str]:
    """Every broken invariant of the layout, bucket by bucket, each on the primary that
    serves it (tests/redis_support.check_layout), and any key of the prefix outside
    the buckets."""
    problems = []
    buckets = bucket_prefixes(prefix)
    for bucket in buckets:
        owner = cluster.owner(key_slot(bucket))
        url = f"redis://127.0.0.1:{owner.port}/0"
        problems += [f"{bucket}: {problem}" for problem in check_layout(url, bucket)]
    for key in prefix_keys(cluster, prefix):
        if not key.decode().startswith(tuple(f"{b}:" for b in buckets)):
            problems.append(f"{key!r} is in no bucket")
    return problems
