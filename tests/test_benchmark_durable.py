"""The durable-runs benchmark (`python -m benchmarks.durable`) keeps working: a quick run,
ours only, on every store whose server is up, that loses nothing, records every tool's
intent and leaves nothing behind; DBOS's Postgres database is dropped after a run, even
one that fails; and the harness's pure parts (URLs, plan, table, ratios, targets, the
agent's clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from benchmarks import durable, durable_workload, runner

import livingai
from tests.services import reachable, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
# The benchmark's servers; in the test suite, the test servers unless told otherwise.
REDIS_URL = os.environ.get("LIVINGAI_BENCH_REDIS_URL") or os.environ.get(
    "LIVINGAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)
POSTGRES_DSN = os.environ.get("LIVINGAI_BENCH_POSTGRES_DSN") or os.environ.get(
    "LIVINGAI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
NEEDS = {"sqlite": [], "redis": ["redis"], "postgres": ["postgres"]}
NEEDS["tiered"] = ["redis", "postgres"]


def _leftovers(where: dict[str, str]) -> list[str]:
    """What a finished run left behind: its directory, keys, schema or database."""
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
    if "postgres_schema" in where or "postgres_database" in where:
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(POSTGRES_DSN, connect_timeout=5) as conn:
            for kind, query in (
                ("schema", "SELECT count(*) FROM pg_namespace WHERE nspname = %s"),
                ("database", "SELECT count(*) FROM pg_database WHERE datname = %s"),
            ):
                name = where.get(f"postgres_{kind}")
                row = conn.execute(query, (name,)).fetchone() if name else None
                if row and row[0]:
                    found.append(f"{kind} {name}")
    return found


def test_quick_run_measures_every_store_loses_nothing_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    if not hasattr(livingai, "Runtime"):
        pytest.skip("livingai has no Runtime yet")
    up = {"redis": reachable(REDIS_URL, 6379), "postgres": reachable(POSTGRES_DSN, 5432)}
    expected = {store for store, needs in NEEDS.items() if all(up[n] for n in needs)}
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "LIVINGAI_BENCH_REDIS_URL": REDIS_URL,
        "LIVINGAI_BENCH_POSTGRES_DSN": POSTGRES_DSN,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.durable", "--quick", "--no-dbos", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:4] == ["scenario", "store", "system", "runs"] for line in lines)
    runs = json.loads(out.read_text())["runs"]
    assert sorted((r["scenario"], r["store"], r["system"]) for r in runs) == sorted(
        (scenario, store, "ours") for scenario in durable.SCENARIOS for store in durable.STORES
    )
    for run in runs:
        if run["store"] not in expected:
            assert "not available" in run["skipped"], run
            continue
        assert "skipped" not in run, run
        assert "error" not in run, run
        scenario = durable.QUICK[run["scenario"]]
        assert run["runs"] == scenario.runs, run
        assert run["steps"] == scenario.runs * durable_workload.STEPS, run
        assert run["lost"] == 0, run
        assert run["again"] == 0, run
        assert run["tool_intents"] == scenario.runs * durable.TOOLS_PER_RUN, run
        assert run["runs_per_s"] > 0, run
        ms = run["step_ms"]
        assert 0 <= ms["p50"] <= ms["p99"] <= ms["max"], run
        assert _leftovers(run["where"]) == [], run
        head = [run["scenario"], run["store"], "ours"]
        row = [line.split() for line in lines if line.split()[:3] == head]
        assert len(row) == 1, done.stdout
        assert row[0][3:5] == [str(run["runs"]), str(run["steps"])], row
    down = sorted(name for name, ok in up.items() if not ok)
    if down:
        skip_or_fail(f"ran without {', '.join(down)}: not reachable, so not measured")


def test_dbos_database_is_dropped_after_a_run_even_a_failed_one(tmp_path: Path) -> None:
    if not reachable(POSTGRES_DSN, 5432):
        skip_or_fail(f"PostgreSQL is not reachable at {POSTGRES_DSN}")
    if runner.POSTGRES_DSN != POSTGRES_DSN:
        pytest.skip("LIVINGAI_BENCH_POSTGRES_DSN names another server than the tests use")
    where: dict[str, str] = {}
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="the run failed"),
        durable.provision("dbos", "postgres", tmp_path) as place,
    ):
        where = dict(place.where)
        assert place.spec["url"].startswith("postgresql://")
        assert _leftovers(where) != [], "the database should exist during the run"
        raise RuntimeError("the run failed")
    assert where
    assert _leftovers(where) == []


# -- the harness's pure parts --------------------------------------------------------------


def test_query_parameters_are_set_without_touching_the_rest() -> None:
    assert durable.with_query("redis://h:1/0", prefix="p") == "redis://h:1/0?prefix=p"
    assert durable.with_query("postgresql://u@h/db?sslmode=disable&schema=a", schema="b") == (
        "postgresql://u@h/db?sslmode=disable&schema=b"
    )


def test_plan_gives_dbos_na_rows_and_says_why_a_store_cannot_run() -> None:
    servers = {"redis": "Redis not reachable at redis://x", "postgres": None}
    ours = {store: None for store in durable.STORES}
    dbos = {store: durable.dbos_problem(store, Path("py"), "") for store in durable.STORES}
    matrix = durable.plan(durable.STORES, servers, ours, dbos)
    assert [(store, system) for store, system, _ in matrix] == [
        (store, system) for store in durable.STORES for system in ("ours", "dbos")
    ]
    why = {(store, system): problem for store, system, problem in matrix}
    assert why["sqlite", "ours"] is None
    assert why["sqlite", "dbos"] is None
    assert why["postgres", "dbos"] is None
    assert why["redis", "ours"] == "not available: Redis not reachable at redis://x"
    assert why["redis", "dbos"] == "n/a: DBOS has no Redis backend"
    assert why["tiered", "ours"] == "not available: Redis not reachable at redis://x"
    assert why["tiered", "dbos"] == "n/a: DBOS has no tiered store"
    no_venv = durable.dbos_problem("sqlite", None, "pip install dbos failed: offline")
    assert no_venv == "not available: pip install dbos failed: offline"
    assert [system for _, system, _ in durable.plan(["sqlite"], servers, ours, None)] == ["ours"]


def _row(system: str, scenario: str = "concurrent", store: str = "sqlite", **extra: Any) -> Any:
    row: dict[str, Any] = {
        "scenario": scenario,
        "store": store,
        "system": system,
        "runs": 50,
        "steps": 1000,
        "total_s": 0.25,
        "runs_per_s": 200.0,
        "step_ms": {"p50": 0.05, "p99": 0.2, "max": 1.5},
        "lost": 0,
        "again": 0,
    }
    if system == "ours":
        row["tool_intents"] = 200
    row.update(extra)
    return row


def test_table_shows_measured_skipped_and_failed_rows() -> None:
    rows = [
        _row("ours"),
        _row("dbos", total_s=3.9, runs_per_s=12.8, step_ms={"p50": 110, "p99": 950, "max": 2200}),
        {"scenario": "concurrent", "store": "redis", "system": "dbos"}
        | {"skipped": "n/a: DBOS has no Redis backend"},
        _row("ours", store="postgres", error="2 of 50 runs failed: run 3 raised X"),
    ]
    lines = durable.table(rows).splitlines()
    assert lines[0].split() == [
        *("scenario", "store", "system", "runs", "steps", "total", "s", "runs/s"),
        *("p50", "ms", "p99", "ms", "max", "ms", "lost", "again", "intents"),
    ]
    assert lines[2].split() == [
        *("concurrent", "sqlite", "ours", "50", "1000", "0.250", "200.0"),
        *("0.050", "0.200", "1.5", "0", "0", "200/200"),
    ]
    assert lines[3].split()[-7:] == ["12.8", "110.000", "950.000", "2200.0", "0", "0", "none"]
    assert lines[4].endswith("n/a: DBOS has no Redis backend")
    assert lines[5].endswith("ERROR: 2 of 50 runs failed: run 3 raised X")


def test_ratios_compare_ours_with_dbos_where_both_ran() -> None:
    rows = [
        _row("ours"),
        _row("dbos", runs_per_s=10.0, step_ms={"p50": 1.0, "p99": 100.0, "max": 900.0}),
        _row("ours", store="postgres"),
        _row("dbos", store="postgres", error="boom"),
    ]
    [ratio] = durable.ratios(rows)
    assert ratio["scenario"] == "concurrent"
    assert ratio["store"] == "sqlite"
    assert ratio["runs_ratio"] == pytest.approx(20.0)
    assert ratio["p99_ratio"] == pytest.approx(500.0)
    assert ratio["p50_ratio"] == pytest.approx(20.0)


def test_targets_pass_fail_and_skip_with_the_numbers() -> None:
    dbos_ms = {"p50": 2.6, "p99": 1.0, "max": 5.0}
    rows = [
        _row("ours"),  # 200 runs/s vs 12.5: 16x; p99 0.2 vs 950: passes both
        _row("dbos", runs_per_s=12.5, step_ms={"p50": 100.0, "p99": 950.0, "max": 2000.0}),
        _row("ours", store="postgres", runs_per_s=50.0, tool_intents=150),  # 4x: fails
        _row("dbos", store="postgres", runs_per_s=12.5, step_ms=dbos_ms),  # p99 5x: fails
        _row("ours", scenario="sequential", runs=10, steps=200, tool_intents=40),
        _row("dbos", scenario="sequential", step_ms=dbos_ms),
        _row("ours", scenario="sequential", store="postgres", runs=10, tool_intents=40),
        {"scenario": "sequential", "store": "postgres", "system": "dbos", "error": "boom"},
        _row("ours", store="redis", lost=3),  # no DBOS comparison on Redis
        _row("ours", store="tiered", error="timed out"),
    ]
    lines = durable.targets(rows)
    assert len(lines) == 6
    assert "FAIL" not in lines[0]
    assert "PASS runs/s 200.0 = 16.00x DBOS's 12.5 (>= 10x)" in lines[0]
    assert "PASS p99 0.200 ms = DBOS's 950.000 / 4750.00 (<= 1/10)" in lines[0]
    assert "PASS tool intents 200/200" in lines[0]
    assert "FAIL runs/s 50.0 = 4.00x DBOS's 12.5 (>= 10x)" in lines[1]
    assert "FAIL p99 0.200 ms = DBOS's 1.000 / 5.00 (<= 1/10)" in lines[1]
    assert "FAIL tool intents 150/200" in lines[1]
    assert "PASS p50 0.050 ms < DBOS's 2.600 ms" in lines[2]
    assert "SKIP vs DBOS: DBOS did not run: boom" in lines[3]
    assert "FAIL lost 3, ran again 0" in lines[4]
    assert "vs DBOS" not in lines[4]
    assert lines[5].endswith("FAIL the run: timed out")


def test_rows_count_failed_runs_and_lost_steps() -> None:
    head = {"scenario": "concurrent", "store": "sqlite", "system": "ours"}
    result = {"version": "x", "total_s": 0.5, "samples_ms": [0.1] * 40, "failures": []}
    row = durable.measured_row(head, 2, result)
    assert row["runs_per_s"] == pytest.approx(4.0)
    assert row["step_ms"]["p99"] == pytest.approx(0.1)
    assert "error" not in row
    durable.add_check(
        row, {"recorded": [20, 17], "rerun_calls": 3, "tool_intents": 8, "rerun_failures": []}
    )
    assert (row["lost"], row["again"], row["tool_intents"]) == (3, 3, 8)
    assert "error" not in row
    short = durable.measured_row(head, 3, result)
    assert short["error"] == "40 steps timed, expected 60"
    failed = durable.measured_row(head, 2, {**result, "failures": ["run 1 raised X: y"]})
    assert failed["error"] == "1 of 2 runs failed: run 1 raised X: y"


async def test_each_step_is_timed_without_the_step_functions_own_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = iter(range(10_000))
    clock = types.SimpleNamespace(perf_counter=lambda: float(next(ticks)))
    monkeypatch.setattr(durable_workload, "time", clock)
    called: list[tuple[str, int]] = []

    async def step(index: int, x: int) -> int:
        called.append(("step", index))
        return durable_workload.echo(x)

    async def tool(index: int, x: int) -> int:
        called.append(("tool", index))
        return durable_workload.echo(x)

    samples: list[float] = []
    before = durable_workload.CALLS.calls
    assert await durable_workload.drive(step, tool, 7, samples) == 7
    # Per step: the agent reads the clock before and after (3 ticks apart); the step
    # function reads it twice (1 tick of its own work): 3 - 1 = 2 ticks of overhead.
    assert samples == [2.0] * durable_workload.STEPS
    assert [i for kind, i in called if kind == "tool"] == [4, 9, 14, 19]
    assert len(called) == durable_workload.STEPS
    assert durable_workload.CALLS.calls - before == durable_workload.STEPS
