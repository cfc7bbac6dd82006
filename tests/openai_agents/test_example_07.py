"""examples/07_openai_agents.py runs as a new user would run it (no API key, no network):
killed mid-charge, resumed with one charge and no recorded turn asked again, replayed
with its tools served from the recording."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from livingai import CheckpointEngine, ExecutionSummary, Runtime, SQLiteStore, Status
from tests.services import ROOT

EXAMPLE = str(ROOT / "examples" / "07_openai_agents.py")


async def recorded(store: Path) -> dict[str, ExecutionSummary]:
    """The executions the example left in its store, by id."""
    async with Runtime(CheckpointEngine(SQLiteStore(store))) as runtime:
        return {run.execution_id: run for run in await runtime.executions()}


def test_example_charges_once_pays_recorded_turns_once_and_replays_offline(
    tmp_path: Path,
) -> None:
    store = tmp_path / "kept.db"  # --store: the runs stay there to be read afterwards
    result = subprocess.run(
        [sys.executable, "-W", "error", EXAMPLE, "--store", f"sqlite:///{store}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert result.stderr == ""
    found = re.search(r"a worker runs (trip-[0-9a-f]{6}) and is killed", out)
    assert found is not None, out
    trip = found.group(1)
    key = f"{trip}/oai:tool:call-book"
    # Charged once in the killed child, then retried with the same key: deduplicated.
    assert out.count("card: charged $180 for BA-731") == 1
    assert f"   card: charged $180 for BA-731 (key {key})" in out
    assert out.count(f"card: {key} was charged before: no new charge") == 1
    assert out.count("card charges: 1;") == 2  # after the resume, and after the replay
    assert "kill -9" in out
    # 2 turns paid before the kill, 1 by the resume (not 3), 3 live ones by the replay.
    assert re.findall(r"model calls paid so far: (\d+)", out) == ["2", "3", "6"]
    assert out.count("recorded by livingai: 3 model turns, 360 in + 90 out tokens, $0.000315") == 2
    assert "   agent: Booked BA-731: R-BA-731\n" in out
    # The replay: the new instructions reached the model, the tools answered from the log.
    assert "   agent: Booked BA-731 for $180: R-BA-731\n" in out
    assert f"   search_flights: answered by {trip}/oai:tool:call-search\n" in out
    assert f"   book_flight: answered by {key}\n" in out

    runs = asyncio.run(recorded(store))
    assert set(runs) == {trip, f"{trip}-v2"}
    assert runs[trip].status is Status.SUCCESS
    assert runs[trip].in_doubt == 0
    assert runs[f"{trip}-v2"].status is Status.SUCCESS
