"""The web benchmark (`python -m benchmarks.web`) keeps working: a quick SQLite run times
every request, every answer checks out, the JSON says so and the store is gone; and its
pure parts (the right answers, the check, the table, the verdict). No timing is asserted:
speed is the benchmark's to report, not the tests'."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import web

QUICK = web.QUICK_EXECUTIONS
# What each request lists at --quick: 2,000 executions are 40 pages, so the deep page is
# the last one; the id search matches one execution; an execution's page shows 2 steps.
ITEMS = {
    "api-first": 50,
    "html-first": 50,
    "api-status": 50,
    "api-q": 1,
    "api-page-40": 50,
    "html-execution": 2,
}


def test_a_quick_sqlite_run_checks_every_request_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "web.json"
    assert web.main(["--quick", "--stores", "sqlite", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert report["meta"]["executions"] == QUICK
    assert report["meta"]["repeat"] == web.QUICK_REPEAT
    (row,) = report["runs"]
    assert row["store"] == "sqlite"
    assert "error" not in row
    assert row["fill_s"] > 0
    found = {r["request"]: r for r in row["requests"]}
    assert {name: r["items"] for name, r in found.items()} == ITEMS
    for name, r in found.items():
        assert r["check"] == "ok", name
        assert len(r["samples_ms"]) == web.QUICK_REPEAT, name
        assert r["max_ms"] >= r["median_ms"] > 0, name
    assert found["api-page-40"]["path"].startswith("/api/executions?cursor=")  # page 40
    assert found["api-q"]["path"] == f"/api/executions?q={QUICK - 10:07d}"
    assert not Path(row["where"]["sqlite_dir"]).exists()


def test_the_right_answers_and_the_check() -> None:
    wanted = {r.name: r for r in web.requests(QUICK, "a-cursor")}
    first = wanted["api-first"].expected
    assert first is not None
    assert first[:2] == ("exec-0001999", "exec-0001998")
    assert len(first) == 50
    failed = wanted["api-status"].expected
    assert failed is not None
    assert failed[:2] == ("exec-0001997", "exec-0001987")
    assert wanted["api-page-40"].expected == tuple(web.execution_id(k) for k in range(49, -1, -1))
    items_of = [{"execution_id": e, "status": "SUCCESS"} for e in first]
    body = {"items": items_of, "stopped": False}
    assert web.listed(wanted["api-first"], 200, json.dumps(body)) == (50, "ok")
    body = {"items": items_of[::-1], "stopped": False}
    items, check = web.listed(wanted["api-first"], 200, json.dumps(body))
    assert (items, check.startswith("50 items from ['exec-0001950']")) == (50, True)
    wrong = {"items": [{"execution_id": e, "status": "SUCCESS"} for e in failed]}
    assert web.listed(wanted["api-status"], 200, json.dumps({**wrong, "stopped": False}))[1] == (
        "not only FAILED: ['SUCCESS']"
    )
    assert web.listed(wanted["api-first"], 500, "boom") == (0, "HTTP 500: boom")


def _row(store: str, max_ms: float, check: str = "ok") -> dict[str, Any]:
    requests = [
        {
            "request": name,
            "path": path,
            "samples_ms": [max_ms / 2, max_ms],
            "median_ms": max_ms * 0.75,
            "max_ms": max_ms,
            "items": 50,
            "check": check,
        }
        for name, path in (("api-first", "/api/executions"), ("html-first", "/"))
    ]
    return {"store": store, "executions": 100_000, "fill_s": 2.0, "requests": requests}


def test_the_table_and_the_verdicts() -> None:
    rows = [
        _row("sqlite", 40.0),
        _row("postgres", 1500.0, check="3 items, expected 50"),
        {"store": "redis", "skipped": "not available: Redis not reachable"},
        {"store": "tiered", "executions": 10, "error": "StoreError: down"},
    ]
    lines = web.table(rows).splitlines()
    assert lines[0].split() == ["store", "request", "items", "median", "ms", "max", "ms", "check"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["sqlite", "GET", "/api/executions", "50", "30.0", "40.0", "ok"]
    assert lines[3].split() == ["sqlite", "GET", "/", "50", "30.0", "40.0", "ok"]
    assert lines[4].endswith("WRONG: 3 items, expected 50")
    assert lines[6].split() == ["redis", "not", "available:", "Redis", "not", "reachable"]
    assert lines[7].split() == ["tiered", "ERROR:", "StoreError:", "down"]
    assert len(lines) == 8
    assert web.verdict(rows[0]).startswith("sqlite: first page under 1 s: yes (slowest of 2 runs")
    assert web.verdict(rows[1]).startswith("postgres: first page under 1 s: no")
    assert web.verdict(rows[2]) == "redis: not run: not available: Redis not reachable"
    assert web.verdict(rows[3]) == "tiered: first page under 1 s: no (the run failed)"
    assert web.problems(rows[0]) == []
    assert len(web.problems(rows[1])) == 2
    assert web.problems(rows[2]) == []
    assert web.problems(rows[3]) == ["tiered: StoreError: down"]
