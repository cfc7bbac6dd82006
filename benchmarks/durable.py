"""Durable agent runs side by side: livingai's Runtime against DBOS Transact.

`python -m benchmarks.durable` runs a 20-step agent (16 idempotent steps, 4 tools that
do no work) 50 times at once and 10 times one after another, on each store, for ours and
for DBOS, and prints one table: per-step overhead p50/p99 and runs per second, then the
ratios and the targets of the issue. See benchmarks/README.md.

Every (scenario, store, system) runs in a child process of its own, with a timeout, on a
store of its own that is removed afterwards (errors, timeouts and Ctrl-C too): a fresh
SQLite file in a temporary directory, a unique Redis key prefix, a unique Postgres schema
(ours) or database (DBOS). A second child, a fresh process, checks that nothing was lost.
DBOS runs under its own virtualenv, `.bench/dbos-venv`, made on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import runner
from .durable_workload import STEPS, TOOL_EVERY
from .workload import summarize

REPO = runner.REPO
WORKLOAD = Path(__file__).resolve().parent / "durable_workload.py"
DBOS_VENV = REPO / ".bench" / "dbos-venv"
DBOS_REQUIREMENTS = ("dbos",)  # brings SQLAlchemy and psycopg[binary] for its Postgres
STORES = ("sqlite", "redis", "postgres", "tiered")
DBOS_STORES = ("sqlite", "postgres")  # DBOS's system database is SQLite or Postgres
SCENARIOS = ("concurrent", "sequential")
TOOLS_PER_RUN = STEPS // TOOL_EVERY
SYSTEMS = ("ours", "dbos")

# The targets, on SQLite and Postgres: at 50 concurrent runs at least 10x DBOS's
# runs per second and at most a tenth of its per-step p99; one run at a time a lower p50.
TARGET_STORES = ("sqlite", "postgres")
RUNS_RATIO = 10.0
P99_RATIO = 10.0


@dataclass(frozen=True)
class Scenario:
    """How many runs, all at once or one after another; the timeout bounds each child."""

    name: str
    runs: int
    timeout_s: float


FULL = {
    "concurrent": Scenario("concurrent", 50, 300.0),
    "sequential": Scenario("sequential", 10, 300.0),
}
QUICK = {
    "concurrent": Scenario("concurrent", 5, 60.0),
    "sequential": Scenario("sequential", 2, 60.0),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.durable",
        description="Durable agent runs: livingai's Runtime side by side with DBOS Transact, "
        "on every store.",
    )
    runner.add_stores_option(parser)
    parser.add_argument("--no-dbos", action="store_true", help="run ours only")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


# -- the DBOS virtualenv ---------------------------------------------------------------------


def _dbos_complete(python: Path) -> bool:
    return runner.probe(python, "import dbos, psycopg, sqlalchemy")


def dbos_version(python: Path) -> str:
    """The installed DBOS version, for the output ("?" if it cannot be read)."""
    try:
        done = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() or "?"


def ensure_dbos(venv: Path = DBOS_VENV) -> tuple[Path | None, str]:
    """DBOS's python, creating its venv on first use (`pip install dbos`) and reusing it
    afterwards; or None and why not (no network, say)."""
    python, how = runner.ensure_venv(venv, DBOS_REQUIREMENTS, _dbos_complete)
    if python is None:
        return None, how
    return python, f"dbos {dbos_version(python)}, {how} {venv}"


# -- stores ------------------------------------------------------------------------------------


def with_query(url: str, **params: str) -> str:
    """The URL with these query parameters set (others kept, in order)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class Place:
    """Where one run's store lives: what the child is given, and (redacted) what the
    output shows so that anyone can check it is gone."""

    spec: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)


def _dbos_database(token: str, place: Place, cleanup: contextlib.ExitStack) -> None:
    """A database of its own for DBOS's system tables (or a schema of its own,
    `dbos_system_schema`, in the configured database)."""
    dsn, schema = runner.own_database(f"livingai_bench_dbos_{token}", cleanup)
    place.spec["url"] = dsn
    if schema is not None:
        place.spec["schema"] = schema
        place.where["postgres_schema"] = schema
    else:
        place.where["postgres_database"] = f"livingai_bench_dbos_{token}"


@contextlib.contextmanager
def provision(system: str, store: str, workdir: Path) -> Iterator[Place]:
    """A store of this run's own, removed afterwards (on errors and timeouts too)."""
    token = uuid.uuid4().hex[:12]
    place = Place()
    with contextlib.ExitStack() as cleanup:
        if store == "sqlite":
            db = workdir / f"{system}.sqlite"
            place.spec["url"] = f"sqlite:///{db}"  # an absolute path: sqlite:////tmp/...
            place.where["sqlite_dir"] = str(workdir)
        elif system == "dbos":
            if store != "postgres":
                raise ValueError(f"DBOS has no {store!r} store")
            _dbos_database(token, place, cleanup)
        else:
            urls = []
            if store in ("redis", "tiered"):
                prefix = f"livingai-bench-durable-{token}"
                cleanup.callback(runner.delete_redis_prefix, runner.REDIS_URL, prefix)
                urls.append(with_query(runner.REDIS_URL, prefix=prefix))
                place.where["redis_prefix"] = prefix
            if store in ("postgres", "tiered"):
                schema = f"livingai_bench_durable_{token}"
                cleanup.callback(runner.drop_schema, runner.POSTGRES_DSN, schema)
                urls.append(with_query(runner.POSTGRES_DSN, schema=schema))
                place.where["postgres_schema"] = schema
            place.spec["url"] = urls[0] if len(urls) == 1 else f"tiered:{urls[0]}|{urls[1]}"
        yield place


# -- one run -----------------------------------------------------------------------------------


def measured_row(head: dict[str, Any], runs: int, result: dict[str, Any]) -> dict[str, Any]:
    """A run child's output as a table row: totals and per-step percentiles (ms)."""
    samples = result["samples_ms"]
    row = {
        **head,
        "version": result["version"],
        "runs": runs,
        "steps": len(samples),
        "total_s": result["total_s"],
        "runs_per_s": runs / max(result["total_s"], 1e-9),
        "step_ms": summarize(samples),
        "failures": result["failures"],
    }
    if result["failures"]:
        row["error"] = f"{len(result['failures'])} of {runs} runs failed: {result['failures'][0]}"
    elif len(samples) != runs * STEPS:
        row["error"] = f"{len(samples)} steps timed, expected {runs * STEPS}"
    return row


def add_check(row: dict[str, Any], check: dict[str, Any]) -> None:
    """A verify child's output into the row: lost steps (no outcome stored), steps that
    ran again when the runs were started again, and tools' write-ahead intents."""
    row["lost"] = sum(max(0, STEPS - recorded) for recorded in check["recorded"])
    row["again"] = check["rerun_calls"]
    if "tool_intents" in check:
        row["tool_intents"] = check["tool_intents"]
    if check["rerun_failures"]:
        row["error"] = f"verify: {check['rerun_failures'][0]}"


def run_one(system: str, python: Path, store: str, scenario: Scenario) -> dict[str, Any]:
    """One (scenario, store, system): a run child, then a verify child, on a fresh store
    that is removed afterwards."""
    head: dict[str, Any] = {"scenario": scenario.name, "store": store, "system": system}
    row = dict(head)
    workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-durable-{system}-"))
    started = time.perf_counter()
    try:
        with provision(system, store, workdir) as place:
            row["where"] = dict(place.where)
            args: dict[str, Any] = {
                "system": system,
                "store": place.spec,
                "prefix": f"bench-{scenario.name}",
                "runs": scenario.runs,
                "scenario": scenario.name,
            }
            result = runner.run_child(
                python, {**args, "mode": "run"}, scenario.timeout_s, workdir, WORKLOAD
            )
            if "error" in result:
                row["error"] = result["error"]
            else:
                row = {**measured_row(head, scenario.runs, result), "where": row["where"]}
                check = runner.run_child(
                    python, {**args, "mode": "verify"}, scenario.timeout_s, workdir, WORKLOAD
                )
                if "error" in check:
                    row["error"] = f"verify: {check['error']}"
                else:
                    add_check(row, check)
    except Exception as exc:  # a server refused the set-up or the clean-up
        row["error"] = f"store set-up/clean-up: {type(exc).__name__}: {exc}"
    finally:
        row["wall_s"] = time.perf_counter() - started
        shutil.rmtree(workdir, ignore_errors=True)
    return row


# -- what can run ------------------------------------------------------------------------------


def ours_problem(store: str) -> str | None:
    """Why this repo's livingai cannot run durable runs on this store (yet)."""
    livingai = importlib.import_module("livingai")
    if not hasattr(livingai, "Runtime"):
        return "not available: livingai has no Runtime (yet)"
    return runner.ours_problem(store)


def dbos_problem(store: str, dbos: Path | None, dbos_note: str) -> str | None:
    if store not in DBOS_STORES:
        what = "Redis backend" if store == "redis" else f"{store} store"
        return f"n/a: DBOS has no {what}"
    if dbos is None:
        return f"not available: {dbos_note}"
    return None


def plan(
    stores: Sequence[str],
    servers: Mapping[str, str | None],
    ours: Mapping[str, str | None],
    dbos: Mapping[str, str | None] | None,
) -> list[tuple[str, str, str | None]]:
    """Every (store, system) in table order, each with why it cannot run (or None).
    `servers`: why Redis / Postgres cannot be used; `ours` / `dbos`: why each system
    cannot run a store, whatever the servers (`dbos` None: not asked for)."""
    needs = {"redis": ["redis"], "postgres": ["postgres"], "tiered": ["redis", "postgres"]}
    out: list[tuple[str, str, str | None]] = []
    for store in stores:
        down = next(
            (f"not available: {p}" for k in needs.get(store, []) if (p := servers.get(k))),
            None,
        )
        out.append((store, "ours", ours.get(store) or down))
        if dbos is not None:
            out.append((store, "dbos", dbos.get(store) or down))
    return out


# -- report ------------------------------------------------------------------------------------

_COLUMNS = (
    ("scenario", "<", 10),
    ("store", "<", 8),
    ("system", "<", 6),
    ("runs", ">", 4),
    ("steps", ">", 5),
    ("total s", ">", 7),
    ("runs/s", ">", 8),
    ("p50 ms", ">", 7),
    ("p99 ms", ">", 7),
    ("max ms", ">", 8),
    ("lost", ">", 4),
    ("again", ">", 5),
    ("intents", ">", 7),
)


def _line(cells: Sequence[str]) -> str:
    return runner.padded(_COLUMNS, cells)


def _measured(row: Mapping[str, Any]) -> bool:
    return "error" not in row and "skipped" not in row


def _intents_cell(row: Mapping[str, Any]) -> str:
    """Ours: tools whose intent was stored before they ran, of all tools; DBOS records
    a step's outcome only, after it ran."""
    if row["system"] == "dbos":
        return "none"
    if "tool_intents" not in row:
        return "-"
    return f"{row['tool_intents']}/{row['runs'] * TOOLS_PER_RUN}"


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The main table, one line per run; a run that failed or could not run says why."""
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        head = [row["scenario"], row["store"], row["system"]]
        if "skipped" in row:
            out.append(_line(head) + "  " + str(row["skipped"]))
            continue
        if "error" in row:
            out.append(_line(head) + "  ERROR: " + str(row["error"]))
            continue
        ms = row["step_ms"]
        out.append(
            _line(
                [
                    *head,
                    str(row["runs"]),
                    str(row["steps"]),
                    f"{row['total_s']:.3f}",
                    f"{row['runs_per_s']:.1f}",
                    f"{ms['p50']:.3f}",
                    f"{ms['p99']:.3f}",
                    f"{ms['max']:.1f}",
                    str(row["lost"]),
                    str(row["again"]),
                    _intents_cell(row),
                ]
            )
        )
    return "\n".join(out)


def ratios(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ours against DBOS per (scenario, store) where both were measured: runs/s
    ours/dbos, per-step p99 and p50 dbos/ours (above 1: ours is better)."""
    found: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        if _measured(row):
            found.setdefault((row["scenario"], row["store"]), {})[row["system"]] = row
    out = []
    for (scenario, store), systems in found.items():
        ours, dbos = systems.get("ours"), systems.get("dbos")
        if ours is None or dbos is None:
            continue
        out.append(
            {
                "scenario": scenario,
                "store": store,
                "runs_ratio": ours["runs_per_s"] / max(dbos["runs_per_s"], 1e-9),
                "p99_ratio": dbos["step_ms"]["p99"] / max(ours["step_ms"]["p99"], 1e-9),
                "p50_ratio": dbos["step_ms"]["p50"] / max(ours["step_ms"]["p50"], 1e-9),
            }
        )
    return out


def _verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else "PASS" if ok else "FAIL"


def _checks(
    row: Mapping[str, Any], dbos: Mapping[str, Any] | None
) -> list[tuple[str, bool | None]]:
    """The targets for one of our measured runs; a comparison without a DBOS row to
    compare with is None (SKIP), saying why."""
    tools = row["runs"] * TOOLS_PER_RUN
    checks: list[tuple[str, bool | None]] = [
        (f"lost {row['lost']}, ran again {row['again']}", row["lost"] == 0 and row["again"] == 0),
        (
            f"tool intents {row.get('tool_intents', 0)}/{tools}",
            row.get("tool_intents", 0) == tools,
        ),
    ]
    if row["store"] not in TARGET_STORES:
        return checks
    if dbos is None or not _measured(dbos):
        why = "no DBOS row" if dbos is None else f"DBOS did not run: {_why(dbos)}"
        checks.append((f"vs DBOS: {why}", None))
        return checks
    ours_ms, dbos_ms = row["step_ms"], dbos["step_ms"]
    if row["scenario"] == "concurrent":
        runs_ratio = row["runs_per_s"] / max(dbos["runs_per_s"], 1e-9)
        p99_ratio = dbos_ms["p99"] / max(ours_ms["p99"], 1e-9)
        checks += [
            (
                f"runs/s {row['runs_per_s']:.1f} = {runs_ratio:.2f}x DBOS's "
                f"{dbos['runs_per_s']:.1f} (>= {RUNS_RATIO:g}x)",
                runs_ratio >= RUNS_RATIO,
            ),
            (
                f"p99 {ours_ms['p99']:.3f} ms = DBOS's {dbos_ms['p99']:.3f} / {p99_ratio:.2f} "
                f"(<= 1/{P99_RATIO:g})",
                p99_ratio >= P99_RATIO,
            ),
        ]
    else:
        checks.append(
            (
                f"p50 {ours_ms['p50']:.3f} ms < DBOS's {dbos_ms['p50']:.3f} ms",
                ours_ms["p50"] < dbos_ms["p50"],
            )
        )
    return checks


def _why(row: Mapping[str, Any]) -> str:
    return str(row.get("skipped") or row.get("error") or "")


def targets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Our rows checked against the issue's targets: PASS, FAIL or SKIP with the numbers."""
    dbos = {(r["scenario"], r["store"]): r for r in rows if r["system"] == "dbos"}
    out = []
    for row in rows:
        if row["system"] != "ours" or "skipped" in row:
            continue
        where = f"  {row['scenario']:<10} {row['store']:<8}"
        if "error" in row:
            out.append(f"{where}  FAIL the run: {row['error']}")
            continue
        checks = _checks(row, dbos.get((row["scenario"], row["store"])))
        out.append(f"{where}  " + ", ".join(f"{_verdict(ok)} {what}" for what, ok in checks))
    return out


def _revision() -> str:
    """Which commit of ours was measured, read from .git (no git command is run)."""
    git = REPO / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[len("ref: ") :]
        if (git / ref).exists():
            return f"{ref.rsplit('/', 1)[-1]} {(git / ref).read_text().strip()[:12]}"
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return f"{ref.rsplit('/', 1)[-1]} {line[:12]}"
    except OSError:
        pass
    return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario on every store for both systems, print the table, optionally
    write JSON. Exit status 1 when one of our runs failed, or a store named in --stores
    could not run for us; DBOS failing is a result."""
    opts = parse_args(argv)
    scenarios = QUICK if opts.quick else FULL
    stores = opts.stores or list(STORES)
    dbos_python: Path | None = None
    dbos_note = "skipped (--no-dbos)"
    if not opts.no_dbos:
        dbos_python, dbos_note = ensure_dbos()
        if dbos_python is None:
            print(f"NOTE: DBOS unavailable, running ours only: {dbos_note}", flush=True)
    servers = {kind: runner.server_problem(kind) for kind in ("redis", "postgres")}
    ours = {store: ours_problem(store) for store in stores}
    dbos = None
    if not opts.no_dbos:
        dbos = {store: dbos_problem(store, dbos_python, dbos_note) for store in stores}
    matrix = plan(stores, servers, ours, dbos)
    livingai = importlib.import_module("livingai")
    revision = _revision()
    print(f"ours: livingai {livingai.__version__} ({revision}); dbos: {dbos_note}", flush=True)
    print(
        f"servers: Redis {runner.redact(runner.REDIS_URL)}, "
        f"PostgreSQL {runner.redact(runner.POSTGRES_DSN)}",
        flush=True,
    )
    failures = [
        f"{store} (ours): {problem}"
        for store, system, problem in matrix
        if system == "ours" and problem and opts.stores is not None
    ]
    for store, system, problem in matrix:
        if problem:
            print(f"  {store:<8} {system:<6} {problem}", flush=True)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for scenario in scenarios.values():
            for store, system, problem in matrix:
                head = {"scenario": scenario.name, "store": store, "system": system}
                if problem:
                    rows.append({**head, "skipped": problem})
                    continue
                python = Path(sys.executable) if system == "ours" else dbos_python
                assert python is not None  # a DBOS row without its venv has a problem
                label = f"{scenario.name:<10} {store:<8} {system:<6}"
                print(f"running {label} ...", end="", flush=True)
                row = run_one(system, python, store, scenario)
                status = f" error: {row['error']}" if "error" in row else ""
                print(f" {row['wall_s']:.1f}s{status}", flush=True)
                rows.append(row)
    except KeyboardInterrupt:
        # run_one's clean-up has run by now: its child is killed, its store removed.
        print("\ninterrupted: the child was stopped and its store removed", flush=True)
        return 130

    ratio_rows = ratios(rows)
    print()
    print(table(rows))
    for ratio in ratio_rows:
        print(
            f"{ratio['scenario']} / {ratio['store']}: runs/s ours/dbos "
            f"{ratio['runs_ratio']:.2f}x, per-step p99 dbos/ours {ratio['p99_ratio']:.2f}x, "
            f"p50 dbos/ours {ratio['p50_ratio']:.2f}x"
        )
    checked = targets(rows)
    if checked:
        print()
        note = " (quick run: small counts, indicative only)" if opts.quick else ""
        print(f"targets (ours){note}:")
        print("\n".join(checked))
    failures += [
        f"{row['scenario']} / {row['store']} (ours): {row['error']}"
        for row in rows
        if row["system"] == "ours" and "error" in row
    ]
    if failures:
        print()
        print("FAILED:")
        print("\n".join(f"  {failure}" for failure in failures))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")

    if opts.json is not None:
        report = {
            "meta": {
                "ours": {"version": livingai.__version__, "revision": revision},
                "dbos": dbos_note,
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "quick": opts.quick,
                "steps_per_run": STEPS,
                "tools_per_run": TOOLS_PER_RUN,
                "scenarios": {name: vars(s) for name, s in scenarios.items()},
                "stores": stores,
                "servers": {
                    "redis": runner.redact(runner.REDIS_URL),
                    "postgres": runner.redact(runner.POSTGRES_DSN),
                },
            },
            "runs": rows,
            "ratios": ratio_rows,
            "targets": checked,
            "failures": failures,
        }
        opts.json.write_text(json.dumps(report, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
