"""The OpenAI Agents SDK agent `livingai recover --agent tests.openai_agents.cli_agent:durable`
runs in test_adapter: the adapter here is over a runtime of its own, which the command's
runtime stands in for. LIVINGAI_TEST_MODEL_LOG names the fake model's call log."""

from __future__ import annotations

import os
from pathlib import Path

from agents import Agent, RunConfig, function_tool

from livingai import CheckpointEngine, MemoryStore, Runtime
from livingai.adapters.openai_agents import OpenAIAgentsAdapter
from tests.openai_agents.fakes import MODEL, OrderModel, Provider

LOG = Path(os.environ.get("LIVINGAI_TEST_MODEL_LOG", os.devnull))


@function_tool
def charge(order: str, amount: int) -> str:
    """Charge an order."""
    return f"charged {order}"


adapter = OpenAIAgentsAdapter(Runtime(CheckpointEngine(MemoryStore())))
config = RunConfig(model_provider=Provider(OrderModel(LOG, ["a"])), tracing_disabled=True)
durable = adapter.register(Agent(name="shop", model=MODEL, tools=[charge]), run_config=config)
