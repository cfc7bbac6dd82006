"""OpenAI Agents SDK runs side by side: the bare SDK, livingai's adapter, DBOS's.

`python -m benchmarks.openai_agents` runs an agent of 10 turns (each one model call and
one function-tool call, on a fake model that answers at once) 50 times at once and 10
times one after another, for three systems: **bare** (`Runner.run`, nothing kept),
**ours** (`OpenAIAgentsAdapter.run` on each livingai store) and **dbos**
(dbos-openai-agents' `DBOSRunner.run` in a DBOS workflow, on SQLite and PostgreSQL). It
prints one table (runs/s, per-turn p50/p99, the p50 added over bare), then the ratios and
the issue's targets. See benchmarks/README.md.

Every (scenario, store, system) runs in a child process of its own, with a timeout, on a
store of its own that is removed afterwards (benchmarks.durable.provision), and a second
child, a fresh process, checks that nothing was lost. Bare and ours run under the SDK's
virtualenv (`.venv-openai-agents`, as ./scripts/test makes it), DBOS under
`.bench/dbos-openai-agents-venv`, made on first use.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import durable, openai_agents_sessions, runner
from .durable import Scenario
from .workload import summarize

REPO = runner.REPO
WORKLOAD = Path(__file__).resolve().parent / "openai_agents_workload.py"
TURNS = 10  # openai_agents_workload.TURNS: that file imports the SDK, this one must not
SDK_VENV = REPO / ".venv-openai-agents"
SDK_REQUIREMENTS = ("-e", f"{REPO}[test-openai-agents]")  # as ./scripts/test installs it
DBOS_VENV = REPO / ".bench" / "dbos-openai-agents-venv"
# The same SDK release as ours runs on (pyproject's openai-agents extra).
DBOS_REQUIREMENTS = ("dbos-openai-agents", "openai-agents>=0.24,<0.25")
STORES = runner.STORES
DBOS_STORES = durable.DBOS_STORES
SCENARIOS = ("concurrent", "sequential")
SYSTEMS = ("bare", "ours", "dbos")
NO_STORE = "-"  # the bare SDK's rows: it keeps nothing

# The targets. On SQLite: at most 1 ms added per turn at p50 over the bare SDK.
# On SQLite and PostgreSQL, 50 runs at once: at least 5x DBOS's runs/s and at most a
# tenth of its per-turn p99.
ADDED_P50_MS = 1.0
ADDED_STORES = ("sqlite",)
TARGET_STORES = ("sqlite", "postgres")


# The same scenarios as the durable-runs benchmark's: 50 runs at once, 10 one after another.
FULL, QUICK = durable.FULL, durable.QUICK


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.openai_agents",
        description="OpenAI Agents SDK runs: the bare SDK, livingai's adapter and "
        "dbos-openai-agents side by side, on every store.",
    )
    runner.add_stores_option(parser, "our stores, ")
    parser.add_argument(
        "--scenarios",
        type=lambda v: runner.split_choices(v, SCENARIOS),
        default=list(SCENARIOS),
        help="comma-separated: concurrent,sequential (default: both)",
    )
    parser.add_argument("--no-dbos", action="store_true", help="bare and ours only")
    parser.add_argument(
        "--no-sessions",
        action="store_true",
        help="skip the sessions' benchmark (benchmarks.openai_agents_sessions) run after",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the measured part of bare's and our children under cProfile: "
        "DIR/<scenario>-<store>-<system>.prof",
    )
    return parser.parse_args(argv)


# -- the virtualenvs -------------------------------------------------------------------------


def _sdk_complete(python: Path) -> bool:
    return runner.probe(python, "import agents, livingai.adapters.openai_agents")


def ensure_sdk() -> tuple[Path | None, str]:
    """The python for bare and ours: this one if it has the SDK and our adapter, else
    `.venv-openai-agents`, made as ./scripts/test makes it if it is missing. One that
    exists but does not import is left alone (./scripts/test may be filling it)."""
    here = Path(sys.executable)
    if _sdk_complete(here):
        return here, str(here)
    python = runner.venv_python(SDK_VENV)
    if python.exists() and not _sdk_complete(python):
        return None, (
            f"{python} cannot import agents and livingai.adapters.openai_agents: "
            f"run ./scripts/test, or {python} -m pip install -e '.[test-openai-agents]'"
        )
    found, how = runner.ensure_venv(SDK_VENV, SDK_REQUIREMENTS, _sdk_complete)
    if found is None:
        return None, how
    return found, f"{found} ({how})"


def _dbos_complete(python: Path) -> bool:
    return runner.probe(python, "import dbos, dbos_openai_agents, agents, psycopg, sqlalchemy")


def ensure_dbos() -> tuple[Path | None, str]:
    """DBOS's python, its venv made on first use and reused afterwards; or None and why."""
    return runner.ensure_venv(DBOS_VENV, DBOS_REQUIREMENTS, _dbos_complete)


# -- one run -----------------------------------------------------------------------------------


def measured_row(head: dict[str, Any], runs: int, result: dict[str, Any]) -> dict[str, Any]:
    """A run child's output as a table row: totals and per-turn percentiles (ms)."""
    samples = result["samples_ms"]
    row = {
        **head,
        "version": result["version"],
        "runs": runs,
        "turns": len(samples),
        "total_s": result["total_s"],
        "runs_per_s": runs / max(result["total_s"], 1e-9),
        "turn_ms": summarize(samples),
        "failures": result["failures"],
    }
    if result["failures"]:
        row["error"] = f"{len(result['failures'])} of {runs} runs failed: {result['failures'][0]}"
    elif len(samples) != runs * TURNS:
        row["error"] = f"{len(samples)} turns timed, expected {runs * TURNS}"
    return row


def add_check(row: dict[str, Any], check: dict[str, Any]) -> None:
    """A verify child's output into the row: tool calls and model calls without a stored
    outcome (lost), and calls made again when the runs were started again."""
    recorded = check["recorded"]
    row["lost"] = sum(
        max(0, TURNS - r["tools"]) + max(0, TURNS + 1 - r["models"]) for r in recorded
    )
    row["tools_recorded"] = sum(r["tools"] for r in recorded)
    row["again"] = check["again"]
    if check["failures"]:
        row["error"] = f"verify: {check['failures'][0]}"


def run_one(
    system: str,
    python: Path,
    store: str,
    scenario: Scenario,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One (scenario, store, system): a run child, then (with a store) a verify child,
    on a fresh store that is removed afterwards."""
    head: dict[str, Any] = {"scenario": scenario.name, "store": store, "system": system}
    row = dict(head)
    workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-openai-agents-{system}-"))
    started = time.perf_counter()
    try:
        with durable.provision(system, "sqlite" if store == NO_STORE else store, workdir) as place:
            args: dict[str, Any] = {
                "system": system,
                "store": place.spec,
                "prefix": f"bench-{scenario.name}",
                "runs": scenario.runs,
                "scenario": scenario.name,
            }
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                name = f"{scenario.name}-{'none' if store == NO_STORE else store}-{system}.prof"
                args["profile"] = str((profile / name).resolve())
            if store != NO_STORE:
                row["where"] = dict(place.where)
            result = runner.run_child(
                python, {**args, "mode": "run"}, scenario.timeout_s, workdir, WORKLOAD
            )
            if "error" in result:
                row["error"] = result["error"]
            else:
                row = {**measured_row(head, scenario.runs, result), **row}
                if store != NO_STORE:
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


def plan(
    stores: Sequence[str],
    servers: Mapping[str, str | None],
    ours: Mapping[str, str | None],
    dbos: Mapping[str, str | None] | None,
    sdk: str | None,
) -> list[tuple[str, str, str | None]]:
    """Every (store, system) in table order, bare first, each with why it cannot run (or
    None); `sdk`: why the SDK's python is missing (bare and ours cannot run)."""
    matrix = durable.plan(stores, servers, ours, dbos)
    out: list[tuple[str, str, str | None]] = [(NO_STORE, "bare", sdk)]
    for store, system, problem in matrix:
        if system == "ours" and sdk is not None:
            problem = problem or sdk
        out.append((store, system, problem))
    return out


# -- report ------------------------------------------------------------------------------------

_COLUMNS = (
    ("scenario", "<", 10),
    ("store", "<", 8),
    ("system", "<", 6),
    ("runs", ">", 4),
    ("turns", ">", 5),
    ("total s", ">", 7),
    ("runs/s", ">", 8),
    ("p50 ms", ">", 8),
    ("p99 ms", ">", 8),
    ("max ms", ">", 8),
    ("+p50 ms", ">", 8),
    ("+ms/turn", ">", 8),
    ("lost", ">", 4),
    ("again", ">", 5),
)


def _line(cells: Sequence[str]) -> str:
    return runner.padded(_COLUMNS, cells)


def bare_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The measured bare row of each scenario."""
    return {r["scenario"]: r for r in rows if r["system"] == "bare" and runner.measured(r)}


def added_p50(row: Mapping[str, Any], bare: Mapping[str, Any] | None) -> float | None:
    """Per-turn p50 added over the bare SDK in the same scenario (ms), if it ran."""
    if bare is None or row["system"] == "bare" or not runner.measured(row):
        return None
    return float(row["turn_ms"]["p50"] - bare["turn_ms"]["p50"])


def added_per_turn(row: Mapping[str, Any], bare: Mapping[str, Any] | None) -> float | None:
    """The run's time added over the bare SDK's in the same scenario, per turn (ms): what
    a turn costs the system, which under concurrency the p50 counts once for every run
    waiting on the same event loop."""
    if bare is None or row["system"] == "bare" or not runner.measured(row):
        return None
    return float((row["total_s"] - bare["total_s"]) * 1000.0 / row["turns"])


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The main table, one line per run; a run that failed or could not run says why."""
    bare = bare_rows(rows)
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        head = [row["scenario"], row["store"], row["system"]]
        if "skipped" in row:
            out.append(_line(head) + "  " + str(row["skipped"]))
            continue
        if "error" in row:
            out.append(_line(head) + "  ERROR: " + str(row["error"]))
            continue
        ms = row["turn_ms"]
        added = added_p50(row, bare.get(row["scenario"]))
        per_turn = added_per_turn(row, bare.get(row["scenario"]))
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
                    f"{ms['max']:.1f}",
                    "-" if added is None else f"{added:+.3f}",
                    "-" if per_turn is None else f"{per_turn:+.3f}",
                    str(row.get("lost", "-")),
                    str(row.get("again", "-")),
                ]
            )
        )
    return "\n".join(out)


def ratios(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ours against DBOS per (scenario, store) where both were measured: runs/s
    ours/dbos, per-turn p99 and p50 dbos/ours (above 1: ours is better)."""
    found: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        if runner.measured(row):
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
    tools = row["runs"] * TURNS
    checks: list[tuple[str, bool | None]] = [
        (
            f"lost {row['lost']}, ran again {row['again']}, tool calls {row['tools_recorded']}"
            f"/{tools}",
            row["lost"] == 0 and row["again"] == 0 and row["tools_recorded"] == tools,
        )
    ]
    if row["store"] in ADDED_STORES:
        added = added_p50(row, bare)
        if added is None:
            checks.append(("vs bare: the bare SDK did not run", None))
        else:
            checks.append(
                (
                    f"+{added:.3f} ms per turn at p50 over bare (<= {ADDED_P50_MS:g} ms)",
                    added <= ADDED_P50_MS,
                )
            )
    if row["store"] not in TARGET_STORES or row["scenario"] != "concurrent":
        return checks
    return checks + runner.against_dbos(row, dbos)


def targets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Our rows checked against the issue's targets: PASS, FAIL or SKIP with the numbers."""
    bare = bare_rows(rows)
    dbos = {(r["scenario"], r["store"]): r for r in rows if r["system"] == "dbos"}
    out = []
    for row in rows:
        if row["system"] != "ours" or "skipped" in row:
            continue
        where = f"  {row['scenario']:<10} {row['store']:<8}"
        if "error" in row:
            out.append(f"{where}  FAIL the run: {row['error']}")
            continue
        checks = _checks(row, bare.get(row["scenario"]), dbos.get((row["scenario"], row["store"])))
        out.append(f"{where}  " + ", ".join(f"{_verdict(ok)} {what}" for what, ok in checks))
    return out


def revision() -> str:
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
    """Run every scenario for bare, then ours and DBOS on every store; print the table;
    optionally write JSON. Exit status 1 when bare or one of our runs failed, or a store
    named in --stores could not run for us; DBOS failing is a result."""
    opts = parse_args(argv)
    scenarios = [(QUICK if opts.quick else FULL)[name] for name in opts.scenarios]
    stores = opts.stores or list(STORES)
    sdk_python, sdk_note = ensure_sdk()
    sdk_problem = None if sdk_python is not None else f"not available: {sdk_note}"
    dbos_python: Path | None = None
    dbos_note = "skipped (--no-dbos)"
    if not opts.no_dbos:
        dbos_python, dbos_note = ensure_dbos()
        if dbos_python is not None:
            dbos_note = f"{dbos_note} {DBOS_VENV}"
        else:
            print(f"NOTE: DBOS unavailable, running without it: {dbos_note}", flush=True)
    servers = {kind: runner.server_problem(kind) for kind in ("redis", "postgres")}
    ours = {store: durable.ours_problem(store) for store in stores}
    dbos = None
    if not opts.no_dbos:
        dbos = {store: durable.dbos_problem(store, dbos_python, dbos_note) for store in stores}
    matrix = plan(stores, servers, ours, dbos, sdk_problem)
    livingai = importlib.import_module("livingai")
    rev = revision()
    print(f"ours: livingai {livingai.__version__} ({rev}); SDK python: {sdk_note}", flush=True)
    print(f"dbos: {dbos_note}", flush=True)
    print(
        f"servers: Redis {runner.redact(runner.REDIS_URL)}, "
        f"PostgreSQL {runner.redact(runner.POSTGRES_DSN)}",
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
        for scenario in scenarios:
            for store, system, problem in matrix:
                head = {"scenario": scenario.name, "store": store, "system": system}
                if problem:
                    rows.append({**head, "skipped": problem})
                    continue
                python = dbos_python if system == "dbos" else sdk_python
                assert python is not None  # a row without its python has a problem
                label = f"{scenario.name:<10} {store:<8} {system:<6}"
                print(f"running {label} ...", end="", flush=True)
                profile = opts.profile if system != "dbos" else None
                row = run_one(system, python, store, scenario, profile)
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
            f"{ratio['scenario']} / {ratio['store']}: runs/s ours/dbos "
            f"{ratio['runs_ratio']:.2f}x, per-turn p99 dbos/ours {ratio['p99_ratio']:.2f}x, "
            f"p50 dbos/ours {ratio['p50_ratio']:.2f}x"
        )
    checked = targets(rows)
    if checked:
        print()
        note = " (quick run: small counts, indicative only)" if opts.quick else ""
        print(f"targets (ours){note}:")
        print("\n".join(checked))
    failures += [
        f"{row['scenario']} / {row['store']} ({row['system']}): {row['error']}"
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
                "ours": {"version": livingai.__version__, "revision": rev},
                "versions": versions,
                "sdk_python": sdk_note,
                "dbos": dbos_note,
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "quick": opts.quick,
                "turns_per_run": TURNS,
                "scenarios": {s.name: vars(s) for s in scenarios},
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
    exit_code = 1 if failures else 0
    if not opts.no_sessions:
        print("\n== the sessions (python -m benchmarks.openai_agents_sessions)\n", flush=True)
        exit_code = max(exit_code, openai_agents_sessions.main(sessions_argv(opts)))
    return exit_code


def sessions_argv(opts: argparse.Namespace) -> list[str]:
    """The sessions' benchmark's arguments for this run's: its stores, --quick, no
    baselines installed under --no-dbos, its JSON beside this one's."""
    argv = ["--quick"] if opts.quick else []
    if opts.no_dbos:
        argv.append("--ours-only")
    if opts.stores is not None:
        kept = [store for store in opts.stores if store in openai_agents_sessions.STORES]
        argv += ["--stores", ",".join(kept or ["sqlite"])]
    if opts.json is not None:
        argv += ["--json", str(opts.json.with_name(f"{opts.json.stem}-sessions.json"))]
    return argv


if __name__ == "__main__":
    sys.exit(main())
