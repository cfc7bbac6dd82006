"""Executions for the web UI's tests (the API tests and the browser tests): real runs
recorded with a Runtime into a store, and the agents the UI may run again.

`record(url)` records, into the store at `url`:

- "ok": tests.cli_agent's book_trip, finished (a model step on gpt-4o-mini with usage);
- "failed": book_trip, failed in its first step (ValueError with a traceback);
- "in_doubt": book_trip that died inside the booking tool (between its intent and its
  outcome) and was resumed once: the tool is in doubt and the run needs a human;
- "pending": book_trip that died inside the model call: pending, resumable;
- "replay": a MOCK_TOOLS replay of "ok"; "fork": a fork of "ok" before "choose";
- "hostile": a run whose step outputs and state are HTML that would run script if it
  were not escaped (HOSTILE), with a model step on claude-3-5-haiku (a second model);
- "notes": nodes saved by hand, not a run, three with a state (JSON, binary, text).

`recorded_store(path)` does it in a SQLite file and returns the URL and the ids.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from livingai import (
    CheckpointEngine,
    ExecutionNode,
    InDoubtError,
    NodeRecord,
    NodeType,
    ReplayMode,
    Run,
    Runtime,
    Status,
    open_store,
)
from tests import cli_agent

SCRIPT = "<script>window.__pwned=1</script>"
IMAGE = '<img src=x onerror="window.__pwned=1">'
HOSTILE = (SCRIPT, IMAGE)
SECOND_MODEL = "claude-3-5-haiku-20241022"

RECORDED = {
    "ok": "trip-ok",
    "failed": "trip-failed",
    "in_doubt": "trip-in-doubt",
    "pending": "trip-pending",
    "hostile": "hostile-1",
    "notes": cli_agent.RECORDED["notes"],
    # "replay" and "fork" get new ids when recorded
}


def shout(text: str) -> str:
    return text


async def answer(prompt: str) -> dict[str, Any]:
    """A stand-in for a model on a second model name, with usage."""
    return {
        "text": IMAGE,
        "model": SECOND_MODEL,
        "usage": {"prompt_tokens": 40, "completion_tokens": 8},
    }


async def hostile_agent(run: Run, text: str) -> dict[str, Any]:
    """An agent whose outputs are HTML and script: what a page must show as text."""
    said = await run.step("say", shout, text)
    reply = await run.step("reply", answer, said)
    return {"said": said, "reply": reply["text"]}


AGENTS = [cli_agent.book_trip, hostile_agent]  # for create_app(..., agents=AGENTS)


@dataclass(frozen=True)
class Recorded:
    url: str
    ids: dict[str, str]


async def record(url: str) -> dict[str, str]:
    """Record the executions above into the store at `url`; their ids by name."""
    ids = dict(RECORDED)
    book = cli_agent.book_trip
    async with Runtime(CheckpointEngine(open_store(url)), worker_id="web-recorder") as runtime:
        await runtime.run(book, "zurich", execution_id=ids["ok"])
        with contextlib.suppress(ValueError):
            await runtime.run(book, "atlantis", execution_id=ids["failed"])
        for name, crash_at in (("in_doubt", "book"), ("pending", "choose")):
            os.environ[cli_agent.CRASH] = crash_at
            try:
                await runtime.run(book, "paris", execution_id=ids[name])
            except cli_agent.Crash:
                pass
            finally:
                del os.environ[cli_agent.CRASH]
        with contextlib.suppress(InDoubtError):  # marks it as needing a human
            await runtime.run(book, "paris", execution_id=ids["in_doubt"])
        replayed = await runtime.replay(ids["ok"], ReplayMode.MOCK_TOOLS, agent=book)
        ids["replay"] = replayed.execution_id
        ids["fork"] = await runtime.fork(ids["ok"], "choose")
        await runtime.run(hostile_agent, SCRIPT, execution_id=ids["hostile"])
        await runtime.engine.save(
            _hostile_state(ids["hostile"]), state=json.dumps({"html": IMAGE}).encode()
        )
        await cli_agent.save_notes(runtime.engine)
        await runtime.engine.flush()
    return ids


def _hostile_state(execution_id: str) -> ExecutionNode:
    """A node of the hostile run holding a state: HTML in a decoded checkpoint."""
    return ExecutionNode(
        id=f"{execution_id}/memo",
        execution_id=execution_id,
        type=NodeType.MEMORY,
        status=Status.SUCCESS,
        output=SCRIPT,
    )


def run_async(coroutine: Any) -> Any:
    """Run a coroutine to its end on a fresh loop in a thread of its own, from any
    thread (a test's loop may be running in this one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result(timeout=120)


def recorded_store(directory: Path) -> Recorded:
    """The executions above, recorded into a SQLite file in `directory`."""
    url = f"sqlite:///{directory / 'web.db'}"
    return Recorded(url, run_async(record(url)))


# -- a big store --------------------------------------------------------------------------

BULK_BATCH = 20_000  # records appended per store call


def bulk_id(index: int) -> str:
    return f"bulk-{index:06d}"


async def fill(url: str, executions: int) -> None:
    """`executions` executions of two nodes each (a run's record, finished, and one model
    step with usage), appended through the store's own `append` in big batches: the
    engine's per-save work would take minutes. Execution k is `bulk_id(k)`, started k
    seconds after the first; even ones are FAILED, odd ones SUCCESS."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    store = open_store(url)
    try:
        batch: list[NodeRecord] = []
        for index in range(executions):
            execution_id = bulk_id(index)
            began = base + timedelta(seconds=index)
            status = Status.FAILED if index % 2 == 0 else Status.SUCCESS
            header = ExecutionNode(
                id=f"{execution_id}/run",
                execution_id=execution_id,
                type=NodeType.MEMORY,
                status=status,
                created_at=began,
                completed_at=began + timedelta(milliseconds=5),
                input={"agent": "bulk_agent", "args": [index], "kwargs": {}},
                metadata={"run": True, "agent": "bulk_agent"},
            )
            step = ExecutionNode(
                id=f"{execution_id}/0",
                execution_id=execution_id,
                type=NodeType.PROMPT,
                parent_id=header.id,
                status=Status.SUCCESS,
                created_at=began,
                completed_at=began + timedelta(milliseconds=4),
                output={"text": "ok"},
                latency_ms=4.0,
                model="gpt-4o-mini",
                prompt_tokens=10,
                completion_tokens=2,
                cost=0.000003,
                metadata={"step": "ask", "kind": "step", "position": 0},
            )
            batch += [NodeRecord.from_node(header), NodeRecord.from_node(step)]
            if len(batch) >= BULK_BATCH:
                await store.append(batch)
                batch = []
        if batch:
            await store.append(batch)
    finally:
        await store.close()
