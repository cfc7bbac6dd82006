"""The travel agent of tests/pydantic_ai/test_deferred.py, whose `book` tool waits for a
person, and a process that decides on a stopped run and goes on with it:

    python -m tests.pydantic_ai.approvals_child DB LOGS EXECUTION HOW FLIGHTS DECISION [TEXT]

HOW is how `book` waits: "requires" (`requires_approval=True`), "raises" (a wrapped tool
raising ApprovalRequired until approved) or "external" (CallDeferred: its result comes
from elsewhere). DECISION is "approve", "reject" (TEXT: the message) or "answer" (TEXT:
the result). It prints one JSON line: the calls decided and the run's output.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic_ai import (
    Agent,
    ApprovalRequired,
    CallDeferred,
    DeferredToolRequests,
    RunContext,
    Tool,
)

from livingai import CheckpointEngine, Runtime, SQLiteStore, current_step
from livingai.adapters.pydantic_ai import LivingAIDurability
from tests.pydantic_ai.fakes import travel_model


def travel_agent(
    durability: LivingAIDurability, logs: Path, flights: list[str], how: str, deferrable: bool
) -> Agent[None, Any]:
    """`deferrable`: the agent's output type holds DeferredToolRequests."""

    def book(ctx: RunContext[None], flight: str) -> str:
        """Book a flight."""
        if how == "raises" and not ctx.tool_call_approved:
            raise ApprovalRequired()
        if how == "external":
            raise CallDeferred()
        with (logs / "tool.log").open("a") as out:
            out.write(f"{flight} {current_step().idempotency_key if how == 'raises' else ''}\n")
        return f"booked {flight}"

    tool = (
        durability.tool(book, retry_with_key=True)
        if how == "raises"
        else Tool(book, requires_approval=how == "requires")
    )
    output: Any = [str, DeferredToolRequests] if deferrable else str
    return Agent(
        travel_model(flights, logs / "model.log"),
        name="travel",
        tools=[tool],
        output_type=output,
        capabilities=[durability],
    )


async def main(
    db: str, logs: str, execution_id: str, how: str, flights: str, *decision: str
) -> None:
    async with Runtime(CheckpointEngine(SQLiteStore(db)), worker_id="deciding") as runtime:
        durability = LivingAIDurability(runtime)
        what, text = decision[0], (decision[1] if len(decision) > 1 else None)
        if what == "approve":
            decided = await durability.approve(execution_id)
        elif what == "reject":
            decided = await durability.reject(execution_id, message=text)
        else:
            (waiting,) = await durability.pending_approvals(execution_id)
            decided = await durability.answer(execution_id, waiting.call_id, text)
        agent = travel_agent(durability, Path(logs), flights.split(","), how, deferrable=True)
        result = await durability.resume(agent, execution_id)
        print(
            json.dumps(
                {"decided": [call.to_dict() for call in decided], "output": str(result.output)}
            )
        )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
