"""The crew `livingai recover --agent tests.crewai.cli_agent:durable` runs in test_adapter:
registered with an adapter over a runtime of its own, which the command's runtime stands in
for. Run as a script (`python -m tests.crewai.cli_agent URL`), it kicks the crew off as
execution `c1` with a charge that prints `charging` and waits to be killed.
LIVINGAI_TEST_LLM_LOG names the scripted LLM's call log."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from crewai import Agent, Crew, Task
from crewai.tools import tool

from livingai import CheckpointEngine, MemoryStore, Runtime, open_store
from livingai.adapters.crewai import CrewAIAdapter
from tests.crewai.fakes import ScriptedLLM, tool_call, tool_outputs

LOG = Path(os.environ.get("LIVINGAI_TEST_LLM_LOG", os.devnull))
HANG = "--hang" in sys.argv


@tool("charge")
def charge(order: str) -> str:
    """Charge an order."""
    if HANG:
        print("charging", flush=True)
        time.sleep(120)  # killed here
    return f"charged {order}"


def respond(messages: list[dict[str, Any]], task: Any) -> Any:
    outputs = tool_outputs(messages)
    return (
        f"done: {outputs['call-1']}" if outputs else [tool_call("charge", {"order": "a"}, "call-1")]
    )


def crew() -> Crew:
    agent = Agent(
        role="cashier", goal="g", backstory="b", llm=ScriptedLLM(respond, LOG), tools=[charge]
    )
    task = Task(name="pay", description="Charge order a", expected_output="a receipt")
    task.agent = agent
    return Crew(name="shop", agents=[agent], tasks=[task])


adapter = CrewAIAdapter(Runtime(CheckpointEngine(MemoryStore())))
durable = adapter.register(crew())


async def main(url: str) -> None:
    # The default worker id: once the process is gone, its lease is taken over at once.
    async with Runtime(CheckpointEngine(open_store(url))) as runtime:
        await CrewAIAdapter(runtime).kickoff_async(crew(), execution_id="c1")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
