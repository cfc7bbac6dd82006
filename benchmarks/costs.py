"""Costs added up by the store: how long `engine.usage()` takes over a million nodes.

`python -m benchmarks.costs` fills a fresh store of each kind with node versions that
carry usage (a model, prompt and completion tokens, a cost), spread over executions,
models and days; then times `engine.usage(by)` by total, model, day and execution, by day
over a third of the days, and by execution for 100 execution ids; checks every answer
against what was written; and prints one table (median and max ms, rows returned) and a
verdict per store: does a summary over a million nodes take under a second. See
benchmarks/README.md.

Each store is its own: a fresh SQLite file in a temporary directory, a unique Redis key
prefix, a unique Postgres schema; all removed afterwards (errors and Ctrl-C too). The
fill goes through the store's own `append`, in large batches, and is timed apart: it is
not what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import runner

STORES = ("sqlite", "redis", "postgres", "tiered")
NEEDS = {"sqlite": (), "redis": ("redis",), "postgres": ("postgres",)}
NEEDS["tiered"] = ("redis", "postgres")
# The queries timed, each a name in the table: (grouping, what it is given).
QUERIES = ("total", "model", "day", "execution", "day-range", "execution-ids")
VERDICT_QUERIES = ("total", "model", "day")  # "a summary over a million nodes"
LIMIT_MS = 1000.0
VERDICT_NODES = 1_000_000
IDS = 100  # execution-ids: this many executions, spread over all of them
COST_RTOL = 1e-6  # costs are floats: each store adds them in its own order

# Records are made and appended this many at a time, so memory stays bounded. A Redis
# append is one script call that holds the server while it runs: smaller calls there.
CHUNK = 20_000
APPEND_BATCH = {"sqlite": 20_000, "postgres": 20_000, "redis": 2_000, "tiered": 2_000}
BASE = datetime(2025, 1, 1, tzinfo=UTC)  # day 0, midnight UTC
STEP_SECONDS = 6  # between one node of an execution and the next
_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64: a cheap, well-spread hash, so that node i's values do not depend on
    how the nodes are cut into chunks."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


@dataclass(frozen=True)
class Shape:
    """What the store is filled with: `nodes` versions, each with usage, over
    `executions` (contiguous blocks of nodes, each one run's steps a few seconds apart),
    `models` and `days` (runs start spread evenly over them, in append order)."""

    nodes: int
    executions: int
    models: int
    days: int
    body_bytes: int = 200
    checkpoint_bytes: int = 0  # each version's state, if any: in the row, on SQLite

    def execution_of(self, i: int) -> int:
        return i * self.executions // self.nodes

    def first_node(self, e: int) -> int:
        return -(-e * self.nodes // self.executions)

    def execution_id(self, e: int) -> str:
        return f"exec-{e:07d}"

    def start_seconds(self, e: int) -> float:
        """When run `e` starts, from BASE: in order of `e`, jittered, so that its last
        step still falls within the days."""
        longest = -(-self.nodes // self.executions) * STEP_SECONDS
        window = max(self.days * 86400 - longest, 1)
        jitter = (_mix(e + (1 << 40)) >> 11) / float(1 << 53)
        return window * (e + jitter) / self.executions

    def since_until(self) -> tuple[datetime, datetime]:
        """The middle third of the days (at least one), bounded at midnight UTC: every
        store answers it exactly (Redis keeps day counters, so it counts whole days)."""
        third = max(1, round(self.days / 3))
        first = (self.days - third) // 2
        return BASE + timedelta(days=first), BASE + timedelta(days=first + third)

    def sampled_ids(self) -> tuple[str, ...]:
        count = min(IDS, self.executions)
        return tuple(self.execution_id(k * self.executions // count) for k in range(count))


def model_name(m: int) -> str:
    return f"model-{m}"


def price(m: int) -> tuple[float, float]:
    """US dollars per prompt token and per completion token of model `m`."""
    return (m + 1) * 0.5e-6, (m + 1) * 2e-6


def records(shape: Shape, start: int, stop: int) -> list[Any]:
    """Nodes `start` to `stop` as the store's records (NodeRecord.from_node of an
    ExecutionNode with usage), the same whatever the chunking."""
    livingai = importlib.import_module("livingai")
    make_node, from_node = livingai.ExecutionNode, livingai.NodeRecord.from_node
    prompt_type, success = livingai.NodeType.PROMPT, livingai.Status.SUCCESS
    text = "x" * max(0, shape.body_bytes - 106)  # the rest of the body is ~106 bytes
    blob = None
    if shape.checkpoint_bytes:  # a state as the engine stores it: framed (uncompressed)
        codec = importlib.import_module("livingai._core.codec")
        state = random.Random(0).randbytes(shape.checkpoint_bytes)
        blob = codec.encode(state, livingai.Codec.NONE)
    out = []
    e = shape.execution_of(start)
    first, following = shape.first_node(e), shape.first_node(e + 1)
    began = BASE + timedelta(seconds=shape.start_seconds(e))
    for i in range(start, stop):
        if i >= following:
            e += 1
            first, following = following, shape.first_node(e + 1)
            began = BASE + timedelta(seconds=shape.start_seconds(e))
        step = i - first
        h = _mix(i)
        m = h % shape.models
        prompt, completion = 50 + (h >> 8) % 4000, 10 + (h >> 24) % 1000
        per_prompt, per_completion = price(m)
        node = make_node(
            execution_id=shape.execution_id(e),
            type=prompt_type,
            id=f"node-{i:09d}",
            status=success,
            created_at=began + timedelta(seconds=step * STEP_SECONDS),
            input={"step": step},
            output={"text": text},
            latency_ms=float(h >> 54),
            model=model_name(m),
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=prompt * per_prompt + completion * per_completion,
        )
        out.append(from_node(node, blob))
    return out


# -- what the answers must be ----------------------------------------------------------------

Sums = dict[tuple[str, str, str], list[float]]  # (execution, day, model) -> calls, tokens, cost


def add_expected(sums: Sums, batch: Sequence[Any]) -> None:
    """What was written, at the finest grain every query filters by: execution and day."""
    for r in batch:
        key = (r.execution_id, r.created_at[:10], r.model or "")
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0, 0, 0, 0.0]
        row[0] += 1
        row[1] += r.prompt_tokens or 0
        row[2] += r.completion_tokens or 0
        row[3] += r.cost or 0.0


@dataclass(frozen=True)
class Query:
    """One timed call: `engine.usage(by, execution_ids=, since=, until=)`."""

    name: str
    by: str
    execution_ids: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def call(self, engine: Any) -> Any:
        ids = None if self.execution_ids is None else list(self.execution_ids)
        return engine.usage(self.by, execution_ids=ids, since=self.since, until=self.until)


def queries(shape: Shape) -> list[Query]:
    since, until = shape.since_until()
    return [
        Query("total", "total"),
        Query("model", "model"),
        Query("day", "day"),
        Query("execution", "execution"),
        Query("day-range", "day", since=since, until=until),
        Query("execution-ids", "execution", execution_ids=shape.sampled_ids()),
    ]


def expected_rows(sums: Sums, query: Query) -> dict[str, list[float]]:
    """The rows `query` must answer, by key. The bounds are at midnight, so whole days."""
    wanted = None if query.execution_ids is None else set(query.execution_ids)
    low = None if query.since is None else query.since.date().isoformat()
    high = None if query.until is None else query.until.date().isoformat()
    out: dict[str, list[float]] = {}
    for (execution, day, model), (calls, prompt, completion, cost) in sums.items():
        if wanted is not None and execution not in wanted:
            continue
        if (low is not None and day < low) or (high is not None and day >= high):
            continue
        key = {"execution": execution, "model": model, "day": day}.get(query.by, "total")
        row = out.setdefault(key, [0, 0, 0, 0.0])
        row[0] += calls
        row[1] += prompt
        row[2] += completion
        row[3] += cost
    return out


def check(rows: Sequence[Any], expected: Mapping[str, Sequence[float]]) -> str:
    """What is wrong with the rows, or "ok": the expected keys in order, counts and
    tokens exact, costs within COST_RTOL."""
    keys = [row.key for row in rows]
    if keys != sorted(expected):
        missing = sorted(set(expected) - set(keys))[:3]
        extra = sorted(set(keys) - set(expected))[:3]
        return f"{len(keys)} rows, expected {len(expected)} (missing {missing}, extra {extra})"
    for row in rows:
        calls, prompt, completion, cost = expected[row.key]
        got = (row.calls, row.prompt_tokens, row.completion_tokens)
        if got != (calls, prompt, completion):
            return (
                f"{row.key}: calls/prompt/completion {got}, expected {(calls, prompt, completion)}"
            )
        if not math.isclose(row.cost, cost, rel_tol=COST_RTOL, abs_tol=1e-12):
            return f"{row.key}: cost {row.cost!r}, expected {cost!r}"
    return "ok"


# -- stores ----------------------------------------------------------------------------------


@dataclass
class Place:
    """Where one store lives; `where` is what the output shows, so that anyone can check
    it is gone afterwards."""

    kind: str
    sqlite_path: str = ""
    redis_prefix: str = ""
    postgres_schema: str = ""
    where: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def provision(kind: str) -> Iterator[Place]:
    """A store of this run's own, removed afterwards (on errors and Ctrl-C too)."""
    token = uuid.uuid4().hex[:12]
    place = Place(kind)
    with contextlib.ExitStack() as cleanup:
        if kind == "sqlite":
            workdir = tempfile.mkdtemp(prefix="livingai-bench-costs-")
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
            place.sqlite_path = os.path.join(workdir, "costs.sqlite")
            place.where["sqlite_dir"] = workdir
        if kind in ("redis", "tiered"):
            place.redis_prefix = f"livingai-bench-costs-{token}"
            cleanup.callback(runner.delete_redis_prefix, runner.REDIS_URL, place.redis_prefix)
            place.where["redis_prefix"] = place.redis_prefix
        if kind in ("postgres", "tiered"):
            place.postgres_schema = f"livingai_bench_costs_{token}"
            cleanup.callback(runner.drop_schema, runner.POSTGRES_DSN, place.postgres_schema)
            place.where["postgres_schema"] = place.postgres_schema
        yield place


def open_store(place: Place) -> Any:
    """The store at `place`, as an application would open it, with default settings."""
    livingai = importlib.import_module("livingai")

    def redis_client() -> Any:
        return livingai.RedisStore(runner.REDIS_URL, prefix=place.redis_prefix)

    def postgres_connection() -> Any:
        return livingai.PostgresStore(runner.POSTGRES_DSN, schema=place.postgres_schema)

    if place.kind == "sqlite":
        return livingai.SQLiteStore(place.sqlite_path)
    if place.kind == "redis":
        return redis_client()
    if place.kind == "postgres":
        return postgres_connection()
    return livingai.TieredStore(redis_client(), postgres_connection())


def _sqlite_bytes(path: str) -> int:
    return sum(
        os.path.getsize(path + suffix)
        for suffix in ("", "-wal", "-shm")
        if os.path.exists(path + suffix)
    )


def _redis_memory() -> int:
    """The server's used_memory: its growth over a fill is roughly what the fill took."""
    client = runner.redis_client(runner.REDIS_URL)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def data_bytes(place: Place, redis_before: int) -> dict[str, int]:
    """What the store takes: the SQLite files, the Postgres tables with their indexes
    (pg_total_relation_size), the growth of Redis's used_memory (approximate: the server
    is shared)."""
    out: dict[str, int] = {}
    if place.sqlite_path:
        out["sqlite"] = _sqlite_bytes(place.sqlite_path)
    if place.redis_prefix:
        out["redis"] = _redis_memory() - redis_before
    if place.postgres_schema:
        out["postgres"] = runner.postgres_bytes(runner.POSTGRES_DSN, place.postgres_schema)
    return out


def vacuum_analyze(schema: str) -> None:
    """What autovacuum does to a table that has grown: statistics for the planner and
    the visibility map. Without it the first queries after a bulk load see a table the
    planner knows nothing about."""
    with runner.postgres_connection(runner.POSTGRES_DSN) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute(runner.sql_with_names("VACUUM (ANALYZE) {}.nodes", schema))


# -- one store -------------------------------------------------------------------------------

Progress = Callable[[str], None]


def stop_if_cancelled() -> None:
    """Raise the cancellation a store call swallowed. On Python 3.11 redis-py writes with
    asyncio.wait_for, which returns normally when the write finishes as the task is
    cancelled: Ctrl-C (asyncio.run cancels the main task) would go unnoticed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def fill(place: Place, shape: Shape, sums: Sums, progress: Progress) -> float:
    """Every node appended through the store's own `append`; the seconds it took, making
    the records included. A tiered store is drained as it goes: the cold store gets it
    all, and the queue in memory stays short."""
    store = open_store(place)
    batch = APPEND_BATCH[place.kind]
    started = time.perf_counter()
    shown = started
    try:
        for start in range(0, shape.nodes, CHUNK):
            chunk = records(shape, start, min(start + CHUNK, shape.nodes))
            add_expected(sums, chunk)
            for first in range(0, len(chunk), batch):
                await store.append(chunk[first : first + batch])
                stop_if_cancelled()
            if place.kind == "tiered":
                await store.drain()
                stop_if_cancelled()
            if time.perf_counter() - shown > 30:
                shown = time.perf_counter()
                progress(f" {start + len(chunk):,} ({shown - started:.0f}s)")
    finally:
        await store.close()
    return time.perf_counter() - started


async def time_queries(place: Place, shape: Shape, repeat: int) -> list[dict[str, Any]]:
    """Each query `repeat` times on a fresh store and engine, as a dashboard process
    would open them; one small call first opens the connections (not timed)."""
    livingai = importlib.import_module("livingai")
    engine = livingai.CheckpointEngine(open_store(place), handle_sigterm=False)
    out: list[dict[str, Any]] = []
    try:
        await engine.usage("total", execution_ids=[shape.execution_id(0)])
        for query in queries(shape):
            samples: list[float] = []
            rows: Any = []
            try:
                for _ in range(repeat):
                    started = time.perf_counter()
                    rows = await query.call(engine)
                    samples.append((time.perf_counter() - started) * 1000.0)
                    stop_if_cancelled()
            except Exception as exc:
                out.append({"query": query.name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            out.append({"query": query.name, "samples_ms": samples, "rows": rows})
    finally:
        await engine.close()
    return out


def run_store(
    kind: str, shape: Shape, repeat: int, *, analyze: bool = True, plans: bool = False
) -> dict[str, Any]:
    """Fill a fresh store, settle it, time the queries, check the answers (and with
    `plans`, read the SQL query plans); the store is removed afterwards. A failure
    becomes the row's error."""
    row: dict[str, Any] = {"store": kind, "nodes": shape.nodes}
    started = time.perf_counter()
    try:
        with provision(kind) as place:
            row["where"] = dict(place.where)
            redis_before = _redis_memory() if place.redis_prefix else 0
            sums: Sums = {}
            print(f"{kind:<8} filling {shape.nodes:,} nodes ...", end="", flush=True)
            row["fill_s"] = asyncio.run(
                fill(place, shape, sums, lambda s: print(s, end="", flush=True))
            )
            print(f" {row['fill_s']:.1f}s", end="", flush=True)
            if analyze and place.postgres_schema:
                settled = time.perf_counter()
                vacuum_analyze(place.postgres_schema)
                row["analyze_s"] = time.perf_counter() - settled
            row["bytes"] = data_bytes(place, redis_before)
            print(", querying ...", end="", flush=True)
            timed = asyncio.run(time_queries(place, shape, repeat))
            row["queries"] = [
                _result(sums, query, found)
                for query, found in zip(queries(shape), timed, strict=True)
            ]
            row["check"] = totals_check(sums, row["queries"][0])
            if plans and kind != "redis":
                row["plans"] = explain(place, shape)
    except Exception as exc:  # a server refused the fill, a query or the clean-up
        row["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        row["wall_s"] = time.perf_counter() - started
    status = f" error: {row['error']}" if "error" in row else ""
    print(f" {row['wall_s']:.1f}s{status}", flush=True)
    return row


def _result(sums: Sums, query: Query, found: Mapping[str, Any]) -> dict[str, Any]:
    """A timed query as a row of the table: median and max ms, rows, the check."""
    if "error" in found:
        return {"query": query.name, "error": found["error"]}
    samples = found["samples_ms"]
    return {
        "query": query.name,
        "by": query.by,
        "samples_ms": samples,
        "median_ms": statistics.median(samples),
        "max_ms": max(samples),
        "rows": len(found["rows"]),
        "check": check(found["rows"], expected_rows(sums, query)),
    }


def totals_check(sums: Sums, total: Mapping[str, Any]) -> dict[str, Any]:
    """The total against what was written: calls = nodes with usage, token sums exact,
    the cost within COST_RTOL."""
    written = [sum(row[k] for row in sums.values()) for k in range(4)]
    out: dict[str, Any] = {
        "calls": int(written[0]),
        "prompt_tokens": int(written[1]),
        "completion_tokens": int(written[2]),
        "cost": written[3],
        "ok": total.get("check") == "ok",
    }
    return out


# -- report ----------------------------------------------------------------------------------

_COLUMNS = (
    ("store", "<", 8),
    ("query", "<", 13),
    ("rows", ">", 6),
    ("median ms", ">", 10),
    ("max ms", ">", 10),
    ("check", "<", 5),
)


def _line(cells: Sequence[str]) -> str:
    return runner.padded(_COLUMNS, cells).rstrip()


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (store, query); a store that did not run, or a query that failed,
    says why."""
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        if "skipped" in row:
            out.append(_line([row["store"]]) + "  " + str(row["skipped"]))
            continue
        if "queries" not in row:
            out.append(_line([row["store"]]) + "  ERROR: " + str(row.get("error")))
            continue
        for query in row["queries"]:
            head = [row["store"], query["query"]]
            if "error" in query:
                out.append(_line(head) + "  ERROR: " + query["error"])
                continue
            out.append(
                _line(
                    [
                        *head,
                        str(query["rows"]),
                        f"{query['median_ms']:.1f}",
                        f"{query['max_ms']:.1f}",
                        query["check"] if query["check"] == "ok" else "WRONG: " + query["check"],
                    ]
                )
            )
    return "\n".join(out)


def fill_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """How long each fill took (not what is measured), and what the store holds."""
    out = []
    for row in rows:
        if "fill_s" not in row:
            continue
        sizes = ", ".join(
            f"{name} {'~' if name == 'redis' else ''}{size / 1e6:,.0f} MB"
            for name, size in row.get("bytes", {}).items()
        )
        analyze = f", VACUUM ANALYZE {row['analyze_s']:.1f}s" if "analyze_s" in row else ""
        out.append(
            f"  {row['store']:<8} {row['nodes']:,} nodes in {row['fill_s']:.1f}s "
            f"({row['nodes'] / max(row['fill_s'], 1e-9):,.0f}/s){analyze}; {sizes}"
        )
    return "\n".join(out)


def verdict(row: Mapping[str, Any]) -> str:
    """Under a second, every run of the total, model and day summaries?"""
    name = row["store"]
    if "skipped" in row:
        return f"{name}: not run: {row['skipped']}"
    found = {q["query"]: q for q in row.get("queries", [])}
    missing = [q for q in VERDICT_QUERIES if q not in found or "error" in found[q]]
    if missing or "error" in row:
        return f"{name}: under 1 s: no ({', '.join(missing) or 'the run'} failed)"
    slowest = max(found[q]["max_ms"] for q in VERDICT_QUERIES)
    answer = "yes" if slowest < LIMIT_MS else "no"
    scale = "" if row["nodes"] >= VERDICT_NODES else f"; at {row['nodes']:,} nodes, not 1M"
    times = ", ".join(f"{q} {found[q]['max_ms']:.0f}" for q in VERDICT_QUERIES)
    return f"{name}: under 1 s: {answer} (slowest of every run, ms: {times}{scale})"


def check_line(row: Mapping[str, Any]) -> str:
    """The total against what was written, in words."""
    written = row["check"]
    total = row["queries"][0]
    state = "ok" if written["ok"] else "WRONG: " + str(total.get("check") or total.get("error"))
    return (
        f"{row['store']}: {state}: written {written['calls']:,} calls, "
        f"{written['prompt_tokens']:,} prompt + {written['completion_tokens']:,} completion "
        f"tokens, ${written['cost']:,.4f}; every query's rows checked the same way"
    )


def problems(row: Mapping[str, Any]) -> list[str]:
    """What makes the command fail: the run or a query failed, or an answer was wrong."""
    if "skipped" in row:
        return []
    if "error" in row:
        return [f"{row['store']}: {row['error']}"]
    out = []
    for query in row["queries"]:
        if "error" in query:
            out.append(f"{row['store']} {query['query']}: {query['error']}")
        elif query["check"] != "ok":
            out.append(f"{row['store']} {query['query']}: wrong answer: {query['check']}")
    return out


# -- query plans (--explain) -------------------------------------------------------------------


def explain(place: Place, shape: Shape) -> list[str]:
    """The plan of each query's SQL as the store builds it: EXPLAIN QUERY PLAN on
    SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL (and the tiered store's cold one).
    Redis has no plan: its counters are described in the README."""
    out: list[str] = []
    for query in queries(shape):
        low = None if query.since is None else query.since.isoformat()
        high = None if query.until is None else query.until.isoformat()
        flags = (query.by, query.execution_ids is not None, low is not None, high is not None)
        bounds = [b for b in (low, high) if b is not None]
        ids = None if query.execution_ids is None else list(query.execution_ids)
        out.append(f"-- {place.kind} {query.name}")
        if place.sqlite_path:
            sqlite_sql = importlib.import_module("livingai._stores.sqlite_sql")
            args = ([] if ids is None else [json.dumps(ids)]) + bounds
            conn = sqlite3.connect(f"file:{place.sqlite_path}?mode=ro", uri=True)
            try:
                plan = conn.execute("EXPLAIN QUERY PLAN " + sqlite_sql.usage_query(*flags), args)
                out += [f"   {detail}" for *_, detail in plan.fetchall()]
            finally:
                conn.close()
        if place.postgres_schema:
            postgres_sql = importlib.import_module("livingai._stores.postgres_sql")
            statement = postgres_sql.statements(place.postgres_schema).usage(*flags)
            pg_args: list[Any] = ([] if ids is None else [ids]) + bounds
            with runner.postgres_connection(runner.POSTGRES_DSN) as conn:
                plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, pg_args)
                out += [f"   {line}" for (line,) in plan.fetchall()]
    return out


# -- the command -------------------------------------------------------------------------------


def _non_negative(value: str) -> int:
    number = int(value.replace("_", "").replace(",", ""))
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more; got {value!r}")
    return number


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.costs",
        description="Usage and costs added up by each store: engine.usage() over a store "
        "filled with --nodes node versions carrying usage.",
    )
    runner.add_stores_option(parser)
    parser.add_argument(
        "--nodes", type=runner.positive_int, default=1_000_000, help="default 1000000"
    )
    parser.add_argument(
        "--executions", type=runner.positive_int, default=10_000, help="default 10000"
    )
    parser.add_argument("--models", type=runner.positive_int, default=4, help="default 4")
    parser.add_argument("--days", type=runner.positive_int, default=30, help="default 30")
    parser.add_argument(
        "--repeat", type=runner.positive_int, default=5, help="runs of each query (5)"
    )
    parser.add_argument(
        "--body-bytes",
        type=runner.positive_int,
        default=200,
        help="each node's JSON body, about (200)",
    )
    parser.add_argument(
        "--checkpoint-bytes",
        type=_non_negative,
        default=0,
        help="give every version a state of this many bytes (default 0: none)",
    )
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="query PostgreSQL right after the fill, without VACUUM ANALYZE",
    )
    parser.add_argument("--explain", action="store_true", help="also print each SQL query's plan")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    opts = parser.parse_args(argv)
    if opts.executions > opts.nodes:
        parser.error(f"--executions {opts.executions} is more than --nodes {opts.nodes}")
    return opts


def measure_all(
    opts: argparse.Namespace,
    shape: Shape,
    stores: Sequence[str],
    servers: Mapping[str, str | None],
    rows: list[dict[str, Any]],
    failures: list[str],
) -> None:
    """Each store in turn, or why it cannot run (a failure if it was asked for by name)."""
    for kind in stores:
        problem = runner.store_problem(kind, NEEDS[kind], servers)
        if problem:
            print(f"{kind:<8} {problem}", flush=True)
            rows.append({"store": kind, "skipped": problem})
            if opts.stores is not None:
                failures.append(f"{kind}: {problem}")
            continue
        row = run_store(kind, shape, opts.repeat, analyze=not opts.no_analyze, plans=opts.explain)
        rows.append(row)


def main(argv: Sequence[str] | None = None) -> int:
    """Fill and query every store, print the table and the verdicts. Exit status 1 when a
    run or a query failed, an answer was wrong, or a store named in --stores could not
    run; a slow query is a result, not a failure."""
    opts = parse_args(argv)
    shape = Shape(
        opts.nodes,
        opts.executions,
        opts.models,
        opts.days,
        opts.body_bytes,
        opts.checkpoint_bytes,
    )
    stores = opts.stores or list(STORES)
    servers = {
        kind: runner.server_problem(kind)
        for kind in ("redis", "postgres")
        if any(kind in NEEDS[store] for store in stores)
    }
    livingai = importlib.import_module("livingai")
    since, until = shape.since_until()
    print(
        f"livingai {livingai.__version__}; {shape.nodes:,} nodes over {shape.executions:,} "
        f"executions, {shape.models} models, {shape.days} days from {BASE.date()}, "
        f"bodies ~{shape.body_bytes} bytes, states {shape.checkpoint_bytes or 'none'}; "
        f"day-range [{since.date()}, {until.date()}); {opts.repeat} run(s) per query",
        flush=True,
    )
    print(
        f"servers: Redis {runner.redact(runner.REDIS_URL)}, "
        f"PostgreSQL {runner.redact(runner.POSTGRES_DSN)}",
        flush=True,
    )
    failures: list[str] = []
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        with runner.kept_warnings() as warned:
            measure_all(opts, shape, stores, servers, rows, failures)
    except KeyboardInterrupt:
        # run_store's clean-up has run by now: its store is removed.
        print("\ninterrupted: the store being measured was removed", flush=True)
        return 130
    plans = [line for row in rows for line in row.get("plans", [])]

    print()
    print(table(rows))
    print()
    print("fill (not measured):")
    print(fill_table(rows))
    print()
    print("answers (total = what was written):")
    for row in rows:
        if "queries" in row:
            print("  " + check_line(row))
    print()
    print(f"verdict (total, model and day summaries under {LIMIT_MS / 1000:g} s, every run):")
    for row in rows:
        print("  " + verdict(row))
    if warned.seen:
        print()
        print("the stores warned:")
        print("\n".join(f"  {message}" for message in warned.seen))
    if plans:
        print()
        print("query plans:")
        print("\n".join(plans))
    for row in rows:
        failures += problems(row)
    if failures:
        print()
        print("FAILED:")
        print("\n".join(f"  {failure}" for failure in failures))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")

    if opts.json is not None:
        report = {
            "meta": {
                "livingai": livingai.__version__,
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "shape": vars(shape),
                "since": since.isoformat(),
                "until": until.isoformat(),
                "repeat": opts.repeat,
                "analyze": not opts.no_analyze,
                "servers": {
                    "redis": runner.redact(runner.REDIS_URL),
                    "postgres": runner.redact(runner.POSTGRES_DSN),
                },
            },
            "runs": rows,
            "plans": plans,
            "failures": failures,
        }
        opts.json.write_text(json.dumps(report, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
