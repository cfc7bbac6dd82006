"""A process running Pydantic AI order runs through LivingAIDurability, one per in-doubt
policy at once, for tests/pydantic_ai/test_durability.py:

    python -m tests.pydantic_ai.crash_child STORE_URL PROVIDER_DB MODEL_LOG HANG

Execution `orders-<policy>` for each of POLICIES: the scripted model asks for `charge`
for orders a and b in one turn (parallel calls), then answers with the receipts. With
HANG ("hang"), the charge of b writes `charged b@<policy>` once a's is recorded, then
waits, to be killed there. It prints one JSON line per run: its output, or the key of
the tool in doubt.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic_ai import Agent

from livingai import CheckpointEngine, InDoubtError, NodeType, Runtime, Status, open_store
from livingai.adapters.pydantic_ai import LivingAIDurability
from tests.crash_runs_child import set_up_provider
from tests.payments import POLICIES, charge_at, policy_options
from tests.pydantic_ai.fakes import order_model


async def a_recorded(engine: CheckpointEngine, execution: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        done = [
            node
            # From the store, not the engine: its cache shows a save before it commits.
            for node in [record.to_node() for record in await engine.store.list_nodes(execution)]
            if node.type is NodeType.TOOL
            and node.status is Status.SUCCESS
            and node.input["kwargs"]["arguments"]["order"].startswith("a@")
        ]
        if done:
            return
        assert time.monotonic() < deadline, "a was never recorded"
        await asyncio.sleep(0.01)


async def order_run(
    runtime: Runtime, path: str, log: str, policy: str, hang: bool
) -> dict[str, Any]:
    durability = LivingAIDurability(runtime)
    execution = f"orders-{policy}"
    loop = asyncio.get_running_loop()

    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        receipt = charge_at(path, order, amount)
        if hang and order.startswith("b@"):
            asyncio.run_coroutine_threadsafe(a_recorded(runtime.engine, execution), loop).result()
            sys.stdout.write(f"charged {order}\n")  # one write; the test kills it here
            sys.stdout.flush()
            time.sleep(120)
        return receipt

    orders = [f"a@{policy}", f"b@{policy}"]
    agent = Agent(
        order_model(orders, Path(log)),
        name="orders",
        tools=[durability.tool(charge, **policy_options(policy, path))],
        capabilities=[durability],
    )
    try:
        result = await durability.run(agent, "charge the orders", execution_id=execution)
    except InDoubtError as exc:
        return {"policy": policy, "in_doubt": exc.idempotency_key}
    return {"policy": policy, "result": result.output}


async def main(url: str, path: str, log: str, hang: str) -> None:
    set_up_provider(path)
    async with Runtime(CheckpointEngine(open_store(url))) as runtime:
        runs = [order_run(runtime, path, log, policy, hang == "hang") for policy in POLICIES]
        for line in await asyncio.gather(*runs):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
