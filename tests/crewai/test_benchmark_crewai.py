"""The CrewAI benchmark (`python -m benchmarks.crewai`) keeps working: a quick run of ours
on SQLite (timed kickoffs, then a kickoff killed in its second task and kicked off again)
that repeats no LLM call and at most the one tool call in flight, and its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import crewai

from tests.services import ROOT


def test_a_quick_run_of_ours_repeats_nothing_and_prints_its_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks.crewai", "--kickoffs", "2"]
    command += ["--systems", "ours", "--stores", "sqlite", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = json.loads(out.read_text())
    assert (row["system"], row["store"]) == ("ours", "sqlite")
    assert "error" not in row, row
    assert len(row["samples"]) == 2
    assert 0 < row["kickoff_ms"]["p50"] <= row["kickoff_ms"]["p99"]
    assert row["llm_repeated"] == 0, row
    assert row["tool_repeated"] <= 1, row  # the call in flight, run again under its key
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["ours", "sqlite"] for line in lines), done.stdout


def test_the_table_adds_time_per_call_over_the_bare_crew() -> None:
    ms = {"p50": 100.0, "p99": 200.0}
    rows: list[dict[str, Any]] = [
        {"system": "bare", "store": "-", "kickoff_ms": ms, "llm_repeated": 10, "tool_repeated": 9},
        {
            "system": "ours",
            "store": "sqlite",
            "kickoff_ms": {"p50": 122.0, "p99": 244.0},
            "llm_repeated": 0,
            "tool_repeated": 1,
        },
        {"system": "ours", "store": "redis", "error": "redis is down"},
    ]
    lines = crewai.table(rows).splitlines()
    assert lines[1].split() == ["bare", "-", "100.00", "200.00", "-", "-", "10", "9"]
    added = f"{22 / crewai.CALLS:+.3f}", f"{44 / crewai.CALLS:+.3f}"
    assert lines[2].split() == ["ours", "sqlite", "122.00", "244.00", *added, "0", "1"]
    assert lines[3].split() == ["ours", "redis", "redis", "is", "down"]
