"""The Pydantic AI benchmark (`python -m benchmarks.pydantic_ai`) keeps working: a small run
of the bare agent and ours on SQLite (no DBOS: nothing is installed) that loses nothing and
leaves nothing behind; the workload's agent; and the table's arithmetic and targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import pydantic_ai as bench
from benchmarks import pydantic_ai_workload as workload
from pydantic_ai import Agent, Tool

from tests.services import ROOT


@pytest.mark.timeout(120)
def test_a_small_run_of_bare_and_ours_loses_nothing_and_prints_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks.pydantic_ai", "--systems", "bare,ours"]
    command += ["--stores", "sqlite", "--runs", "3", "--turns", "2", "--json", str(out)]
    # bounded; the machine runs other suites beside it
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert (report["meta"]["runs"], report["meta"]["turns_per_run"]) == (3, 2)
    bare, ours = report["runs"]
    assert [(r["store"], r["system"]) for r in (bare, ours)] == [("-", "bare"), ("sqlite", "ours")]
    for row in (bare, ours):
        assert "error" not in row, row
        assert "skipped" not in row, row
        assert (row["runs"], row["turns"], row["runs_ok"]) == (3, 6, 3), row
        assert row["tool_calls"] == [2, 2, 2], row
        assert row["runs_per_s"] > 0, row
        ms = row["turn_ms"]
        assert 0 < ms["p50"] <= ms["p99"] <= ms["max"], row
    assert (ours["lost"], ours["again"], ours["tools_recorded"], ours["intents"]) == (0, 0, 6, 6)
    assert not Path(ours["where"]["sqlite_dir"]).exists()  # its store is removed
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["store", "system"] for line in lines), done.stdout
    [cells] = [line.split() for line in lines if line.split()[:2] == ["sqlite", "ours"]]
    assert cells[2:4] == ["3", "6"]
    assert cells[-4:] == ["3/3", "0", "0", "6/6"]
    [target] = report["targets"]
    assert "PASS runs ok 3/3, lost 0, ran again 0" in target, target
    assert "SKIP vs DBOS: no DBOS row" in target, target


async def test_the_workload_agent_books_each_turn_then_answers() -> None:
    agent = Agent(workload.turn_model(3), tools=[Tool(workload.book)])
    workload.CLOCK.start(7)
    result = await agent.run(workload.prompt(7))
    assert result.output == workload.expected_output(7, 3)
    assert workload.CLOCK.tool_calls[7] == 3
    assert len(workload.CLOCK.stamps[7]) == 1 + 3  # the start, then each tool's return
    assert workload.CLOCK.model_calls >= 4
    assert workload.failures([workload.expected_output(0, 3), "no", ValueError("x")], 3) == [
        "run 1 answered 'no', expected 'run 1: 3 legs booked'",
        "run 2 raised ValueError: x",
    ]


def test_dbos_gets_the_pydantic_ai_releases_ours_is_bound_to() -> None:
    assert bench.dbos_requirements() == ("pydantic-ai-slim[dbos]>=2.70,<3", "dbos")


# -- the harness's arithmetic ----------------------------------------------------------------


def row(system: str, store: str, runs_per_s: float, p50: float, p99: float) -> dict[str, Any]:
    ms = {"count": 500.0, "p50": p50, "p95": p99, "p99": p99, "max": p99, "mean": p50}
    out: dict[str, Any] = {
        "store": store,
        "system": system,
        "runs": 50,
        "turns": 500,
        "total_s": 50 / runs_per_s,
        "runs_per_s": runs_per_s,
        "turn_ms": ms,
        "runs_ok": 50,
    }
    if system != "bare":
        out.update(lost=0, again=0, tools_recorded=500, intents=500 if system == "ours" else 0)
    return out


def test_measured_rows_count_runs_ok_and_checks_count_lost_calls() -> None:
    head = {"store": "sqlite", "system": "ours"}
    result = {
        "version": "v",
        "total_s": 0.5,
        "samples_ms": [1.0] * 4,
        "tool_calls": [2, 2],
        "answered": [True, True],
        "failures": [],
    }
    measured = bench.measured_row(head, 2, 2, result)
    assert (measured["runs_per_s"], measured["turns"], measured["runs_ok"]) == (4.0, 4, 2)
    assert "error" not in measured
    twice = bench.measured_row(head, 2, 2, {**result, "tool_calls": [2, 3]})
    assert twice["runs_ok"] == 1
    assert twice["error"] == "4 turns timed, expected 4; tool calls per run [2, 3], expected 2"
    wrong = bench.measured_row(head, 2, 2, {**result, "answered": [False, True], "failures": ["x"]})
    assert (wrong["runs_ok"], wrong["error"]) == (1, "1 of 2 runs failed: x")
    full = {"models": 3, "tools": 2, "intents": 2, "status": "SUCCESS"}
    short = {**full, "models": 2, "tools": 1, "intents": 1}
    bench.add_check(measured, 2, {"recorded": [full, short], "again": 1, "failures": []})
    assert (measured["lost"], measured["tools_recorded"], measured["intents"]) == (2, 3, 3)
    assert measured["again"] == 1


def test_the_table_adds_time_per_turn_over_bare_and_the_targets_say_why() -> None:
    rows = [
        row("bare", "-", 100.0, 10.0, 20.0),
        row("ours", "sqlite", 60.0, 10.5, 15.0),
        row("dbos", "sqlite", 10.0, 100.0, 200.0),
        row("ours", "postgres", 20.0, 30.0, 40.0),
        row("dbos", "postgres", 10.0, 100.0, 200.0),
        {"store": "redis", "system": "dbos", "skipped": "n/a: DBOS has no Redis backend"},
        {**row("ours", "redis", 1.0, 1.0, 1.0), "error": "boom"},
    ]
    lines = bench.table(rows).splitlines()
    assert lines[0].split()[:2] == ["store", "system"]
    assert lines[2].split() == [
        *["-", "bare", "50", "500", "0.500", "100.0", "10.000", "20.000"],
        *["-", "-", "-", "50/50", "-", "-", "-"],
    ]
    assert lines[3].split()[:11] == [
        *["sqlite", "ours", "50", "500", "0.833", "60.0", "10.500", "15.000"],
        *["+0.500", "-5.000", "+0.667"],  # (0.833 s - bare's 0.5 s) over 500 turns
    ]
    assert lines[3].split()[11:] == ["50/50", "0", "0", "500/500"]
    assert lines[4].split()[-1] == "none"  # DBOS stores no intent
    assert lines[7].split() == ["redis", "dbos", "n/a:", "DBOS", "has", "no", "Redis", "backend"]
    assert lines[8].split() == ["redis", "ours", "ERROR:", "boom"]
    sqlite, postgres = bench.ratios(rows)
    assert (sqlite["store"], sqlite["runs_ratio"], sqlite["p99_ratio"]) == ("sqlite", 6.0, 200 / 15)
    assert (postgres["runs_ratio"], postgres["p99_ratio"], postgres["p50_ratio"]) == (
        2.0,
        5.0,
        100 / 30,
    )
    on_sqlite, on_postgres, on_redis = bench.targets(rows)
    assert on_sqlite.split(", FAIL") == [on_sqlite]  # everything passes on SQLite
    assert "PASS +0.500 ms per turn at p50 over bare (<= 1 ms; +0.667 ms/turn" in on_sqlite
    assert "PASS runs/s 60.0 = 6.00x DBOS's 10.0 (>= 5x)" in on_sqlite
    assert "PASS p99 15.000 ms = DBOS's 200.000 / 13.33 (<= 1/10)" in on_sqlite
    assert "FAIL runs/s 20.0 = 2.00x DBOS's 10.0 (>= 5x)" in on_postgres
    assert "FAIL p99 40.000 ms = DBOS's 200.000 / 5.00 (<= 1/10)" in on_postgres
    assert "per turn at p50" not in on_postgres  # the 1 ms target is SQLite's
    assert on_redis.split() == ["redis", "FAIL", "the", "run:", "boom"]
    lost = [row("bare", "-", 100.0, 10.0, 20.0), {**row("ours", "sqlite", 60.0, 12.0, 15.0)}]
    lost[1].update(lost=1, runs_ok=49)
    [checked] = bench.targets(lost)
    assert checked.split(", ")[0].split()[:5] == ["sqlite", "FAIL", "runs", "ok", "49/50"]
    assert "FAIL +2.000 ms per turn at p50" in checked
    assert "SKIP vs DBOS: no DBOS row" in checked
