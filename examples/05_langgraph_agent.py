"""A LangGraph agent recorded by livingai: each graph node, model call and tool call is a
step of the thread's execution, with tokens and cost, and a flight is never booked twice.

    python examples/05_langgraph_agent.py

A travel agent built with LangGraph: a model asks for a flight search, then books the
cheapest flight; a ToolNode runs the tools, wrapped by the adapter so that each call's
intent is stored before it runs. The process dies right after the booking API answered,
before LangGraph stored the tools node's result (simulated in-process: an exception no
handler catches, as a kill would leave it). LangGraph's checkpoints are kept by
LivingAISaver in the same SQLite log. Resuming the thread runs the tools node
again, and the booking comes back from livingai's log: the booking API is not called
again. (Had it died inside the call, the booking would be in doubt: `retry_with_key=True`
calls it again with the same idempotency key, for the API to deduplicate.) The model is
a scripted stand-in: no API key, no network; everything is in a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.prebuilt.tool_node import ToolCallRequest

from livingai import CheckpointEngine, ExecutionNode, Price, PriceTable, SQLiteStore, current_step
from livingai.adapters.langgraph import LangGraphAdapter, LivingAISaver

FLIGHTS = [{"id": "LX-318", "price": 420}, {"id": "BA-731", "price": 180}]
BOOKINGS: list[str] = []  # what the booking API did, across every attempt


class PowerCut(BaseException):
    """The process dying: nothing after it runs, nothing records it."""


class ScriptedModel(BaseChatModel):
    """A stand-in for a chat model that reports usage as providers do: it asks for a
    flight search, then books the cheapest flight, then answers."""

    model: str = "acme-mini"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            call = {"name": "search_flights", "args": {"dest": "Zurich"}, "id": "call-1"}
            reply = AIMessage("", tool_calls=[call])
        elif results[-1].name == "search_flights":
            cheapest = min(json.loads(str(results[-1].content)), key=lambda f: f["price"])
            call = {"name": "book_flight", "args": {"flight": cheapest["id"]}, "id": "call-2"}
            reply = AIMessage("", tool_calls=[call])
        else:
            reply = AIMessage(f"Done: {results[-1].content}")
        tokens = sum(len(str(m.content)) for m in messages) // 4 + 50
        reply.usage_metadata = {
            "input_tokens": tokens,
            "output_tokens": 25,
            "total_tokens": tokens + 25,
        }
        return ChatResult(generations=[ChatGeneration(message=reply)])


async def search_flights(dest: str) -> list[dict[str, Any]]:
    """Search flights to a city."""
    return FLIGHTS


async def book_flight(flight: str) -> dict[str, Any]:
    """Book a flight."""
    key = current_step().idempotency_key  # a real booking API would deduplicate on it
    BOOKINGS.append(flight)
    print(f"   booking API: booked {flight}, idempotency key {key}")
    return {"booking": f"BK-{flight}"}


def build_graph(
    adapter: LangGraphAdapter, checkpointer: BaseCheckpointSaver[Any], *, crash: list[bool]
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The agent: model, tools, model... until it answers. While `crash` holds True,
    the power goes off right after the booking API answers (once)."""
    model = ScriptedModel()

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    async def power_cut_after_booking(
        request: ToolCallRequest, execute: Callable[[ToolCallRequest], Awaitable[Any]]
    ) -> Any:
        result = await execute(request)
        if request.tool_call["name"] == "book_flight" and crash:
            crash.clear()
            raise PowerCut
        return result

    tools = ToolNode(
        [adapter.tool(search_flights), adapter.tool(book_flight, retry_with_key=True)],
        awrap_tool_call=power_cut_after_booking,
    )
    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def describe(node: ExecutionNode) -> str:
    """One recorded step: what ran (under its graph node), how it ended, what it cost."""
    indent = "      " if node.parent_id else "    "
    text = f"{indent}{node.metadata['step']} ({node.metadata['kind']}): {node.status.value}"
    if node.model is not None:
        text += f", {node.model}, {node.prompt_tokens}+{node.completion_tokens} tokens"
    if node.cost is not None:
        text += f", ${node.cost:.6f}"
    return text


async def main() -> None:
    prices = PriceTable({"acme-mini": Price(0.50, 1.50)})  # dollars per million tokens
    with tempfile.TemporaryDirectory() as directory:
        async with CheckpointEngine(SQLiteStore(Path(directory) / "livingai.db")) as engine:
            adapter = LangGraphAdapter(engine, prices=prices)
            checkpointer = LivingAISaver(engine)  # LangGraph's checkpoints, in the same log
            graph = build_graph(adapter, checkpointer, crash=[True])
            config = adapter.config("trip-42")  # thread id = livingai execution id

            print("1. the agent runs; the process dies right after the booking")
            try:
                await graph.ainvoke({"messages": [HumanMessage("Fly me to Zurich")]}, config)
            except PowerCut:
                print("   power cut: LangGraph never stored the tools node's result")

            print("2. the thread is resumed: the tools node runs again")
            result = await graph.ainvoke(None, config)
            print(f"   agent: {result['messages'][-1].content}")
            print(f"   bookings made by the booking API: {len(BOOKINGS)}")

            print("3. what livingai recorded (livingai show trip-42):")
            everything = await engine.list_nodes("trip-42")
            nodes = [n for n in everything if "step" in n.metadata]  # the adapter's
            for node in nodes:
                print(describe(node))
            saved = [n for n in everything if n.metadata.get("langgraph") == "checkpoint"]
            print(f"   and {len(saved)} LangGraph checkpoints, stored by LivingAISaver")
            tool = next(n for n in nodes if n.metadata.get("step") == "book_flight")
            history = [v.status.value for v in await engine.history(tool.id)]
            print(f"   book_flight's versions: {' -> '.join(history)}")

            print("4. what it cost (livingai costs --by model):")
            for row in await engine.usage("model"):
                print(
                    f"   {row.key}: {row.calls} model calls, {row.prompt_tokens} in, "
                    f"{row.completion_tokens} out, ${row.cost:.6f}"
                )


if __name__ == "__main__":
    asyncio.run(main())
