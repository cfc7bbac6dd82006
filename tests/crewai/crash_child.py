"""A process kicking off CrewAI order crews through the adapter, one per in-doubt policy at
once, for the crash tests (tests/crewai/test_adapter.py).

    python -m tests.crewai.crash_child STORE_URL PROVIDER_DB LLM_LOG ORDERS HANG

Execution `orders-<policy>` for each of POLICIES is a two-task sequential crew: "look up"
calls the read-only `lookup` once, then answers; "charge" asks for `charge` once per order
of ORDERS (comma-separated) in one LLM turn, so CrewAI runs them in parallel threads, then
answers with their receipts. `charge` records the charge at a fake payment provider
(tests/crash_runs_child.py's SQLite file, deduplicating on the idempotency key), under
order `<order>@<policy>`; for an order in HANG it prints `charged <order>@<policy>` once
the crew's other charges are recorded, then waits, to be killed there. It prints one JSON
line per crew: its final output, or the key of the tool in doubt.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from crewai import Agent, Crew, Task
from crewai.tools import tool

from livingai import (
    CheckpointEngine,
    InDoubtError,
    NodeType,
    Runtime,
    Status,
    open_store,
)
from livingai.adapters.crewai import CrewAIAdapter
from tests.crash_runs_child import set_up_provider
from tests.crewai.fakes import ScriptedLLM, tool_call, tool_outputs
from tests.payments import POLICIES, charge_at, policy_options

LOOKED_UP = "orders looked up"


def respond(orders: list[str]) -> Any:
    """The crew's scripted LLM, from the conversation alone (as a real one asked the same
    again would answer)."""

    def answer(messages: list[dict[str, Any]], task: Any) -> Any:
        outputs = tool_outputs(messages)
        if task.name == "look up":
            if not outputs:
                return [tool_call("lookup", {"orders": ",".join(orders)}, "call-lookup")]
            return LOOKED_UP
        if not outputs:
            return [tool_call("charge", {"order": o, "amount": 10}, f"call-{o}") for o in orders]
        return "done: " + "; ".join(outputs[f"call-{o}"] for o in orders)

    return answer


async def others_recorded(
    engine: CheckpointEngine, execution: str, orders: list[str], loop: asyncio.AbstractEventLoop
) -> None:
    """Until these orders' charges are recorded as done (polled, with a deadline)."""
    deadline = time.monotonic() + 30
    while True:
        done = {
            node.input["kwargs"]["order"]
            # From the store, not the engine: its cache shows a save before it commits.
            for node in [record.to_node() for record in await engine.store.list_nodes(execution)]
            if node.type is NodeType.TOOL
            and node.metadata.get("step") == "charge"
            and node.status is Status.SUCCESS
        }
        if done >= set(orders):
            return
        assert time.monotonic() < deadline, f"{orders} were never recorded"
        await asyncio.sleep(0.01)


def order_crew(
    adapter: CrewAIAdapter,
    path: str,
    log: str,
    policy: str,
    orders: list[str],
    hang: set[str],
    loop: asyncio.AbstractEventLoop,
) -> Crew:
    execution = f"orders-{policy}"

    @tool("lookup")
    def lookup(orders: str) -> str:
        """Look orders up."""
        return json.dumps(orders.split(","))

    @tool("charge")
    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        receipt = charge_at(path, order, amount)
        if order in hang:  # the others done, this one charged and not answered:
            others = [o for o in orders if o not in hang]
            waiting = others_recorded(adapter.engine, execution, others, loop)
            asyncio.run_coroutine_threadsafe(waiting, loop).result()
            sys.stdout.write(f"charged {order}\n")  # one write; the test kills it here
            sys.stdout.flush()
            time.sleep(120)
        return receipt

    options = policy_options(policy, path)
    agent = Agent(
        role="cashier",
        goal="Charge every order once",
        backstory="You take payments.",
        llm=ScriptedLLM(respond(orders), Path(log)),
        tools=[lookup, adapter.tool(charge, **options)],
    )
    tasks = [
        Task(name="look up", description="Look the orders up", expected_output="the orders"),
        Task(name="charge", description="Charge the orders", expected_output="receipts"),
    ]
    for task in tasks:
        task.agent = agent
    return Crew(agents=[agent], tasks=tasks)


async def order_run(adapter: CrewAIAdapter, crew: Crew, policy: str) -> dict[str, Any]:
    try:
        output = await adapter.kickoff_async(crew, execution_id=f"orders-{policy}")
    except InDoubtError as exc:
        return {"policy": policy, "in_doubt": exc.idempotency_key}
    return {"policy": policy, "result": output.raw, "tasks": [t.raw for t in output.tasks_output]}


async def main(url: str, path: str, log: str, orders: str, hang: str) -> None:
    set_up_provider(path)
    loop = asyncio.get_running_loop()
    async with Runtime(CheckpointEngine(open_store(url))) as runtime:
        adapter = CrewAIAdapter(runtime)
        runs = []
        for policy in POLICIES:
            mine = [f"{order}@{policy}" for order in orders.split(",")]
            hanging = {f"{order}@{policy}" for order in hang.split(",") if order != "-"}
            crew = order_crew(adapter, path, log, policy, mine, hanging, loop)
            runs.append(order_run(adapter, crew, policy))
        for line in await asyncio.gather(*runs):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
