"""Replay, diff and fork, against recordings made by real runs of a real agent: a trip
booker that plans, searches flights (a tool), has a model choose one, and books it (a
tool). The fake services count their calls, so a test sees what really ran."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from livingai import (
    CheckpointEngine,
    ConfigError,
    ExecutionNode,
    ExecutionNotFoundError,
    NodeType,
    ReplayDivergedError,
    ReplayMode,
    ReplaySession,
    Run,
    Runtime,
    Status,
    StepNotFoundError,
)
from tests.conftest import StoreFactory

FLIGHTS = [
    {"id": "LX-318", "price": 420},  # listed first, not the cheapest: the wrong booking
    {"id": "BA-731", "price": 180},
    {"id": "AF-112", "price": 260},
]
BUGGY = "Pick a flight to {dest}: {flights}"
FIXED = "Pick the cheapest flight to {dest}: {flights}"
REWORDED = "Choose a flight to {dest}: {flights}"  # same choice, other words


class World:
    """The outside world the agent talks to: a flight search, a model, a booking API."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bookings: list[str] = []

    async def search(self, dest: str) -> list[dict[str, Any]]:
        self.calls["search"] += 1
        return [dict(flight) for flight in FLIGHTS]

    async def model(self, prompt: str) -> dict[str, Any]:
        """A deterministic stand-in for a model: "cheapest" in the prompt makes it pick
        the cheapest flight, else the first listed."""
        self.calls["model"] += 1
        flights = json.loads(prompt.split(": ", 1)[1])
        pick = min(flights, key=lambda f: f["price"]) if "cheapest" in prompt else flights[0]
        return {
            "flight": pick["id"],
            "reason": prompt.split(" ", 1)[0].lower(),
            "model": "gpt-4o-mini-2024-07-18",
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 12},
        }

    async def book(self, flight_id: str) -> dict[str, Any]:
        self.calls["book"] += 1
        self.bookings.append(flight_id)
        return {"booking": f"BK-{flight_id}", "flight": flight_id}


def trip_agent(world: World, prompt: str = BUGGY) -> Any:
    async def book_trip(run: Run, dest: str) -> dict[str, Any]:
        city = await run.step("plan", str.upper, dest)
        flights = await run.tool("search", world.search, city)
        choice = await run.step(
            "choose", world.model, prompt.format(dest=city, flights=json.dumps(flights))
        )
        booking = await run.tool("book", world.book, choice["flight"])
        return {"booking": booking["booking"], "reason": choice["reason"]}

    return book_trip


@pytest.fixture
async def runtime(store_factory: StoreFactory) -> AsyncIterator[Runtime]:
    async with Runtime(CheckpointEngine(store_factory()), worker_id="tester") as opened:
        yield opened


async def export(runtime: Runtime, execution_id: str) -> str:
    """The execution's whole log as exported JSON: what must not change."""
    versions = await runtime.engine.versions(execution_id)
    return json.dumps([node.to_dict() for node in versions], sort_keys=True)


async def recorded(runtime: Runtime, world: World) -> str:
    """A real run of the buggy agent: it books the first flight, not the cheapest."""
    execution_id = "trip-1"
    result = await runtime.run(trip_agent(world), "zurich", execution_id=execution_id)
    assert result == {"booking": "BK-LX-318", "reason": "pick"}
    assert world.calls == {"search": 1, "model": 1, "book": 1}
    return execution_id


async def steps(runtime: Runtime, execution_id: str) -> list[ExecutionNode]:
    nodes = await runtime.engine.list_nodes(execution_id)
    return sorted(
        (n for n in nodes if "position" in n.metadata), key=lambda n: n.metadata["position"]
    )


async def test_full_replay_runs_everything_again_as_a_new_linked_execution(
    runtime: Runtime,
) -> None:
    world = World()
    original = await recorded(runtime, world)
    before = await export(runtime, original)

    replay = await runtime.replay(original, ReplayMode.FULL)

    assert replay.error is None
    assert replay.result == {"booking": "BK-LX-318", "reason": "pick"}
    assert world.calls == {"search": 2, "model": 2, "book": 2}  # for real, tools too
    assert replay.execution_id != original
    assert replay.replay_of == original
    header = await runtime.engine.load(f"{replay.execution_id}/run")
    assert header is not None
    assert header.node.metadata["replay_of"] == original
    assert header.node.metadata["replay"]["mode"] == "FULL"
    assert not any(n.metadata.get("mocked") for n in await steps(runtime, replay.execution_id))
    assert await export(runtime, original) == before


async def test_mock_tools_serves_every_tool_and_runs_the_rest_again(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    before = await export(runtime, original)

    replay = await runtime.replay(original, "mock_tools", agent=trip_agent(world, REWORDED))

    assert world.calls == {"search": 1, "model": 2, "book": 1}  # no real tool was called
    assert replay.result == {"booking": "BK-LX-318", "reason": "choose"}
    got = await steps(runtime, replay.execution_id)
    assert [n.metadata["step"] for n in got] == ["plan", "search", "choose", "book"]
    assert [bool(n.metadata.get("mocked")) for n in got] == [False, True, False, True]
    diff = await runtime.diff(original, replay.execution_id)
    # the new prompt changed the model step and nothing before it
    assert diff.first_divergence == 2
    assert [step.changed for step in diff.steps] == [False, False, True, False]
    assert set(diff.steps[2].changes) == {"input", "output"}
    assert await export(runtime, original) == before


async def test_a_tool_call_the_recording_lacks_fails_naming_the_closest_and_never_runs(
    runtime: Runtime,
) -> None:
    world = World()
    original = await recorded(runtime, world)

    with pytest.raises(ReplayDivergedError) as caught:
        await runtime.replay(original, ReplayMode.MOCK_TOOLS, agent=trip_agent(world, FIXED))

    message = str(caught.value)
    assert "tool 'book'" in message
    assert "BA-731" in message
    assert "closest recorded call is tool 'book'" in message
    assert "LX-318" in message
    assert "the real tool was not called" in message
    assert world.calls["book"] == 1
    assert world.bookings == ["LX-318"]
    replay_id = caught.value.execution_id
    summary = {s.execution_id: s for s in await runtime.executions()}[replay_id]
    assert summary.status is Status.FAILED
    assert summary.replay_of == original


async def test_mock_llm_replays_offline_and_fails_on_drift_naming_the_step(
    runtime: Runtime,
) -> None:
    world = World()
    original = await recorded(runtime, world)

    offline = await runtime.replay(original, ReplayMode.MOCK_TOOLS, mock_llm=True)
    assert world.calls == {"search": 1, "model": 1, "book": 1}  # nothing ran but plan
    assert offline.result == {"booking": "BK-LX-318", "reason": "pick"}

    with pytest.raises(ReplayDivergedError) as caught:
        await runtime.replay(
            original, ReplayMode.MOCK_TOOLS, agent=trip_agent(world, FIXED), mock_llm=True
        )
    message = str(caught.value)
    assert "model step 'choose' at position 2" in message
    assert re.search(r'^-\s+"Pick a flight', message, re.M)  # the recorded request
    assert re.search(r'^\+\s+"Pick the cheapest flight', message, re.M)  # the new one
    assert world.calls["model"] == 1


async def test_a_counterfactual_tool_result_changes_what_follows_and_not_what_precedes(
    runtime: Runtime,
) -> None:
    world = World()
    original = await recorded(runtime, world)
    before = await export(runtime, original)
    cheaper_first = [FLIGHTS[1], FLIGHTS[0], FLIGHTS[2]]

    with pytest.raises(ReplayDivergedError, match="real_tools=True calls it"):
        await runtime.replay(original, "counterfactual", counterfactual=("search", cheaper_first))
    assert world.calls["book"] == 1  # the unrecorded booking was refused, not made

    replay = await runtime.replay(
        original, "counterfactual", counterfactual=("search", cheaper_first), real_tools=True
    )
    assert replay.result == {"booking": "BK-BA-731", "reason": "pick"}
    assert world.calls == {"search": 1, "model": 3, "book": 2}
    diff = await runtime.diff(original, replay.execution_id)
    assert [step.changed for step in diff.steps] == [False, True, True, True]
    assert diff.first_divergence == 1
    assert diff.steps[1].changes["output"] == (FLIGHTS, cheaper_first)
    got = await steps(runtime, replay.execution_id)
    assert got[0].metadata["mocked"]
    assert got[1].metadata["counterfactual"]
    assert await export(runtime, original) == before


async def test_a_counterfactual_keeps_serving_tools_the_recording_has(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    same_first = [FLIGHTS[0], {"id": "KL-999", "price": 999}]

    replay = await runtime.replay(original, "counterfactual", counterfactual=("search", same_first))

    assert replay.result == {"booking": "BK-LX-318", "reason": "pick"}
    assert world.calls == {"search": 1, "model": 2, "book": 1}  # book: the recorded call


async def test_a_counterfactual_step_input_reruns_that_step(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    prompt = FIXED.format(dest="ZURICH", flights=json.dumps(FLIGHTS))

    replay = await runtime.replay(
        original, "counterfactual", counterfactual=("choose", prompt), real_tools=True
    )

    assert replay.result == {"booking": "BK-BA-731", "reason": "pick"}
    assert world.bookings == ["LX-318", "BA-731"]
    assert world.calls["search"] == 1


async def test_from_node_serves_the_prefix_and_runs_the_rest_for_real(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)

    replay = await runtime.replay(
        original, "from_node", from_step="choose", agent=trip_agent(world, FIXED)
    )

    assert replay.result == {"booking": "BK-BA-731", "reason": "pick"}
    assert world.calls == {"search": 1, "model": 2, "book": 2}
    got = await steps(runtime, replay.execution_id)
    assert [bool(n.metadata.get("mocked")) for n in got] == [True, True, False, False]


async def test_fork_copies_the_prefix_and_runs_from_the_step(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    before = await export(runtime, original)

    fork = await runtime.fork(original, "choose")
    result = await runtime.run(trip_agent(world, FIXED), execution_id=fork)

    assert result == {"booking": "BK-BA-731", "reason": "pick"}
    assert world.calls == {"search": 1, "model": 2, "book": 2}  # plan and search copied
    summary = {s.execution_id: s for s in await runtime.executions()}[fork]
    assert summary.forked_from == original
    assert summary.status is Status.SUCCESS
    diff = await runtime.diff(original, fork)
    assert diff.first_divergence == 2
    assert "first divergence at step 2" in diff.to_text()
    assert json.loads(diff.to_json())["first_divergence"] == 2
    assert await export(runtime, original) == before


async def test_diff_of_an_execution_with_itself_is_empty(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    diff = await runtime.diff(original, original)
    assert diff.identical
    assert diff.first_divergence is None
    assert "the steps are the same" in diff.to_text()


async def test_bad_replay_requests_get_clear_errors(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    with pytest.raises(ExecutionNotFoundError, match="no run 'nope'"):
        await runtime.replay("nope")
    with pytest.raises(StepNotFoundError, match="0: 'plan', 1: 'search'"):
        await runtime.replay(original, "from_node", from_step="pay")
    with pytest.raises(ConfigError, match="pass from_step"):
        await runtime.replay(original, ReplayMode.FROM_NODE)
    with pytest.raises(ConfigError, match="counterfactual=\\(step, value\\)"):
        await runtime.replay(original, ReplayMode.COUNTERFACTUAL)
    with pytest.raises(ConfigError, match="is for COUNTERFACTUAL"):
        await runtime.replay(original, ReplayMode.MOCK_TOOLS, counterfactual=("search", []))
    with pytest.raises(ConfigError, match="mode must be one of"):
        await runtime.replay(original, "sideways")
    with pytest.raises(StepNotFoundError):
        await runtime.fork(original, 9)
    assert world.calls == {"search": 1, "model": 1, "book": 1}
    async with Runtime(runtime.engine, worker_id="other") as fresh:  # knows no agents
        with pytest.raises(ConfigError, match="agent 'book_trip', which is not registered"):
            await fresh.replay(original)


async def test_a_replay_gets_the_id_it_is_given_and_never_one_in_use(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    replay = await runtime.replay(original, "mock_tools", replay_id="replay-of-trip")
    assert replay.execution_id == "replay-of-trip"
    assert [n.metadata["step"] for n in await steps(runtime, "replay-of-trip")] == [
        "plan",
        "search",
        "choose",
        "book",
    ]
    before = await export(runtime, "replay-of-trip")
    for taken in ("replay-of-trip", original):
        with pytest.raises(ConfigError, match="names an execution that exists"):
            await runtime.replay(original, "mock_tools", replay_id=taken)
    with pytest.raises(ConfigError, match="replay_id must be a non-empty string"):
        await runtime.replay(original, "mock_tools", replay_id="")
    assert await export(runtime, "replay-of-trip") == before


async def test_a_replay_session_walks_nodes_through_a_handler(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    seen: list[str] = []

    def handler(node: ExecutionNode) -> Any:
        seen.append(node.id)
        if node.metadata.get("step") == "plan":
            raise ValueError("no planner here")
        return {"again": node.input}

    session = ReplaySession(runtime.engine, original)
    report = await session.run(handler, ReplayMode.MOCK_TOOLS)
    by_step = {r.node.metadata.get("step"): r for r in report.results}
    assert by_step["search"].mocked
    assert by_step["search"].output == FLIGHTS
    assert by_step["book"].mocked
    assert not by_step["choose"].mocked
    assert by_step["plan"].error is not None
    assert by_step["plan"].error.type == "ValueError"
    assert "trip-1/1" not in seen
    assert "trip-1/2" in seen

    what_if = await session.run(handler, "counterfactual", counterfactual=("trip-1/1", []))
    assert {r.node.id: r.output for r in what_if.results}["trip-1/1"] == []
    store_session = ReplaySession(runtime.engine.store, original)
    await runtime.engine.flush()
    from_node = await store_session.run(handler, "from_node", from_node_id="trip-1/2")
    assert [r.mocked for r in from_node.results if r.node.type is NodeType.TOOL] == [True, False]
    summary = {s.execution_id: s for s in await runtime.executions()}
    assert summary[report.execution_id].replay_of == original
    assert summary[from_node.execution_id].replay_of == original
    with pytest.raises(StepNotFoundError):
        await session.run(handler, "from_node", from_node_id="nope")


class Crash(BaseException):
    """A kill, seen from inside: no outcome is recorded."""


async def test_a_crashed_replay_resumes_as_the_same_replay(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)
    crash = True

    async def model_then_crash(prompt: str) -> dict[str, Any]:
        answer = await world.model(prompt)
        if crash:
            raise Crash
        return answer

    def crashing_agent(world: World) -> Any:
        async def book_trip(run: Run, dest: str) -> dict[str, Any]:
            city = await run.step("plan", str.upper, dest)
            flights = await run.tool("search", world.search, city)
            prompt = REWORDED.format(dest=city, flights=json.dumps(flights))
            choice = await run.step("choose", model_then_crash, prompt)
            booking = await run.tool("book", world.book, choice["flight"])
            return {"booking": booking["booking"], "reason": choice["reason"]}

        return book_trip

    agent = crashing_agent(world)
    with pytest.raises(Crash):
        await runtime.replay(original, ReplayMode.MOCK_TOOLS, agent=agent)
    [pending] = [p for p in await runtime.pending() if p.execution_id != original]
    crash = False
    result = await runtime.run(agent, execution_id=pending.execution_id)

    assert result == {"booking": "BK-LX-318", "reason": "choose"}
    assert world.calls == {"search": 1, "model": 3, "book": 1}  # still mocked on resume
    summary = {s.execution_id: s for s in await runtime.executions()}[pending.execution_id]
    assert summary.replay_of == original


async def test_a_divergence_the_agent_catches_still_fails_the_replay(runtime: Runtime) -> None:
    world = World()
    original = await recorded(runtime, world)

    async def careless(run: Run, dest: str) -> str:
        try:
            await run.tool("search", world.search, "somewhere else")
        except Exception:
            return "carried on"
        return "searched"

    careless.__name__ = "book_trip"
    with pytest.raises(ReplayDivergedError, match="tool 'search'"):
        await runtime.replay(original, ReplayMode.MOCK_TOOLS, agent=careless)
    assert world.calls["search"] == 1
