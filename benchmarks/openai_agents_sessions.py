"""OpenAI Agents SDK sessions side by side: livingai's LivingAISession against the SDK's.

`python -m benchmarks.openai_agents_sessions` runs 50 sessions at once, 20 turns each (a
turn: `add_items([user message, assistant message])`, then `get_items()`), for **ours**
(`LivingAISession` on one CheckpointEngine) and the **sdk**'s own session on the same
kind of database: `agents.SQLiteSession` (a file), `agents.extensions.memory.RedisSession`
and `agents.extensions.memory.SQLAlchemySession` on PostgreSQL (with asyncpg, the driver
its `sqlalchemy` extra installs, and with psycopg 3). It prints one table (add and get
p50/p99, turns/s), the ratios, and whether ours is ahead of each on its own database (p50
of add and of get no worse than the baseline's).

Every (store, system) runs in a child process of its own, with a timeout, on a database
of its own removed afterwards (errors, timeouts and Ctrl-C too): a fresh SQLite file in a
temporary directory, a unique Redis key prefix, a unique Postgres schema (ours) or
database (the SDK's table names are fixed). A second child, a fresh process, reads every
session back. Both systems run under one interpreter and one set of versions, the bench
venv `.bench/openai-agents-sessions-venv` (made on first use: the SDK with its redis and
sqlalchemy extras, and this repo editable); `--ours-only` runs ours alone, in the current
python, and makes no venv.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import durable, runner
from .workload import summarize

REPO = runner.REPO
WORKLOAD = Path(__file__).resolve().parent / "openai_agents_sessions_workload.py"
BENCH_VENV = REPO / ".bench" / "openai-agents-sessions-venv"
# The same SDK release as ours is built for (pyproject's openai-agents extra), with the
# extras its Redis and SQLAlchemy sessions need; ours from this checkout, with its stores.
BENCH_REQUIREMENTS = (
    "-e",
    f"{REPO}[redis,postgres]",
    "openai-agents[redis,sqlalchemy]>=0.24,<0.25",
)
STORES = ("sqlite", "redis", "postgres")
# The baselines of each store: (system label, what it is, SQLAlchemy driver or None).
BASELINES: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "sqlite": (("sdk", "SQLiteSession", None),),
    "redis": (("sdk", "RedisSession", None),),
    "postgres": (
        ("sdk", "SQLAlchemySession+asyncpg", "asyncpg"),
        ("sdk-psycopg", "SQLAlchemySession+psycopg", "psycopg"),
    ),
}
OURS_CLASS = "LivingAISession"
ITEMS_PER_TURN = 2


@dataclass(frozen=True)
class Scale:
    """How many sessions at once, how many turns each; the timeout bounds each child."""

    sessions: int
    turns: int
    timeout_s: float


FULL = Scale(50, 20, 300.0)
QUICK = Scale(5, 3, 60.0)


@dataclass(frozen=True)
class System:
    """One row's system: its label, what it runs, its SQLAlchemy driver (PostgreSQL
    baselines), and the python that runs it."""

    name: str
    session: str
    python: Path
    driver: str | None = None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.openai_agents_sessions",
        description="OpenAI Agents SDK sessions: livingai's LivingAISession side by side "
        "with the SDK's own, each on its own database.",
    )
    parser.add_argument(
        "--stores",
        type=lambda v: runner.split_choices(v, STORES),
        default=None,
        help="comma-separated: sqlite,redis,postgres (default: every one available; the "
        "others get a 'not available' row)",
    )
    parser.add_argument(
        "--ours-only",
        action="store_true",
        help="run ours only, in this python (which must have the SDK); makes no venv",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write a cProfile of each run's timed turns to DIR/<store>-<system>.prof",
    )
    return parser.parse_args(argv)


# -- the bench virtualenv ------------------------------------------------------------------


def _bench_complete(python: Path) -> bool:
    """The venv has the SDK with both extras, the drivers, and this checkout's livingai."""
    src = str(REPO / "src")
    return runner.probe(
        python,
        "import agents.extensions.memory as m, sqlalchemy, asyncpg, psycopg, redis, livingai; "
        "import sys; m.RedisSession; m.SQLAlchemySession; "
        f"sys.exit(not livingai.__file__.startswith({src!r}))",
    )


def ensure_bench(venv: Path = BENCH_VENV) -> tuple[Path | None, str]:
    """The bench venv's python, made on first use and reused afterwards; or None and why
    not (no network, say)."""
    python, how = runner.ensure_venv(venv, BENCH_REQUIREMENTS, _bench_complete)
    if python is None:
        return None, how
    return python, f"{how} {venv}"


def sdk_problem(python: Path) -> str | None:
    """Why ours cannot run under `python`: it needs the SDK (the session imports it)."""
    if runner.probe(python, "import agents, livingai.adapters.openai_agents.session"):
        return None
    return f"not available: {python} cannot import agents and livingai's session"


# -- stores --------------------------------------------------------------------------------


def sqlalchemy_url(dsn: str, driver: str) -> str:
    """A postgresql:// DSN as SQLAlchemy's async URL for `driver`."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"need a postgresql:// URL, got {runner.redact(dsn)!r}")
    return urlunsplit(parts._replace(scheme=f"postgresql+{driver}"))


@dataclass
class Place:
    """Where one run's store lives: what the child is given, and (redacted) what the
    output shows so that anyone can check it is gone."""

    spec: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def provision(system: System, store: str, workdir: Path) -> Iterator[Place]:
    """A database of this run's own, removed afterwards (on errors and timeouts too)."""
    token = uuid.uuid4().hex[:12]
    ours = system.name == "ours"
    place = Place()
    with contextlib.ExitStack() as cleanup:
        if store == "sqlite":
            db = workdir / f"{system.name}.sqlite"
            place.spec = {"url": f"sqlite:///{db}"} if ours else {"path": str(db)}
            place.where["sqlite_dir"] = str(workdir)
        elif store == "redis":
            prefix = f"livingai-bench-sessions-{system.name}-{token}"
            cleanup.callback(runner.delete_redis_prefix, runner.REDIS_URL, prefix)
            if ours:
                place.spec = {"url": durable.with_query(runner.REDIS_URL, prefix=prefix)}
            else:
                place.spec = {"url": runner.REDIS_URL, "key_prefix": prefix}
            place.where["redis_prefix"] = prefix
        elif ours:
            schema = f"livingai_bench_sessions_{token}"
            cleanup.callback(runner.drop_schema, runner.POSTGRES_DSN, schema)
            place.spec = {"url": durable.with_query(runner.POSTGRES_DSN, schema=schema)}
            place.where["postgres_schema"] = schema
        else:
            driver = system.driver or "asyncpg"
            name = f"livingai_bench_sessions_sdk_{token}"
            dsn, fallback = runner.own_database(name, cleanup)
            place.spec = {"url": sqlalchemy_url(dsn, driver), "driver": driver}
            if fallback is not None:  # no CREATE DATABASE here: a schema of its own
                place.spec["schema"] = fallback
                place.where["postgres_schema"] = fallback
            else:
                place.where["postgres_database"] = name
        yield place


# -- one run -------------------------------------------------------------------------------


def measured_row(head: dict[str, Any], scale: Scale, result: Mapping[str, Any]) -> dict[str, Any]:
    """A run child's output as a table row: per-call percentiles (ms) and turns/s."""
    turns = scale.sessions * scale.turns
    row = {
        **head,
        "version": result["version"],
        "sessions": scale.sessions,
        "turns": turns,
        "total_s": result["total_s"],
        "turns_per_s": turns / max(result["total_s"], 1e-9),
        "add_ms": summarize(result["add_ms"]),
        "get_ms": summarize(result["get_ms"]),
        "wrong": result["wrong"],
        "failures": result["failures"],
    }
    if result["failures"]:
        row["error"] = f"{len(result['failures'])} sessions failed: {result['failures'][0]}"
    elif len(result["add_ms"]) != turns or len(result["get_ms"]) != turns:
        row["error"] = (
            f"{len(result['add_ms'])} adds and {len(result['get_ms'])} gets timed, "
            f"expected {turns} of each"
        )
    elif result["wrong"]:
        row["error"] = f"{result['wrong']} get_items calls returned the wrong items"
    return row


def run_one(
    system: System, store: str, scale: Scale, profile: Path | None = None
) -> dict[str, Any]:
    """One (store, system): a run child, then a verify child, on a fresh database that is
    removed afterwards."""
    head: dict[str, Any] = {"store": store, "system": system.name, "session": system.session}
    row = dict(head)
    workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-sessions-{system.name}-"))
    started = time.perf_counter()
    try:
        with provision(system, store, workdir) as place:
            row["where"] = dict(place.where)
            args: dict[str, Any] = {
                "system": "ours" if system.name == "ours" else "sdk",
                "store": store,
                "spec": place.spec,
                "prefix": "bench",
                "sessions": scale.sessions,
                "turns": scale.turns,
            }
            run_args = {**args, "mode": "run"}
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                run_args["profile"] = str((profile / f"{store}-{system.name}.prof").resolve())
            result = runner.run_child(system.python, run_args, scale.timeout_s, workdir, WORKLOAD)
            if "error" in result:
                row["error"] = result["error"]
            else:
                row = {**measured_row(head, scale, result), "where": row["where"]}
                check = runner.run_child(
                    system.python, {**args, "mode": "verify"}, scale.timeout_s, workdir, WORKLOAD
                )
                if "error" in check:
                    row["error"] = f"verify: {check['error']}"
                else:
                    row["lost"], row["mismatched"] = check["lost"], check["mismatched"]
                    if check["lost"] or check["mismatched"]:
                        row.setdefault(
                            "error",
                            f"verify: {check['lost']} items lost, {check['mismatched']} "
                            "sessions not as added",
                        )
    except Exception as exc:  # a server refused the set-up or the clean-up
        row["error"] = f"store set-up/clean-up: {type(exc).__name__}: {exc}"
    finally:
        row["wall_s"] = time.perf_counter() - started
        shutil.rmtree(workdir, ignore_errors=True)
    return row


# -- what can run --------------------------------------------------------------------------


def plan(
    stores: Sequence[str],
    servers: Mapping[str, str | None],
    ours: System,
    ours_problem: str | None,
    baselines: Path | None,
    baselines_problem: str | None,
) -> list[tuple[str, System, str | None]]:
    """Every (store, system) in table order, each with why it cannot run (or None).
    `servers`: why Redis / Postgres cannot be used; `baselines`: the SDK's python (None:
    not asked for, or `baselines_problem` says why it is missing)."""
    out: list[tuple[str, System, str | None]] = []
    for store in stores:
        down = servers.get(store)
        down = f"not available: {down}" if down else None
        out.append((store, ours, ours_problem or down))
        if baselines is None and baselines_problem is None:
            continue
        for name, session, driver in BASELINES[store]:
            python = baselines or Path(sys.executable)
            problem = f"not available: {baselines_problem}" if baselines_problem else down
            out.append((store, System(name, session, python, driver), problem))
    return out


def run_all(
    matrix: Sequence[tuple[str, System, str | None]],
    scale: Scale,
    profile: Path | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every row of the plan, run one after another (the rows that cannot run say why)."""
    rows: list[dict[str, Any]] = []
    for store, system, problem in matrix:
        head = {"store": store, "system": system.name, "session": system.session}
        if problem:
            rows.append({**head, "skipped": problem})
            continue
        if progress:
            print(f"running {store:<8} {system.name:<11} ...", end="", flush=True)
        row = run_one(system, store, scale, profile)
        if progress:
            status = f" error: {row['error']}" if "error" in row else ""
            print(f" {row['wall_s']:.1f}s{status}", flush=True)
        rows.append(row)
    return rows


# -- report --------------------------------------------------------------------------------

_COLUMNS = (
    ("store", "<", 8),
    ("system", "<", 11),
    ("session", "<", 25),
    ("turns", ">", 5),
    ("add p50", ">", 7),
    ("add p99", ">", 7),
    ("get p50", ">", 7),
    ("get p99", ">", 7),
    ("turns/s", ">", 8),
    ("lost", ">", 4),
)


def _line(cells: Sequence[str]) -> str:
    return runner.padded(_COLUMNS, cells)


def _measured(row: Mapping[str, Any]) -> bool:
    return "error" not in row and "skipped" not in row


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The main table, one line per run (latencies in ms); a run that failed or could
    not run says why."""
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        head = [row["store"], row["system"], row["session"]]
        if "skipped" in row:
            out.append(_line(head) + "  " + str(row["skipped"]))
            continue
        if "error" in row:
            out.append(_line(head) + "  ERROR: " + str(row["error"]))
            continue
        add, get = row["add_ms"], row["get_ms"]
        out.append(
            _line(
                [
                    *head,
                    str(row["turns"]),
                    f"{add['p50']:.2f}",
                    f"{add['p99']:.2f}",
                    f"{get['p50']:.2f}",
                    f"{get['p99']:.2f}",
                    f"{row['turns_per_s']:.0f}",
                    str(row.get("lost", "-")),
                ]
            )
        )
    return "\n".join(out)


def ratios(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ours against each baseline of its store where both were measured: latencies
    baseline/ours and turns/s ours/baseline (above 1: ours is better)."""
    ours = {row["store"]: row for row in rows if row["system"] == "ours" and _measured(row)}
    out = []
    for row in rows:
        mine = ours.get(row["store"])
        if row["system"] == "ours" or mine is None or not _measured(row):
            continue
        ratio: dict[str, Any] = {"store": row["store"], "baseline": row["system"]}
        for op in ("add", "get"):
            for pct in ("p50", "p99"):
                theirs, own = row[f"{op}_ms"][pct], mine[f"{op}_ms"][pct]
                ratio[f"{op}_{pct}"] = theirs / max(own, 1e-9)
        ratio["turns"] = mine["turns_per_s"] / max(row["turns_per_s"], 1e-9)
        out.append(ratio)
    return out


def ratio_lines(ratio_rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"{r['store']} / {r['baseline']}: {r['baseline']}/ours add p50 {r['add_p50']:.2f}x, "
        f"p99 {r['add_p99']:.2f}x; get p50 {r['get_p50']:.2f}x, p99 {r['get_p99']:.2f}x; "
        f"turns/s ours/{r['baseline']} {r['turns']:.2f}x"
        for r in ratio_rows
    ]


def targets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ours ahead of each baseline on its own database: PASS when our p50 of add and of
    get are no worse than the baseline's, FAIL otherwise, SKIP without a baseline row."""
    ours = {row["store"]: row for row in rows if row["system"] == "ours"}
    out = []
    for row in rows:
        if row["system"] == "ours":
            continue
        mine = ours.get(row["store"])
        where = f"  {row['store']:<8} vs {row['system']:<11}"
        if mine is None or "skipped" in mine:
            continue
        if "error" in mine:
            out.append(f"{where}  FAIL ours did not run: {mine['error']}")
            continue
        if not _measured(row):
            why = row.get("skipped") or row.get("error")
            out.append(f"{where}  SKIP {row['session']} did not run: {why}")
            continue
        checks = []
        for op in ("add", "get"):
            own, theirs = mine[f"{op}_ms"]["p50"], row[f"{op}_ms"]["p50"]
            passed = own <= theirs
            checks.append((f"{op} p50 {own:.2f} {'<=' if passed else '>'} {theirs:.2f} ms", passed))
        ok = all(passed for _, passed in checks)
        detail = ", ".join(what for what, _ in checks)
        out.append(f"{where}  {'PASS' if ok else 'FAIL'} {detail} ({row['session']})")
    return out


def report(rows: Sequence[Mapping[str, Any]], quick: bool = False) -> str:
    """The table, the ratios and the targets, as printed."""
    parts = [table(rows)]
    lines = ratio_lines(ratios(rows))
    if lines:
        parts.append("\n".join(lines))
    checked = targets(rows)
    if checked:
        note = " (quick run: small counts, indicative only)" if quick else ""
        parts.append(f"ahead of each on its own database (ours){note}:\n" + "\n".join(checked))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every store for both systems, print the table, optionally write JSON. Exit
    status 1 when one of our runs failed, or a store named in --stores could not run for
    us; a baseline failing is a result."""
    opts = parse_args(argv)
    scale = QUICK if opts.quick else FULL
    stores = opts.stores or list(STORES)
    baselines: Path | None = None
    baselines_problem: str | None = None
    if opts.ours_only:
        note = "ours only (--ours-only), in this python"
        python = Path(sys.executable)
    else:
        baselines, note = ensure_bench()
        if baselines is None:
            baselines_problem = note
            print(f"NOTE: bench venv unavailable, running ours only: {note}", flush=True)
        python = baselines or Path(sys.executable)
    ours = System("ours", OURS_CLASS, python)
    servers = {
        "redis": runner.server_problem("redis"),
        "postgres": runner.server_problem("postgres"),
    }
    matrix = plan(stores, servers, ours, sdk_problem(python), baselines, baselines_problem)
    livingai = importlib.import_module("livingai")
    print(f"ours: livingai {livingai.__version__}; python: {python} ({note})", flush=True)
    print(
        f"servers: Redis {runner.redact(runner.REDIS_URL)}, "
        f"PostgreSQL {runner.redact(runner.POSTGRES_DSN)}; "
        f"{scale.sessions} sessions x {scale.turns} turns at once",
        flush=True,
    )
    failures = [
        f"{store} (ours): {problem}"
        for store, system, problem in matrix
        if system.name == "ours" and problem and opts.stores is not None
    ]
    for store, system, problem in matrix:
        if problem:
            print(f"  {store:<8} {system.name:<11} {problem}", flush=True)
    started = time.perf_counter()
    try:
        rows = run_all(matrix, scale, opts.profile)
    except KeyboardInterrupt:
        # run_one's clean-up has run by now: its child is killed, its store removed.
        print("\ninterrupted: the child was stopped and its store removed", flush=True)
        return 130
    print()
    print(report(rows, opts.quick))
    failures += [
        f"{row['store']} (ours): {row['error']}"
        for row in rows
        if row["system"] == "ours" and "error" in row
    ]
    if failures:
        print()
        print("FAILED:")
        print("\n".join(f"  {failure}" for failure in failures))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if opts.json is not None:
        result = {
            "meta": {
                "ours": livingai.__version__,
                "python": str(python),
                "note": note,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "quick": opts.quick,
                "scale": vars(scale),
                "stores": stores,
                "servers": {
                    "redis": runner.redact(runner.REDIS_URL),
                    "postgres": runner.redact(runner.POSTGRES_DSN),
                },
            },
            "runs": rows,
            "ratios": ratios(rows),
            "targets": targets(rows),
            "failures": failures,
        }
        opts.json.write_text(json.dumps(result, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
