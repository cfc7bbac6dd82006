"""The benchmark command keeps working: a quick run of every tier, ours only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_every_tier_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-reference", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "tier" in done.stdout
    runs = json.loads(out.read_text())["runs"]
    assert {(r["tier"], r["shape"]) for r in runs} == {
        (tier, shape)
        for tier in ("single", "production", "hyperscale")
        for shape in ("published", "realistic")
    }
    for run in runs:
        assert run["lost"] == 0, run
        assert run["stored"] == run["saves"] > 0
