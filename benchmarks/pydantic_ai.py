"""Pydantic AI agents side by side: the bare agent, Pydantic AI's DBOSDurability, ours.

    python -m benchmarks.pydantic_ai [--runs 50] [--turns 10] [--systems bare,ours,dbos]
                                     [--stores sqlite,redis,postgres,tiered] [--json PATH]

`--runs` runs of one agent at once (asyncio tasks on one loop), each `--turns` turns of a
model request and a tool call, on a `FunctionModel` (no network, no API key;
pydantic_ai_workload.py), for three systems: **bare** (`agent.run`, nothing kept),
**ours** (`LivingAIDurability.run` on each livingai store, the tool given to
`durability.tool(..., retry_with_key=True)`) and **dbos** (Pydantic AI's own
`DBOSDurability`, `agent.run` inside a `@DBOS.workflow`, the tool a `@DBOS.step`, on
DBOS's SQLite system database and on PostgreSQL). One table: runs/s, per-turn p50/p99,
what each adds over bare, and the checks that nothing was lost; then the issue's targets.

What is measured (the same code for every system, in the workload):
- **a turn's time**: from the run's start (turn 1) or the previous tool's return to this
  tool's return, so a turn holds one model request, one tool call and whatever the
  system records between them; p50/p99 are exact nearest-rank over every turn of every run.
- **+p50 / +p99**: a system's turn p50 (p99) minus the bare agent's, in the same run of
  this command: the latency a durable layer adds to a turn as a run sees it. With every
  run on one event loop, a run waits for the other runs' turns too, so this counts the
  layer's cost of a turn about as many times as there are runs at once.
- **+ms/turn**: (total s - bare's total s) / (runs x turns): what a turn costs the
  process, the concurrency divided out.
- **total s**: from the first run's start until the last returned (ours: and
  `engine.flush()` returned); **runs/s** = runs / total s.

Checks: every run answered its own answer and ran its tool exactly `--turns` times
("runs ok"); then (ours, DBOS) a fresh process on the same store counts model requests
and tool calls without a stored outcome ("lost"), starts every run again with its id and
counts the calls made again ("again"), and (ours) the tools whose write-ahead intent was
stored before they ran ("intents"; DBOS records a step's output only after it ran).

Every (system, store) runs in a child process of its own, with a timeout, on a store of
its own removed afterwards (benchmarks.durable.provision: a fresh SQLite file, a Redis key
prefix, a Postgres schema for ours, a database for DBOS). Bare and ours run under
`.venv-pydantic-ai` (as ./scripts/test makes it); DBOS under `.bench/dbos-pydantic-ai-venv`,
made on first use with `pip install "pydantic-ai-slim[dbos]<pyproject's bound>" dbos`.
Exit status 1 when bare or one of our runs failed, or a store named in --stores could not
run for us; DBOS failing, and a target missed, are results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import durable, runner
from .openai_agents import revision
from .workload import summarize

REPO = runner.REPO
WORKLOAD = Path(__file__).resolve().parent / "pydantic_ai_workload.py"
VENV = REPO / ".venv-pydantic-ai"
REQUIREMENTS = ("-e", f"{REPO}[test-pydantic-ai]")  # as ./scripts/test installs it
DBOS_VENV = REPO / ".bench" / "dbos-pydantic-ai-venv"
STORES = runner.STORES
DBOS_STORES = durable.DBOS_STORES
SYSTEMS = ("bare", "ours", "dbos")
NO_STORE = "-"  # the bare agent's row: it keeps nothing
RUNS, TURNS = 50, 10
SECONDS = 300.0  # a child's timeout

# The targets. On SQLite: at most 1 ms added per turn at p50 over the bare agent.
# On SQLite and PostgreSQL: at least 5x DBOS's runs/s and at most a tenth of its per-turn p99.
ADDED_P50_MS = 1.0
ADDED_STORES = ("sqlite",)
TARGET_STORES = ("sqlite", "postgres")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pydantic_ai",
        description="Pydantic AI agents: the bare agent, DBOSDurability and "
        "LivingAIDurability side by side, on every store.",
    )
    parser.add_argument(
        "--runs", type=runner.positive_int, default=RUNS, help=f"runs at once ({RUNS})"
    )
    parser.add_argument(
        "--turns", type=runner.positive_int, default=TURNS, help=f"turns a run ({TURNS})"
    )
    parser.add_argument(
        "--systems",
        type=lambda v: runner.split_choices(v, SYSTEMS),
        default=list(SYSTEMS),
        help="comma-separated: bare,ours,dbos (default: all)",
    )
    runner.add_stores_option(parser, "ours and DBOS's (sqlite, postgres), ")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


# -- the virtualenvs -------------------------------------------------------------------------


def _complete(python: Path) -> bool:
    return runner.probe(python, "import pydantic_ai, livingai.adapters.pydantic_ai")


def ensure_python() -> tuple[Path | None, str]:
    """The python for bare and ours: this one if it has Pydantic AI and our adapter, else
    `.venv-pydantic-ai`, made as ./scripts/test makes it if it is missing. One that exists
    but does not import is left alone (./scripts/test may be filling it)."""
    here = Path(sys.executable)
    if _complete(here):
        return here, str(here)
    python = runner.venv_python(VENV)
    if python.exists() and not _complete(python):
        return None, (
            f"{python} cannot import pydantic_ai and livingai.adapters.pydantic_ai: "
            f"run ./scripts/test, or {python} -m pip install -e '.[test-pydantic-ai]'"
        )
    found, how = runner.ensure_venv(VENV, REQUIREMENTS, _complete)
    if found is None:
        return None, how
    return found, f"{found} ({how})"


def dbos_requirements(pyproject: Path = REPO / "pyproject.toml") -> tuple[str, ...]:
    """Pydantic AI with its `dbos` extra, in the version bound of our `pydantic-ai` extra
    (read from pyproject.toml, so both sides run the same releases), and DBOS."""
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    [spec] = extras["pydantic-ai"]
    found = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", spec)
    if found is None:
        raise ValueError(f"pyproject's pydantic-ai extra is not a requirement: {spec!r}")
    return (f"{found[1]}[dbos]{found[2]}", "dbos")


def _dbos_complete(python: Path) -> bool:
    return runner.probe(python, "import dbos, psycopg, sqlalchemy, pydantic_ai.durable_exec.dbos")


def ensure_dbos() -> tuple[Path | None, str]:
    """DBOS's python, its venv made on first use and reused afterwards; or None and why."""
    python, how = runner.ensure_venv(DBOS_VENV, dbos_requirements(), _dbos_complete)
    if python is None:
        return None, how
    return python, f"{how} {DBOS_VENV}"


# -- one run -----------------------------------------------------------------------------------


def measured_row(
    head: dict[str, Any], runs: int, turns: int, result: dict[str, Any]
) -> dict[str, Any]:
    """A run child's output as a table row: totals, per-turn percentiles (ms), and the
    runs that answered right with their tool run exactly `turns` times."""
    samples = result["samples_ms"]
    calls = result["tool_calls"]
    row = {
        **head,
        "version": result["version"],
        "runs": runs,
        "turns": len(samples),
        "total_s": result["total_s"],
        "runs_per_s": runs / max(result["total_s"], 1e-9),
        "turn_ms": summarize(samples),
        "samples_ms": samples,  # run by run, turn by turn
        "tool_calls": calls,
        "runs_ok": sum(ok and n == turns for ok, n in zip(result["answered"], calls, strict=True)),
        "failures": result["failures"],
    }
    if result["failures"]:
        row["error"] = f"{len(result['failures'])} of {runs} runs failed: {result['failures'][0]}"
    elif len(samples) != runs * turns or any(n != turns for n in calls):
        row["error"] = (
            f"{len(samples)} turns timed, expected {runs * turns}; "
            f"tool calls per run {sorted(set(calls))}, expected {turns}"
        )
    return row


def add_check(row: dict[str, Any], turns: int, check: dict[str, Any]) -> None:
    """A verify child's output into the row: model requests and tool calls without a
    stored outcome (lost), calls made again when the runs were started again, and our
    tools' write-ahead intents."""
    recorded = check["recorded"]
    row["lost"] = sum(
        max(0, turns - r["tools"]) + max(0, turns + 1 - r["models"]) for r in recorded
    )
    row["tools_recorded"] = sum(r["tools"] for r in recorded)
    row["intents"] = sum(r["intents"] for r in recorded)
    row["again"] = check["again"]
    if check["failures"]:
        row["error"] = f"verify: {check['failures'][0]}"


def run_one(system: str, python: Path, store: str, runs: int, turns: int) -> dict[str, Any]:
    """One (system, store): a run child, then (with a store) a verify child, on a fresh
    store that is removed afterwards."""
    head: dict[str, Any] = {"store": store, "system": system}
    row = dict(head)
    workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-pydantic-ai-{system}-"))
    started = time.perf_counter()
    try:
        with durable.provision(system, "sqlite" if store == NO_STORE else store, workdir) as place:
            args: dict[str, Any] = {
                "system": system,
                "store": place.spec,
                "prefix": "bench",
                "runs": runs,
                "turns": turns,
            }
            if store != NO_STORE:
                row["where"] = dict(place.where)
            result = runner.run_child(python, {**args, "mode": "run"}, SECONDS, workdir, WORKLOAD)
            if "error" in result:
                row["error"] = result["error"]
            else:
                row = {**measured_row(head, runs, turns, result), **row}
                if store != NO_STORE:
                    check = runner.run_child(
                        python, {**args, "mode": "verify"}, SECONDS, workdir, WORKLOAD
                    )
                    if "error" in check:
                        row["error"] = f"verify: {check['error']}"
                    else:
                        add_check(row, turns, check)
    except Exception as exc:  # a server refused the set-up or the clean-up
        row["error"] = f"store set-up/clean-up: {type(exc).__name__}: {exc}"
    finally:
        row["wall_s"] = time.perf_counter() - started
        shutil.rmtree(workdir, ignore_errors=True)
    return row


# -- what can run ------------------------------------------------------------------------------


def plan(
    systems: Sequence[str],
    stores: Sequence[str],
    servers: Mapping[str, str | None],
    python: str | None,
    dbos: Mapping[str, str | None],
) -> list[tuple[str, str, str | None]]:
    """Every (store, system) in table order, bare first, each with why it cannot run (or
    None). `python`: why the python for bare and ours is missing; `dbos`: why DBOS cannot
    run a store, whatever the servers."""
    ours = {store: durable.ours_problem(store) for store in stores}
    out: list[tuple[str, str, str | None]] = []
    if "bare" in systems:
        out.append((NO_STORE, "bare", python))
    for store, system, problem in durable.plan(stores, servers, ours, dbos):
        if system not in systems:
            continue
        if system == "ours" and python is not None:
            problem = problem or python
        out.append((store, system, problem))
    return out


# -- report ------------------------------------------------------------------------------------

_COLUMNS = (
    ("store", "<", 8),
    ("system", "<", 6),
    ("runs", ">", 4),
    ("turns", ">", 5),
    ("total s", ">", 7),
    ("runs/s", ">", 7),
    ("p50 ms", ">", 8),
    ("p99 ms", ">", 8),
    ("+p50 ms", ">", 8),
    ("+p99 ms", ">", 8),
    ("+ms/turn", ">", 8),
    ("runs ok", ">", 7),
    ("lost", ">", 4),
    ("again", ">", 5),
    ("intents", ">", 7),
)


def _line(cells: Sequence[str]) -> str:
    return runner.padded(_COLUMNS, cells)


def bare_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((r for r in rows if r["system"] == "bare" and runner.measured(r)), None)


def added(row: Mapping[str, Any], bare: Mapping[str, Any] | None, pct: str) -> float | None:
    """The turn's percentile `pct` ("p50", "p99") over the bare agent's (ms), if both ran."""
    if bare is None or row["system"] == "bare" or not runner.measured(row):
        return None
    return float(row["turn_ms"][pct] - bare["turn_ms"][pct])


def added_per_turn(row: Mapping[str, Any], bare: Mapping[str, Any] | None) -> float | None:
    """The total time over the bare agent's, per turn of every run (ms)."""
    if bare is None or row["system"] == "bare" or not runner.measured(row):
        return None
    return float((row["total_s"] - bare["total_s"]) * 1000.0 / max(row["turns"], 1))


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _intents_cell(row: Mapping[str, Any]) -> str:
    if row["system"] == "dbos":
        return "none"
    if "intents" not in row:
        return "-"
    return f"{row['intents']}/{row['turns']}"


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The main table, one line per run; a run that failed or could not run says why."""
    bare = bare_row(rows)
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        head = [row["store"], row["system"]]
        if "skipped" in row:
            out.append(_line(head) + "  " + str(row["skipped"]))
            continue
        if "error" in row:
            out.append(_line(head) + "  ERROR: " + str(row["error"]))
            continue
        ms = row["turn_ms"]
        out.append(
            _line(
                [
                    *head,
                    str(row["runs"]),
                    str(row["turns"]),
                    f"{row['total_s']:.3f}",
                    f"{row['runs_per_s']:.1f}",
                    f"{ms['p50']:.3f}",
                    f"{ms['p99']:.3f}",
                    _signed(added(row, bare, "p50")),
                    _signed(added(row, bare, "p99")),
                    _signed(added_per_turn(row, bare)),
                    f"{row['runs_ok']}/{row['runs']}",
                    str(row.get("lost", "-")),
                    str(row.get("again", "-")),
                    _intents_cell(row),
                ]
            )
        )
    return "\n".join(out)


def ratios(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ours against DBOS per store where both were measured: runs/s ours/dbos, per-turn
    p99 and p50 dbos/ours (above 1: ours is better)."""
    found: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        if runner.measured(row):
            found.setdefault(row["store"], {})[row["system"]] = row
    out = []
    for store, systems in found.items():
        ours, dbos = systems.get("ours"), systems.get("dbos")
        if ours is None or dbos is None:
            continue
        out.append(
            {
                "store": store,
                "runs_ratio": ours["runs_per_s"] / max(dbos["runs_per_s"], 1e-9),
                "p99_ratio": dbos["turn_ms"]["p99"] / max(ours["turn_ms"]["p99"], 1e-9),
                "p50_ratio": dbos["turn_ms"]["p50"] / max(ours["turn_ms"]["p50"], 1e-9),
            }
        )
    return out


def _verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else "PASS" if ok else "FAIL"


def _checks(
    row: Mapping[str, Any], bare: Mapping[str, Any] | None, dbos: Mapping[str, Any] | None
) -> list[tuple[str, bool | None]]:
    """The targets for one of our measured runs; a comparison without the row it needs
    is None (SKIP), saying why."""
    turns = row["turns"]
    checks: list[tuple[str, bool | None]] = [
        (
            f"runs ok {row['runs_ok']}/{row['runs']}, lost {row['lost']}, ran again "
            f"{row['again']}, tool calls stored {row['tools_recorded']}/{turns}, "
            f"intents {row['intents']}/{turns}",
            row["runs_ok"] == row["runs"]
            and row["lost"] == 0
            and row["again"] == 0
            and row["tools_recorded"] == turns
            and row["intents"] == turns,
        )
    ]
    if row["store"] in ADDED_STORES:
        plus = added(row, bare, "p50")
        if plus is None:
            checks.append(("vs bare: the bare agent did not run", None))
        else:
            per_turn = added_per_turn(row, bare)
            checks.append(
                (
                    f"{plus:+.3f} ms per turn at p50 over bare (<= {ADDED_P50_MS:g} ms; "
                    f"{per_turn:+.3f} ms/turn of total time)",
                    plus <= ADDED_P50_MS,
                )
            )
    if row["store"] not in TARGET_STORES:
        return checks
    return checks + runner.against_dbos(row, dbos)


def targets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Our rows checked against the issue's targets: PASS, FAIL or SKIP with the numbers."""
    bare = bare_row(rows)
    dbos = {r["store"]: r for r in rows if r["system"] == "dbos"}
    out = []
    for row in rows:
        if row["system"] != "ours" or "skipped" in row:
            continue
        where = f"  {row['store']:<8}"
        if "error" in row:
            out.append(f"{where}  FAIL the run: {row['error']}")
            continue
        checks = _checks(row, bare, dbos.get(row["store"]))
        out.append(f"{where}  " + ", ".join(f"{_verdict(ok)} {what}" for what, ok in checks))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run bare, then ours and DBOS on every store; print the table and the targets;
    optionally write JSON."""
    opts = parse_args(argv)
    stores = opts.stores or list(STORES)
    python: Path | None = None
    python_note = "not asked for"
    if "bare" in opts.systems or "ours" in opts.systems:
        python, python_note = ensure_python()
    python_problem = None if python is not None else f"not available: {python_note}"
    dbos_python: Path | None = None
    dbos_note = "not asked for"
    if "dbos" in opts.systems:
        dbos_python, dbos_note = ensure_dbos()
        if dbos_python is None:
            print(f"NOTE: DBOS unavailable, running without it: {dbos_note}", flush=True)
    servers = {kind: runner.server_problem(kind) for kind in ("redis", "postgres")}
    dbos = {store: durable.dbos_problem(store, dbos_python, dbos_note) for store in stores}
    matrix = plan(opts.systems, stores, servers, python_problem, dbos)
    rev = revision()
    print(f"ours: this repo ({rev}); python for bare and ours: {python_note}", flush=True)
    print(f"dbos: {dbos_note}", flush=True)
    print(
        f"{opts.runs} runs at once x {opts.turns} turns; servers: Redis "
        f"{runner.redact(runner.REDIS_URL)}, PostgreSQL {runner.redact(runner.POSTGRES_DSN)}",
        flush=True,
    )
    failures = [
        f"{store} ({system}): {problem}"
        for store, system, problem in matrix
        if problem and (system == "bare" or (system == "ours" and opts.stores is not None))
    ]
    for store, system, problem in matrix:
        if problem:
            print(f"  {store:<8} {system:<6} {problem}", flush=True)

    rows: list[dict[str, Any]] = []
    versions: dict[str, str] = {}
    started = time.perf_counter()
    try:
        for store, system, problem in matrix:
            head = {"store": store, "system": system}
            if problem:
                rows.append({**head, "skipped": problem})
                continue
            child = dbos_python if system == "dbos" else python
            assert child is not None  # a row without its python has a problem
            print(f"running {store:<8} {system:<6} ...", end="", flush=True)
            row = run_one(system, child, store, opts.runs, opts.turns)
            status = f" error: {row['error']}" if "error" in row else ""
            print(f" {row['wall_s']:.1f}s{status}", flush=True)
            if "version" in row:
                versions[system] = row["version"]
            rows.append(row)
    except KeyboardInterrupt:
        # run_one's clean-up has run by now: its child is killed, its store removed.
        print("\ninterrupted: the child was stopped and its store removed", flush=True)
        return 130

    ratio_rows = ratios(rows)
    print()
    for system, version in versions.items():
        print(f"{system}: {version}")
    print(table(rows))
    for ratio in ratio_rows:
        print(
            f"{ratio['store']}: runs/s ours/dbos {ratio['runs_ratio']:.2f}x, per-turn p99 "
            f"dbos/ours {ratio['p99_ratio']:.2f}x, p50 dbos/ours {ratio['p50_ratio']:.2f}x"
        )
    checked = targets(rows)
    if checked:
        print()
        print("targets (ours):")
        print("\n".join(checked))
    failures += [
        f"{row['store']} ({row['system']}): {row['error']}"
        for row in rows
        if row["system"] in ("bare", "ours") and "error" in row
    ]
    if failures:
        print()
        print("FAILED:")
        print("\n".join(f"  {failure}" for failure in failures))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")

    if opts.json is not None:
        report = {
            "meta": {
                "ours": {"revision": rev},
                "versions": versions,
                "python": python_note,
                "dbos": dbos_note,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "runs": opts.runs,
                "turns_per_run": opts.turns,
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
