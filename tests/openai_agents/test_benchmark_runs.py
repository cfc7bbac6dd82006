"""The OpenAI Agents SDK benchmark (`python -m benchmarks.openai_agents`) keeps working: a
quick run of bare and ours (no DBOS: nothing is installed) on SQLite and, when it is up,
PostgreSQL, that loses nothing and leaves nothing behind; and the harness's pure parts
(the fake model, the clock, the table, ratios and targets)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import durable, openai_agents, openai_agents_workload

from tests.services import reachable, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_DSN = os.environ.get("LIVINGAI_BENCH_POSTGRES_DSN") or os.environ.get(
    "LIVINGAI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def leftovers(where: dict[str, str]) -> list[str]:
    """What a finished run left behind: its directory or its schema."""
    found: list[str] = []
    if "sqlite_dir" in where and Path(where["sqlite_dir"]).exists():
        found.append(f"directory {where['sqlite_dir']}")
    if "postgres_schema" in where:
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(POSTGRES_DSN, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (where["postgres_schema"],)
            ).fetchone()
            if row and row[0]:
                found.append(f"schema {where['postgres_schema']}")
    return found


@pytest.mark.timeout(180)
def test_quick_run_of_bare_and_ours_loses_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    postgres = reachable(POSTGRES_DSN, 5432)
    stores = ["sqlite", "postgres"] if postgres else ["sqlite"]
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.openai_agents",
            "--quick",
            "--no-dbos",
            "--no-sessions",
            "--scenarios",
            "concurrent",
            "--stores",
            ",".join(stores),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,  # bounded; the machine runs other suites beside it
        env={**os.environ, "LIVINGAI_BENCH_POSTGRES_DSN": POSTGRES_DSN},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:4] == ["scenario", "store", "system", "runs"] for line in lines)
    report = json.loads(out.read_text())
    runs = report["runs"]
    assert [(r["store"], r["system"]) for r in runs] == [("-", "bare")] + [
        (store, "ours") for store in stores
    ]
    scenario = openai_agents.QUICK["concurrent"]
    for run in runs:
        assert "error" not in run, run
        assert "skipped" not in run, run
        assert run["runs"] == scenario.runs, run
        assert run["turns"] == scenario.runs * openai_agents_workload.TURNS, run
        assert run["runs_per_s"] > 0, run
        ms = run["turn_ms"]
        assert 0 < ms["p50"] <= ms["p99"] <= ms["max"], run
        cells = [
            line.split()
            for line in lines
            if line.split()[:3] == ["concurrent", run["store"], run["system"]]
        ]
        assert len(cells) == 1
        assert cells[0][3:5] == [str(run["runs"]), str(run["turns"])]
        if run["system"] == "ours":
            assert (run["lost"], run["again"]) == (0, 0), run
            assert run["tools_recorded"] == scenario.runs * openai_agents_workload.TURNS, run
            assert leftovers(run["where"]) == [], run
    assert any("targets (ours)" in line for line in lines), done.stdout
    assert not [t for t in report["targets"] if "lost 0, ran again 0" not in t], report["targets"]
    if not postgres:
        skip_or_fail(f"ran without PostgreSQL: not reachable at {POSTGRES_DSN}")


# -- the workload's pure parts -------------------------------------------------------------


def test_the_fake_model_calls_the_tool_each_turn_then_answers() -> None:
    model = openai_agents_workload.TurnModel()
    items: list[Any] = [{"role": "user", "content": openai_agents_workload.prompt(7)}]
    for turn in range(1, openai_agents_workload.TURNS + 1):
        response = asyncio.run(model.get_response(None, items))
        [call] = response.output
        assert (call.type, call.call_id) == ("function_call", f"call-{turn}")
        assert json.loads(call.arguments) == {"run": 7, "turn": turn}
        items += [call, {"type": "function_call_output", "call_id": call.call_id, "output": "x"}]
    [answer] = asyncio.run(model.get_response(None, items)).output
    assert answer.content[0].text == openai_agents_workload.expected_output(7)


def test_the_clock_tiles_a_run_into_turns_from_its_start() -> None:
    clock = openai_agents_workload.Clock()
    clock.stamps = {0: [1.0, 1.002, 1.005], 1: [2.0, 2.001]}
    assert [round(ms, 6) for ms in clock.turns_ms()] == [2.0, 3.0, 1.0]
    assert openai_agents.TURNS == openai_agents_workload.TURNS
    assert openai_agents_workload.failures(["run 0: 10 turns", "no", ValueError("x")]) == [
        "run 1 answered 'no', expected 'run 1: 10 turns'",
        "run 2 raised ValueError: x",
    ]


# -- the harness's pure parts --------------------------------------------------------------


def row(system: str, store: str, runs_per_s: float, p50: float, p99: float) -> dict[str, Any]:
    ms = {"count": 500.0, "p50": p50, "p95": p99, "p99": p99, "max": p99, "mean": p50}
    out: dict[str, Any] = {
        "scenario": "concurrent",
        "store": store,
        "system": system,
        "runs": 50,
        "turns": 500,
        "total_s": 50 / runs_per_s,
        "runs_per_s": runs_per_s,
        "turn_ms": ms,
    }
    if system != "bare":
        out.update(lost=0, again=0, tools_recorded=500)
    return out


def test_measured_rows_and_checks_count_lost_calls() -> None:
    head = {"scenario": "concurrent", "store": "sqlite", "system": "ours"}
    result = {"version": "v", "total_s": 0.5, "samples_ms": [1.0] * 20, "failures": []}
    measured = openai_agents.measured_row(head, 2, result)
    assert measured["runs_per_s"] == 4.0
    assert measured["turns"] == 20
    assert "error" not in measured
    short = openai_agents.measured_row(head, 3, result)
    assert short["error"] == "20 turns timed, expected 30"
    full = {"models": 11, "tools": 10, "status": "SUCCESS"}
    openai_agents.add_check(
        measured,
        {"recorded": [full, {**full, "tools": 8, "models": 10}], "again": 1, "failures": []},
    )
    assert (measured["lost"], measured["tools_recorded"], measured["again"]) == (3, 18, 1)


def test_table_ratios_and_targets_say_pass_and_fail_with_the_numbers() -> None:
    rows = [
        row("bare", "-", 100.0, 10.0, 20.0),
        row("ours", "sqlite", 60.0, 10.5, 15.0),
        row("dbos", "sqlite", 10.0, 100.0, 200.0),
        row("ours", "postgres", 20.0, 30.0, 40.0),
        row("dbos", "postgres", 10.0, 100.0, 200.0),
        {"scenario": "concurrent", "store": "redis", "system": "dbos", "skipped": "n/a: no"},
        {**row("ours", "redis", 1.0, 1.0, 1.0), "error": "boom"},
    ]
    text = openai_agents.table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["scenario", "store", "system"]
    assert lines[3].split()[:12] == [
        "concurrent",
        "sqlite",
        "ours",
        "50",
        "500",
        "0.833",
        "60.0",
        "10.500",
        "15.000",
        "15.0",
        "+0.500",
        "+0.667",  # (0.833 s - bare's 0.5 s) over 500 turns
    ]
    assert "n/a: no" in text
    assert "ERROR: boom" in text
    [sqlite, postgres] = openai_agents.ratios(rows)
    assert (sqlite["store"], sqlite["runs_ratio"], sqlite["p99_ratio"]) == ("sqlite", 6.0, 200 / 15)
    assert postgres["runs_ratio"] == 2.0
    checked = openai_agents.targets(rows)
    assert len(checked) == 3
    assert "PASS +0.500 ms per turn" in checked[0]
    assert "PASS runs/s 60.0 = 6.00x" in checked[0]
    assert "PASS p99 15.000" in checked[0]
    assert "ms per turn" not in checked[1]  # the 1 ms target is SQLite's
    assert "FAIL runs/s 20.0 = 2.00x" in checked[1]
    assert "FAIL p99 40.000" in checked[1]
    assert "FAIL the run: boom" in checked[2]
    no_dbos = openai_agents.targets([r for r in rows if r["system"] != "dbos"])
    assert "SKIP vs DBOS: no DBOS row" in no_dbos[0]


def test_plan_puts_bare_first_and_gives_dbos_na_rows() -> None:
    stores = ["sqlite", "redis"]
    ours = {store: None for store in stores}
    dbos = {store: durable.dbos_problem(store, Path("py"), "") for store in stores}
    matrix = openai_agents.plan(stores, {"redis": None}, ours, dbos, None)
    assert matrix == [
        ("-", "bare", None),
        ("sqlite", "ours", None),
        ("sqlite", "dbos", None),
        ("redis", "ours", None),
        ("redis", "dbos", "n/a: DBOS has no Redis backend"),
    ]
    missing = openai_agents.plan(stores, {"redis": None}, ours, None, "no SDK")
    assert [problem for _, _, problem in missing] == ["no SDK", "no SDK", "no SDK"]


def test_the_sessions_benchmark_runs_after_with_this_runs_settings() -> None:
    opts = openai_agents.parse_args(
        ["--quick", "--no-dbos", "--stores", "sqlite,tiered", "--json", "out/oai.json"]
    )
    assert openai_agents.sessions_argv(opts) == [
        "--quick",
        "--ours-only",
        "--stores",
        "sqlite",
        "--json",
        "out/oai-sessions.json",
    ]
    assert openai_agents.sessions_argv(openai_agents.parse_args([])) == []
