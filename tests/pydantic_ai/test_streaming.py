"""Streaming and structured output in durable runs: `run_stream` inside an agent function
and an `event_stream_handler` work in a run cut between two model requests and resumed
(the recorded request is not made again); a structured output comes back as its class,
from a finished run too. SQLite in tmp_path, scripted streaming models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import AgentStreamEvent, ModelMessage
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from livingai import CheckpointEngine, Run, Runtime, SQLiteStore
from livingai.adapters.pydantic_ai import LivingAIDurability
from tests.pydantic_ai.fakes import lines, returns


class Trip(BaseModel):
    flight: str
    price: int


def streaming_model(log: Path, hold: asyncio.Event | None = None) -> FunctionModel:
    """Streams a call of `book`, then (held on `hold` when given: the cut) the answer in
    three chunks. Each request noted in `log`."""

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        with log.open("a") as out:
            out.write("request\n")
        done = returns(messages)
        if not done:
            call = DeltaToolCall(name="book", json_args='{"flight": "LH1"}', tool_call_id="c1")
            calls: DeltaToolCalls = {0: call}
            yield calls
            return
        if hold is not None:
            hold.set()
            await asyncio.Event().wait()  # the process "dies" here
        for chunk in ("done: ", "booked ", done["c1"]):
            yield chunk

    return FunctionModel(stream_function=stream, model_name="scripted")


def _agent(
    durability: LivingAIDurability, log: Path, hold: asyncio.Event | None
) -> Agent[None, str]:
    agent = Agent(streaming_model(log, hold), name="travel", capabilities=[durability])

    @agent.tool_plain
    def book(flight: str) -> str:
        """Book a flight."""
        with (log.parent / "tool.log").open("a") as out:
            out.write(f"{flight}\n")
        return f"{flight} ok"

    return agent


async def _cut(running: asyncio.Task[Any], hold: asyncio.Event) -> None:
    await hold.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_run_stream_in_an_agent_function_resumes_without_asking_again(
    tmp_path: Path,
) -> None:
    log, hold = tmp_path / "model.log", asyncio.Event()
    async with Runtime(CheckpointEngine(SQLiteStore(tmp_path / "runs.db"))) as runtime:
        durability = LivingAIDurability(runtime)
        agents = {"cut": _agent(durability, log, hold), "after": _agent(durability, log, None)}
        chunks: list[str] = []

        @runtime.agent
        async def trip(run: Run, prompt: str, which: str) -> str:
            async with agents[which].run_stream(prompt) as streamed:
                chunks.extend([text async for text in streamed.stream_text(delta=True)])
                return await streamed.get_output()

        await _cut(asyncio.create_task(runtime.run(trip, "book", "cut", execution_id="s1")), hold)
        assert (len(lines(log)), lines(tmp_path / "tool.log")) == (2, ["LH1"])
        # Resumed (the arguments it was started with; a fresh agent whose model answers)
        agents["cut"] = agents["after"]
        output = await runtime.run(trip, execution_id="s1")
        assert output == "done: booked LH1 ok"
        assert "".join(chunks) == output  # streamed to the caller
        # The first request was served, the tool not run again; the cut one asked again.
        assert (len(lines(log)), lines(tmp_path / "tool.log")) == (3, ["LH1"])


async def test_an_event_stream_handler_sees_the_run_and_its_resume(tmp_path: Path) -> None:
    log, hold = tmp_path / "model.log", asyncio.Event()
    seen: list[list[str]] = []

    async def handler(ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        seen[-1].extend([type(event).__name__ async for event in events])

    async with Runtime(CheckpointEngine(SQLiteStore(tmp_path / "runs.db"))) as runtime:
        durability = LivingAIDurability(runtime, event_stream_handler=handler)
        seen.append([])
        running = durability.run(_agent(durability, log, hold), "book", execution_id="e1")
        await _cut(asyncio.create_task(running), hold)
        assert "FunctionToolResultEvent" in seen[0]
        seen.append([])
        result = await durability.run(_agent(durability, log, None), "book", execution_id="e1")
        assert result.output == "done: booked LH1 ok"
        assert len(lines(log)) == 3  # the first request served from the log
        resumed = seen[1]
        # The tool's events again (served from the log), then the live request's stream.
        assert resumed.index("FunctionToolCallEvent") < resumed.index("FunctionToolResultEvent")
        assert resumed.index("FunctionToolResultEvent") < resumed.index("FinalResultEvent")
        assert resumed.count("PartStartEvent") == 1  # the served request streams nothing
        assert lines(tmp_path / "tool.log") == ["LH1"]


async def test_a_structured_output_comes_back_as_its_class(tmp_path: Path) -> None:
    async with Runtime(CheckpointEngine(SQLiteStore(tmp_path / "runs.db"))) as runtime:
        durability = LivingAIDurability(runtime)
        agent = Agent("test", name="planner", output_type=Trip, capabilities=[durability])
        first = await durability.run(agent, "plan", execution_id="o1")
        assert isinstance(first.output, Trip)
        header = await runtime.engine.load("o1/run")
        assert header is not None
        assert header.node.output == first.output.model_dump()  # stored as JSON
        again = await durability.run(agent, "plan", execution_id="o1")  # from the log
        assert again.output == first.output
        assert isinstance(again.output, Trip)
