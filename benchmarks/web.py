"""The web UI's executions list over a big store: does it open in under a second?

`python -m benchmarks.web` fills a fresh store of each kind with --executions runs (a
run's record and two steps each, one in ten FAILED), then serves `create_app(url)` in
process (httpx's ASGITransport, the app's lifespan entered once) and times the requests
a person makes: the first page of the list (API and HTML), a status filter, an id
search, a deep page (page 100, by the `next` links) and one execution's page. Every
answer is checked against what was written; one table (median and max ms) and a verdict
per store: the first page, API and HTML, under 1 s in every run. See
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
import json
import os
import platform
import re
import shutil
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
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from livingai import (
    ErrorInfo,
    ExecutionNode,
    NodeRecord,
    NodeType,
    Status,
    __version__,
    open_store,
)

from . import runner

STORES = ("sqlite", "redis", "postgres", "tiered")
NEEDS: dict[str, tuple[str, ...]] = {
    "sqlite": (),
    "redis": ("redis",),
    "postgres": ("postgres",),
    "tiered": ("redis", "postgres"),
}
PAGE = 50  # the list's page size (livingai.web.data.PAGE_SIZE)
DEEP_PAGE = 100  # "page 100": the deepest page timed (the last one, in a smaller store)
LIMIT_MS = 1000.0
VERDICT_REQUESTS = ("api-first", "html-first")  # "opens in under a second"
QUICK_EXECUTIONS, QUICK_REPEAT = 2_000, 2

# Records are made and appended this many at a time, so memory stays bounded. A Redis
# append is one script call that holds the server while it runs: smaller calls there.
CHUNK_EXECUTIONS = 10_000
APPEND_BATCH = {"sqlite": 30_000, "postgres": 30_000, "redis": 3_000, "tiered": 3_000}
BASE = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_SECONDS = 30  # between the start of one execution and the next
AGENTS = ("support_agent", "research_agent", "triage_agent")
MODELS = ("gpt-4o-mini", "claude-3-5-haiku-20241022")
FAILED_EVERY = 10  # execution k failed when k % 10 == 7: one in ten
ROW = re.compile(r'<tr data-execution-id="([^"]+)"')
NODE = re.compile(r'<li data-node-id="([^"]+)"')


# -- what the store holds ----------------------------------------------------------------


def execution_id(k: int) -> str:
    return f"exec-{k:07d}"


def failed(k: int) -> bool:
    return k % FAILED_EVERY == 7


def records(start: int, stop: int) -> list[NodeRecord]:
    """Executions `start` to `stop` as a run lies in the log (layout.py): the run's own
    record (`<id>/run`, its agent in the metadata, its status the run's), a model step
    with usage and a tool step. A failed run failed in its tool step."""
    out: list[NodeRecord] = []
    for k in range(start, stop):
        eid = execution_id(k)
        began = BASE + timedelta(seconds=k * EVERY_SECONDS)
        agent, model = AGENTS[k % len(AGENTS)], MODELS[k % len(MODELS)]
        bad = failed(k)
        error = ErrorInfo("ValueError", f"no route for task {k}") if bad else None
        status = Status.FAILED if bad else Status.SUCCESS
        header = ExecutionNode(
            id=f"{eid}/run",
            execution_id=eid,
            type=NodeType.MEMORY,
            status=status,
            created_at=began,
            completed_at=began + timedelta(seconds=2),
            input={"agent": agent, "args": [f"task {k}"], "kwargs": {}},
            output=None if bad else {"answer": f"done {k}"},
            error=error,
            metadata={"run": True, "agent": agent, "worker": "bench"},
        )
        prompt, completion = 200 + k % 800, 20 + k % 200
        ask = ExecutionNode(
            id=f"{eid}/0",
            execution_id=eid,
            type=NodeType.PROMPT,
            parent_id=header.id,
            status=Status.SUCCESS,
            created_at=began,
            completed_at=began + timedelta(milliseconds=900),
            input={"args": [f"task {k}"], "kwargs": {}},
            output={"text": f"plan for task {k}"},
            latency_ms=900.0,
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=prompt * 0.15e-6 + completion * 0.6e-6,
            metadata={"step": "plan", "kind": "step", "position": 0},
        )
        act = ExecutionNode(
            id=f"{eid}/1",
            execution_id=eid,
            type=NodeType.TOOL,
            parent_id=header.id,
            status=status,
            created_at=began + timedelta(seconds=1),
            completed_at=began + timedelta(seconds=2),
            input={"args": [f"plan for task {k}"], "kwargs": {}},
            output=None if bad else {"ok": True},
            error=error,
            latency_ms=1000.0,
            metadata={"step": "act", "kind": "tool", "position": 1},
        )
        out += [NodeRecord.from_node(node) for node in (header, ask, act)]
    return out


# -- the requests and their right answers ----------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One timed request: `name` is its key in the JSON, `path` what the table shows;
    `expected` the execution ids it must list, in order (None: an execution's page)."""

    name: str
    path: str
    expected: tuple[str, ...] | None
    html: bool = False


def newest(ids: Sequence[str], keep: Callable[[int], bool], start: int | None = None) -> list[str]:
    """The first PAGE ids, newest first from before position `start`, that `keep`."""
    top = len(ids) if start is None else start
    out: list[str] = []
    for at in range(top - 1, -1, -1):
        if keep(at):
            out.append(ids[at])
            if len(out) == PAGE:
                break
    return out


def deep_page(executions: int) -> int:
    """Page 100, or the last page of a smaller store."""
    return max(1, min(DEEP_PAGE, -(-executions // PAGE)))


def needle(executions: int) -> str:
    """An id substring near the newest: the digits of the tenth newest execution."""
    return f"{max(executions - 10, 0):07d}"


def requests(executions: int, deep_cursor: str | None) -> list[Request]:
    """What is timed, with what each must answer. Position k holds execution k, which
    the fill starts k * EVERY_SECONDS after BASE: newest first is from the last."""
    ids = [execution_id(k) for k in range(executions)]
    first = tuple(newest(ids, lambda _: True))
    part = needle(executions)
    shown = execution_id(max(executions - 10, 0))
    return [
        Request("api-first", "/api/executions", first),
        Request("html-first", "/", first, html=True),
        Request(
            "api-status",
            "/api/executions?status=FAILED",
            tuple(newest(ids, failed)),
        ),
        Request(
            "api-q",
            f"/api/executions?q={part}",
            tuple(newest(ids, lambda at: part in ids[at])),
        ),
        Request(
            f"api-page-{deep_page(executions)}",
            "/api/executions" + ("" if deep_cursor is None else f"?cursor={deep_cursor}"),
            tuple(newest(ids, lambda _: True, executions - PAGE * (deep_page(executions) - 1))),
        ),
        Request("html-execution", f"/executions/{quote(shown, safe='')}", None, html=True),
    ]


def listed(request: Request, status: int, body: str) -> tuple[int, str]:
    """How many items the answer lists, and what is wrong with it, or "ok"."""
    if status != 200:
        return 0, f"HTTP {status}: {body[:200]}"
    if request.expected is None:  # an execution's page: its id and its steps
        steps = NODE.findall(body)
        shown = request.path.rsplit("/", 1)[1]
        if f"<code>{shown}</code>" not in body:
            return len(steps), "the page does not show its execution id"
        return len(steps), "ok" if len(steps) == 2 else f"{len(steps)} steps shown, expected 2"
    if request.html:
        ids = ROW.findall(body.split('<table id="executions">', 1)[-1].split("</table>", 1)[0])
        statuses: list[str] = []
        stopped = 'id="scan-stopped"' in body
    else:
        answer = json.loads(body)
        ids = [item["execution_id"] for item in answer["items"]]
        statuses = [item["status"] for item in answer["items"]]
        stopped = bool(answer["stopped"])
    if "status=FAILED" in request.path and any(s != "FAILED" for s in statuses):
        return len(ids), f"not only FAILED: {sorted(set(statuses))}"
    if ids != list(request.expected):
        why = "; the scan stopped at its time bound" if stopped else ""
        return len(ids), (
            f"{len(ids)} items from {ids[:1]}, expected {len(request.expected)} "
            f"from {list(request.expected[:1])}{why}"
        )
    return len(ids), "ok"


# -- stores --------------------------------------------------------------------------------------


def with_query(url: str, **params: str) -> str:
    """The URL with these query parameters set (others kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


@dataclass
class Place:
    """Where one store lives: its URL (what create_app is given), and `where`, what the
    output shows so that anyone can check it is gone afterwards."""

    kind: str
    url: str = ""
    postgres_schema: str = ""
    where: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def provision(kind: str) -> Iterator[Place]:
    """A store of this run's own, removed afterwards (on errors and Ctrl-C too)."""
    token = uuid.uuid4().hex[:12]
    place = Place(kind)
    urls: list[str] = []
    with contextlib.ExitStack() as cleanup:
        if kind == "sqlite":
            workdir = tempfile.mkdtemp(prefix="livingai-bench-web-")
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
            urls.append(f"sqlite:///{os.path.join(workdir, 'web.db')}")
            place.where["sqlite_dir"] = workdir
        if kind in ("redis", "tiered"):
            prefix = f"livingai-bench-web-{token}"
            cleanup.callback(runner.delete_redis_prefix, runner.REDIS_URL, prefix)
            urls.append(with_query(runner.REDIS_URL, prefix=prefix))
            place.where["redis_prefix"] = prefix
        if kind in ("postgres", "tiered"):
            place.postgres_schema = f"livingai_bench_web_{token}"
            cleanup.callback(runner.drop_schema, runner.POSTGRES_DSN, place.postgres_schema)
            urls.append(with_query(runner.POSTGRES_DSN, schema=place.postgres_schema))
            place.where["postgres_schema"] = place.postgres_schema
        place.url = urls[0] if len(urls) == 1 else f"tiered:{urls[0]}|{urls[1]}"
        yield place


def stop_if_cancelled() -> None:
    """Raise the cancellation a store call swallowed (redis-py on Python 3.11 can: see
    costs.py), so that Ctrl-C during the fill is not lost."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def fill(place: Place, executions: int, progress: Callable[[str], None]) -> float:
    """Every execution appended through the store's own `append`, in big batches (the
    engine's per-save work would take many minutes); the seconds it took. A tiered store
    is drained as it goes, so the cold store gets it all."""
    store: Any = open_store(place.url)
    batch = APPEND_BATCH[place.kind]
    started = shown = time.perf_counter()
    try:
        for start in range(0, executions, CHUNK_EXECUTIONS):
            chunk = records(start, min(start + CHUNK_EXECUTIONS, executions))
            for first in range(0, len(chunk), batch):
                await store.append(chunk[first : first + batch])
                stop_if_cancelled()
            if place.kind == "tiered":
                await store.drain()
                stop_if_cancelled()
            if time.perf_counter() - shown > 30:
                shown = time.perf_counter()
                progress(f" {start + CHUNK_EXECUTIONS:,} ({shown - started:.0f}s)")
    finally:
        await store.close()
    return time.perf_counter() - started


def vacuum_analyze(schema: str) -> None:
    """What autovacuum does to a table that has grown (see costs.py): without it the
    first queries after a bulk load see a table the planner knows nothing about."""
    with runner.postgres_connection(runner.POSTGRES_DSN) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute(runner.sql_with_names("VACUUM (ANALYZE) {}.nodes", schema))


# -- timing ------------------------------------------------------------------------------------


async def find_deep_cursor(client: Any, pages: int) -> str | None:
    """The cursor of page `pages` (None: the first), by following the `next` links from
    the first page as a person paging would (not timed)."""
    path: str = "/api/executions"
    cursor = None
    for _ in range(pages - 1):
        answer = await client.get(path)
        answer.raise_for_status()
        link = answer.json()["next"]
        if link is None:
            raise RuntimeError(f"the list ended before page {pages} (no next link)")
        path = link
        cursor = dict(parse_qsl(urlsplit(link).query))["cursor"]
    return cursor


async def time_requests(place: Place, executions: int, repeat: int) -> list[dict[str, Any]]:
    """Each request `repeat` times on one app (its lifespan entered once, as a server
    runs it), after one untimed warm-up request, each answer checked."""
    import httpx

    from livingai.web import create_app

    app = create_app(place.url)
    out: list[dict[str, Any]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            (await client.get("/api/executions")).raise_for_status()  # warm-up
            pages = deep_page(executions)
            cursor = await find_deep_cursor(client, pages)
            for request in requests(executions, cursor):
                samples: list[float] = []
                status, body = 0, ""
                for _ in range(repeat):
                    started = time.perf_counter()
                    answer = await client.get(request.path)
                    samples.append((time.perf_counter() - started) * 1000.0)
                    status, body = answer.status_code, answer.text
                    stop_if_cancelled()
                items, check = listed(request, status, body)
                out.append(
                    {
                        "request": request.name,
                        "path": request.path,
                        "samples_ms": samples,
                        "median_ms": statistics.median(samples),
                        "max_ms": max(samples),
                        "items": items,
                        "expected_items": None
                        if request.expected is None
                        else len(request.expected),
                        "check": check,
                    }
                )
    return out


def run_store(kind: str, executions: int, repeat: int) -> dict[str, Any]:
    """Fill a fresh store, time the requests, check the answers; the store is removed
    afterwards. A failure becomes the row's error."""
    row: dict[str, Any] = {"store": kind, "executions": executions}
    started = time.perf_counter()
    try:
        with provision(kind) as place:
            row["where"] = dict(place.where)
            print(f"{kind:<8} filling {executions:,} executions ...", end="", flush=True)
            row["fill_s"] = asyncio.run(
                fill(place, executions, lambda s: print(s, end="", flush=True))
            )
            print(f" {row['fill_s']:.1f}s", end="", flush=True)
            if place.postgres_schema:
                settled = time.perf_counter()
                vacuum_analyze(place.postgres_schema)
                row["analyze_s"] = time.perf_counter() - settled
            print(", requesting ...", end="", flush=True)
            row["requests"] = asyncio.run(time_requests(place, executions, repeat))
    except Exception as exc:  # a server refused the fill, a request or the clean-up
        row["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        row["wall_s"] = time.perf_counter() - started
    status = f" error: {row['error']}" if "error" in row else ""
    print(f" {row['wall_s']:.1f}s{status}", flush=True)
    return row


# -- report ------------------------------------------------------------------------------------

_COLUMNS = (
    ("store", "<", 8),
    ("request", "<", 40),
    ("items", ">", 5),
    ("median ms", ">", 10),
    ("max ms", ">", 10),
    ("check", "<", 5),
)


def _line(cells: Sequence[str]) -> str:
    return runner.padded(_COLUMNS, cells).rstrip()


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (store, request); a store that did not run says why."""
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        if "skipped" in row:
            out.append(_line([row["store"]]) + "  " + str(row["skipped"]))
            continue
        if "requests" not in row:
            out.append(_line([row["store"]]) + "  ERROR: " + str(row.get("error")))
            continue
        for found in row["requests"]:
            check = found["check"] if found["check"] == "ok" else "WRONG: " + found["check"]
            out.append(
                _line(
                    [
                        row["store"],
                        "GET " + found["path"],
                        str(found["items"]),
                        f"{found['median_ms']:.1f}",
                        f"{found['max_ms']:.1f}",
                        check,
                    ]
                )
            )
    return "\n".join(out)


def fill_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """How long each fill took (not what is measured)."""
    out = []
    for row in rows:
        if "fill_s" not in row:
            continue
        analyze = f", VACUUM ANALYZE {row['analyze_s']:.1f}s" if "analyze_s" in row else ""
        rate = row["executions"] / max(row["fill_s"], 1e-9)
        out.append(
            f"  {row['store']:<8} {row['executions']:,} executions ({row['executions'] * 3:,} "
            f"nodes) in {row['fill_s']:.1f}s ({rate:,.0f}/s){analyze}"
        )
    return out


def verdict(row: Mapping[str, Any]) -> str:
    """The first page, API and HTML, under a second in every run?"""
    name = row["store"]
    if "skipped" in row:
        return f"{name}: not run: {row['skipped']}"
    found = {r["request"]: r for r in row.get("requests", [])}
    if "error" in row or any(r not in found for r in VERDICT_REQUESTS):
        return f"{name}: first page under 1 s: no (the run failed)"
    slowest = max(found[r]["max_ms"] for r in VERDICT_REQUESTS)
    answer = "yes" if slowest < LIMIT_MS else "no"
    times = ", ".join(f"{found[r]['path']} {found[r]['max_ms']:.0f}" for r in VERDICT_REQUESTS)
    runs = len(found["api-first"]["samples_ms"])
    return (
        f"{name}: first page under 1 s: {answer} (slowest of {runs} runs, ms: {times}; "
        f"{row['executions']:,} executions)"
    )


def problems(row: Mapping[str, Any]) -> list[str]:
    """What makes the command fail: the run failed, or an answer was wrong."""
    if "skipped" in row:
        return []
    if "error" in row:
        return [f"{row['store']}: {row['error']}"]
    return [
        f"{row['store']} GET {r['path']}: {r['check']}"
        for r in row["requests"]
        if r["check"] != "ok"
    ]


# -- the command ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.web",
        description="The web UI's executions list over a store of --executions runs: the "
        "first page, filters, a search, a deep page and an execution's page, timed.",
    )
    runner.add_stores_option(parser)
    parser.add_argument(
        "--executions", type=runner.positive_int, default=None, help="default 100000"
    )
    parser.add_argument(
        "--repeat", type=runner.positive_int, default=None, help="runs of each request (5)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_EXECUTIONS:,} executions and {QUICK_REPEAT} runs: a smoke run",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    opts = parser.parse_args(argv)
    if opts.executions is None:
        opts.executions = QUICK_EXECUTIONS if opts.quick else 100_000
    if opts.repeat is None:
        opts.repeat = QUICK_REPEAT if opts.quick else 5
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    """Fill and serve every store, print the table and the verdicts. Exit status 1 when a
    run failed, an answer was wrong, or a store named in --stores could not run; a slow
    page is a result, not a failure."""
    opts = parse_args(argv)
    stores = opts.stores or list(STORES)
    servers = {
        kind: runner.server_problem(kind)
        for kind in ("redis", "postgres")
        if any(kind in NEEDS[store] for store in stores)
    }
    print(
        f"livingai {__version__}; {opts.executions:,} executions (3 nodes each, one in "
        f"{FAILED_EVERY} FAILED), {opts.repeat} run(s) per request, page {PAGE}",
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
            for kind in stores:
                problem = runner.store_problem(kind, NEEDS[kind], servers)
                if problem:
                    print(f"{kind:<8} {problem}", flush=True)
                    rows.append({"store": kind, "skipped": problem})
                    if opts.stores is not None:
                        failures.append(f"{kind}: {problem}")
                    continue
                rows.append(run_store(kind, opts.executions, opts.repeat))
    except KeyboardInterrupt:
        # run_store's clean-up has run by now: its store is removed.
        print("\ninterrupted: the store being measured was removed", flush=True)
        return 130

    print()
    print(table(rows))
    print()
    print("fill (not measured):")
    print("\n".join(fill_lines(rows)))
    print()
    print(f"verdict (the first page, API and HTML, under {LIMIT_MS / 1000:g} s in every run):")
    for row in rows:
        print("  " + verdict(row))
    if warned.seen:
        print()
        print("the stores warned:")
        print("\n".join(f"  {message}" for message in warned.seen))
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
                "livingai": __version__,
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "executions": opts.executions,
                "repeat": opts.repeat,
                "page": PAGE,
                "servers": {
                    "redis": runner.redact(runner.REDIS_URL),
                    "postgres": runner.redact(runner.POSTGRES_DSN),
                },
            },
            "runs": rows,
            "failures": failures,
        }
        opts.json.write_text(json.dumps(report, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
