"""What the agents cost: tokens recorded on each model step, priced, added up by the store.

    python examples/04_cost_tracking.py

A support agent answers tickets: a small model sorts each ticket, and the hard ones go
to a large model. Each model step returns its usage the way model clients do (a `usage`
object next to the `model` name); the runtime records it on the step's node and prices
it with a price table (our own prices here, added to the built-in list). The store adds
the costs up (in SQL here) by model, by execution and by day. No API key, no network.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from livingai import CheckpointEngine, Price, PriceTable, Run, Runtime, SQLiteStore

TICKETS = [
    "I was charged twice for my order",
    "How do I reset my password?",
    "Your API returns 500 on every call since this morning, our production is down",
    "Where is my invoice?",
    "The export corrupts every file over 2 GB and we lose data",
]


def model(name: str, prompt: str, answer: str) -> dict[str, Any]:
    """A stand-in for a model call: its answer and usage, as an OpenAI-style response."""
    return {
        "model": name,
        "choices": [{"message": {"content": answer}}],
        "usage": {"prompt_tokens": 40 + len(prompt) // 4, "completion_tokens": len(answer)},
    }


async def support_agent(run: Run, ticket: str) -> str:
    sorted_ = await run.step(
        "triage", model, "acme-small", ticket, "hard" if len(ticket) > 40 else "easy"
    )
    hard = sorted_["choices"][0]["message"]["content"] == "hard"
    name = "acme-large" if hard else "acme-small"
    reply = await run.step("answer", model, name, ticket, "A careful answer. " * (8 if hard else 2))
    return str(reply["choices"][0]["message"]["content"])


async def main() -> None:
    prices = PriceTable({"acme-small": Price(0.50, 1.50), "acme-large": Price(5.00, 15.00)})
    with tempfile.TemporaryDirectory() as directory:
        engine = CheckpointEngine(SQLiteStore(Path(directory) / "livingai.db"))
        async with Runtime(engine, prices=prices) as runtime:
            for number, ticket in enumerate(TICKETS):
                await runtime.run(support_agent, ticket, execution_id=f"ticket-{number}")

            print("by model:")
            for row in await engine.usage("model"):
                print(
                    f"  {row.key:<11} {row.calls} calls  {row.prompt_tokens:>5} in  "
                    f"{row.completion_tokens:>5} out  ${row.cost:.6f}"
                )
            print("by execution:")
            for row in await engine.usage("execution"):
                print(f"  {row.key:<9} ${row.cost:.6f}")
            [today] = await engine.usage("day")
            print(f"by day: {today.key}: {today.calls} model calls, ${today.cost:.6f}")
            [total] = await engine.usage("total")
            print(f"total: ${total.cost:.6f}")
            costly = await runtime.executions(min_cost=0.001)
            print("tickets over $0.001:", ", ".join(s.execution_id for s in costly))


if __name__ == "__main__":
    asyncio.run(main())
