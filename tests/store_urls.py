"""A store of each kind no one has used yet, by URL, for tests that hand a URL to a
child process; whatever it created is removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.postgres_support import drop_schema
from tests.redis_support import delete_prefix
from tests.services import POSTGRES_DSN, REDIS_URL, need_server, unique_name

KINDS = ("sqlite", "redis", "postgres", "tiered")
CLUSTER = "redis-cluster"  # the session's Redis Cluster: a test asks for it by name


@contextmanager
def fresh_store_url(kind: str, directory: Path, prefix: str) -> Iterator[str]:
    """`kind` is one of KINDS, or CLUSTER; an SQLite file goes in `directory`, a Redis
    prefix and a PostgreSQL schema are named from `prefix`. Skips (or fails, under
    LIVINGAI_REQUIRE_SERVICES) without the server."""
    if kind == CLUSTER:
        from tests.redis_cluster_support import (
            cluster_url,
            delete_cluster_prefix,
            session_cluster,
        )

        cluster, name = session_cluster(), unique_name(prefix)
        try:
            yield cluster_url(cluster, name)
        finally:
            delete_cluster_prefix(cluster, name)
        return
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or {CLUSTER!r}; got {kind!r}")
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'runs.db'}"
        return
    if kind in ("redis", "tiered"):
        need_server("Redis", REDIS_URL, 6379)
    if kind in ("postgres", "tiered"):
        need_server("PostgreSQL", POSTGRES_DSN, 5432)
    name = unique_name(prefix)
    redis_url = f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}prefix={name}"
    postgres_url = f"{POSTGRES_DSN}{'&' if '?' in POSTGRES_DSN else '?'}schema={name}"
    try:
        if kind == "redis":
            yield redis_url
        elif kind == "postgres":
            yield postgres_url
        else:
            yield f"tiered:{redis_url}|{postgres_url}"
    finally:
        if kind in ("redis", "tiered"):
            delete_prefix(REDIS_URL, name)
        if kind in ("postgres", "tiered"):
            drop_schema(POSTGRES_DSN, name)
