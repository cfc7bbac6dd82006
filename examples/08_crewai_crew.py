"""A two-task CrewAI crew, killed mid-booking and finished by a fresh process: the card is
charged once, and the first task and the LLM calls already paid for are not run again.

    python examples/08_crewai_crew.py [--store URL]    # pip install "livingai[crewai]"

The crew's first task searches flights (a plain tool); its second books the cheapest and
charges the card (a tool wrapped with `retry_with_key=True`; the card is a ledger file
keyed by the idempotency key, so a second charge would show as a second line). A child
process kicks it off and is killed with SIGKILL inside the charge. This process kicks the
same execution off again: the first task's calls and the recorded LLM calls come from
livingai's log, and the charge runs again with the same key. Then the crew is replayed
with a new prompt (`replay_of=`): the LLM runs live, the tools answer from the recording,
the card is not touched. The LLM is a scripted stand-in: no API key, no network (CrewAI's
telemetry, tracing and version check are turned off below). The store is SQLite in a
temporary directory unless --store gives a URL (as the `livingai` command takes it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from livingai.testing.crewai_offline import crewai_offline

crewai_offline()  # a scripted LLM: no telemetry, traces or version check (before import)

from crewai import Agent, Crew, Task  # noqa: E402 - after the settings above
from crewai.llms.base_llm import BaseLLM  # noqa: E402
from crewai.tools import tool  # noqa: E402
from pydantic import PrivateAttr  # noqa: E402

from livingai import (  # noqa: E402
    CheckpointEngine,
    NodeType,
    Price,
    PriceTable,
    Runtime,
    current_step,
    open_store,
)
from livingai.adapters.crewai import CrewAIAdapter  # noqa: E402

FLIGHTS = [{"flight": "LX-318", "price": 420}, {"flight": "BA-731", "price": 180}]
PRICES = PriceTable({"travel-model": Price(0.50, 1.50)})  # dollars per million tokens


class TravelLLM(BaseLLM):
    """A scripted LLM: search, answer; book the cheapest, answer. It decides from the
    conversation alone, as a real model asked the same again would, and counts its calls
    in a file, which the kill does not reset."""

    _calls: Path = PrivateAttr()
    _say_price: bool = PrivateAttr()

    def __init__(self, calls: Path, say_price: bool) -> None:
        super().__init__(model="travel-model")
        self._calls, self._say_price = calls, say_price

    def supports_function_calling(self) -> bool:
        return True

    def get_context_window_size(self) -> int:
        return 128_000

    def get_input_tokens_count(self, messages: Any, *_: Any, **__: Any) -> int:
        return len(str(messages)) // 4

    def call(self, messages: Any, *_: Any, **kwargs: Any) -> Any:
        with self._calls.open("a") as log:
            log.write("call\n")
        self._track_token_usage_internal({"prompt_tokens": 120, "completion_tokens": 30})
        seen = {m["tool_call_id"]: m["content"] for m in messages if m.get("role") == "tool"}
        if kwargs["from_task"].name == "search":
            if "call-search" not in seen:
                return [_call("search_flights", {"to": "Zurich"}, "call-search")]
            return seen["call-search"]  # the flights, for the next task
        if "call-book" not in seen:
            text = " ".join(str(m.get("content")) for m in messages)  # the search's answer
            flights = json.JSONDecoder().raw_decode(text.split("FLIGHTS:", 1)[1])[0]
            return [_call("book_flight", min(flights, key=lambda f: f["price"]), "call-book")]
        booked = json.loads(seen["call-book"])
        price = f" for ${booked['price']}" if self._say_price else ""
        return f"Booked {booked['flight']}{price}: {booked['receipt']}"


def _call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


def travel_crew(adapter: CrewAIAdapter, folder: Path, say_price: bool) -> Crew:
    """The crew. In the child process, the charge waits to be killed once it is made."""
    ledger, child = folder / "card.ledger", "--child" in sys.argv

    @tool("search_flights")
    def search_flights(to: str) -> str:
        """Search flights to a city."""
        return "FLIGHTS:" + json.dumps(FLIGHTS)

    @tool("book_flight")
    def book_flight(flight: str, price: int) -> str:
        """Book a flight and charge the card."""
        key = current_step().idempotency_key  # the card deduplicates on it, as Stripe does
        if key in ledger.read_text().split():
            print(f"   card: {key} was charged before: no new charge", flush=True)
        else:
            with ledger.open("a") as out:
                out.write(f"{key} ${price} {flight}\n")
            print(f"   card: charged ${price} for {flight}", flush=True)
        if child:
            (folder / "charged").touch()  # the parent kills this process now
            time.sleep(60)
        return json.dumps({"flight": flight, "price": price, "receipt": f"R-{flight}"})

    llm = TravelLLM(folder / "llm.calls", say_price)
    booking = adapter.tool(book_flight, retry_with_key=True)  # in doubt: again, same key
    agent = Agent(
        role="travel agent",
        goal="Book the cheapest flight",
        backstory="You book flights.",
        llm=llm,
        tools=[search_flights, booking],
    )
    search = Task(name="search", description="Find flights to {city}", expected_output="flights")
    book = Task(name="book", description="Book the cheapest", expected_output="a receipt")
    for task in (search, book):
        task.agent = agent
    return Crew(agents=[agent], tasks=[search, book])


def kick_off(url: str, folder: Path, execution: str, replay_of: str | None = None) -> None:
    """Kick `execution` off (or resume it); with `replay_of`, replay that one, v2."""
    # One worker id in every process: the killed one's lease is taken back at once.
    runtime = Runtime(CheckpointEngine(open_store(url)), worker_id="travel-worker", prices=PRICES)
    adapter = CrewAIAdapter(runtime)
    crew = travel_crew(adapter, folder, say_price=replay_of is not None)
    output = adapter.kickoff(crew, {"city": "Zurich"}, execution_id=execution, replay_of=replay_of)
    print(f"   crew: {output.raw}")
    adapter.close()
    show(url, folder, execution)


def show(url: str, folder: Path, execution: str) -> None:
    """What the log holds for `execution`, and what was paid for."""
    import asyncio

    async def read() -> None:
        async with Runtime(CheckpointEngine(open_store(url))) as runtime:
            nodes = await runtime.engine.list_nodes(execution)
            for node in nodes:
                if node.type is NodeType.TOOL and node.metadata.get("mocked"):
                    print(f"   {node.metadata['step']}: answered by the recording")
            calls = sum(node.type is NodeType.PROMPT for node in nodes)
            run = (await runtime.executions(ids=[execution]))[0]
            tokens = f"{run.prompt_tokens} in + {run.completion_tokens} out"
            print(f"   recorded by livingai: {calls} LLM calls, {tokens} tokens, ${run.cost:.6f}")

    asyncio.run(read())
    paid = len((folder / "llm.calls").read_text().splitlines())
    charges = len((folder / "card.ledger").read_text().splitlines())
    print(f"   card charges: {charges}; LLM calls paid so far: {paid}")


def main() -> int:
    parser = argparse.ArgumentParser(description="A CrewAI crew, killed and resumed.")
    parser.add_argument("--store", help="a store URL (default: SQLite in a temporary directory)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # FOLDER EXECUTION
    args = parser.parse_args()
    if args.child:
        kick_off(args.store, Path(args.child[0]), args.child[1])
        return 0
    with tempfile.TemporaryDirectory(prefix="livingai-example-") as tmp:
        folder = Path(tmp)
        (folder / "card.ledger").touch()
        url = args.store or f"sqlite:///{folder / 'livingai.db'}"
        trip = f"crew-{uuid.uuid4().hex[:6]}"  # a new execution, in a store that is kept too
        print(f"1. a worker kicks {trip} off and is killed (SIGKILL) while the card is charged:")
        with subprocess.Popen(
            [sys.executable, __file__, "--store", url, "--child", tmp, trip]
        ) as child:
            deadline = time.monotonic() + 60
            while not (folder / "charged").exists():
                if child.poll() is not None or time.monotonic() > deadline:
                    child.kill()
                    print("   the child never reached the charge")
                    return 1
                time.sleep(0.02)
            child.kill()
        paid = len((folder / "llm.calls").read_text().splitlines())
        print(f"   kill -9 {child.pid}; LLM calls paid so far: {paid}")
        print(f"2. a fresh process kicks {trip} off again: the first task is not run again")
        kick_off(url, folder, trip)
        print(f"3. {trip} replayed with a new prompt: the LLM live, the tools mocked")
        kick_off(url, folder, f"{trip}-v2", replay_of=trip)
        return 0


if __name__ == "__main__":
    sys.exit(main())
