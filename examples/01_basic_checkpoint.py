"""Checkpoint an agent's steps and read them back, on the embedded default store.

    python examples/01_basic_checkpoint.py

An agent saves one node per step (a model call, a tool call, its memory), each with its
state; every save returns within the 50 ms budget whatever the disk does. A second
engine, as a restarted process would, reads the execution back: its steps, each node's
versions, and the latest state. No API key, no network: a SQLite file in a temporary
directory.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from livingai import CheckpointEngine, ExecutionNode, NodeType, SQLiteStore, Status


async def agent(engine: CheckpointEngine, execution_id: str) -> None:
    question = "What is the capital of France?"
    notes: list[dict[str, str]] = []
    memory = {"question": question, "notes": notes}  # the agent's state
    steps = [
        (NodeType.PROMPT, {"prompt": question}, {"text": "Let me look it up."}),
        (NodeType.TOOL, {"search": "capital of France"}, {"result": "Paris"}),
        (NodeType.PROMPT, {"prompt": "Answer with the search result"}, {"text": "Paris."}),
    ]
    parent = None
    for kind, given, answer in steps:
        node = ExecutionNode(
            execution_id=execution_id,
            type=kind,
            parent_id=parent,
            status=Status.RUNNING,
            input=given,
        )
        await engine.save(node)  # the step started
        node.status, node.output = Status.SUCCESS, answer
        notes.append(answer)
        in_budget = await engine.save(node, json.dumps(memory).encode())
        print(f"saved {kind.value:<6} step {node.id[:8]}: in budget: {in_budget}")
        parent = node.id


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "livingai.db"
        async with CheckpointEngine(SQLiteStore(path)) as engine:
            await agent(engine, "capital-question")
            stats = engine.stats()
            print(f"saves: {stats.saves}, in budget: {stats.in_budget}, late: {stats.late}")

        # A new engine over the same file: what a restarted process sees.
        async with CheckpointEngine(SQLiteStore(path)) as engine:
            nodes = await engine.list_nodes("capital-question")
            print(f"read back {len(nodes)} steps:")
            for node in nodes:
                versions = await engine.history(node.id)
                statuses = " -> ".join(v.status.value for v in versions)
                print(f"  {node.type.value:<6} {statuses:<19} output {json.dumps(node.output)}")
            latest = await engine.latest("capital-question")
            assert latest is not None
            assert latest.state is not None
            print(f"latest state: {latest.state.decode()}")


if __name__ == "__main__":
    asyncio.run(main())
