"""Fixtures shared by the suite: fresh, empty stores of every kind, isolated per test.

The servers are those of tests/services.py; without one, the tests of that store skip and
say why, and with LIVINGAI_REQUIRE_SERVICES=1 (set by .ci/run) such a skip is a failure.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from livingai import CheckpointStore, MemoryStore, SQLiteStore
from tests.services import POSTGRES_DSN, REDIS_URL, need_server, unique_name

if TYPE_CHECKING:
    from livingai.testing.redis_cluster import LocalRedisCluster

StoreFactory = Callable[[], CheckpointStore]

# The command line's output is checked as a pipe gets it, whoever runs the tests:
# pytest-xdist's workers set COLUMNS=80, which narrows every table.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

# A framework's tests run in its own venv (scripts/test); elsewhere there is nothing to
# import them with.
collect_ignore = [
    name
    for name, module in (
        ("openai_agents", "agents"),
        ("crewai", "crewai"),
        ("pydantic_ai", "pydantic_ai"),
    )
    if importlib.util.find_spec(module) is None
]

STORE_KINDS = ["memory", "sqlite", "redis", "postgres", "tiered"]
# Also "redis-cluster" (RedisStore on the session's Redis Cluster, see `redis_cluster`),
# which tests ask for by name: the store suites run on it in tests/test_redis_cluster.py,
# not every test of every store (the whole suite must stay under ten minutes).
PERSISTENT_KINDS = ["sqlite", "redis", "postgres", "tiered"]  # a second store object sees
# what the first one stored


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _factory(kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores of one kind over the same data (file, key prefix, schema); removed after."""
    if kind == "memory":
        yield MemoryStore
    elif kind == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "store.db")
    elif kind == "redis":
        need_server("Redis", REDIS_URL, 6379)
        from tests.redis_support import redis_factory

        yield from redis_factory(REDIS_URL, unique_name("livingai-test"))
    elif kind == "redis-cluster":
        from tests.redis_cluster_support import cluster_factory, session_cluster

        yield from cluster_factory(session_cluster(), unique_name("livingai-test"))
    elif kind == "postgres":
        need_server("PostgreSQL", POSTGRES_DSN, 5432)
        from tests.postgres_support import postgres_factory

        yield from postgres_factory(POSTGRES_DSN, unique_name("livingai_test"))
    elif kind == "tiered":
        need_server("Redis", REDIS_URL, 6379)
        need_server("PostgreSQL", POSTGRES_DSN, 5432)
        from tests.tiered_support import tiered_factory

        yield from tiered_factory(REDIS_URL, POSTGRES_DSN, unique_name("livingai_test"))
    else:
        raise AssertionError(f"unknown store kind {kind!r}")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A throwaway 3-primary Redis Cluster on loopback ports, one a test process, stopped
    and removed when the session ends (skips without redis-server and redis-cli)."""
    from tests.redis_cluster_support import session_cluster, stop_session_cluster

    yield session_cluster()
    stop_session_cluster()


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    yield from _factory(str(request.param), tmp_path)


@pytest.fixture(params=PERSISTENT_KINDS)
def persistent_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    yield from _factory(str(request.param), tmp_path)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[CheckpointStore]:
    opened = store_factory()
    yield opened
    await opened.close()
