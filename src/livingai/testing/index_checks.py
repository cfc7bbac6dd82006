"""The conformance suite of an IndexStore (open runs and pages of executions from an
index): INDEX_TESTS, each a plain `async def test_x(store)` taking a fresh, empty, open
store, as the rest of livingai.testing. The last one checks the index against a
brute-force scan of the store's own logs over random histories: runs started, finished,
crashed, stopped for a human, forked and replayed executions, executions that are not
runs, and (on a RetentionStore) executions and run records deleted."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from livingai import (
    ExecutionEntry,
    ExecutionNode,
    ExecutionPage,
    IndexStore,
    NodeRecord,
    NodeType,
    PageQuery,
    RetentionStore,
    Status,
)

IndexCheck = Callable[[IndexStore], Awaitable[None]]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def run_record(
    execution_id: str,
    status: Status,
    *,
    agent: str = "agent",
    at: datetime = T0,
    metadata: Mapping[str, object] | None = None,
) -> NodeRecord:
    """A version of an execution's run record, as the runtime writes it."""
    node = ExecutionNode(
        id=f"{execution_id}/run",
        execution_id=execution_id,
        type=NodeType.MEMORY,
        status=status,
        created_at=at,
        metadata={"agent": agent, **(metadata or {})},
    )
    return NodeRecord.from_node(node)


def step_record(execution_id: str, name: str, *, at: datetime = T0) -> NodeRecord:
    node = ExecutionNode(
        id=f"{execution_id}/{name}",
        execution_id=execution_id,
        type=NodeType.PROMPT,
        status=Status.SUCCESS,
        created_at=at,
    )
    return NodeRecord.from_node(node)


async def walk(store: IndexStore, query: PageQuery) -> list[ExecutionEntry]:
    """Every entry `query` matches, page after page."""
    found: list[ExecutionEntry] = []
    cursor = None
    for _ in range(10_000):
        page = await store.list_page(PageQuery(**{**query.__dict__, "cursor": cursor}))
        assert len(page.entries) <= query.limit
        found += page.entries
        if page.cursor is None:
            return found
        assert page.entries, "a page with a cursor holds entries"
        cursor = page.cursor
    raise AssertionError("the pages never ended")


async def scanned(store: IndexStore) -> list[ExecutionEntry]:
    """What the index should hold, worked out from every log."""
    entries = []
    for execution_id in await store.list_executions():
        entry = ExecutionEntry.of(execution_id, await store.list_versions(execution_id))
        if entry is not None:
            entries.append(entry)
    return entries


def _open(entries: Sequence[ExecutionEntry]) -> list[ExecutionEntry]:
    opened = [e for e in entries if e.status in (Status.PENDING.value, Status.RUNNING.value)]
    return sorted(opened, key=lambda e: e.key)


async def open_ids(store: IndexStore) -> list[str]:
    found = await store.open_runs()
    assert all(isinstance(e, ExecutionEntry) for e in found), (
        "open_runs() answers ExecutionEntry objects (the runs' entries), not ids"
    )
    return [e.execution_id for e in found]


async def test_open_runs_are_the_runs_not_finished(store: IndexStore) -> None:
    at = [T0 + timedelta(minutes=n) for n in range(5)]
    await store.append(
        [
            run_record("crashed", Status.RUNNING, at=at[0]),
            step_record("crashed", "s1", at=at[0]),
            run_record("done", Status.RUNNING, at=at[1]),
            run_record("queued", Status.PENDING, at=at[2]),
            step_record("thread", "checkpoint", at=at[3]),  # not a run
        ]
    )
    await store.append([run_record("done", Status.SUCCESS, at=at[1])])
    assert await open_ids(store) == ["crashed", "queued"]
    await store.append([run_record("crashed", Status.FAILED, at=at[0])])
    await store.append([run_record("done", Status.RUNNING, at=at[4])])  # started again
    assert await open_ids(store) == ["done", "queued"]  # by when each started
    (done, _) = await store.open_runs()
    assert (done.started_at, done.agent, done.status) == (at[1].isoformat(), "agent", "RUNNING")


async def test_pages_list_newest_first_and_the_cursor_goes_on(store: IndexStore) -> None:
    records = [
        run_record(f"r{n:02}", Status.SUCCESS, at=T0 + timedelta(seconds=n)) for n in range(7)
    ]
    records.append(step_record("t", "c", at=T0 + timedelta(seconds=3)))  # a tie on time
    await store.append(records)
    first = await store.list_page(PageQuery(limit=3))
    assert [e.execution_id for e in first.entries] == ["r06", "r05", "r04"]
    assert first.cursor is not None
    second = await store.list_page(PageQuery(limit=3, cursor=first.cursor))
    assert [e.execution_id for e in second.entries] == ["t", "r03", "r02"]  # "t" > "r03"
    assert second.cursor is not None
    third = await store.list_page(PageQuery(limit=3, cursor=second.cursor))
    assert [e.execution_id for e in third.entries] == ["r01", "r00"]
    assert third.cursor is None
    (thread,) = [e for e in second.entries if e.execution_id == "t"]
    assert (thread.agent, thread.status) == ("", None)  # not a run
    (run,) = [e for e in third.entries if e.execution_id == "r00"]
    assert (run.agent, run.status, run.started_at) == ("agent", "SUCCESS", T0.isoformat())
    exact = await store.list_page(PageQuery(limit=8))
    assert (len(exact.entries), exact.cursor) == (8, None)  # no empty page after the last


async def test_pages_are_filtered_by_status_agent_and_time(store: IndexStore) -> None:
    await store.append(
        [
            run_record(f"x{n}", status, agent=agent, at=T0 + timedelta(hours=n))
            for n, (status, agent) in enumerate(
                [
                    (Status.SUCCESS, "a"),
                    (Status.RUNNING, "a"),
                    (Status.FAILED, "b"),
                    (Status.SUCCESS, "b"),
                    (Status.SUCCESS, "a"),
                ]
            )
        ]
    )

    async def ids(**query: object) -> list[str]:
        return [e.execution_id for e in await walk(store, PageQuery(limit=2, **query))]  # type: ignore[arg-type]

    assert await ids(status="SUCCESS") == ["x4", "x3", "x0"]
    assert await ids(agent="b") == ["x3", "x2"]
    assert await ids(status="SUCCESS", agent="a") == ["x4", "x0"]
    since, until = (T0 + timedelta(hours=1)).isoformat(), (T0 + timedelta(hours=4)).isoformat()
    assert await ids(since=since, until=until) == ["x3", "x2", "x1"]
    assert await ids(status="RUNNING", agent="b") == []


async def test_the_index_agrees_with_the_logs_over_random_histories(store: IndexStore) -> None:
    rng = random.Random(20261208)
    statuses = [Status.SUCCESS, Status.FAILED, Status.RUNNING, Status.PENDING]
    agents = ["travel", "shop", ""]
    started: list[str] = []
    for step in range(160):
        at = T0 + timedelta(seconds=rng.randrange(0, 400))  # times repeat: ties on time
        roll = rng.random()
        if roll < 0.35 or not started:  # a run starts (some crash: RUNNING is left)
            execution_id = f"run-{step}"
            started.append(execution_id)
            agent = rng.choice(agents)
            batch = [run_record(execution_id, Status.RUNNING, agent=agent, at=at)]
            batch += [step_record(execution_id, f"s{n}", at=at) for n in range(rng.randrange(3))]
            await store.append(batch)
        elif roll < 0.6:  # a run goes on: finishes, fails, is resumed, waits for a human
            execution_id = rng.choice(started)
            status = rng.choice(statuses)
            human = {"needs_human": {"why": "approve"}} if rng.random() < 0.2 else None
            await store.append(
                [run_record(execution_id, status, agent=rng.choice(agents), at=at, metadata=human)]
            )
        elif roll < 0.7:  # forked or replayed from another: a run of its own
            source = rng.choice(started)
            execution_id = f"fork-{step}"
            started.append(execution_id)
            link = {"forked_from": source} if roll < 0.65 else {"replay_of": source}
            await store.append(
                [run_record(execution_id, rng.choice(statuses), at=at, metadata=link)]
            )
        elif roll < 0.85:  # an execution that is not a run (a LangGraph thread, say)
            await store.append([step_record(f"thread-{step % 11}", f"c{step}", at=at)])
        elif isinstance(store, RetentionStore):  # retention
            execution_id = rng.choice(started)
            if rng.random() < 0.5:
                await store.delete_executions([execution_id])
            else:
                await store.delete_nodes(execution_id, [f"{execution_id}/run"])
        if step % 40 == 39:
            await _agrees(store, rng)
    await _agrees(store, rng)


async def _agrees(store: IndexStore, rng: random.Random) -> None:
    entries = await scanned(store)
    by_id = {e.execution_id: e for e in entries}
    await open_ids(store)
    assert await store.open_runs() == _open(entries)
    queries = [PageQuery(limit=rng.choice([1, 3, 7, 50]))]
    queries += [PageQuery(limit=4, status=s) for s in ("RUNNING", "SUCCESS", "FAILED")]
    queries += [PageQuery(limit=5, agent=a) for a in ("travel", "")]
    low = (T0 + timedelta(seconds=rng.randrange(0, 200))).isoformat()
    high = (T0 + timedelta(seconds=rng.randrange(200, 400))).isoformat()
    queries += [PageQuery(limit=6, since=low, until=high), PageQuery(limit=2, since=low)]
    queries += [PageQuery(limit=3, status="RUNNING", agent="shop", until=high)]
    for query in queries:
        want = ExecutionPage.of(entries, PageQuery(**{**query.__dict__, "limit": len(entries) + 1}))
        got = await walk(store, query)
        assert [e.execution_id for e in got] == [e.execution_id for e in want.entries], query
        for entry in got:
            assert entry == by_id[entry.execution_id], entry


INDEX_TESTS: list[IndexCheck] = [
    test_open_runs_are_the_runs_not_finished,
    test_pages_list_newest_first_and_the_cursor_goes_on,
    test_pages_are_filtered_by_status_agent_and_time,
    test_the_index_agrees_with_the_logs_over_random_histories,
]
