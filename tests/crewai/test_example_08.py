"""examples/08_crewai_crew.py runs as a new user would run it (no API key, no network):
killed mid-booking in its second task, kicked off again with one charge and neither the
first task nor a recorded LLM call made again, replayed with its tools served from the
recording."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from livingai import CheckpointEngine, ExecutionSummary, Runtime, SQLiteStore, Status
from tests.services import ROOT

EXAMPLE = str(ROOT / "examples" / "08_crewai_crew.py")


async def recorded(store: Path) -> dict[str, ExecutionSummary]:
    """The executions the example left in its store, by id."""
    async with Runtime(CheckpointEngine(SQLiteStore(store))) as runtime:
        return {run.execution_id: run for run in await runtime.executions()}


def test_example_charges_once_runs_no_call_twice_and_replays_offline(tmp_path: Path) -> None:
    store = tmp_path / "kept.db"  # --store: the runs stay there to be read afterwards
    result = subprocess.run(
        [sys.executable, EXAMPLE, "--store", f"sqlite:///{store}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    found = re.search(r"a worker kicks (crew-[0-9a-f]{6}) off and is killed", out)
    assert found is not None, out
    crew = found.group(1)
    # Charged once in the killed child, then retried with the same key: deduplicated.
    assert out.count("card: charged $180 for BA-731") == 1
    assert re.search(rf"card: {crew}/crew:tool:[0-9a-f]{{16}}:1 was charged before", out), out
    assert out.count("card charges: 1;") == 2  # after the resume, and after the replay
    assert "kill -9" in out
    # 3 calls paid before the kill (the search task's two, the booking's first), 1 by the
    # resume (its answer: nothing of the first task again), 4 live ones by the replay.
    assert re.findall(r"LLM calls paid so far: (\d+)", out) == ["3", "4", "8"]
    assert out.count("recorded by livingai: 4 LLM calls, 480 in + 120 out tokens") == 2
    assert "   crew: Booked BA-731: R-BA-731\n" in out
    # The replay: the new prompt reached the LLM, the tools answered from the log.
    assert "   crew: Booked BA-731 for $180: R-BA-731\n" in out
    assert "   search_flights: answered by the recording\n" in out
    assert "   book_flight: answered by the recording\n" in out
    runs = asyncio.run(recorded(store))
    assert set(runs) == {crew, f"{crew}-v2"}
    assert runs[crew].status is Status.SUCCESS
    assert runs[crew].in_doubt == 0
    assert runs[f"{crew}-v2"].status is Status.SUCCESS
