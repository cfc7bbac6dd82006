"""A small real agent for the CLI tests, loaded by the CLI as
`--agent tests.cli_agent:book_trip`, and the recorder of the executions the tests read.

The agent books a trip: it plans (a step), searches flights (a tool), has a model pick
one (a step that reports token usage, as model clients do), and books it (a tool). Its
fake services append one line per call to the file LIVINGAI_CLI_AGENT_LOG names, so a
test sees what really ran, in whatever process it ran. LIVINGAI_CLI_AGENT_CRASH=choose
(or book) makes that call die with Crash, a BaseException: the run stops as if the
process had been killed there, unfinished, its lease released; a booking that crashed
is in doubt (it was logged: it may have happened).

`python -m tests.cli_agent URL` records into the store at URL, in a process of its own,
and prints the execution ids as JSON (see RECORDED).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from livingai import (
    CheckpointEngine,
    ExecutionNode,
    NodeType,
    Run,
    Runtime,
    Status,
    open_store,
)

LOG = "LIVINGAI_CLI_AGENT_LOG"
CRASH = "LIVINGAI_CLI_AGENT_CRASH"
MODEL = "gpt-4o-mini-2024-07-18"
FLIGHTS = [
    {"id": "LX-318", "price": 420},  # listed first, not the cheapest: what the model picks
    {"id": "BA-731", "price": 180},
    {"id": "AF-112", "price": 260},
]
PROMPT = "Pick a flight to {city}: {flights}"

# What the recorder stores: name -> execution id.
RECORDED = {
    "ok": "trip-ok",  # finished: BK-LX-318
    "failed": "trip-failed",  # the plan step raised ValueError
    "crash_book": "trip-crash-book",  # died inside the booking: in doubt
    "crash_choose": "trip-crash-choose",  # died inside the model call: resumable
    "notes": "notes-1",  # not a run: nodes saved by hand, three of them with a state
}
NOTES_STATES = {
    "notes-1/cart": json.dumps({"cart": ["LX-318"], "total": 420}).encode(),
    "notes-1/blob": bytes(range(256)) * 4,  # not UTF-8
    "notes-1/text": b"plain notes, not JSON",
}


class Crash(BaseException):
    """Not an Exception: nothing in the run catches it, as nothing survives a kill."""


def _called(what: str) -> None:
    path = os.environ.get(LOG)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(what + "\n")
    if os.environ.get(CRASH) == what.split()[0]:
        raise Crash(what)


def calls(log: Path) -> Counter[str]:
    """How often each service was called, by the log's first words."""
    if not log.exists():
        return Counter()
    return Counter(line.split()[0] for line in log.read_text().splitlines() if line)


def plan(dest: str) -> str:
    if dest == "atlantis":
        raise ValueError(f"no airport serves {dest!r}")
    return dest.upper()


async def search(city: str) -> list[dict[str, Any]]:
    _called(f"search {city}")
    return [dict(flight) for flight in FLIGHTS]


async def choose(prompt: str) -> dict[str, Any]:
    """A deterministic stand-in for a model: the first flight listed."""
    _called("choose")
    flights = json.loads(prompt.split(": ", 1)[1])
    return {
        "flight": flights[0]["id"],
        "model": MODEL,
        "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 12},
    }


async def book(flight_id: str) -> dict[str, Any]:
    _called(f"book {flight_id}")
    return {"booking": f"BK-{flight_id}", "flight": flight_id}


async def book_trip(run: Run, dest: str) -> dict[str, Any]:
    city = await run.step("plan", plan, dest)
    flights = await run.tool("search", search, city)
    choice = await run.step("choose", choose, PROMPT.format(city=city, flights=json.dumps(flights)))
    booking = await run.tool("book", book, choice["flight"])
    return {"booking": booking["booking"]}


# -- the recorder ---------------------------------------------------------------------------


async def record(url: str) -> dict[str, str]:
    async with Runtime(CheckpointEngine(open_store(url)), worker_id="recorder") as runtime:
        await runtime.run(book_trip, "zurich", execution_id=RECORDED["ok"])
        with contextlib.suppress(ValueError):
            await runtime.run(book_trip, "atlantis", execution_id=RECORDED["failed"])
        for crash_at in ("book", "choose"):
            os.environ[CRASH] = crash_at
            try:
                await runtime.run(book_trip, "paris", execution_id=RECORDED[f"crash_{crash_at}"])
            except Crash:
                pass
            finally:
                del os.environ[CRASH]
        await save_notes(runtime.engine)
    return RECORDED


async def save_notes(engine: CheckpointEngine) -> None:
    """An execution that is not a run: a tree of nodes, three saved with a state."""
    execution = RECORDED["notes"]
    cart = ExecutionNode(
        id="notes-1/cart", execution_id=execution, type=NodeType.MEMORY, status=Status.SUCCESS
    )
    blob = ExecutionNode(
        id="notes-1/blob",
        execution_id=execution,
        type=NodeType.PROMPT,
        parent_id=cart.id,
        status=Status.SUCCESS,
    )
    text = ExecutionNode(
        id="notes-1/text", execution_id=execution, type=NodeType.MEMORY, status=Status.RUNNING
    )
    plain = ExecutionNode(
        id="notes-1/plain",
        execution_id=execution,
        type=NodeType.TOOL,
        parent_id=blob.id,
        status=Status.SUCCESS,
        output={"sent": True},
    )
    for node in (cart, blob, text):
        await engine.save(node, state=NOTES_STATES[node.id])
    text.status = Status.SUCCESS  # saved again without a state: it keeps its newest
    await engine.save(text)
    await engine.save(plain)
    await engine.flush()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(record(sys.argv[1]))))
