"""A process that decides on a run stopped for approval and goes on with it: what a
restarted worker, or another machine, does. Also the fake travel agent the approval tests
run: a model that books each flight asked for (a `book` call that needs approval), then
says what the tool answered; the tool and the model append one line per real call to log
files, so a test counts them across processes. No network, no API key.

    python -m tests.openai_agents.approvals_child <db> <logs dir> <execution id> \
        approve|reject [message]

prints, as JSON, the decisions made, the run's final output and the calls still waiting.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agents import Agent, Model, ModelResponse, RunConfig, Usage, function_tool
from agents.testing import assistant_message, function_call
from openai.types.responses import Response, ResponseCompletedEvent, ResponseUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from livingai import CheckpointEngine, Runtime, SQLiteStore
from livingai.adapters.openai_agents import OpenAIAgentsAdapter

RUN = RunConfig(tracing_disabled=True)  # nothing leaves the process


class Crash(BaseException):
    """What a kill looks like from inside: no handler records an outcome."""


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


class TripModel(Model):
    """Asks for `book` once per flight (one turn, parallel calls, call id `c-<flight>`)
    while the conversation holds no tool output; then answers with the outputs it saw.
    `crash_once` kills the run at its first answer after a tool output."""

    model = "fake-trip-model"

    def __init__(self, logs: Path, flights: list[str], *, crash_once: bool = False) -> None:
        self.logs = logs
        self.flights = flights
        self.crash_once = crash_once

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        items = kwargs["input"] if "input" in kwargs else args[1]
        with (self.logs / "model.log").open("a") as out:
            out.write("call\n")
        outputs = [
            str(_field(item, "output"))
            for item in (items if isinstance(items, list) else [])
            if _field(item, "type") == "function_call_output"
        ]
        usage = Usage(requests=1, input_tokens=100, output_tokens=20, total_tokens=120)
        if not outputs:
            calls = [function_call("book", {"flight": f}, call_id=f"c-{f}") for f in self.flights]
            return ModelResponse(calls, usage, None)
        if self.crash_once:
            self.crash_once = False
            raise Crash("killed after the tool ran, before the model's answer was recorded")
        return ModelResponse([assistant_message("done: " + "; ".join(outputs))], usage, None)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """The same turn, streamed as the one event the runner needs."""
        made = await self.get_response(*args, **kwargs)
        used = ResponseUsage(
            input_tokens=made.usage.input_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
            output_tokens=made.usage.output_tokens,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
            total_tokens=made.usage.total_tokens,
        )
        response = Response(
            id="trip",
            created_at=0,
            model=self.model,
            object="response",
            output=made.output,
            parallel_tool_calls=True,
            tool_choice="auto",
            tools=[],
            status="completed",
            usage=used,
        )
        yield ResponseCompletedEvent(
            type="response.completed", sequence_number=0, response=response
        )


def travel_agent(
    adapter: OpenAIAgentsAdapter, logs: Path, flights: list[str], *, crash_once: bool = False
) -> Agent[Any]:
    """The agent: `book` needs approval, and has adapter.tool's policy (at most once)."""

    @function_tool(needs_approval=True)
    def book(flight: str) -> str:
        """Book a flight."""
        with (logs / "tool.log").open("a") as out:
            out.write(flight + "\n")
        return f"booked {flight}"

    model = TripModel(logs, flights, crash_once=crash_once)
    return Agent(name="travel", model=model, tools=[adapter.tool(book)])


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def main(db: Path, logs: Path, execution_id: str, decision: str, message: str | None) -> None:
    async with Runtime(CheckpointEngine(SQLiteStore(db))) as runtime:
        adapter = OpenAIAgentsAdapter(runtime)
        waiting = await adapter.pending_approvals(execution_id)
        if decision == "approve":
            decided = await adapter.approve(execution_id)
        else:
            decided = await adapter.reject(execution_id, message=message)
        agent = travel_agent(adapter, logs, [call.arguments["flight"] for call in waiting])
        result = await adapter.resume(execution_id, agent, run_config=RUN)
        print(
            json.dumps(
                {
                    "decided": [call.to_dict() for call in decided],
                    "final_output": result.final_output,
                    "interruptions": [item.call_id for item in result.interruptions],
                }
            )
        )


if __name__ == "__main__":
    db, logs, execution_id, decision, *rest = sys.argv[1:]
    asyncio.run(main(Path(db), Path(logs), execution_id, decision, rest[0] if rest else None))
