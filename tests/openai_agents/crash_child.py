"""A process running OpenAI Agents SDK order runs through the adapter, one per in-doubt
policy at once, for the crash tests (tests/openai_agents/test_adapter.py).

    python -m tests.openai_agents.crash_child STORE_URL PROVIDER_DB MODEL_LOG ORDERS HANG

Execution `trip-<policy>` for each of POLICIES: the fake model (fakes.py) asks for
`charge` once per order of ORDERS (comma-separated: parallel calls in one turn), then
answers. `charge` records the charge at a fake payment provider (tests/crash_runs_child.py's
SQLite file, deduplicating on the idempotency key), under order `<order>@<policy>`; for an
order in HANG it prints `charged <order>@<policy>` once the run's other charges are
recorded, then waits, to be killed there. It prints one JSON line per run: its final
output, or the key of the tool in doubt.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from agents import Agent, RunConfig, function_tool

from livingai import (
    CheckpointEngine,
    InDoubtError,
    Runtime,
    Status,
    open_store,
)
from livingai.adapters.openai_agents import OpenAIAgentsAdapter
from tests.crash_runs_child import set_up_provider
from tests.openai_agents.fakes import OrderModel, Provider
from tests.payments import POLICIES, charge_at, policy_options


async def others_recorded(engine: CheckpointEngine, execution: str, orders: list[str]) -> None:
    """Until these orders' charges are stored as done (polled, with a deadline)."""
    deadline = time.monotonic() + 30
    for order in orders:
        while True:
            # From the store, not the engine: its cache shows a save before it commits.
            stored = await engine.store.read(f"{execution}/oai:tool:call-{order}")
            if stored is not None and stored.to_node().status is Status.SUCCESS:
                break
            assert time.monotonic() < deadline, f"{order} was never recorded"
            await asyncio.sleep(0.01)


async def order_run(
    adapter: OpenAIAgentsAdapter,
    path: str,
    log: str,
    policy: str,
    orders: list[str],
    hang: set[str],
) -> dict[str, Any]:
    execution = f"trip-{policy}"

    @function_tool
    async def charge(order: str, amount: int) -> str:
        """Charge an order."""
        receipt = charge_at(path, order, amount)
        if order in hang:  # the others done, this one charged and not answered:
            await others_recorded(adapter.engine, execution, [o for o in orders if o not in hang])
            print(f"charged {order}", flush=True)  # the test kills the process here
            await asyncio.sleep(120)
        return receipt

    options = policy_options(policy, path)
    agent = Agent(name="orders", model="fake-model", tools=[adapter.tool(charge, **options)])
    config = RunConfig(model_provider=Provider(OrderModel(Path(log), orders)))
    try:
        result = await adapter.run(
            agent, "charge my orders", execution_id=execution, run_config=config
        )
    except InDoubtError as exc:
        return {"policy": policy, "in_doubt": exc.idempotency_key}
    return {"policy": policy, "result": result.final_output}


async def main(url: str, path: str, log: str, orders: str, hang: str) -> None:
    set_up_provider(path)
    async with Runtime(CheckpointEngine(open_store(url))) as runtime:
        adapter = OpenAIAgentsAdapter(runtime)
        runs = []
        for policy in POLICIES:
            mine = [f"{order}@{policy}" for order in orders.split(",")]
            hanging = {f"{order}@{policy}" for order in hang.split(",") if order != "-"}
            runs.append(order_run(adapter, path, log, policy, mine, hanging))
        for line in await asyncio.gather(*runs):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
