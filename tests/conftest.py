"""Fixtures shared by the suite: fresh, empty stores of every kind, isolated per test.

Server URLs come from the environment, with loopback defaults:

    LIVINGAI_TEST_REDIS_URL      redis://127.0.0.1:6379/0
    LIVINGAI_TEST_POSTGRES_DSN   postgresql://postgres@127.0.0.1:5432/test

Without a server, the tests of that store skip and say why; with
LIVINGAI_REQUIRE_SERVICES=1 (set by .ci/run) such a skip is a failure instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from livingai import CheckpointStore, MemoryStore, SQLiteStore

StoreFactory = Callable[[], CheckpointStore]

REDIS_URL = os.environ.get("LIVINGAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "LIVINGAI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("LIVINGAI_REQUIRE_SERVICES") == "1"

STORE_KINDS = ["memory", "sqlite", "redis", "postgres", "tiered"]
PERSISTENT_KINDS = ["sqlite", "redis", "postgres", "tiered"]  # a second store object sees
# what the first one stored


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def need_server(name: str, url: str, default_port: int) -> None:
    """Skip (or, under LIVINGAI_REQUIRE_SERVICES=1, fail) when the server is not there."""
    if reachable(url, default_port):
        return
    reason = f"{name} is not reachable at {url}; start it or set the URL variable"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LIVINGAI_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


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
