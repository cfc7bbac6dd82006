"""CrewAIAdapter.kickoff(flow): a flow's methods are steps. A flow killed mid-method (its
crew's charge made, not answered) is kicked off again in a fresh process: its completed
methods are served from the log (their outputs, a router's route, a pydantic model as its
class, and the state they left), the cut-off method runs again, and its charge is not
made twice. In one process: async methods, a finished flow read back, bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from crewai.flow.flow import Flow, listen, start

from livingai import (
    CheckpointEngine,
    ConfigError,
    NodeType,
    NondeterminismError,
    ReplayDivergedError,
    SQLiteStore,
    Status,
    open_store,
)
from livingai.adapters.crewai import CrewAIAdapter
from tests.payments import killed_once_charged, provider_counts
from tests.services import child

SECONDS = 60.0


def _child(url: str, folder: Path, *args: str) -> subprocess.Popen[str]:
    return child("tests.crewai.flow_kickoff_child", url, str(folder), *args)


def _ended(child: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = child.communicate(timeout=SECONDS)
    assert child.returncode == 0, err[-3000:]
    return dict(json.loads(next(x for x in reversed(out.splitlines()) if x.startswith("{"))))


def _methods(folder: Path) -> list[str]:
    return (folder / "methods.log").read_text().split()


@pytest.mark.timeout(2 * SECONDS)
def test_a_flow_killed_mid_method_resumes_without_running_completed_methods(
    store_url: str, tmp_path: Path
) -> None:
    killed_once_charged(_child(store_url, tmp_path, "--hang"), {"trip"})
    assert _methods(tmp_path) == ["plan", "route", "book"]
    ended = _ended(_child(store_url, tmp_path))
    # plan and route served from the log (route asserts plan came back as a Plan); book
    # was cut off, so it ran again, and its crew's charge ran under the same key.
    assert _methods(tmp_path) == ["plan", "route", "book", "book", "confirm"]
    seen = provider_counts(tmp_path)
    assert seen["charges"] == {"trip": 1}
    assert seen["attempts"] == {"trip": 2}
    receipt = json.dumps({"receipt": seen["receipts"]["trip"]})
    assert ended["result"] == f"confirmed Zurich: {receipt}"
    state = ended["state"]
    assert state["trail"] == ["plan", "route", "book", "confirm"]  # as one run leaves it
    assert (state["city"], state["receipt"]) == ("Zurich", receipt)

    async def recorded() -> dict[str, Any]:
        engine = CheckpointEngine(open_store(store_url))
        try:
            return {node.id: node for node in await engine.list_nodes("trip-1")}
        finally:
            await engine.close()

    nodes = asyncio.run(recorded())
    methods = {k: v for k, v in nodes.items() if v.metadata.get("kind") == "flow method"}
    assert sorted(methods) == [f"trip-1/flow:{m}:1" for m in ("book", "confirm", "plan", "route")]
    assert all(node.status is Status.SUCCESS for node in methods.values())
    assert methods["trip-1/flow:route:1"].output["output"] == "booking"
    assert methods["trip-1/flow:plan:1"].output["output"] == {"city": "Zurich", "nights": 2}
    assert state["id"] == methods["trip-1/flow:plan:1"].output["state"]["id"]  # the same flow
    assert nodes["trip-1/run"].status is Status.SUCCESS
    assert nodes["trip-1/run"].output == ended["result"]


# -- in one process -----------------------------------------------------------------------


def _adapter(tmp_path: Path) -> CrewAIAdapter:
    return CrewAIAdapter(CheckpointEngine(SQLiteStore(tmp_path / "runs.db")))


def _counting_flow(ran: list[str], fail_in: str | None = None) -> Flow[Any]:
    """first (async) -> double (sync) -> label (async), on a dict state."""

    class Counting(Flow):  # type: ignore[type-arg]  # a dict state
        @start()
        async def first(self) -> int:
            ran.append("first")
            self.state["n"] = self.state.get("n", 0) + 1
            return 1

        @listen(first)
        def double(self, value: int) -> int:
            ran.append("double")
            if fail_in == "double":
                raise ValueError("double broke")
            self.state["n"] *= 10
            return value * 2

        @listen(double)
        async def label(self, value: int) -> str:
            ran.append("label")
            return f"{value}:{self.state['n']}"

    return Counting()


class Other(Flow):  # type: ignore[type-arg]
    @start()
    def first(self) -> int:
        return 1


async def test_async_and_sync_methods_are_recorded_and_a_finished_flow_is_read_back(
    tmp_path: Path,
) -> None:
    adapter = _adapter(tmp_path)
    try:
        ran: list[str] = []
        assert await adapter.kickoff_async(_counting_flow(ran), execution_id="f1") == "2:10"
        assert ran == ["first", "double", "label"]
        nodes = await adapter.engine.list_nodes("f1")
        kinds = {n.id: (n.type, n.metadata.get("step")) for n in nodes if n.type is NodeType.BRANCH}
        assert kinds["f1/flow:double:1"] == (NodeType.BRANCH, "method double")
        again: list[str] = []
        flow = _counting_flow(again)
        assert await adapter.kickoff_async(flow, execution_id="f1") == "2:10"
        assert again == []  # every method served from the log
        assert flow.state["n"] == 10  # and the state they left put back

        class Counting(Flow):  # type: ignore[type-arg]  # the same name, another method
            @start()
            def elsewhere(self) -> str:
                return "never run"

        with pytest.raises(ReplayDivergedError, match="flow method 'elsewhere'"):
            await adapter.kickoff_async(Counting(), execution_id="f1")
        with pytest.raises(NondeterminismError, match="crewai:flow:Other"):
            await adapter.kickoff_async(Other(), execution_id="f1")
    finally:
        await adapter.aclose()


async def test_a_failed_method_fails_the_run_and_is_recorded(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    try:
        ran: list[str] = []
        with pytest.raises(ValueError, match="double broke"):
            await adapter.kickoff_async(_counting_flow(ran, "double"), execution_id="f2")
        node = await adapter.engine.load("f2/flow:double:1")
        assert node is not None
        assert node.node.status is Status.FAILED
        assert node.node.error is not None
        assert node.node.error.message == "double broke"
    finally:
        await adapter.aclose()


async def test_a_flow_is_refused_what_it_cannot_do(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    try:
        with pytest.raises(ConfigError, match="replay_of"):
            await adapter.kickoff_async(_counting_flow([]), execution_id="f3", replay_of="f1")
        streaming = _counting_flow([])
        streaming.stream = True
        with pytest.raises(ConfigError, match="stream=False"):
            await adapter.kickoff_async(streaming, execution_id="f3")
        with pytest.raises(ConfigError, match="Crew or Flow"):
            await adapter.kickoff_async(object(), execution_id="f3")  # type: ignore[call-overload]
    finally:
        await adapter.aclose()
