"""The CrewAI adapter runs the adapter scenario suite (livingai.testing.adapters): the
travel booking as a one-task crew whose agent's LLM is the trip's scripted model, kicked
off by CrewAIAdapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from crewai import Agent, Crew, Task
from crewai.tools import tool

from livingai import Runtime
from livingai.adapters.crewai import CrewAIAdapter
from livingai.testing.adapters import (
    MODEL,
    REQUEST,
    SCENARIO_TESTS,
    ScenarioCheck,
    ToolCall,
    Trip,
)
from tests.crewai.fakes import ScriptedLLM, tool_call, tool_outputs
from tests.store_urls import fresh_store_url


def trip_llm(trip: Trip) -> ScriptedLLM:
    """The trip's scripted model: `trip.turn` of the tool outputs in the conversation."""

    def respond(messages: list[dict[str, Any]], task: Any) -> Any:
        turn = trip.turn(tool_outputs(messages))
        if isinstance(turn, ToolCall):
            return [tool_call(turn.name, turn.arguments, turn.call_id)]
        return turn.text

    return ScriptedLLM(respond, model=MODEL)


class CrewAITrip:
    """The trip through CrewAI: one agent, one task, its three tools wrapped."""

    async def run(
        self, runtime: Runtime, trip: Trip, execution_id: str, *, replay_of: str | None = None
    ) -> str:
        adapter = CrewAIAdapter(runtime)
        search, book, charge = (tool(fn) for fn in trip.tools())
        agent = Agent(
            role="travel agent",
            goal="Book the flight the traveller asks for",
            backstory="You book flights.",
            llm=trip_llm(trip),
            tools=[
                adapter.tool(search),
                adapter.tool(book, retry_with_key=True),
                adapter.tool(charge, retry_with_key=True),
            ],
        )
        task = Task(
            name="book", description="{request}", expected_output="what was booked", agent=agent
        )
        crew = Crew(agents=[agent], tasks=[task])
        output = await adapter.kickoff_async(
            crew, {"request": REQUEST}, execution_id=execution_id, replay_of=replay_of
        )
        return output.raw


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
@pytest.mark.parametrize("check", SCENARIO_TESTS, ids=lambda check: check.__name__)
async def test_crewai_runs_the_scenario(check: ScenarioCheck, kind: str, tmp_path: Path) -> None:
    """On every store (this venv's tests run beside the main suite's)."""
    with fresh_store_url(kind, tmp_path, "livingai_crew_scenario") as url:
        await check(CrewAITrip(), tmp_path, url=url)
