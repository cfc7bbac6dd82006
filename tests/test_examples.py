"""Every example runs as a new user would run it: no API key, no network."""

from __future__ import annotations

import re
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


def test_basic_checkpoint_reads_back_what_it_saved(tmp_path: Path) -> None:
    out = run_example("01_basic_checkpoint.py", tmp_path)
    # Every save committed, in the budget or late (which one is the machine's timing).
    counts = re.search(r"saves: (\d+), in budget: (\d+), late: (\d+)", out)
    assert counts is not None, out
    saves, in_budget, late = map(int, counts.groups())
    assert (saves, in_budget + late) == (6, 6)
    assert "read back 3 steps:" in out
    assert out.count("RUNNING -> SUCCESS") == 3
    assert '"notes": [{"text": "Let me look it up."}, {"result": "Paris"}' in out


def test_mock_tools_debugging_never_books_from_a_replay_unless_told(tmp_path: Path) -> None:
    out = run_example("03_mock_tools_debugging.py", tmp_path)
    assert "calls made: {'search': 0, 'model': 0, 'book': 0}" in out  # fully offline
    assert "closest recorded call is tool 'book'" in out
    assert "calls made: {'search': 0, 'model': 1, 'book': 0}" in out  # mocked: no booking
    assert "[sandbox booking API] booked BA-731" in out
    assert "first divergence at step 1" in out
    assert out.count("[live booking API]") == 1
    assert "live calls over all of this: {'search': 1, 'model': 1, 'book': 1}" in out


def test_cost_tracking_adds_costs_up_by_model_execution_and_day(tmp_path: Path) -> None:
    out = run_example("04_cost_tracking.py", tmp_path)
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "2 calls" in lines["acme-large"]
    assert "8 calls" in lines["acme-small"]
    assert "10 model calls" in out
    assert "tickets over $0.001: ticket-2, ticket-4" in out
    costs = [float(lines[f"ticket-{n}"].split("$")[1]) for n in range(5)]
    total = float(out.split("total: $")[1].split()[0])
    assert abs(sum(costs) - total) < 1e-5


def test_langgraph_agent_is_recorded_and_never_books_twice(tmp_path: Path) -> None:
    out = run_example("05_langgraph_agent.py", tmp_path)
    assert out.count("booking API: booked BA-731") == 1
    assert "/tool:call-2" in out  # the idempotency key: the tools node run, the tool call
    assert "bookings made by the booking API: 1" in out
    assert 'agent: Done: {"booking": "BK-BA-731"}' in out
    assert out.count("(node): SUCCESS") == 5
    assert out.count("ScriptedModel (model): SUCCESS, acme-mini,") == 3
    assert "book_flight's versions: RUNNING -> SUCCESS" in out
    assert "acme-mini: 3 model calls, 200 in, 75 out, $0.000213" in out
