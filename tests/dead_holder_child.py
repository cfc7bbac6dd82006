"""The program of tests/test_dead_holder.py: one durable run, with the default worker id.

    python -m tests.dead_holder_child STORE_URL MARKS MODE

The run is execution `dead-holder`: the tool `first`, then the step `second`. Each appends
`<name> <pid>` to the file MARKS when it really runs (not when it is fast-forwarded). With
MODE `block`, `second` prints `blocked <worker id>` and waits for ever: the test's cue to
kill it. With MODE `finish` it returns, and the program prints one JSON line: the run's
result and this worker's id, or the holder named by LeaseHeldError.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from livingai import CheckpointEngine, LeaseHeldError, Run, Runtime, open_store

EXECUTION = "dead-holder"
LEASE_SECONDS = 60.0  # far longer than the test may take: only a takeover lets it resume


def mark(path: str, name: str) -> int:
    with open(path, "a", encoding="utf-8") as marks:
        marks.write(f"{name} {os.getpid()}\n")
    return os.getpid()


async def main(url: str, marks: str, mode: str) -> None:
    engine = CheckpointEngine(open_store(url))
    async with Runtime(engine, lease_seconds=LEASE_SECONDS) as runtime:

        async def second() -> int:
            pid = mark(marks, "second")
            if mode == "block":
                print(f"blocked {runtime.worker_id}", flush=True)
                await asyncio.Event().wait()
            return pid

        async def dead_holder_agent(run: Run) -> dict[str, int]:
            # a tool's outcome is durable when it returns: the kill cannot undo it
            first = await run.tool("first", mark, marks, "first")
            return {"first": first, "second": await run.step("second", second)}

        line: dict[str, Any]
        try:
            result = await runtime.run(dead_holder_agent, execution_id=EXECUTION)
        except LeaseHeldError as exc:
            line = {"held": exc.holder}
        else:
            line = {"result": result, "worker": runtime.worker_id}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
