"""The LangGraph benchmark (`python -m benchmarks.langgraph`) keeps working: a quick run of
our side only (no baseline venv is made or used here), on every store whose server is up,
with sane rows and nothing left behind; and the harness's pure parts (plan, percentiles,
tables, ratios and verdicts)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import langgraph as lg

from tests.services import reachable, skip_or_fail
from tests.test_benchmark_durable import NEEDS, POSTGRES_DSN, REDIS_URL, _leftovers

ROOT = Path(__file__).resolve().parent.parent
QUICK_OURS = ("--quick", "--systems", "ours")  # never a baseline venv in the test suite


def _ours_available() -> bool:
    try:
        module = importlib.import_module("livingai.adapters.langgraph")
    except ImportError:
        return False
    return hasattr(module, "LivingAISaver")


@pytest.mark.timeout(180)
def test_quick_run_of_ours_has_sane_rows_and_leaves_nothing(tmp_path: Path) -> None:
    if not _ours_available():
        pytest.skip("livingai.adapters.langgraph has no LivingAISaver yet")
    up = {"redis": reachable(REDIS_URL, 6379), "postgres": reachable(POSTGRES_DSN, 5432)}
    expected = {store for store, needs in NEEDS.items() if all(up[n] for n in needs)}
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "LIVINGAI_BENCH_REDIS_URL": REDIS_URL,
        "LIVINGAI_BENCH_POSTGRES_DSN": POSTGRES_DSN,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.langgraph", *QUICK_OURS, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,  # bounded; the machine runs other suites beside it
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-venv" not in done.stdout, "--systems ours must not make or use a baseline venv"
    report = json.loads(out.read_text())
    assert report["meta"]["baselines"] == {}
    sizes = lg.QUICK
    for part in lg.PARTS:
        rows = report[part]
        assert sorted((r["store"], r["system"]) for r in rows) == sorted(
            (store, "ours") for store in lg.STORES
        )
        for row in rows:
            if row["store"] not in expected:
                assert "not available" in row["skipped"], row
                continue
            assert "skipped" not in row, row
            assert "error" not in row, row
            assert _leftovers(row["where"]) == [], row
            if part == "storage":
                assert row["bytes"] > 0, row
                assert row["checkpoints"] == sizes.turns * lg.CHECKPOINTS_PER_TURN, row
                assert row["messages"] == 2 * sizes.turns, row
                continue
            assert row["graphs"] == sizes.graphs, row
            assert row["calls"]["aput"] == row["checkpoints"] >= sizes.graphs * sizes.steps
            assert row["calls"]["aget_tuple"] == 2 * sizes.graphs, row
            assert row["aget_tuple_misses"] == sizes.graphs, row
            assert row["calls"]["aput_writes"] > 0, row
            for ms in row["ms"].values():
                assert 0 <= ms["p50"] <= ms["p99"] <= ms["max"], row
            assert 0 < row["run_s"] <= row["total_s"], row
    for header in ("checkpoints", "aput p50"):
        assert any(header in line for line in done.stdout.splitlines()), done.stdout
    down = sorted(name for name, ok in up.items() if not ok)
    if down:
        skip_or_fail(f"ran without {', '.join(down)}: not reachable, so not measured")


def test_systems_ours_never_asks_for_a_baseline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(baseline: lg.Baseline) -> Any:
        raise AssertionError(f"asked for {baseline.venv}")

    def fake_run(part: str, system: str, store: str, *rest: Any) -> dict[str, Any]:
        return {"part": part, "store": store, "system": system, "error": "not run", "wall_s": 0}

    monkeypatch.setattr(lg, "ensure_baseline", refuse)
    monkeypatch.setattr(lg, "ours_problem", lambda store: None)
    monkeypatch.setattr(lg, "run_one", fake_run)
    out = tmp_path / "r.json"
    assert lg.main(["--quick", "--systems", "ours", "--stores", "sqlite", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert [(r["part"], r["system"]) for r in report["storage"] + report["speed"]] == [
        ("storage", "ours"),
        ("speed", "ours"),
    ]
    assert len(report["failures"]) == 2


# -- the harness's pure parts --------------------------------------------------------------


def test_plan_puts_baselines_first_and_says_why_a_row_cannot_run() -> None:
    servers = {"redis": "Redis not reachable at redis://x", "postgres": None}
    ours = {store: None for store in lg.STORES}
    baselines = {"sqlite-saver": None, "postgres-saver": "not available: pip failed"}
    matrix = lg.plan(lg.PARTS, lg.STORES, servers, ours, baselines)
    assert [(part, store, system) for part, store, system, _ in matrix] == [
        ("storage", "sqlite", "SqliteSaver"),
        *(("storage", store, "ours") for store in lg.STORES),
        ("speed", "sqlite", "AsyncSqliteSaver"),
        ("speed", "postgres", "AsyncPostgresSaver"),
        *(("speed", store, "ours") for store in lg.STORES),
    ]
    why = {(part, store, system): problem for part, store, system, problem in matrix}
    assert why["speed", "postgres", "AsyncPostgresSaver"] == "not available: pip failed"
    assert why["speed", "sqlite", "AsyncSqliteSaver"] is None
    assert why["storage", "redis", "ours"] == "not available: Redis not reachable at redis://x"
    assert why["storage", "tiered", "ours"] == "not available: Redis not reachable at redis://x"
    assert why["storage", "postgres", "ours"] is None
    only_ours = lg.plan(["speed"], ["sqlite"], servers, ours, {})
    assert [system for _, _, system, _ in only_ours] == ["ours"]


def test_pins_drop_extras() -> None:
    pins = lg.pins(lg.BASELINES["postgres-saver"])
    assert pins["psycopg"] == "3.3.9"
    assert set(pins) >= {"langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres"}
    assert all(version for version in pins.values())


def _speed_result(aput: list[float], gets: list[float], total_s: float) -> dict[str, Any]:
    return {
        "versions": {"langgraph": "1"},
        "samples_ms": {"aput": aput, "aput_writes": [1.0, 2.0], "aget_tuple": gets},
        "found": [False, True] * (len(gets) // 2),
        "run_s": total_s * 0.9,
        "total_s": total_s,
        "failures": [],
        "checkpoints": len(aput),
    }


def _speed_row(system: str, store: str, aput: list[float], total_s: float) -> dict[str, Any]:
    head = {"part": "speed", "store": store, "system": system}
    return lg.speed_row(head, lg.QUICK, _speed_result(aput, [0.5, 4.0, 0.7, 6.0], total_s))


def test_speed_rows_have_nearest_rank_percentiles_and_check_counts() -> None:
    row = _speed_row("ours", "redis", [float(i) for i in range(1, 101)], 1.0)
    assert row["ms"]["aput"]["p50"] == 50.0
    assert row["ms"]["aput"]["p99"] == 99.0
    assert row["ms"]["aput"]["max"] == 100.0
    assert row["ms"]["aget_tuple_hit"]["p50"] == 4.0  # misses 0.5 and 0.7 left out
    assert row["aget_tuple_misses"] == 2
    assert "error" not in row
    short = _speed_result([1.0, 2.0], [1.0, 2.0], 1.0) | {"checkpoints": 3}
    assert "2 aput calls, 3 checkpoints" in lg.speed_row({}, lg.QUICK, short)["error"]
    failed = _speed_result([1.0], [1.0, 2.0], 1.0) | {"failures": ["graph-3: 2"]}
    assert lg.speed_row({}, lg.QUICK, failed)["error"] == "1 failures: graph-3: 2"


def test_speed_verdicts_measured_published_and_quick() -> None:
    rows = [
        _speed_row("AsyncSqliteSaver", "sqlite", [10.0, 20.0, 30.0], 2.0),
        _speed_row("ours", "sqlite", [1.0, 2.0, 3.0], 0.5),
        _speed_row("ours", "redis", [11.0, 12.0, 13.0], 0.1),
    ]
    verdicts = lg.speed_verdicts(rows, quick=False)
    assert [(v["store"], v["baseline"], v["basis"]) for v in verdicts] == [
        ("sqlite", "AsyncSqliteSaver", "measured"),
        ("sqlite", "AsyncPostgresSaver", "published"),
        ("redis", "AsyncSqliteSaver", "measured"),
        ("redis", "AsyncPostgresSaver", "published"),
    ]
    sqlite = verdicts[0]
    assert [c["figure"] for c in sqlite["figures"]] == [label for label, _ in lg.FIGURES]
    aput_p50 = sqlite["figures"][0]
    assert (aput_p50["ours"], aput_p50["theirs"], aput_p50["ratio"]) == (2.0, 20.0, 10.0)
    assert sqlite["figures"][-1]["ratio"] == 4.0  # total 2.0 s / 0.5 s
    assert sqlite["ok"] is False  # the same aget_tuple figures: not ahead
    published = verdicts[1]["figures"]
    assert [(c["figure"], c["theirs"]) for c in published] == [
        ("aput p99", 193.0),
        ("total s", 2.1),
    ]
    assert verdicts[1]["ok"] is True
    redis = verdicts[2]
    assert [c["ok"] for c in redis["figures"]] == [True, True, False, False, True]
    quick = lg.speed_verdicts(rows, quick=True)
    assert [v["ok"] for v in quick] == [False, None, False, None]
    text = "\n".join(lg.speed_lines(verdicts))
    assert "  ours on sqlite:" in text
    assert "PASS aput p50: ours 2.000 ms vs AsyncSqliteSaver 20.000 ms" in text
    assert "FAIL aget_tuple p50" in text
    assert "PASS total: ours 0.500 s vs AsyncPostgresSaver 2.100 s" in text
    assert "SKIP" in "\n".join(lg.speed_lines(quick))


def _storage_row(system: str, store: str, size: int, **measured: int) -> dict[str, Any]:
    return {
        "part": "storage",
        "store": store,
        "system": system,
        "checkpoints": 60,
        "bytes": size,
        "measured": measured or {"sqlite": size, "sqlite_before_checkpoint": size},
    }


def test_storage_verdicts_against_the_saver_the_reference_or_nothing() -> None:
    ours = [
        _storage_row("ours", "sqlite", 600_000),
        _storage_row("ours", "redis", 900_000, redis=900_000, redis_values=500_000),
    ]
    measured = lg.storage_verdicts([_storage_row("SqliteSaver", "sqlite", 7_000_000), *ours], False)
    assert [(v["store"], v["basis"], v["ok"]) for v in measured] == [
        ("sqlite", "measured", True),
        ("redis", "measured", False),
    ]
    assert measured[0]["ratio"] == pytest.approx(600_000 / 7_000_000)
    reference = lg.storage_verdicts(ours, quick=False)
    assert [v["saver_bytes"] for v in reference] == [lg.REFERENCE_SQLITE_SAVER_BYTES] * 2
    assert [v["ok"] for v in lg.storage_verdicts(ours, quick=True)] == [None, None]
    lines = lg.storage_lines(measured)
    assert lines[0].split()[:4] == ["sqlite", "PASS", "600,000", "B"]
    assert lines[1].split()[:2] == ["redis", "FAIL"]


def test_storage_table_shows_ratio_target_and_what_was_measured() -> None:
    rows = [
        _storage_row("SqliteSaver", "sqlite", 7_000_000),
        _storage_row("ours", "sqlite", 600_000),
        _storage_row("ours", "tiered", 800_000, redis=500_000, redis_values=300, postgres=300_000),
        {"part": "storage", "store": "redis", "system": "ours", "skipped": "not available: x"},
        {"part": "storage", "store": "postgres", "system": "ours", "error": "boom"},
    ]
    lines = lg.storage_table(rows, quick=False).splitlines()
    assert lines[0].split()[:5] == ["store", "system", "checkpoints", "bytes", "vs"]
    assert lines[2].split()[:5] == ["sqlite", "SqliteSaver", "60", "7,000,000", "1"]
    assert lines[3].split()[:6] == ["sqlite", "ours", "60", "600,000", "0.0857", "yes"]
    assert lines[4].split()[:6] == ["tiered", "ours", "60", "800,000", "0.1143", "NO"]
    assert "redis MEMORY USAGE 500,000" in lines[4]
    assert "pg_total_relation_size 300,000" in lines[4]
    assert lines[5].endswith("not available: x")
    assert lines[6].endswith("ERROR: boom")
    alone = lg.storage_table(rows[1:2], quick=False)
    assert "0.0677*" in alone
    assert "reference figure" in alone


def test_speed_table_shows_every_figure() -> None:
    rows = [
        _speed_row("AsyncPostgresSaver", "postgres", [3.0, 4.0], 2.5),
        {"part": "speed", "store": "redis", "system": "ours", "skipped": "not available: x"},
    ]
    lines = lg.speed_table(rows).splitlines()
    assert lines[0].split()[:4] == ["store", "system", "graphs", "aputs"]
    assert lines[2].split() == [
        *("postgres", "AsyncPostgresSaver", str(lg.QUICK.graphs), "2", "3.00", "4.00"),
        *("0.70", "6.00", "1.00", "2.00", "2.250", "2.500"),
    ]
    assert lines[3].endswith("not available: x")
    assert lines[4].startswith("get = aget_tuple:")


def test_storage_rows_check_what_was_read_back() -> None:
    result = {
        "versions": {},
        "checkpoints": lg.QUICK.turns * lg.CHECKPOINTS_PER_TURN,
        "messages": 2 * lg.QUICK.turns,
        "document_ok": True,
        "seconds": 0.1,
    }
    assert "error" not in lg.storage_row({}, lg.QUICK, result)
    assert "differs" in lg.storage_row({}, lg.QUICK, result | {"document_ok": False})["error"]
    assert "messages" in lg.storage_row({}, lg.QUICK, result | {"messages": 1})["error"]
    assert "checkpoints" in lg.storage_row({}, lg.QUICK, result | {"checkpoints": 1})["error"]
