"""The README's first command: examples/00_demo.py, run as a new user runs it (no API key,
no network), kills its worker mid-charge and finishes every order with one charge each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.crash
def test_the_demo_kills_a_worker_mid_charge_and_charges_every_card_once(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "00_demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert result.stderr == "", result.stderr
    assert "kill -9" in out
    assert "unfinished in the store: order-2, order-3" in out
    assert "provider: key order-2/1 was charged before: no new charge" in out
    assert "order-1  $42  charges: 1  model calls: 1" in out
    assert "order-2  $17  charges: 1  model calls: 1" in out  # its plan came from the log
    assert "order-3  $99  charges: 1  model calls: 2" in out  # its cut-off call made again
    assert out.rstrip().endswith("every order charged exactly once, with its receipt: OK")
    assert list(tmp_path.iterdir()) == []  # nothing left behind where it was run
