"""Concurrent first start (issue 15): processes released at one moment, each opening a
store nobody has created yet (a new PostgreSQL schema, a new SQLite file, a new Redis
prefix), all run an agent; none of them meets a store error creating the schema (the
runtime would retry one, and log it), and the store then holds every run.

The processes are spawned, not forked (the test's event loop stays in the parent), and
wait at one multiprocessing barrier, so they reach the store together; every wait is
bounded, and any process still there at the end is killed. On PostgreSQL the interleaving
they meet by chance is also made certain, in one process.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
from collections.abc import Iterator
from contextlib import AsyncExitStack
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from livingai import CheckpointEngine, PostgresStore, Run, Runtime, Status, open_store
from livingai._stores.postgres_sql import LOCK_CLASS, statements
from tests.postgres_support import drop_schema
from tests.services import POSTGRES_DSN, need_server, unique_name
from tests.store_urls import fresh_store_url

PROCESSES = 6
SECONDS = 30.0  # the bound on every wait: a process that hangs fails the test
# The one warning a healthy start may log: the test server's setting, not the start's.
NO_PERSISTENCE = "the Redis server has no persistence"

Answer = tuple[str, str, list[str]]  # execution id, result or error, warnings logged
WAITING = """
    SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)
    WHERE locktype = 'advisory' AND NOT granted AND application_name = %s
"""


def greeting(name: str) -> str:
    return f"hello {name}"


async def greeter(run: Run, name: str) -> str:
    return str(await run.step("greet", greeting, name))


async def first_run(url: str, execution_id: str, barrier: Barrier) -> str:
    """One run on a store opened here; the barrier is passed just before its first call."""
    async with Runtime(CheckpointEngine(open_store(url))) as runtime:
        await asyncio.to_thread(barrier.wait, SECONDS)
        result = await runtime.run(greeter, execution_id, execution_id=execution_id)
        return str(result)


class Warnings(logging.Handler):
    """The warnings livingai logs: a store call that failed and is retried is one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if NO_PERSISTENCE not in message:
            self.messages.append(message)


def child(
    url: str, execution_id: str, barrier: Barrier, results: multiprocessing.Queue[Answer]
) -> None:
    """A process of its own: its run's result, or the error it ended with, and what it
    warned about."""
    warnings = Warnings()
    logging.getLogger("livingai").addHandler(warnings)
    try:
        answer = asyncio.run(first_run(url, execution_id, barrier))
    except BaseException as exc:
        answer = f"{type(exc).__name__}: {exc}"
    results.put((execution_id, answer, warnings.messages))


def run_at_once(url: str, execution_ids: list[str]) -> tuple[dict[str, str], list[str]]:
    """Each run in a process of its own, all released together; their answers by id,
    and every warning any of them logged."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(execution_ids))
    results: multiprocessing.Queue[Answer] = context.Queue()
    processes = [
        context.Process(target=child, args=(url, execution_id, barrier, results), daemon=True)
        for execution_id in execution_ids
    ]
    for process in processes:
        process.start()
    answers: dict[str, str] = {}
    warned: list[str] = []
    try:
        for _ in processes:
            execution_id, answer, messages = results.get(timeout=2 * SECONDS)
            answers[execution_id] = answer
            warned += messages
    except queue.Empty:
        pytest.fail(f"only {sorted(answers)} answered within {2 * SECONDS:g}s")
    finally:
        for process in processes:
            process.join(SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
    return answers, warned


@pytest.fixture
def new_schema() -> Iterator[str]:
    """A PostgreSQL schema no one has used yet, dropped afterwards."""
    need_server("PostgreSQL", POSTGRES_DSN, 5432)
    schema = unique_name("livingai_first")
    try:
        yield schema
    finally:
        drop_schema(POSTGRES_DSN, schema)


@pytest.fixture(params=["postgres", "sqlite", "redis"])
def new_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a store no one has used yet; whatever it created is gone afterwards."""
    with fresh_store_url(str(request.param), tmp_path, "livingai_first") as url:
        yield url


@pytest.mark.timeout(120)
async def test_processes_starting_together_on_a_new_store_all_run(new_store_url: str) -> None:
    ids = [f"first-{n}" for n in range(PROCESSES)]
    answers, warned = await asyncio.to_thread(run_at_once, new_store_url, ids)
    assert answers == {execution_id: f"hello {execution_id}" for execution_id in ids}
    assert warned == []
    async with Runtime(CheckpointEngine(open_store(new_store_url))) as runtime:
        summaries = await runtime.executions()
    assert sorted((s.execution_id, s.agent, s.status, s.steps) for s in summaries) == [
        (execution_id, "greeter", Status.SUCCESS, 1) for execution_id in ids
    ]


async def waiting_for_lock(application: str, call: asyncio.Future[Any]) -> None:
    """Until a connection named `application` waits for an advisory lock (or `call`
    ended without waiting: its error, then)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECONDS
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        while not call.done():
            cursor = await conn.execute(WAITING, (application,))
            if await cursor.fetchone() == (1,):
                return
            assert loop.time() < deadline, f"{application} never waited for the lock"
            await asyncio.sleep(0.005)
    await call


async def settled(call: asyncio.Future[Any]) -> None:
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)


@pytest.mark.parametrize("autocommit", [True, False], ids=["own", "pool_not_autocommit"])
async def test_a_store_that_waited_while_another_created_the_schema_takes_it_as_done(
    new_schema: str, autocommit: bool
) -> None:
    """The store looks, finds no schema and waits for the lock; meanwhile its holder
    creates the schema, commits and lets go. The store must see that it is done."""
    q = statements(new_schema)
    key = (LOCK_CLASS, new_schema)
    application = unique_name("first_start")
    async with AsyncExitStack() as stack:
        holder = await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True)
        await stack.enter_async_context(holder)
        if autocommit:
            store = PostgresStore(POSTGRES_DSN, schema=new_schema, application_name=application)
        else:
            options = {"autocommit": False, "application_name": application}
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                POSTGRES_DSN, min_size=1, max_size=2, open=False, kwargs=options
            )
            await stack.enter_async_context(pool)
            store = PostgresStore(pool=pool, schema=new_schema)
        stack.push_async_callback(store.close)
        await holder.execute(q.lock, key)
        first = asyncio.ensure_future(store.list_executions())
        stack.push_async_callback(settled, first)  # when the test fails before it ends
        await waiting_for_lock(application, first)
        async with holder.transaction():  # what a process migrating first does
            await holder.execute(q.create_schema)
            await holder.execute(q.create_version_table)
            for script in q.migrations:
                await holder.execute(script)
            await holder.execute(q.write_version, (len(q.migrations),))
        await holder.execute(q.unlock, key)
        assert await asyncio.wait_for(first, SECONDS) == []
