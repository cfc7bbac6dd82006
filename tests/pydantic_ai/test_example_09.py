"""examples/09_pydantic_ai.py runs as a new user would run it (no API key, no network):
killed mid-booking, run again by a fresh process with one charge and no recorded model
request made again, replayed with its tools served from the recording."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from livingai import (
    CheckpointEngine,
    ExecutionNode,
    ExecutionSummary,
    NodeType,
    Runtime,
    SQLiteStore,
    Status,
)
from tests.services import ROOT

EXAMPLE = str(ROOT / "examples" / "09_pydantic_ai.py")


async def recorded(
    store: Path,
) -> tuple[dict[str, ExecutionSummary], dict[str, list[ExecutionNode]]]:
    """The executions the example left in its store, and their nodes, by id."""
    async with Runtime(CheckpointEngine(SQLiteStore(store))) as runtime:
        runs = {run.execution_id: run for run in await runtime.executions()}
        nodes = {run: await runtime.engine.list_nodes(run) for run in runs}
        return runs, nodes


def test_example_charges_once_pays_recorded_requests_once_and_replays_offline(
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
    key = f"{trip}/pai:1:tool:2:call-book:1"  # run step 2, the model's tool call id
    # Charged once in the killed child, then run again with the same key: deduplicated.
    assert out.count("card: charged $180 for BA-731") == 1
    assert f"   card: charged $180 for BA-731 (key {key})\n" in out
    assert out.count(f"card: {key} was charged before: no new charge") == 1
    assert out.count("card charges: 1;") == 2  # after the resume, and after the replay
    assert "kill -9" in out
    # 2 requests paid before the kill, 1 by the resume (not 3), 3 live ones by the replay.
    assert re.findall(r"model requests paid so far: (\d+)", out) == ["2", "3", "6"]
    spent = "3 model requests, 360 in + 90 out tokens, $0.000315"
    assert out.count(f"recorded by livingai: {spent}") == 2
    assert "   agent: Booked BA-731: R-BA-731\n" in out
    # The replay: the new prompt reached the model, the tools answered from the log.
    assert "   agent: Booked BA-731 for $180: R-BA-731\n" in out
    assert f"   search_flights: answered by {trip}/pai:1:tool:1:call-search:1\n" in out
    assert f"   book_flight: answered by {key}\n" in out

    runs, nodes = asyncio.run(recorded(store))
    replay = f"{trip}-v2"
    assert set(runs) == {trip, replay}
    assert runs[trip].status is Status.SUCCESS
    assert runs[trip].in_doubt == 0
    assert (runs[replay].status, runs[replay].replay_of) == (Status.SUCCESS, trip)
    tools = {n.metadata["tool"]: n for n in nodes[trip] if n.type is NodeType.TOOL}
    assert tools["book_flight"].metadata["attempt"] == 2  # the kill's, then the resume's
    assert tools["search_flights"].metadata["attempt"] == 1  # served, not searched again
    mocked = [n.metadata.get("mocked") for n in nodes[replay] if n.type is NodeType.TOOL]
    assert mocked == [True, True]
