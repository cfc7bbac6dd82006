"""The costs benchmark (`python -m benchmarks.costs`) keeps working: at a tiny scale, on
each store whose server is up, every answer matches what was written, the table parses
and nothing is left behind, after a failure too; and its pure parts (the data it writes,
the answers it expects, the check, the table and the verdict)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from benchmarks import costs

from livingai import UsageRow
from livingai._core.usage import add_up, check_grouping
from tests.services import need_server

ROOT = Path(__file__).resolve().parent.parent
# The benchmark's servers; in the test suite, the test servers unless told otherwise.
REDIS_URL = os.environ.get("LIVINGAI_BENCH_REDIS_URL") or os.environ.get(
    "LIVINGAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)
POSTGRES_DSN = os.environ.get("LIVINGAI_BENCH_POSTGRES_DSN") or os.environ.get(
    "LIVINGAI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
TINY = costs.Shape(nodes=2000, executions=40, models=3, days=6)
# What each query must answer at TINY: one total, 3 models, 6 days, 40 executions, the
# middle third of the days (2) and every execution (fewer than 100).
ROWS = {"total": 1, "model": 3, "day": 6, "execution": 40, "day-range": 2, "execution-ids": 40}


def _need_servers(store: str) -> None:
    if "redis" in costs.NEEDS[store]:
        need_server("Redis", REDIS_URL, 6379)
    if "postgres" in costs.NEEDS[store]:
        need_server("PostgreSQL", POSTGRES_DSN, 5432)


def _leftovers(where: dict[str, str]) -> list[str]:
    """What a finished run left behind: its directory, keys or schema."""
    found: list[str] = []
    if "sqlite_dir" in where and Path(where["sqlite_dir"]).exists():
        found.append(f"directory {where['sqlite_dir']}")
    if "redis_prefix" in where:
        redis = pytest.importorskip("redis")
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
        try:
            found += [repr(k) for k in client.scan_iter(match=f"{where['redis_prefix']}*")]
        finally:
            client.close()
    if "postgres_schema" in where:
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(POSTGRES_DSN, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (where["postgres_schema"],)
            ).fetchone()
        if row and row[0]:
            found.append(f"schema {where['postgres_schema']}")
    return found


@pytest.mark.parametrize("store", costs.STORES)
def test_tiny_run_answers_right_prints_a_table_and_leaves_nothing(
    store: str, tmp_path: Path
) -> None:
    _need_servers(store)
    out = tmp_path / "costs.json"
    env = {
        **os.environ,
        "LIVINGAI_BENCH_REDIS_URL": REDIS_URL,
        "LIVINGAI_BENCH_POSTGRES_DSN": POSTGRES_DSN,
    }
    shape = [
        *("--nodes", str(TINY.nodes), "--executions", str(TINY.executions)),
        *("--models", str(TINY.models), "--days", str(TINY.days), "--repeat", "1"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.costs", "--stores", store, *shape, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.split()[:3] == ["store", "query", "rows"]]
    assert len(header) == 1, done.stdout
    end = lines.index("", header[0])
    table = [line.split() for line in lines[header[0] + 2 : end]]
    assert [cells[1] for cells in table] == list(costs.QUERIES), done.stdout
    for _, name, rows, median, slowest, verdict in table:
        assert int(rows) == ROWS[name], (name, done.stdout)
        assert 0 < float(median) <= float(slowest), (name, done.stdout)
        assert verdict == "ok", (name, done.stdout)
    assert f"  {store}: ok: written 2,000 calls," in done.stdout
    assert f"  {store}: under 1 s: yes (" in done.stdout
    [run] = json.loads(out.read_text())["runs"]
    assert run["check"]["calls"] == TINY.nodes
    assert run["check"]["ok"] is True
    assert run["where"]
    assert _leftovers(run["where"]) == []


def test_a_store_is_removed_after_a_failure(tmp_path: Path) -> None:
    """Everything the tiered store wrote, in Redis and in Postgres, goes when the run
    fails half way; so does a SQLite directory."""
    _need_servers("tiered")

    async def write_some(place: costs.Place) -> None:
        store = costs.open_store(place)
        try:
            await store.append(costs.records(TINY, 0, 50))
            await store.drain()
        finally:
            await store.close()

    seen: list[dict[str, str]] = []
    for kind in ("tiered", "sqlite"):
        with (  # noqa: PT012
            pytest.raises(KeyboardInterrupt),
            costs.provision(kind) as place,
        ):
            seen.append(dict(place.where))
            if kind == "tiered":
                asyncio.run(write_some(place))
                assert _leftovers(place.where) != [], "the store should exist during the run"
            else:
                Path(place.sqlite_path).write_bytes(b"")
            raise KeyboardInterrupt
    assert [sorted(where) for where in seen] == [
        ["postgres_schema", "redis_prefix"],
        ["sqlite_dir"],
    ]
    for where in seen:
        assert _leftovers(where) == []


# -- the pure parts ---------------------------------------------------------------------------


def test_the_data_is_the_same_however_it_is_chunked_and_spread_as_described() -> None:
    whole = costs.records(TINY, 0, 300)
    parts = costs.records(TINY, 0, 130) + costs.records(TINY, 130, 300)
    assert [r.as_row()[1:] for r in whole] == [r.as_row()[1:] for r in parts]  # not version_id
    every = costs.records(TINY, 0, TINY.nodes)
    assert all(r.model and r.prompt_tokens and r.completion_tokens and r.cost for r in every)
    assert len({r.node_id for r in every}) == TINY.nodes
    executions = [r.execution_id for r in every]
    assert executions == sorted(executions)  # each run's steps together, runs in order
    assert len(set(executions)) == TINY.executions
    assert {r.model for r in every} == {costs.model_name(m) for m in range(TINY.models)}
    last = (costs.BASE + timedelta(days=TINY.days)).isoformat()
    assert costs.BASE.isoformat() <= min(r.created_at for r in every)
    assert max(r.created_at for r in every) < last
    assert len({r.created_at[:10] for r in every}) == TINY.days
    since, until = TINY.since_until()
    assert (since - costs.BASE, until - since) == (timedelta(days=2), timedelta(days=2))
    assert len(TINY.sampled_ids()) == TINY.executions
    big = costs.Shape(nodes=1_000_000, executions=10_000, models=4, days=30)
    assert len(big.sampled_ids()) == costs.IDS
    assert big.sampled_ids()[:2] == ("exec-0000000", "exec-0000100")
    assert big.since_until()[0] == costs.BASE + timedelta(days=10)


def test_states_are_stored_with_every_version_when_asked() -> None:
    shape = costs.Shape(nodes=10, executions=2, models=1, days=1, checkpoint_bytes=1000)
    blobs = [r.checkpoint for r in costs.records(shape, 0, 10)]
    assert all(blob is not None and len(blob) > 1000 for blob in blobs)
    assert all(r.checkpoint is None for r in costs.records(TINY, 0, 10))


def _add_up(records: list[Any], query: costs.Query) -> list[UsageRow]:
    """The library's own in-memory sums: what every store must answer."""
    return add_up(
        records,
        check_grouping(query.by),
        execution_ids=query.execution_ids,
        since=query.since,
        until=query.until,
    )


def test_the_expected_answers_are_the_librarys_own_sums() -> None:
    every = costs.records(TINY, 0, TINY.nodes)
    sums: costs.Sums = {}
    costs.add_expected(sums, every[:700])
    costs.add_expected(sums, every[700:])
    for query in costs.queries(TINY):
        rows = _add_up(every, query)
        assert len(rows) == ROWS[query.name], query
        assert costs.check(rows, costs.expected_rows(sums, query)) == "ok", query


def test_the_check_finds_a_wrong_count_a_wrong_cost_and_a_missing_row() -> None:
    every = costs.records(TINY, 0, TINY.nodes)
    sums: costs.Sums = {}
    costs.add_expected(sums, every)
    query = costs.queries(TINY)[1]  # by model
    expected = costs.expected_rows(sums, query)
    rows = _add_up(every, query)
    first = rows[0]
    miscounted = [dataclasses.replace(first, calls=first.calls + 1), *rows[1:]]
    assert costs.check(miscounted, expected).startswith(f"{first.key}: calls/prompt/completion")
    drifted = [dataclasses.replace(first, cost=first.cost * (1 + 1e-5)), *rows[1:]]
    assert costs.check(drifted, expected).startswith(f"{first.key}: cost ")
    close = [dataclasses.replace(first, cost=first.cost * (1 + 1e-8)), *rows[1:]]
    assert costs.check(close, expected) == "ok"
    assert costs.check(rows[1:], expected).startswith(
        f"2 rows, expected 3 (missing ['{first.key}']"
    )


def _row(store: str, nodes: int = 1_000_000, slowest: float = 300.0) -> dict[str, Any]:
    queries = [
        {"query": name, "rows": 1, "median_ms": slowest / 2, "max_ms": slowest, "check": "ok"}
        for name in costs.QUERIES
    ]
    return {"store": store, "nodes": nodes, "queries": queries}


def test_the_table_and_the_verdicts() -> None:
    slow = _row("postgres", slowest=1200.0)
    wrong = _row("redis")
    wrong["queries"][3] = {**wrong["queries"][3], "check": "10 rows, expected 11"}
    failed = _row("tiered")
    failed["queries"][0] = {"query": "total", "error": "StoreError: timed out"}
    rows = [
        _row("sqlite"),
        slow,
        wrong,
        failed,
        {"store": "redis", "skipped": "not available: Redis not reachable at redis://x"},
    ]
    lines = costs.table(rows).splitlines()
    assert lines[0].split() == ["store", "query", "rows", "median", "ms", "max", "ms", "check"]
    assert lines[2].split() == ["sqlite", "total", "1", "150.0", "300.0", "ok"]
    assert lines[2 + 6 * 2 + 3].endswith("WRONG: 10 rows, expected 11")
    assert lines[2 + 6 * 3].endswith("ERROR: StoreError: timed out")
    assert lines[-1].endswith("not available: Redis not reachable at redis://x")
    verdicts = [costs.verdict(row) for row in rows]
    assert (
        verdicts[0]
        == "sqlite: under 1 s: yes (slowest of every run, ms: total 300, model 300, day 300)"
    )
    assert verdicts[1].startswith("postgres: under 1 s: no (slowest of every run, ms: total 1200")
    assert verdicts[3] == "tiered: under 1 s: no (total failed)"
    assert verdicts[4] == "redis: not run: not available: Redis not reachable at redis://x"
    small = costs.verdict(_row("sqlite", nodes=2000))
    assert small.endswith("; at 2,000 nodes, not 1M)")
    assert [costs.problems(row) for row in rows] == [
        [],
        [],
        ["redis execution: wrong answer: 10 rows, expected 11"],
        ["tiered total: StoreError: timed out"],
        [],
    ]


def test_arguments_are_checked() -> None:
    opts = costs.parse_args(["--stores", "redis,sqlite", "--nodes", "100_000"])
    assert (opts.stores, opts.nodes, opts.executions, opts.repeat) == (
        ["redis", "sqlite"],
        100_000,
        10_000,
        5,
    )
    for bad in (["--stores", "mysql"], ["--nodes", "0"], ["--nodes", "10", "--executions", "20"]):
        with pytest.raises(SystemExit):
            costs.parse_args(bad)
