"""The session benchmark (`python -m benchmarks.openai_agents_sessions`) keeps working: a
quick run of ours only (`--ours-only`: this python, no bench venv made) on SQLite and, when
they are up, Redis and PostgreSQL, whose rows are complete, lose nothing and leave nothing
behind; the SDK's own databases are removed after a run that fails; and the harness's pure
parts (URLs, plan, table, ratios, the ahead-of-each check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import openai_agents_sessions as bench
from benchmarks import runner

from tests.services import reachable, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
# The benchmark's servers; in the test suite, the test servers unless told otherwise.
REDIS_URL = os.environ.get("LIVINGAI_BENCH_REDIS_URL") or os.environ.get(
    "LIVINGAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)
POSTGRES_DSN = os.environ.get("LIVINGAI_BENCH_POSTGRES_DSN") or os.environ.get(
    "LIVINGAI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def leftovers(where: dict[str, str]) -> list[str]:
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


@pytest.mark.timeout(180)
def test_quick_ours_only_run_measures_every_store_and_leaves_nothing(tmp_path: Path) -> None:
    up = {"redis": reachable(REDIS_URL, 6379), "postgres": reachable(POSTGRES_DSN, 5432)}
    expected = {"sqlite"} | {store for store, ok in up.items() if ok}
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "LIVINGAI_BENCH_REDIS_URL": REDIS_URL,
        "LIVINGAI_BENCH_POSTGRES_DSN": POSTGRES_DSN,
    }
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.openai_agents_sessions"),
            *("--quick", "--ours-only", "--json", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,  # bounded; the machine runs other suites beside it
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["meta"]["python"] == sys.executable  # ours ran here: no venv was asked for
    assert result["failures"] == []
    runs = result["runs"]
    assert [(r["store"], r["system"]) for r in runs] == [(s, "ours") for s in bench.STORES]
    lines = done.stdout.splitlines()
    turns = bench.QUICK.sessions * bench.QUICK.turns
    for run in runs:
        if run["store"] not in expected:
            assert "not available" in run["skipped"], run
            continue
        assert "skipped" not in run, run
        assert "error" not in run, run
        assert run["session"] == "LivingAISession"
        assert run["turns"] == turns, run
        assert run["sessions"] == bench.QUICK.sessions, run
        assert run["wrong"] == 0, run
        assert run["lost"] == 0, run
        assert run["mismatched"] == 0, run
        assert run["turns_per_s"] > 0, run
        for op in ("add_ms", "get_ms"):
            ms = run[op]
            assert ms["count"] == turns, run
            assert 0 < ms["p50"] <= ms["p99"] <= ms["max"], run
        assert str(ROOT / "src") in run["version"], run  # this checkout's livingai
        assert leftovers(run["where"]) == [], run
        row = [line.split() for line in lines if line.split()[:2] == [run["store"], "ours"]]
        assert len(row) == 1, done.stdout
        assert row[0][2:4] == ["LivingAISession", str(turns)], row
    down = sorted(name for name, ok in up.items() if not ok)
    if down:
        skip_or_fail(f"ran without {', '.join(down)}: not reachable, so not measured")


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_the_sdks_store_is_removed_after_a_run_even_a_failed_one(
    store: str, tmp_path: Path
) -> None:
    url, port = (REDIS_URL, 6379) if store == "redis" else (POSTGRES_DSN, 5432)
    if not reachable(url, port):
        skip_or_fail(f"{store} is not reachable at {url}")
    if (runner.REDIS_URL, runner.POSTGRES_DSN) != (REDIS_URL, POSTGRES_DSN):
        pytest.skip("the LIVINGAI_BENCH_* servers are not the ones the tests use")
    system = bench.System("sdk", "SQLAlchemySession+asyncpg", Path("py"), "asyncpg")
    where: dict[str, str] = {}
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="the run failed"),
        bench.provision(system, store, tmp_path) as place,
    ):
        where = dict(place.where)
        if store == "redis":
            assert place.spec["key_prefix"] == where["redis_prefix"]
            client = pytest.importorskip("redis").Redis.from_url(REDIS_URL)
            client.set(f"{where['redis_prefix']}:s:messages", b"x")
            client.close()
        else:
            assert place.spec["url"].startswith("postgresql+asyncpg://")
        assert leftovers(where) != [], "the store should exist during the run"
        raise RuntimeError("the run failed")
    assert where
    assert leftovers(where) == []


# -- the harness's pure parts --------------------------------------------------------------


def test_sqlalchemy_urls_keep_everything_but_the_scheme() -> None:
    dsn = "postgresql://u:pw@h:5433/db?sslmode=disable"
    assert (
        bench.sqlalchemy_url(dsn, "asyncpg")
        == "postgresql+asyncpg://u:pw@h:5433/db?sslmode=disable"
    )
    assert bench.sqlalchemy_url("postgres://h/db", "psycopg") == "postgresql+psycopg://h/db"
    with pytest.raises(ValueError, match="postgresql://"):
        bench.sqlalchemy_url("host=h dbname=db", "asyncpg")


def test_plan_lists_ours_then_each_baseline_and_says_why_a_row_cannot_run() -> None:
    ours = bench.System("ours", bench.OURS_CLASS, Path("py"))
    servers = {"redis": "Redis not reachable at redis://x", "postgres": None}
    matrix = bench.plan(bench.STORES, servers, ours, None, Path("venv-py"), None)
    assert [(store, system.name) for store, system, _ in matrix] == [
        ("sqlite", "ours"),
        ("sqlite", "sdk"),
        ("redis", "ours"),
        ("redis", "sdk"),
        ("postgres", "ours"),
        ("postgres", "sdk"),
        ("postgres", "sdk-psycopg"),
    ]
    why = {(store, system.name): problem for store, system, problem in matrix}
    assert why["sqlite", "ours"] is None
    assert why["postgres", "sdk"] is None
    assert why["redis", "sdk"] == "not available: Redis not reachable at redis://x"
    assert {system.driver for _, system, _ in matrix if system.name.startswith("sdk")} == {
        None,
        "asyncpg",
        "psycopg",
    }
    only = bench.plan(["sqlite"], servers, ours, None, None, None)
    assert [system.name for _, system, _ in only] == ["ours"]
    offline = bench.plan(["sqlite"], servers, ours, None, None, "pip failed: offline")
    assert [p for _, _, p in offline] == [None, "not available: pip failed: offline"]


def _row(system: str, store: str = "sqlite", **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "store": store,
        "system": system,
        "session": "LivingAISession" if system == "ours" else "SQLiteSession",
        "sessions": 50,
        "turns": 1000,
        "turns_per_s": 2000.0,
        "add_ms": {"p50": 2.0, "p99": 8.0, "max": 9.0},
        "get_ms": {"p50": 1.0, "p99": 4.0, "max": 5.0},
        "lost": 0,
    }
    row.update(extra)
    return row


def test_table_shows_measured_skipped_and_failed_rows() -> None:
    rows = [
        _row("ours"),
        _row("sdk", turns_per_s=500.0, add_ms={"p50": 4.0, "p99": 40.0, "max": 50.0}),
        {"store": "redis", "system": "sdk", "session": "RedisSession"}
        | {"skipped": "not available: Redis not reachable at redis://x"},
        _row("ours", store="postgres", error="2 sessions failed: X"),
    ]
    lines = bench.table(rows).splitlines()
    assert lines[0].split() == [
        *("store", "system", "session", "turns", "add", "p50", "add", "p99"),
        *("get", "p50", "get", "p99", "turns/s", "lost"),
    ]
    assert lines[2].split() == [
        *("sqlite", "ours", "LivingAISession", "1000"),
        *("2.00", "8.00", "1.00", "4.00", "2000", "0"),
    ]
    assert lines[3].split()[4:] == ["4.00", "40.00", "1.00", "4.00", "500", "0"]
    assert lines[4].endswith("not available: Redis not reachable at redis://x")
    assert lines[5].endswith("ERROR: 2 sessions failed: X")


def test_ratios_are_baseline_over_ours_and_turns_ours_over_baseline() -> None:
    sdk = _row(
        "sdk",
        turns_per_s=500.0,
        add_ms={"p50": 4.0, "p99": 40.0, "max": 50.0},
        get_ms={"p50": 0.5, "p99": 8.0, "max": 9.0},
    )
    failed = _row("sdk-psycopg", error="timed out")
    (ratio,) = bench.ratios([_row("ours"), sdk, failed])
    assert ratio == {
        "store": "sqlite",
        "baseline": "sdk",
        "add_p50": 2.0,
        "add_p99": 5.0,
        "get_p50": 0.5,
        "get_p99": 2.0,
        "turns": 4.0,
    }
    (line,) = bench.ratio_lines([ratio])
    assert "add p50 2.00x" in line
    assert "get p50 0.50x" in line
    assert "turns/s" in line
    assert bench.ratios([sdk]) == []  # no ours row to compare with


def test_ahead_of_each_passes_only_when_both_p50s_are_no_worse() -> None:
    ahead = _row("sdk", add_ms={"p50": 2.0, "p99": 1.0, "max": 1.0})  # a tie passes
    behind = _row("sdk", store="redis", get_ms={"p50": 0.9, "p99": 1.0, "max": 1.0})
    rows = [
        _row("ours"),
        ahead,
        _row("ours", store="redis"),
        behind,
        _row("ours", store="postgres"),
        {"store": "postgres", "system": "sdk", "session": "SQLAlchemySession+asyncpg"}
        | {"error": "exit code 1"},
    ]
    lines = bench.targets(rows)
    assert len(lines) == 3
    assert lines[0].split()[:4] == ["sqlite", "vs", "sdk", "PASS"]
    assert "add p50 2.00 <= 2.00 ms" in lines[0]
    assert lines[1].split()[:4] == ["redis", "vs", "sdk", "FAIL"]
    assert "get p50 1.00 > 0.90 ms" in lines[1]
    assert lines[2].split()[:4] == ["postgres", "vs", "sdk", "SKIP"]
    failed = bench.targets([_row("ours", error="boom"), ahead])
    assert failed[0].split()[3:5] == ["FAIL", "ours"]
    report = bench.report(rows, quick=True)
    assert "ahead of each on its own database (ours) (quick run" in report


def test_measured_row_fails_on_wrong_reads_and_missing_samples() -> None:
    scale = bench.Scale(2, 2, 10.0)
    result = {
        "version": "v",
        "total_s": 0.5,
        "add_ms": [1.0, 2.0, 3.0, 4.0],
        "get_ms": [1.0, 1.0, 1.0, 1.0],
        "wrong": 0,
        "failures": [],
    }
    head = {"store": "sqlite", "system": "ours", "session": "LivingAISession"}
    row = bench.measured_row(head, scale, result)
    assert "error" not in row
    assert row["turns"] == 4
    assert row["turns_per_s"] == 8.0
    assert row["add_ms"]["p50"] == 2.0
    assert row["add_ms"]["p99"] == 4.0
    assert "wrong items" in bench.measured_row(head, scale, {**result, "wrong": 1})["error"]
    short = bench.measured_row(head, scale, {**result, "get_ms": [1.0]})
    assert short["error"] == "4 adds and 1 gets timed, expected 4 of each"
    failed = bench.measured_row(head, scale, {**result, "failures": ["KeyError: x"]})
    assert failed["error"] == "1 sessions failed: KeyError: x"
