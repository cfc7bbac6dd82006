"""The OpenAI Agents SDK adapter runs the adapter scenario suite
(livingai.testing.adapters): the travel booking as an Agent whose model is the trip's
scripted model, given by the run config's provider, run by OpenAIAgentsAdapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Model, ModelProvider, ModelResponse, RunConfig, Usage, function_tool
from agents.testing import assistant_message, function_call

from livingai import Runtime
from livingai.adapters.openai_agents import OpenAIAgentsAdapter
from livingai.testing.adapters import (
    COMPLETION_TOKENS,
    MODEL,
    PROMPT_TOKENS,
    REQUEST,
    SCENARIO_TESTS,
    ScenarioCheck,
    ToolCall,
    Trip,
)
from tests.store_urls import fresh_store_url


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


class ScriptedModel(Model, ModelProvider):
    """The trip's scripted model as an SDK Model, and the provider that gives it for
    every name: it answers `trip.turn` of the tool outputs in its input."""

    def __init__(self, trip: Trip) -> None:
        self.trip = trip

    def get_model(self, model_name: str | None) -> Model:
        return self

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        items = kwargs["input"] if "input" in kwargs else args[1]
        outputs = {
            str(_field(item, "call_id")): str(_field(item, "output"))
            for item in (items if isinstance(items, list) else [])
            if _field(item, "type") == "function_call_output"
        }
        turn = self.trip.turn(outputs)
        if isinstance(turn, ToolCall):
            output = [function_call(turn.name, turn.arguments, call_id=turn.call_id)]
        else:
            output = [assistant_message(turn.text)]
        usage = Usage(
            requests=1,
            input_tokens=PROMPT_TOKENS,
            output_tokens=COMPLETION_TOKENS,
            total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
        )
        return ModelResponse(output, usage, None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the scripted model does not stream")


class OpenAIAgentsTrip:
    """The trip through the OpenAI Agents SDK: one agent, its three tools wrapped."""

    async def run(
        self, runtime: Runtime, trip: Trip, execution_id: str, *, replay_of: str | None = None
    ) -> str:
        adapter = OpenAIAgentsAdapter(runtime)
        search, book, charge = (function_tool(fn) for fn in trip.tools())
        agent = Agent(
            name="travel",
            instructions="You book flights.",
            model=MODEL,
            tools=[
                adapter.tool(search),
                adapter.tool(book, retry_with_key=True),
                adapter.tool(charge, retry_with_key=True),
            ],
        )
        config = RunConfig(model_provider=ScriptedModel(trip), tracing_disabled=True)
        result = await adapter.run(
            agent, REQUEST, execution_id=execution_id, replay_of=replay_of, run_config=config
        )
        return str(result.final_output)


# Not tiered: a killed process's records not yet copied to the cold store are left out
# of usage() until TieredStore.resync() queues them again (see its docstring).
@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
@pytest.mark.parametrize("check", SCENARIO_TESTS, ids=lambda check: check.__name__)
async def test_openai_agents_runs_the_scenario(
    check: ScenarioCheck, kind: str, tmp_path: Path
) -> None:
    """On every store (this venv's tests run beside the main suite's: the time is free)."""
    with fresh_store_url(kind, tmp_path, "livingai_oai_scenario") as url:
        await check(OpenAIAgentsTrip(), tmp_path, url=url)
