"""open_store(url): every accepted form, on the real servers; every bad form, one clear
ConfigError that lists the accepted forms and never shows a password."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from livingai import (
    CheckpointEngine,
    ConfigError,
    ExecutionNode,
    MemoryStore,
    NodeType,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    Status,
    TieredStore,
    open_store,
)
from tests.postgres_support import drop_schema
from tests.redis_support import delete_prefix
from tests.services import POSTGRES_DSN, REDIS_URL, free_port, need_server, unique_name
from tests.test_package import _BLOCKING_PRELUDE, _marked_lines, _run_python

SECRET = "s3cret-pw"


# -- what each form opens -------------------------------------------------------------------


async def test_sqlite_paths_relative_absolute_and_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///data/agent.db")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == "data/agent.db"
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")  # four slashes: /tmp/... is absolute
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == f"{tmp_path}/abs.db"
    memory = open_store("sqlite:///:memory:")
    assert isinstance(memory, SQLiteStore)
    assert memory.path == ":memory:"
    full = open_store("sqlite:///agent.db?synchronous=full")
    assert isinstance(full, SQLiteStore)
    assert full.synchronous == "FULL"
    (tmp_path / "data").mkdir()
    for store in (relative, absolute, memory, full):
        async with store:
            await store.append([])
            assert await store.list_executions() == []
    assert (tmp_path / "data" / "agent.db").is_file()
    assert (tmp_path / "abs.db").is_file()


def test_memory() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


def test_server_urls_keep_their_options_and_hand_the_rest_to_the_driver() -> None:
    redis = open_store("rediss://u:pw@h:6380/2?prefix=app&ttl_seconds=60&socket_timeout=3")
    assert isinstance(redis, RedisStore)
    assert (redis.prefix, redis.ttl_seconds, redis.url) == (
        "app",
        60,
        "rediss://u:***@h:6380/2?socket_timeout=3",
    )
    postgres = open_store("postgres://u@h/db?schema=app&max_size=3&sslmode=disable")
    assert isinstance(postgres, PostgresStore)
    assert (postgres.schema, postgres.max_size) == ("app", 3)
    assert repr(postgres) == "PostgresStore('postgres://u@h/db?sslmode=disable', schema='app')"
    tiered = open_store("tiered:redis://h/0?prefix=hot|postgresql://u@h/db?schema=cold")
    assert isinstance(tiered, TieredStore)
    assert isinstance(tiered.hot, RedisStore)
    assert tiered.hot.prefix == "hot"
    assert isinstance(tiered.cold, PostgresStore)
    assert tiered.cold.schema == "cold"


@pytest.fixture
def urls(tmp_path: Path) -> Iterator[dict[str, str]]:
    """One URL per store kind, each over data of its own, removed afterwards."""
    need_server("Redis", REDIS_URL, 6379)
    need_server("PostgreSQL", POSTGRES_DSN, 5432)
    name = unique_name("livingai_url")
    try:
        yield {
            "sqlite": f"sqlite:///{tmp_path}/url.db",
            "redis": f"{REDIS_URL}?prefix={name}",
            "postgres": f"{POSTGRES_DSN}?schema={name}",
            "tiered": f"tiered:{REDIS_URL}?prefix={name}-hot|{POSTGRES_DSN}?schema={name}_cold",
        }
    finally:
        for prefix in (name, f"{name}-hot"):
            delete_prefix(REDIS_URL, prefix)
        for schema in (name, f"{name}_cold"):
            drop_schema(POSTGRES_DSN, schema)


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres", "tiered"])
async def test_each_url_stores_and_a_second_store_from_it_reads_back(
    kind: str, urls: dict[str, str]
) -> None:
    node = ExecutionNode(execution_id="by-url", type=NodeType.PROMPT, status=Status.SUCCESS)
    async with CheckpointEngine(open_store(urls[kind])) as engine:
        await engine.save(node, state=b"from a url")
    async with CheckpointEngine(open_store(urls[kind])) as fresh:
        loaded = await fresh.load(node.id)
    assert loaded is not None
    assert loaded.state == b"from a url"


# -- what it refuses ------------------------------------------------------------------------

BAD_URLS = {
    "no scheme": ("agent.db", "no scheme"),
    "empty": ("", "non-empty"),
    "unknown scheme": (f"mysql://root:{SECRET}@h/db", "unknown scheme 'mysql'"),
    "no slashes": ("sqlite:agent.db", "expected sqlite://"),
    "sqlite with a host": ("sqlite://host/agent.db", "names no host"),
    "sqlite without a file": ("sqlite:///", "no database file"),
    "sqlite option": ("sqlite:///a.db?journal=off", "unknown option 'journal'"),
    "memory with a path": ("memory://somewhere", "takes nothing"),
    "fragment": (f"redis://:{SECRET}@h/0#top", "no #fragment"),
    "bad option value": (f"redis://:{SECRET}@h/0?ttl_seconds=soon", "ttl_seconds='soon'"),
    "option twice": ("redis://h/0?prefix=a&prefix=b", "'prefix' is given twice"),
    "empty option": ("postgresql://h/db?schema=", "schema=''"),
    "postgres without a host": (f"postgresql://:{SECRET}@/db", "no host"),
    "driver refuses an option": (f"redis://:{SECRET}@h/0?colour=blue", "colour"),
    "half a tiered store": (f"tiered:redis://:{SECRET}@h/0", "<hot store URL>|<cold store URL>"),
    "tiered of tiered": ("tiered:tiered:memory://|memory://", "two plain stores"),
}


@pytest.mark.parametrize(("url", "says"), BAD_URLS.values(), ids=BAD_URLS.keys())
def test_a_bad_url_is_one_config_error_listing_the_forms(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    message = str(caught.value)
    assert says in message
    assert SECRET not in message
    if "redis://" not in message or "colour" not in url:  # the driver's own error aside,
        assert "accepted store URLs:" in message  # every error lists the forms
        for form in ("sqlite:///", "memory://", "redis://", "postgresql://", "tiered:"):
            assert form in message


async def test_the_password_stays_out_of_reprs_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens: every save fails and is retried, and logged
    redis = f"redis://agent:{SECRET}@127.0.0.1:{port}/0?prefix=secret"
    postgres = f"postgresql://agent:{SECRET}@127.0.0.1:{port}/db?schema=secret"
    for url in (redis, postgres, f"tiered:{redis}|{postgres}"):
        store = open_store(url)
        assert SECRET not in repr(store)
        engine = CheckpointEngine(store, overhead_budget_ms=1, retry_max_delay_seconds=0.01)
        with caplog.at_level(logging.WARNING, logger="livingai"):
            node = ExecutionNode(execution_id="secret", type=NodeType.PROMPT)
            assert await engine.save(node) is False
            await engine.close(abandon_after_seconds=0.3)
        assert engine.stats().abandoned == 1  # counted and logged, naming the store
    assert "retrying" in caplog.text  # the Redis store fails fast and is retried
    assert caplog.text.count("1 queued writes were NOT stored") == 3
    assert SECRET not in caplog.text


def test_a_missing_extra_names_the_install_line(tmp_path: Path) -> None:
    script = (
        _BLOCKING_PRELUDE
        + """
from livingai import MissingExtraError, open_store
for url in ("redis://127.0.0.1/0", "postgresql://u:SECRET@127.0.0.1/db"):
    try:
        open_store(url)
    except MissingExtraError as exc:
        print(f"{url.partition(':')[0]}={exc}")
"""
    ).replace("SECRET", SECRET)
    result = _run_python(script, "redis,psycopg,psycopg_pool", cwd=tmp_path)
    lines = _marked_lines(result.stdout)
    assert 'pip install "livingai[redis]"' in lines["redis"]
    assert 'pip install "livingai[postgres]"' in lines["postgresql"]
    assert SECRET not in result.stdout
