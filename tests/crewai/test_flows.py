"""LivingAIFlowPersistence: CrewAI's @persist on every store. A flow killed mid-method in
one process is kicked off again by id in another and gets the state its last completed
method saved; pending human feedback is kept, read back and cleared."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import pytest
from crewai.flow.async_feedback.types import PendingFeedbackContext
from pydantic import BaseModel

from livingai import CheckpointEngine, ConfigError, NodeType, open_store
from livingai.adapters.crewai import LivingAIFlowPersistence
from tests.services import child

SECONDS = 60.0


def _flow(url: str, *args: str) -> subprocess.Popen[str]:
    return child("tests.crewai.flow_child", url, *args)


@pytest.mark.timeout(2 * SECONDS)
def test_a_flow_killed_mid_method_gets_its_saved_state_in_a_fresh_process(
    store_url: str,
) -> None:
    child = _flow(store_url, "--hang")
    assert child.stdout is not None
    line = ""
    found = None
    for line in child.stdout:  # CrewAI prints the flow's progress there too, from threads
        found = re.search(r"in c ([0-9a-f-]{36})", line)
        if found:
            break
    child.kill()
    _, err = child.communicate(timeout=SECONDS)
    assert found is not None, err[-3000:]
    flow_id = found.group(1)
    done = _flow(store_url, flow_id)
    out, err = done.communicate(timeout=SECONDS)
    assert done.returncode == 0, err[-3000:]
    ended = json.loads(next(x for x in reversed(out.splitlines()) if x.startswith('{"result"')))
    # Restored from what b saved in the killed process (n 11, a and b done), then CrewAI
    # runs the flow's methods from the start on top of it, as it does with any @persist
    # backend.
    state = ended["state"]
    seen = (state, out[-2000:], err[-3000:])
    assert (state["id"], state["started_by"]) == (flow_id, child.pid), seen
    assert (state["trail"], state["n"]) == (["a", "b", "a", "b", "c"], 22), seen
    assert ended["result"] == "ABC"
    persistence = LivingAIFlowPersistence(store_url)
    try:
        assert persistence.load_state(flow_id) == state
    finally:
        persistence.close()


class Trip(BaseModel):
    id: str
    city: str


def test_state_and_pending_feedback_round_trip(store_url: str) -> None:
    persistence = LivingAIFlowPersistence(store_url)
    try:
        assert persistence.load_state("f1") is None
        assert persistence.load_pending_feedback("f1") is None
        persistence.save_state("f1", "plan", {"id": "f1", "city": "Zurich"})
        persistence.save_state("f1", "book", Trip(id="f1", city="Basel"))  # structured
        assert persistence.load_state("f1") == {"id": "f1", "city": "Basel"}
        context = PendingFeedbackContext(
            flow_id="f1",
            flow_class="tests.Trip",
            method_name="approve",
            method_output="ok?",
            message="Approve the trip?",
        )
        persistence.save_pending_feedback("f1", context, {"id": "f1", "city": "Bern"})
        state, pending = persistence.load_pending_feedback("f1") or ({}, None)
        assert state == {"id": "f1", "city": "Bern"}
        assert pending is not None
        assert (pending.flow_id, pending.method_name, pending.message) == (
            "f1",
            "approve",
            "Approve the trip?",
        )
        assert persistence.load_state("f1") == state
        persistence.clear_pending_feedback("f1")
        assert persistence.load_pending_feedback("f1") is None
        assert persistence.load_state("f1") == state  # the state stays
        with pytest.raises(ConfigError, match="non-empty string"):
            persistence.save_state("", "m", {})
    finally:
        persistence.close()
    # Append-only: every call is a version of the flow's nodes, in the log.
    versions = asyncio.run(_versions(store_url, "flow:f1"))
    assert versions == [
        ("flow:f1/state", "plan"),
        ("flow:f1/state", "book"),
        ("flow:f1/state", "approve"),
        ("flow:f1/feedback", None),
        ("flow:f1/feedback", None),
    ]


async def _versions(url: str, execution_id: str) -> list[tuple[str, object]]:
    async with CheckpointEngine(open_store(url)) as engine:
        nodes = await engine.versions(execution_id)
    assert all(node.type is NodeType.MEMORY for node in nodes)
    return [
        (node.id, node.output.get("method") if isinstance(node.output, dict) else None)
        for node in nodes
    ]


def test_bad_input_gets_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="store URL, a CheckpointStore or a CheckpointEngine"):
        LivingAIFlowPersistence(42)  # type: ignore[arg-type]
