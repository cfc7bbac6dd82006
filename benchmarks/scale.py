"""Recovery and listing at scale: what they cost as a store grows, on every store.

    python -m benchmarks.scale [--stores sqlite,redis,redis-cluster,postgres,tiered]
                               [--sizes 10000,100000,1000000] [--repeat 5] [--json PATH]

Each store is filled step by step to each of `--sizes` finished executions (three nodes
each, as benchmarks/web.py lays them out: a run's record, a model step, a tool step),
after `PENDING` runs that crashed (their run records RUNNING, no lease). At each size:

- **ingest/s**: executions appended a second while growing to this size (the store's own
  `append`, in big batches; a tiered store drained as it goes; a cluster's batches
  spread over its primaries);
- **pending ms**: `runtime.pending()` (what `recover_pending()`, `livingai pending` and
  the web UI's pending page use), median of `--repeat`; it must find exactly the crashed
  runs;
- **first page ms** and **html ms**: the web UI's first page of executions (its JSON API
  and its HTML), and **deep page ms**: page 100 (found by following the `next` links,
  untimed), over the app in-process (ASGI), medians;
- **list ms**: `livingai list --limit 50 --json` run in-process (CliRunner: the store
  opened and closed, Python's start-up left out), median.

The issue's targets: pending() under 50 ms and the first page under 100 ms on every
store at a million, both flat from 10,000 to a million (the largest size measured is
what the verdict reads; with fewer sizes it says so). A store that cannot run gets a
row saying why. Every store is a fresh one of this run's, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from livingai import (
    CheckpointEngine,
    ExecutionNode,
    NodeRecord,
    NodeType,
    Runtime,
    Status,
    __version__,
    open_store,
)

from . import runner, web

STORES = ("sqlite", "redis", "redis-cluster", "postgres", "tiered")
SIZES = (10_000, 100_000, 1_000_000)
PENDING = 5  # runs that crashed, among the finished ones
PAGE_MS, PENDING_MS = 100.0, 50.0  # the targets, at the largest size
FLAT = 2.0  # "flat": the largest size's time at most this many times the smallest's


def crashed(k: int) -> NodeRecord:
    """A run that crashed before the first finished one: its record RUNNING, no lease."""
    eid = f"crashed-{k}"
    node = ExecutionNode(
        id=f"{eid}/run",
        execution_id=eid,
        type=NodeType.MEMORY,
        status=Status.RUNNING,
        created_at=web.BASE - timedelta(hours=1, seconds=k),
        input={"agent": "support_agent", "args": [f"crashed {k}"], "kwargs": {}},
        metadata={"run": True, "agent": "support_agent", "worker": "gone"},
    )
    return NodeRecord.from_node(node)


@contextlib.contextmanager
def provision(kind: str) -> Iterator[web.Place]:
    """A store of this run's own, removed afterwards; a cluster is started for it."""
    if kind != "redis-cluster":
        with web.provision(kind) as place:
            yield place
        return
    from livingai.testing.redis_cluster import LocalRedisCluster  # the tests' launcher

    with LocalRedisCluster(masters=3) as cluster:  # its own servers, removed afterwards
        place = web.Place(kind, url=f"{cluster.url}?prefix=livingai-bench-scale")
        place.where["cluster"] = ", ".join(cluster.seeds)
        yield place


async def grow(place: web.Place, start: int, stop: int) -> float:
    """Executions start..stop appended; the seconds it took."""
    store: Any = open_store(place.url)
    batch = web.APPEND_BATCH.get(place.kind, web.APPEND_BATCH["redis"])
    began = time.perf_counter()
    try:
        if start == 0:
            await store.append([crashed(k) for k in range(PENDING)])
        for first in range(start, stop, web.CHUNK_EXECUTIONS):
            chunk = web.records(first, min(first + web.CHUNK_EXECUTIONS, stop))
            for at in range(0, len(chunk), batch):
                await store.append(chunk[at : at + batch])
                web.stop_if_cancelled()
            if place.kind == "tiered":
                await store.drain()
    finally:
        await store.close()
    return time.perf_counter() - began


async def timed(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The median milliseconds of `repeat` awaited calls, and the last answer."""
    samples, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = await call()
        samples.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(samples), answer


async def measure(place: web.Place, executions: int, repeat: int) -> dict[str, Any]:
    import httpx
    from click.testing import CliRunner

    from livingai.cli import cli
    from livingai.web import create_app

    found: dict[str, Any] = {}
    problems: list[str] = []
    async with Runtime(CheckpointEngine(open_store(place.url)), worker_id="bench") as runtime:
        found["pending_ms"], pending = await timed(runtime.pending, repeat)
    ids = sorted(p.execution_id for p in pending)
    if ids != [f"crashed-{k}" for k in range(PENDING)]:
        problems.append(f"pending() found {ids[:8]}")
    first = [web.execution_id(k) for k in range(executions - 1, executions - 1 - web.PAGE, -1)]
    app = create_app(place.url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            found["first_page_ms"], answer = await timed(
                lambda: client.get("/api/executions"), repeat
            )
            shown = [item["execution_id"] for item in answer.json()["items"]]
            if shown != first:
                problems.append(f"first page: {shown[:2]}..., expected {first[:2]}...")
            found["html_ms"], _ = await timed(lambda: client.get("/"), repeat)
            pages = web.deep_page(executions + PENDING)  # page 100, or the last
            cursor = await web.find_deep_cursor(client, pages)
            deep = "/api/executions" + ("" if cursor is None else f"?cursor={cursor}")
            found["deep_page_ms"], answer = await timed(lambda: client.get(deep), repeat)
            wanted = min(web.PAGE, executions + PENDING - web.PAGE * (pages - 1))
            if len(answer.json()["items"]) != wanted:
                problems.append(f"page {pages} holds {len(answer.json()['items'])}, not {wanted}")
    command = ["--store", place.url, "list", "--limit", "50", "--json"]

    async def listing() -> Any:
        return await asyncio.to_thread(CliRunner().invoke, cli, command)

    found["list_ms"], done = await timed(listing, min(repeat, 3))
    if done.exit_code != 0 or len(json.loads(done.stdout)["executions"]) != 50:
        problems.append(f"livingai list: exit {done.exit_code}: {done.output[-200:]}")
    found["check"] = "; ".join(problems) or "ok"
    return found


def run_store(kind: str, sizes: Sequence[int], repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        with provision(kind) as place:
            grown = 0
            for size in sizes:
                print(f"{kind:<13} {size:>9,} executions: filling ...", end="", flush=True)
                seconds = asyncio.run(grow(place, grown, size))
                row: dict[str, Any] = {
                    "store": kind,
                    "executions": size,
                    "ingest_per_s": (size - grown) / max(seconds, 1e-9),
                }
                grown = size
                if place.postgres_schema:
                    web.vacuum_analyze(place.postgres_schema)
                print(" measuring ...", end="", flush=True)
                row.update(asyncio.run(measure(place, size, repeat)))
                print(f" {row['check']}", flush=True)
                rows.append(row)
            if kind == "redis-cluster":
                rows[-1]["spread"] = cluster_spread(place)
    except Exception as exc:  # a server refused the fill, a request or the clean-up
        rows.append({"store": kind, "error": f"{type(exc).__name__}: {exc}"})
        print(f" error: {rows[-1]['error']}", flush=True)
    return rows


def cluster_spread(place: web.Place) -> dict[str, int]:
    """The keys each primary holds: the load spread over the cluster."""
    import redis

    spread = {}
    for address in place.where["cluster"].split(", "):
        host, port = address.rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port))
        try:
            if client.info("replication").get("role") == "master":
                spread[address] = int(client.dbsize())
        finally:
            client.close()
    return spread


# -- report ------------------------------------------------------------------------------------

COLUMNS = (
    ("store", "<", 13),
    ("executions", ">", 10),
    ("ingest/s", ">", 9),
    ("pending ms", ">", 10),
    ("first page ms", ">", 13),
    ("html ms", ">", 8),
    ("page 100 ms", ">", 11),
    ("list ms", ">", 8),
    ("check", "<", 5),
)


def table(rows: Sequence[dict[str, Any]]) -> str:
    out = [runner.padded(COLUMNS, [name for name, _, _ in COLUMNS]).rstrip()]
    out.append(runner.padded(COLUMNS, ["-" * width for _, _, width in COLUMNS]).rstrip())
    for row in rows:
        if "error" in row or "skipped" in row:
            why = row.get("skipped") or f"ERROR: {row['error']}"
            out.append(f"{row['store']:<13}  {why}")
            continue
        cells = [
            row["store"],
            f"{row['executions']:,}",
            f"{row['ingest_per_s']:,.0f}",
            f"{row['pending_ms']:.1f}",
            f"{row['first_page_ms']:.1f}",
            f"{row['html_ms']:.1f}",
            f"{row['deep_page_ms']:.1f}",
            f"{row['list_ms']:.1f}",
            row["check"],
        ]
        out.append(runner.padded(COLUMNS, cells).rstrip())
    return "\n".join(out)


def verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per store, at its largest size: the targets, and how flat from its smallest."""
    out = []
    measured = [row for row in rows if "pending_ms" in row]
    for kind in dict.fromkeys(row["store"] for row in measured):
        mine = [row for row in measured if row["store"] == kind]
        small, large = mine[0], mine[-1]
        at = f"at {large['executions']:,}"
        if large["executions"] < SIZES[-1]:
            at += f" (not a million: {large['executions']:,} measured)"
        parts = []
        for key, limit, name in (
            ("pending_ms", PENDING_MS, "pending()"),
            ("first_page_ms", PAGE_MS, "first page"),
        ):
            ok = large[key] < limit
            growth = large[key] / max(small[key], 1e-9)
            flat = growth <= FLAT
            parts.append(
                f"{name} {large[key]:.1f} ms {'<' if ok else '>='} {limit:.0f} "
                f"({'PASS' if ok else 'FAIL'}), x{growth:.2f} from {small['executions']:,} "
                f"({'flat' if flat else 'NOT flat'})"
            )
        out.append(f"{kind:<13} {at}: " + "; ".join(parts))
        if "spread" in large:
            out.append(f"{'':<13} keys per primary: {large['spread']}")
    return out


def ingestion(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The cluster's ingestion rate against one server's, at each size."""
    single = {
        row["executions"]: row for row in rows if row["store"] == "redis" and "ingest_per_s" in row
    }
    out = []
    for row in rows:
        if row["store"] == "redis-cluster" and row.get("executions") in single:
            one = single[row["executions"]]["ingest_per_s"]
            ratio = row["ingest_per_s"] / one
            verdict = "PASS" if ratio >= 0.8 else "FAIL"
            out.append(
                f"redis-cluster ingestion at {row['executions']:,}: {row['ingest_per_s']:,.0f}/s "
                f"= {ratio:.2f}x one server's {one:,.0f}/s ({verdict}: within 20%)"
            )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument(
        "--stores",
        type=lambda v: runner.split_choices(v, STORES),
        default=list(STORES),
        help="comma-separated: " + ",".join(STORES),
    )
    parser.add_argument(
        "--sizes",
        type=lambda v: sorted({runner.positive_int(s) for s in v.split(",")}),
        default=list(SIZES),
        help="comma-separated numbers of finished executions (10000,100000,1000000)",
    )
    parser.add_argument("--repeat", type=runner.positive_int, default=5)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    print(
        f"livingai {__version__}; sizes {', '.join(f'{s:,}' for s in opts.sizes)}; "
        f"{PENDING} crashed runs; {opts.repeat} runs a measurement",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for kind in opts.stores:
        problem = store_problem(kind)
        if problem is not None:
            rows.append({"store": kind, "skipped": problem})
            continue
        rows += run_store(kind, opts.sizes, opts.repeat)
    print()
    print(table(rows))
    print()
    for line in [*verdicts(rows), *ingestion(rows)]:
        print(line)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if opts.json is not None:
        opts.json.write_text(json.dumps({"sizes": opts.sizes, "rows": rows}, indent=2))
    return 1 if any("error" in row or row.get("check", "ok") != "ok" for row in rows) else 0


def store_problem(kind: str) -> str | None:
    """Why this store cannot run here, or None."""
    servers = {"sqlite": (), "redis": ("redis",), "redis-cluster": (), "postgres": ("postgres",)}
    for server in servers.get(kind, ("redis", "postgres")):
        problem = runner.server_problem(server)
        if problem is not None:
            return problem
    if kind == "redis-cluster":
        from livingai.testing.redis_cluster import missing_binaries

        missing = missing_binaries()
        if missing:
            return f"not available: {' and '.join(missing)} not on PATH"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
