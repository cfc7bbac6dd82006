"""The benchmark command keeps working: a quick run of every tier on every available
store, ours only, that loses nothing and leaves nothing behind on the servers; and the
harness's pure parts (URLs, table, targets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import runner

import livingai
from tests.services import REQUIRE_SERVICES, reachable

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("single", "production", "hyperscale")
SHAPES = ("published", "realistic")
# The benchmark's servers; in the test suite, the test servers unless told otherwise.
REDIS_URL = os.environ.get("LIVINGAI_BENCH_REDIS_URL") or os.environ.get(
    "LIVINGAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)
POSTGRES_DSN = os.environ.get("LIVINGAI_BENCH_POSTGRES_DSN") or os.environ.get(
    "LIVINGAI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def _expected_stores() -> set[str]:
    """The stores this checkout has and whose servers are up: the quick run must run them.
    Under LIVINGAI_REQUIRE_SERVICES=1 a store we have whose server is down is a failure."""
    servers = {
        "redis": reachable(REDIS_URL, 6379),
        "postgres": reachable(POSTGRES_DSN, 5432),
    }
    needs = {"sqlite": [], "redis": ["redis"], "postgres": ["postgres"]}
    needs["tiered"] = ["redis", "postgres"]
    expected = set()
    for store, servers_needed in needs.items():
        if not all(hasattr(livingai, name) for name in runner.OURS_CLASSES[store]):
            continue
        down = [name for name in servers_needed if not servers[name]]
        if down and REQUIRE_SERVICES:
            pytest.fail(f"{store}: {', '.join(down)} not reachable (LIVINGAI_REQUIRE_SERVICES=1)")
        if not down:
            expected.add(store)
    return expected


def _leftovers(run: dict[str, Any]) -> list[str]:
    """What a finished run left on the servers under its own prefix or schema."""
    where = run["where"]
    found: list[str] = []
    if "redis_prefix" in where:
        redis = pytest.importorskip("redis")
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
        try:
            found += [repr(k) for k in client.scan_iter(match=f"{where['redis_prefix']}*")]
        finally:
            client.close()
    if "postgres_schema" in where:
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(POSTGRES_DSN, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                (where["postgres_schema"],),
            ).fetchone()
        if row and row[0]:
            found.append(f"schema {where['postgres_schema']}")
    return found


@pytest.mark.timeout(300)
def test_quick_benchmark_runs_every_tier_on_every_store_and_loses_nothing(
    tmp_path: Path,
) -> None:
    expected = _expected_stores()
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "LIVINGAI_BENCH_REDIS_URL": REDIS_URL,
        "LIVINGAI_BENCH_POSTGRES_DSN": POSTGRES_DSN,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-reference", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "store" in done.stdout
    runs = json.loads(out.read_text())["runs"]
    assert {(r["tier"], r["shape"], r["store"]) for r in runs} == {
        (tier, shape, store) for tier in TIERS for shape in SHAPES for store in runner.STORES
    }
    assert {r["system"] for r in runs} == {"ours"}
    for run in runs:
        if run["store"] not in expected:
            assert "not available" in run["skipped"], run
            continue
        assert "skipped" not in run, run
        assert "error" not in run, run
        assert run["lost"] == 0, run
        assert run["stored"] == run["saves"] > 0, run
        if run["store"] == "tiered":
            assert run["cold_lost"] == 0, run
            assert run["cold_s"] >= run["durable_s"], run
        if run["store"] != "sqlite":
            assert run["server_bytes"] > 0, run
            assert _leftovers(run) == [], run


# -- the harness's pure parts --------------------------------------------------------------


def test_server_urls_are_rewritten_without_touching_the_rest() -> None:
    assert runner.with_redis_db("redis://127.0.0.1:6379/0", 15) == "redis://127.0.0.1:6379/15"
    assert runner.with_redis_db("redis://h:1/2?db=2&x=1", 7) == "redis://h:1/7?x=1"
    assert runner.redis_db_of("redis://h:1") == 0
    assert runner.redis_db_of("redis://h:1/3") == 3
    assert runner.with_database("postgresql://u@h:5432/test?sslmode=disable", "other") == (
        "postgresql://u@h:5432/other?sslmode=disable"
    )
    assert runner.with_search_path("postgresql://u@h/test", "s1") == (
        "postgresql://u@h/test?search_path=s1"
    )
    assert runner.redact("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert runner.redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(ValueError, match="postgresql://"):
        runner.with_database("host=h dbname=test", "other")


def _row(store: str, tier: str = "production", **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tier": tier,
        "shape": "published",
        "store": store,
        "system": "ours",
        "saves": 1000,
        "sla_pct": 100.0,
        "save_ms": {"p50": 1.0, "p99": 5.0, "max": 20.0},
        "max_stall_ms": 3.0,
        "durable_s": 0.5,
        "lost": 0,
    }
    row.update(extra)
    return row


def test_table_shows_every_kind_of_row() -> None:
    rows = [
        _row("sqlite", disk_bytes=2_000_000),
        _row("tiered", cold_s=1.25, cold_lost=0, server_bytes=3_000_000),
        {**_row("redis"), "system": "reference", "error": "1 of 150 agents raised X"},
        {"tier": "production", "shape": "published", "store": "tiered", "system": "reference"}
        | {"skipped": "n/a: 0.4.1 has no tiered store"},
    ]
    text = runner.table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["tier", "shape", "store", "system"]
    assert lines[2].split()[-4:] == ["0.50", "-", "2.0", "0"]
    assert lines[3].split()[-6:] == ["0.50", "1.25", "3.0", "0", "(cold", "0)"]
    assert "ERROR: 1 of 150 agents raised X" in lines[4]
    assert lines[5].endswith("n/a: 0.4.1 has no tiered store")


def test_targets_hold_server_stores_to_the_stricter_bar() -> None:
    rows = [
        _row("sqlite", sla_pct=99.5),
        _row("redis", sla_pct=99.5),
        _row("postgres", tier="hyperscale", durable_s=12.0),
        _row("tiered", tier="hyperscale", durable_s=4.0, cold_s=30.0, cold_lost=2),
        {**_row("postgres"), "error": "boom"},
    ]
    lines = runner.targets(rows, [])
    assert "FAIL" not in lines[0]  # SQLite keeps its 99% bar
    assert "FAIL SLA 99.5% >= 99.9%" in lines[1]
    assert "FAIL all 1000 durable within 10 s (12.00 s" in lines[2]
    assert "FAIL all 1000 durable within 10 s (4.00 s, lost 0, cold 2)" in lines[3]
    assert "FAIL the run: boom" in lines[4]
