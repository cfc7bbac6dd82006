"""Every example runs as a new user would run it: no API key, no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def test_crash_recovery_charges_the_card_once(tmp_path: Path) -> None:
    out = run_example("02_crash_recovery.py", tmp_path)
    assert "   child provider: card charged $42 (key order-42/1)" in out
    assert "kill -9" in out
    assert "provider: key order-42/1 was charged before: no new charge" in out
    assert "charges at the provider: 1; model calls: 1" in out
