"""The wrong booking: reproduced offline, fixed, and checked against the recording.

    python examples/03_mock_tools_debugging.py

A customer asked for the cheapest flight to Zurich and got the first one listed. The
run was recorded. Here the developer, with no API key and without touching the booking
system:

1. replays the recording with the tools and the model served from it (MOCK_TOOLS,
   mock_llm): the wrong booking again, nothing called;
2. replays the fixed agent with the tools mocked: the model step runs again and picks
   another flight; the booking API is not called, since the recording has no such
   booking, and the replay says so;
3. asks "what if the model had been given the fixed prompt" (COUNTERFACTUAL) against a
   sandbox booking API, and compares that run with the original step by step.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from livingai import (
    CheckpointEngine,
    ReplayDivergedError,
    ReplayMode,
    Run,
    Runtime,
    SQLiteStore,
)

FLIGHTS = [
    {"id": "LX-318", "price": 420},
    {"id": "BA-731", "price": 180},
    {"id": "AF-112", "price": 260},
]
BUGGY_PROMPT = "Pick a flight to {dest} from: {flights}"
FIXED_PROMPT = "Pick the cheapest flight to {dest} from: {flights}"


class Services:
    """The flight search, the model and the booking API, counting their calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = {"search": 0, "model": 0, "book": 0}

    async def search(self, dest: str) -> list[dict[str, Any]]:
        self.calls["search"] += 1
        return FLIGHTS

    async def model(self, prompt: str) -> dict[str, Any]:
        """A deterministic stand-in for a model that takes "cheapest" literally."""
        self.calls["model"] += 1
        flights = json.loads(prompt.split("from: ", 1)[1])
        pick = min(flights, key=lambda f: f["price"]) if "cheapest" in prompt else flights[0]
        return {
            "flight": pick["id"],
            "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 9},
        }

    async def book(self, flight_id: str) -> dict[str, str]:
        self.calls["book"] += 1
        print(f"   [{self.name} booking API] booked {flight_id}")
        return {"booking": f"BK-{flight_id}"}


def trip_agent(services: Services, prompt: str) -> Any:
    async def book_trip(run: Run, dest: str) -> dict[str, str]:
        flights = await run.tool("search", services.search, dest)
        choice = await run.step(
            "choose", services.model, prompt.format(dest=dest, flights=json.dumps(flights))
        )
        booking: dict[str, str] = await run.tool("book", services.book, choice["flight"])
        return booking

    return book_trip


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = CheckpointEngine(SQLiteStore(Path(directory) / "livingai.db"))
        async with Runtime(engine) as runtime:
            live = Services("live")
            print("The recorded run (production):")
            result = await runtime.run(
                trip_agent(live, BUGGY_PROMPT), "Zurich", execution_id="trip"
            )
            print(f"   booked: {result['booking']} (420 dollars; BA-731 was 180)")

            offline = Services("offline")
            print("\n1. Reproduce it offline (MOCK_TOOLS, mock_llm=True):")
            again = await runtime.replay(
                "trip",
                ReplayMode.MOCK_TOOLS,
                agent=trip_agent(offline, BUGGY_PROMPT),
                mock_llm=True,
            )
            print(f"   booked: {again.result['booking']}; calls made: {offline.calls}")

            fixed = Services("offline")
            print("\n2. The fixed prompt, tools mocked (MOCK_TOOLS):")
            try:
                await runtime.replay(
                    "trip", ReplayMode.MOCK_TOOLS, agent=trip_agent(fixed, FIXED_PROMPT)
                )
            except ReplayDivergedError as exc:
                print("   the replay stopped:", str(exc).split("; ", 1)[1])
            print(f"   calls made: {fixed.calls} (the model ran again; no booking was made)")

            sandbox = Services("sandbox")
            print("\n3. What if the model had been given the fixed prompt (COUNTERFACTUAL):")
            prompt = FIXED_PROMPT.format(dest="Zurich", flights=json.dumps(FLIGHTS))
            what_if = await runtime.replay(
                "trip",
                ReplayMode.COUNTERFACTUAL,
                agent=trip_agent(sandbox, BUGGY_PROMPT),
                counterfactual=("choose", prompt),
                real_tools=True,
            )
            print(f"   booked: {what_if.result['booking']}; calls made: {sandbox.calls}")
            print("\nThe original against the counterfactual:")
            diff = await runtime.diff("trip", what_if.execution_id)
            print(diff.to_text())
            print(f"\nlive calls over all of this: {live.calls} (only the original run)")


if __name__ == "__main__":
    asyncio.run(main())
