"""The agent `livingai recover --agent tests.pydantic_ai.cli_agent:durable` runs in
test_views: registered with a LivingAIDurability over a runtime of its own, which the
command's runtime stands in for. Run as a script (`python -m tests.pydantic_ai.cli_agent
URL LOG`), it runs the agent as execution `p1` with a charge that prints `charging` and
waits to be killed. LIVINGAI_TEST_MODEL_LOG names the scripted model's request log."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from pydantic_ai import Agent

from livingai import CheckpointEngine, MemoryStore, Price, PriceTable, Runtime, open_store
from livingai.adapters.pydantic_ai import LivingAIDurability
from tests.pydantic_ai.fakes import order_model

LOG = Path(os.environ.get("LIVINGAI_TEST_MODEL_LOG", os.devnull))
HANG = "--hang" in sys.argv
PRICES = PriceTable({"scripted": Price(prompt=2.0, completion=8.0)})


def charge(order: str, amount: int) -> str:
    """Charge an order."""
    if HANG:
        print("charging", flush=True)
        time.sleep(120)  # killed here
    return f"charged {order}"


def agent(durability: LivingAIDurability) -> Agent[None, str]:
    return Agent(
        order_model(["a"], LOG),
        name="shop",
        tools=[durability.tool(charge, retry_with_key=True)],
        capabilities=[durability],
    )


durability = LivingAIDurability(Runtime(CheckpointEngine(MemoryStore())), prices=PRICES)
durable = durability.register(agent(durability))


async def main(url: str) -> None:
    # The default worker id: once the process is gone, its lease is taken over at once.
    async with Runtime(CheckpointEngine(open_store(url))) as runtime:
        mine = LivingAIDurability(runtime, prices=PRICES)
        await mine.run(agent(mine), "charge order a", execution_id="p1")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
