"""benchmarks.scale runs as its docs say: a quick SQLite run grows the store, finds the
crashed runs, pages the web UI and the command line, and checks every answer; the
verdicts read the largest size against the targets and the smallest."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import scale


def test_a_quick_sqlite_run_measures_and_checks_every_size(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    assert (
        scale.main(
            ["--stores", "sqlite", "--sizes", "120,240", "--repeat", "1", "--json", str(out)]
        )
        == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(row["store"], row["executions"], row["check"]) for row in rows] == [
        ("sqlite", 120, "ok"),
        ("sqlite", 240, "ok"),
    ]
    for row in rows:
        for key in (
            "ingest_per_s",
            "pending_ms",
            "first_page_ms",
            "html_ms",
            "deep_page_ms",
            "list_ms",
        ):
            assert row[key] > 0, key


def test_the_verdicts_read_the_largest_size_against_the_targets() -> None:
    def row(executions: int, pending: float, page: float) -> dict[str, object]:
        return {
            "store": "x",
            "executions": executions,
            "pending_ms": pending,
            "first_page_ms": page,
        }

    (line,) = scale.verdicts([row(10_000, 10.0, 40.0), row(1_000_000, 12.0, 120.0)])
    assert "at 1,000,000:" in line
    assert "pending() 12.0 ms < 50 (PASS), x1.20 from 10,000 (flat)" in line
    assert "first page 120.0 ms >= 100 (FAIL), x3.00 from 10,000 (NOT flat)" in line
    (short,) = scale.verdicts([row(10_000, 10.0, 40.0), row(100_000, 10.0, 40.0)])
    assert "(not a million: 100,000 measured)" in short
    cluster = {"store": "redis-cluster", "executions": 10, "ingest_per_s": 850.0}
    (ratio,) = scale.ingestion(
        [{"store": "redis", "executions": 10, "ingest_per_s": 1000.0}, cluster]
    )
    assert "0.85x one server's 1,000/s (PASS: within 20%)" in ratio
