"""The processes of test_langgraph_graphs' crash test, run from the repository root as
`python -m tests.langgraph_child MODE STORE_URL THREAD_ID WORKDIR`.

The graph is an agent: model (asks for the append_line tool) -> tools (append_line adds a
line to WORKDIR/tool-calls and fsyncs it: one line per real call) -> slow (writes
WORKDIR/reached) -> model (answers with the tool's result) -> end. Every step's checkpoint
is stored before the next step starts (durability="sync").

  crash   runs the graph from the start with the async API; the slow node, once it wrote
          the marker, waits for the test to SIGKILL this process (and fails if it is not
          killed within KILL_WAIT_SECONDS)
  resume  continues the thread with the sync API, invoke(None, config), and prints a JSON
          report: the pending nodes before, the final messages and what is pending after
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from livingai.adapters.langgraph import LivingAISaver
from tests.langgraph_support import ToolCallingModel, contents

KILL_WAIT_SECONDS = 60.0
MARKER, CALLS = "reached", "tool-calls"


class Agent(MessagesState):
    slow: Annotated[list[str], operator.add]


def append_line_tool(calls: Path) -> BaseTool:
    @tool
    def append_line(line: str) -> str:
        """Append a line to the bookings file."""
        with calls.open("a") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())
        return f"appended {line}"

    return append_line


def build(saver: LivingAISaver, work: Path, wait: bool) -> CompiledStateGraph[Any, Any, Any, Any]:
    model = ToolCallingModel()

    def call_model(state: Agent) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def slow(state: Agent) -> dict[str, Any]:
        partial = work / f"{MARKER}.partial"
        partial.write_text("reached")
        partial.replace(work / MARKER)
        if wait and not threading.Event().wait(KILL_WAIT_SECONDS):
            raise RuntimeError(f"not killed within {KILL_WAIT_SECONDS}s")
        return {"slow": ["slow"]}

    builder = StateGraph(Agent)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode([append_line_tool(work / CALLS)]))
    builder.add_node("slow", slow)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "slow")
    builder.add_edge("slow", "model")
    return builder.compile(checkpointer=saver)


async def crash(url: str, config: RunnableConfig, work: Path) -> None:
    async with LivingAISaver.from_url(url) as saver:
        graph = build(saver, work, wait=True)
        start = {"messages": [HumanMessage("book the trip")], "slow": []}
        await graph.ainvoke(start, config, durability="sync")


def resume(url: str, config: RunnableConfig, work: Path) -> dict[str, Any]:
    with LivingAISaver.from_url(url) as saver:
        graph = build(saver, work, wait=False)
        before = graph.get_state(config)
        result = graph.invoke(None, config, durability="sync")
        after = graph.get_state(config)
    return {
        "before": list(before.next),
        "next": list(after.next),
        "messages": contents(result["messages"]),
        "slow": result["slow"],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("crash", "resume"):
        print("usage: python -m tests.langgraph_child crash|resume STORE_URL THREAD_ID WORKDIR")
        return 2
    mode, url, thread_id, workdir = argv
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    if mode == "crash":
        asyncio.run(crash(url, config, Path(workdir)))
        return 1  # the slow node raises first: reaching here is a failure
    print(json.dumps(resume(url, config, Path(workdir))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
