"""The tiered store for the tests: Redis hot over PostgreSQL cold, both isolated by one
name (the Redis key prefix and the PostgreSQL schema), both removed afterwards by the
Redis and PostgreSQL helpers' own cleanups."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from livingai import CheckpointStore, TieredStore
from tests.postgres_support import postgres_factory
from tests.redis_support import redis_factory

StoreFactory = Callable[[], CheckpointStore]


@contextlib.contextmanager
def tier_factories(
    redis_url: str, postgres_dsn: str, name: str
) -> Iterator[tuple[StoreFactory, StoreFactory]]:
    """Factories of the hot store (Redis, prefix `name`) and the cold one (PostgreSQL,
    schema `name`); on exit the prefix's keys are deleted and the schema dropped."""
    with contextlib.ExitStack() as cleanups:
        hot = cleanups.enter_context(contextlib.contextmanager(redis_factory)(redis_url, name))
        cold = cleanups.enter_context(
            contextlib.contextmanager(postgres_factory)(postgres_dsn, name)
        )
        yield hot, cold


def tiered_factory(redis_url: str, postgres_dsn: str, name: str) -> Iterator[StoreFactory]:
    """TieredStore(RedisStore(redis_url, prefix=name), PostgresStore(postgres_dsn,
    schema=name)), each built by its own test helper; everything removed afterwards."""
    with tier_factories(redis_url, postgres_dsn, name) as (hot, cold):
        yield lambda: TieredStore(hot(), cold())
