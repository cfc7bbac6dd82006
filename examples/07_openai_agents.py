"""An OpenAI Agents SDK travel agent, killed mid-charge and finished by a fresh process:
the card is charged once, and the model turns already paid for are not paid again.

    python examples/07_openai_agents.py [--store URL]    # pip install "livingai[openai-agents]"

The agent searches flights (a plain tool), then books the cheapest and charges the card
(a tool wrapped with `retry_with_key=True`; the card is a ledger file keyed by the
idempotency key, so a second charge would show as a second line). A child process runs
it and is killed with SIGKILL inside the charge. This process resumes the same execution:
the recorded model turns and the search come from livingai's log, and the charge runs
again with the same key. Then the run is replayed with new instructions (`replay_of=`):
the model runs live, the tools answer from the recording, the card is not touched. The
model is a scripted stand-in: no API key, no network. The store is SQLite in a temporary
directory unless --store gives a URL (as the `livingai` command takes it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agents import Agent, Model, ModelProvider, ModelResponse, RunConfig, Usage, function_tool
from agents.testing import assistant_message, function_call

from livingai import (
    CheckpointEngine,
    NodeType,
    Price,
    PriceTable,
    Runtime,
    current_step,
    open_store,
)
from livingai.adapters.openai_agents import OpenAIAgentsAdapter

FLIGHTS = [{"flight": "LX-318", "price": 420}, {"flight": "BA-731", "price": 180}]
PRICES = PriceTable({"travel-model": Price(0.50, 1.50)})  # dollars per million tokens
V1, V2 = "You book flights.", "You book flights. Say the price."


class TravelModel(Model, ModelProvider):
    """A scripted model, and the provider that gives it: search, book the cheapest,
    answer. It decides from the conversation alone, as a real model asked the same again
    would, and counts its calls in a file, which the kill does not reset."""

    def __init__(self, calls: Path) -> None:
        self.calls = calls

    def get_model(self, model_name: str | None) -> Model:
        return self

    async def get_response(self, system_instructions: Any, input: Any, *_: Any, **__: Any) -> Any:
        with self.calls.open("a") as log:
            log.write("call\n")
        seen = {i["call_id"]: i["output"] for i in input if i.get("type") == "function_call_output"}
        if "call-book" in seen:
            booked = json.loads(seen["call-book"])
            price = f" for ${booked['price']}" if "price" in system_instructions else ""
            output = [assistant_message(f"Booked {booked['flight']}{price}: {booked['receipt']}")]
        elif "call-search" in seen:
            cheapest = min(json.loads(seen["call-search"]), key=lambda f: f["price"])
            output = [function_call("book_flight", cheapest, call_id="call-book")]
        else:
            output = [function_call("search_flights", {"to": "Zurich"}, call_id="call-search")]
        usage = Usage(requests=1, input_tokens=120, output_tokens=30, total_tokens=150)
        return ModelResponse(output, usage, None)

    def stream_response(self, *_: Any, **__: Any) -> Any:
        raise NotImplementedError("this example does not stream")


def travel_agent(adapter: OpenAIAgentsAdapter, folder: Path, instructions: str) -> Agent[Any]:
    """The agent. In the child process, the charge waits to be killed once it is made."""
    ledger, child = folder / "card.ledger", "--child" in sys.argv

    @function_tool
    def search_flights(to: str) -> str:
        """Search flights to a city."""
        return json.dumps(FLIGHTS)

    @function_tool
    async def book_flight(flight: str, price: int) -> str:
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
        return json.dumps({"flight": flight, "price": price, "receipt": f"R-{flight}"})

    booking = adapter.tool(book_flight, retry_with_key=True)  # in doubt: again, same key
    return Agent(
        name="travel",
        instructions=instructions,
        model="travel-model",
        tools=[search_flights, booking],
    )


async def run_trip(url: str, folder: Path, execution: str, replay_of: str | None = None) -> None:
    """Run (or resume) `execution`; with `replay_of`, replay that one with agent v2."""
    config = RunConfig(model_provider=TravelModel(folder / "model.calls"), tracing_disabled=True)
    engine = CheckpointEngine(open_store(url))
    # One worker id in every process: the killed one's lease is taken back at once.
    async with Runtime(engine, worker_id="travel-worker", prices=PRICES) as runtime:
        adapter = OpenAIAgentsAdapter(runtime)
        agent = travel_agent(adapter, folder, V1 if replay_of is None else V2)
        result = await adapter.run(
            agent,
            "Fly me to Zurich",
            execution_id=execution,
            replay_of=replay_of,
            run_config=config,
        )
        print(f"   agent: {result.final_output}")
        nodes = await engine.list_nodes(execution)
        for tool in [n for n in nodes if n.type is NodeType.TOOL and n.metadata.get("mocked")]:
            print(f"   {tool.metadata['step']}: answered by {tool.metadata['replayed_from']}")
        turns = sum(node.type is NodeType.PROMPT for node in nodes)
        run = (await runtime.executions(ids=[execution]))[0]
        calls = len((folder / "model.calls").read_text().splitlines())
        charges = len((folder / "card.ledger").read_text().splitlines())
        print(f"   card charges: {charges}; model calls paid so far: {calls}")
        tokens = f"{run.prompt_tokens} in + {run.completion_tokens} out"
        print(f"   recorded by livingai: {turns} model turns, {tokens} tokens, ${run.cost:.6f}")


def main() -> int:
    parser = argparse.ArgumentParser(description="A travel agent, killed and resumed.")
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
        print(f"   kill -9 {child.pid}; model calls paid so far: {calls}")
        print(f"2. a fresh process resumes {trip}: the turns recorded are not asked again")
        asyncio.run(run_trip(url, folder, trip))
        print(f"3. {trip} replayed by agent v2 (new instructions): model live, tools mocked")
        asyncio.run(run_trip(url, folder, f"{trip}-v2", replay_of=trip))
        return 0


if __name__ == "__main__":
    sys.exit(main())
