"""LivingAIDurability: Pydantic AI agents as livingai durable runs. A run SIGKILLed while a
wrapped tool is in flight (two parallel calls, one done) resumes in a fresh process,
per in-doubt policy, without asking the model again for the recorded turn or charging
twice; model requests carry tokens; the operation names stored are pinned; outside a
livingai run the capability does nothing. No network: scripted models."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from livingai import (
    CheckpointEngine,
    ConfigError,
    NodeType,
    ReplayDivergedError,
    Run,
    Runtime,
    SQLiteStore,
    current_step,
)
from livingai.adapters.pydantic_ai import LivingAIDurability
from tests.payments import POLICIES, answers_of, killed_once_charged, provider_counts
from tests.pydantic_ai.fakes import order_model, requests
from tests.services import child

SECONDS = 60.0


def _child(url: str, tmp: Path, hang: str) -> subprocess.Popen[str]:
    files = [str(tmp / "provider.db"), str(tmp / "model.log")]
    return child("tests.pydantic_ai.crash_child", url, *files, hang)


@pytest.mark.timeout(2 * SECONDS)
def test_runs_killed_between_two_parallel_tool_calls_resume_in_a_fresh_process(
    store_url: str, tmp_path: Path
) -> None:
    killed_once_charged(_child(store_url, tmp_path, "hang"), {f"b@{p}" for p in POLICIES})
    log = tmp_path / "model.log"
    assert requests(log) == 3  # one turn each, asking for both charges
    answers = answers_of(_child(store_url, tmp_path, "-"))
    seen = provider_counts(tmp_path)
    assert seen["charges"] == {f"{o}@{p}": 1 for o in "ab" for p in POLICIES}
    attempts = seen["attempts"]
    assert all(attempts[f"a@{p}"] == 1 for p in POLICIES)  # done before: served
    # b was in flight: run again under its key, looked up, or reported in doubt.
    assert [attempts[f"b@{p}"] for p in POLICIES] == [2, 1, 1]
    assert answers["default"]["in_doubt"].startswith("orders-default/pai:1:tool:1:call-b")
    for policy in ("retry_with_key", "reconcile"):
        receipts = [json.dumps({"receipt": seen["receipts"][f"{o}@{policy}"]}) for o in "ab"]
        assert answers[policy]["result"] == "done: " + "; ".join(receipts)
    # The recorded turn was served: only the two runs that went on asked again, once.
    assert requests(log) == 3 + 2
    again = answers_of(_child(store_url, tmp_path, "-"))
    assert again == answers  # finished (or still in doubt): from the log, nothing called
    assert requests(log) == 3 + 2
    assert provider_counts(tmp_path)["attempts"] == attempts


def _charging(charged: list[str]) -> Callable[[str, int], str]:
    """A charge tool that notes each order it charges in `charged`."""

    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        charged.append(order)
        return f"receipt {order}"

    return charge


def _durability(tmp_path: Path) -> LivingAIDurability:
    return LivingAIDurability(CheckpointEngine(SQLiteStore(tmp_path / "runs.db")))


async def test_the_operation_names_stored_are_pinned(tmp_path: Path) -> None:
    # Names are data: a resumed run finds its nodes by them. A rename in Pydantic AI's
    # namer would strand runs in flight, so this pins what a run stores.
    durability = _durability(tmp_path)
    booked: list[str] = []

    def book(flight: str) -> str:
        """Book a flight."""
        booked.append(flight)
        return f"booked {flight}"

    agent = Agent(
        TestModel(), name="travel", tools=[durability.tool(book)], capabilities=[durability]
    )
    try:
        await durability.run(agent, "book a flight", execution_id="names")
        nodes = [
            n
            for n in await durability.shell.engine.list_nodes("names")
            if n.type is not NodeType.MEMORY
        ]
        assert [(n.type, n.metadata["operation"]) for n in nodes] == [
            (NodeType.PROMPT, "travel__model.request"),
            (NodeType.TOOL, "travel__function_toolset__<agent>.call_tool:book"),
            (NodeType.PROMPT, "travel__model.request"),
        ]
        # what a person reads (livingai show, the web UI): the tool, the model, the agent
        assert [(n.metadata["step"], n.metadata["agent"]) for n in nodes] == [
            ("model test", "travel"),
            ("book", "travel"),
            ("model test", "travel"),
        ]
        first, second = nodes[0].input["request"], nodes[2].input["request"]
        assert first["parts"][0]["content"] == "book a flight"  # what the model was asked
        assert second["parts"][0]["part_kind"] == "tool-return"  # only what is new
        assert len(booked) == 1
    finally:
        await durability.shell.aclose()


async def test_model_requests_carry_tokens_and_a_finished_run_is_read_back(tmp_path: Path) -> None:
    durability = _durability(tmp_path)
    log = tmp_path / "model.log"
    charged: list[str] = []
    charge = _charging(charged)

    agent = Agent(
        order_model(["o1"], log),
        name="orders",
        tools=[durability.tool(charge, retry_with_key=True)],
        capabilities=[durability],
    )
    try:
        first = await durability.run(agent, "charge", execution_id="r1")
        assert first.output == "done: receipt o1"
        prompts = [
            n for n in await durability.shell.engine.list_nodes("r1") if n.type is NodeType.PROMPT
        ]
        assert len(prompts) == 2
        assert all(n.prompt_tokens and n.completion_tokens for n in prompts)
        assert {n.model for n in prompts} == {"scripted"}
        again = await durability.run(agent, "charge", execution_id="r1")
        assert again.output == first.output
        assert (requests(log), charged) == (2, ["o1"])  # every call served from the log
        recorded = await durability.shell.engine.list_executions()
        outside = await agent.run("charge")  # not in a livingai run: as without it
        assert outside.output == "done: receipt o1"
        assert (requests(log), charged) == (4, ["o1", "o1"])
        assert await durability.shell.engine.list_executions() == recorded  # nothing stored
    finally:
        await durability.shell.aclose()


def test_bad_input_is_refused(tmp_path: Path) -> None:
    durability = _durability(tmp_path)
    with pytest.raises(ConfigError, match="wraps a function"):
        durability.tool(42)  # type: ignore[arg-type]


async def test_agent_run_inside_any_agent_function_is_durable(tmp_path: Path) -> None:
    engine = CheckpointEngine(SQLiteStore(tmp_path / "runs.db"))
    runtime = Runtime(engine)
    durability = LivingAIDurability(runtime)
    log = tmp_path / "model.log"
    charged: list[str] = []
    cut = asyncio.Event()

    async def charge(order: str, amount: int) -> str:
        """Charge an order."""
        charged.append(current_step().idempotency_key)
        return f"receipt {order}"

    agent = Agent(
        order_model(["o1"], log),
        name="orders",
        tools=[durability.tool(charge, retry_with_key=True)],
        capabilities=[durability],
    )

    @runtime.agent
    async def trip(run: Run, prompt: str) -> str:
        first = await agent.run(prompt)
        if not cut.is_set():  # the process "dies" here, the agent run recorded
            cut.set()
            await asyncio.Event().wait()
        second = await agent.run(prompt)  # the function's second agent run: its own nodes
        return f"{first.output} | {second.output}"

    try:
        started = asyncio.create_task(runtime.run(trip, "charge", execution_id="t1"))
        await cut.wait()
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started
        assert (requests(log), len(charged)) == (2, 1)
        result = await runtime.run(trip, execution_id="t1")  # resumed: the first served
        assert result == "done: receipt o1 | done: receipt o1"
        assert (requests(log), len(charged)) == (4, 2)
        assert charged == ["t1/pai:1:tool:1:call-o1:1", "t1/pai:2:tool:1:call-o1:1"]
    finally:
        await runtime.close()


async def test_mock_tools_replay_serves_every_tool_and_names_the_drift(tmp_path: Path) -> None:
    durability = _durability(tmp_path)
    log = tmp_path / "model.log"
    charged: list[str] = []
    charge = _charging(charged)

    def agent_for(orders: list[str]) -> Agent[None, str]:
        return Agent(
            order_model(orders, log),
            name="orders",
            tools=[durability.tool(charge, retry_with_key=True)],
            capabilities=[durability],
        )

    try:
        await durability.run(agent_for(["o1"]), "charge", execution_id="c1")
        assert (requests(log), charged) == (2, ["o1"])
        recording = await durability.shell.engine.list_nodes("c1")
        replay = await durability.run(
            agent_for(["o1"]), "charge", execution_id="r1", replay_of="c1"
        )
        assert replay.output == "done: receipt o1"
        assert (requests(log), charged) == (4, ["o1"])  # the model live, the tool served
        [tool] = [
            n for n in await durability.shell.engine.list_nodes("r1") if n.type is NodeType.TOOL
        ]
        assert (tool.metadata["mocked"], tool.metadata["replay_of"]) == (True, "c1")
        with pytest.raises(ReplayDivergedError, match="closest recorded call"):
            await durability.run(agent_for(["o2"]), "charge", execution_id="r2", replay_of="c1")
        assert charged == ["o1"]  # the real tool was never called in its place
        assert await durability.shell.engine.list_nodes("c1") == recording  # never written to
    finally:
        await durability.shell.aclose()
