"""A Pydantic AI travel agent, killed mid-booking and finished by a fresh process: the card
is charged once, and the model requests already paid for are not made again.

    python examples/09_pydantic_ai.py [--store URL]    # pip install "livingai[pydantic-ai]"

livingai is the agent's durable execution engine (`capabilities=[durability]`, no server).
The agent searches flights (a plain tool), then books the cheapest and charges the card
(a tool given to `durability.tool(..., retry_with_key=True)`; the card is a ledger file
keyed by the idempotency key, so a second charge would show as a second line). A child
process runs it and is killed with SIGKILL inside the charge. This process runs the same
execution again: the recorded model requests and the search come from livingai's log,
and the charge runs again with the same key. Then the run is replayed with a new prompt
(`replay_of=`): the model runs live, the tools answer from the recording, the card is not
touched. The model is a scripted `FunctionModel`: no API key, no network. The store is
SQLite in a temporary directory unless --store gives a URL (as the `livingai` command
takes it).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from livingai import (
    CheckpointEngine,
    NodeType,
    Price,
    PriceTable,
    Runtime,
    current_step,
    open_store,
)
from livingai.adapters.pydantic_ai import LivingAIDurability

FLIGHTS = [{"flight": "LX-318", "price": 420}, {"flight": "BA-731", "price": 180}]
PRICES = PriceTable({"travel-model": Price(0.50, 1.50)})  # dollars per million tokens
V1, V2 = "Fly me to Zurich.", "Fly me to Zurich, and tell me the price."


def travel_model(calls: Path) -> FunctionModel:
    """A scripted model: search, book the cheapest, answer. It decides from the
    conversation alone, as a real model asked the same again would, and counts its
    requests in a file, which the kill does not reset."""

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        with calls.open("a") as log:
            log.write("request\n")
        parts = [part for message in messages for part in message.parts]
        seen: dict[str, Any] = {
            p.tool_call_id: p.content for p in parts if isinstance(p, ToolReturnPart)
        }
        asked = " ".join(str(p.content) for p in parts if isinstance(p, UserPromptPart))
        reply: ModelResponsePart
        if "call-book" in seen:
            booked = seen["call-book"]
            price = f" for ${booked['price']}" if "price" in asked else ""
            reply = TextPart(f"Booked {booked['flight']}{price}: {booked['receipt']}")
        elif "call-search" in seen:
            cheapest = min(seen["call-search"], key=lambda f: f["price"])
            reply = ToolCallPart("book_flight", cheapest, tool_call_id="call-book")
        else:
            reply = ToolCallPart("search_flights", {"to": "Zurich"}, tool_call_id="call-search")
        usage = RequestUsage(input_tokens=120, output_tokens=30)
        return ModelResponse(parts=[reply], usage=usage)

    return FunctionModel(answer, model_name="travel-model")


def travel_agent(durability: LivingAIDurability, folder: Path) -> Agent[None, str]:
    """The agent. In the child process, the charge waits to be killed once it is made."""
    ledger, child = folder / "card.ledger", "--child" in sys.argv

    def search_flights(to: str) -> list[dict[str, Any]]:
        """Search flights to a city."""
        return FLIGHTS

    async def book_flight(flight: str, price: int) -> dict[str, Any]:
        """Book a flight and charge the card."""
        key = current_step().idempotency_key  # the card deduplicates on it, as Stripe does
        if key in ledger.read_text().split():
            print(f"   card: {key} was charged before: no new charge", flush=True)
        else:
            with ledger.open("a") as out:
                out.write(f"{key} ${price} {flight}\n")
            print(f"   card: charged ${price} for {flight} (key {key})", flush=True)
        if child:
            (folder / "charged").touch()  # the parent kills this process now
            await asyncio.sleep(60)
        return {"flight": flight, "price": price, "receipt": f"R-{flight}"}

    booking = durability.tool(book_flight, retry_with_key=True)  # in doubt: again, same key
    return Agent(
        travel_model(folder / "model.calls"),
        name="travel",
        tools=[search_flights, booking],
        capabilities=[durability],
    )


async def run_trip(url: str, folder: Path, execution: str, replay_of: str | None = None) -> None:
    """Run (or resume) `execution`; with `replay_of`, replay that one with the new prompt."""
    engine = CheckpointEngine(open_store(url))
    # One worker id in every process: the killed one's lease is taken back at once.
    async with Runtime(engine, worker_id="travel-worker") as runtime:
        durability = LivingAIDurability(runtime, prices=PRICES)
        agent = travel_agent(durability, folder)
        prompt = V1 if replay_of is None else V2
        result = await durability.run(agent, prompt, execution_id=execution, replay_of=replay_of)
        print(f"   agent: {result.output}")
        nodes = await engine.list_nodes(execution)
        for tool in [n for n in nodes if n.type is NodeType.TOOL and n.metadata.get("mocked")]:
            print(f"   {tool.metadata['tool']}: answered by {tool.metadata['replayed_from']}")
        requests = sum(node.type is NodeType.PROMPT for node in nodes)
        run = (await runtime.executions(ids=[execution]))[0]
        calls = len((folder / "model.calls").read_text().splitlines())
        charges = len((folder / "card.ledger").read_text().splitlines())
        print(f"   card charges: {charges}; model requests paid so far: {calls}")
        spent = f"{run.prompt_tokens} in + {run.completion_tokens} out tokens, ${run.cost:.6f}"
        print(f"   recorded by livingai: {requests} model requests, {spent}")


def main() -> int:
    parser = argparse.ArgumentParser(description="A Pydantic AI travel agent, killed and resumed.")
    parser.add_argument("--store", help="a store URL (default: SQLite in a temporary directory)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # FOLDER EXECUTION
    args = parser.parse_args()
    if args.child:
        asyncio.run(run_trip(args.store, Path(args.child[0]), args.child[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="livingai-example-") as tmp:
        folder = Path(tmp)
        (folder / "card.ledger").touch()
        url = args.store or f"sqlite:///{folder / 'livingai.db'}"
        trip = f"trip-{uuid.uuid4().hex[:6]}"  # a new execution, in a store that is kept too
        print(f"1. a worker runs {trip} and is killed (SIGKILL) while the card is charged:")
        with subprocess.Popen(
            [sys.executable, __file__, "--store", url, "--child", tmp, trip]
        ) as child:
            deadline = time.monotonic() + 30
            while not (folder / "charged").exists():
                if child.poll() is not None or time.monotonic() > deadline:
                    child.kill()
                    print("   the child never reached the charge")
                    return 1
                time.sleep(0.02)
            child.kill()
        calls = len((folder / "model.calls").read_text().splitlines())
        print(f"   kill -9 {child.pid}; model requests paid so far: {calls}")
        print(f"2. a fresh process resumes {trip}: the requests recorded are not made again")
        asyncio.run(run_trip(url, folder, trip))
        print(f"3. {trip} replayed with a new prompt: the model live, the tools mocked")
        asyncio.run(run_trip(url, folder, f"{trip}-v2", replay_of=trip))
        return 0


if __name__ == "__main__":
    sys.exit(main())
