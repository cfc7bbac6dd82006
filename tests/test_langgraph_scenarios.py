"""The LangGraph adapter runs the adapter scenario suite (livingai.testing.adapters): the
travel booking as a StateGraph (model -> ToolNode -> model ...), its checkpoints kept by
LivingAISaver and its model and tool calls recorded by LangGraphAdapter in the same log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from livingai import Runtime
from livingai.adapters.langgraph import LangGraphAdapter, LivingAISaver
from livingai.testing.adapters import (
    COMPLETION_TOKENS,
    MODEL,
    PROMPT_TOKENS,
    REQUEST,
    SCENARIO_TESTS,
    ScenarioCheck,
    ToolCall,
    Trip,
)


class ScriptedChat(BaseChatModel):
    """The trip's scripted model as a LangChain chat model: it answers `trip.turn` of the
    tool results in the conversation, with usage and the model's name as providers do."""

    trip: Any  # a Trip

    @property
    def _llm_type(self) -> str:
        return "livingai-scenario"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        outputs = {m.tool_call_id: str(m.content) for m in messages if isinstance(m, ToolMessage)}
        turn = self.trip.turn(outputs)
        if isinstance(turn, ToolCall):
            call = {"name": turn.name, "args": turn.arguments, "id": turn.call_id}
            reply = AIMessage("", tool_calls=[{**call, "type": "tool_call"}])
        else:
            reply = AIMessage(turn.text)
        reply.usage_metadata = {
            "input_tokens": PROMPT_TOKENS,
            "output_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        reply.response_metadata = {"model_name": MODEL}
        return ChatResult(generations=[ChatGeneration(message=reply)])


class LangGraphTrip:
    """The trip through LangGraph: thread id = execution id; every checkpoint is stored
    before the next step starts (durability="sync"), so a kill loses no finished node."""

    async def run(
        self, runtime: Runtime, trip: Trip, execution_id: str, *, replay_of: str | None = None
    ) -> str:
        adapter = LangGraphAdapter(runtime)
        model = ScriptedChat(trip=trip)

        async def agent(state: MessagesState) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        search, book, charge = trip.tools()
        tools = [
            adapter.tool(search),
            adapter.tool(book, retry_with_key=True),
            adapter.tool(charge, retry_with_key=True),
        ]
        builder = StateGraph(MessagesState)
        builder.add_node("agent", agent)
        builder.add_node("tools", ToolNode(tools))
        builder.add_edge(START, "agent")
        builder.add_conditional_edges("agent", tools_condition)
        builder.add_edge("tools", "agent")
        graph = builder.compile(checkpointer=LivingAISaver(runtime.engine))
        config = adapter.config(execution_id, replay_of=replay_of)
        state = await graph.aget_state(config)
        if state.values and not state.next:  # finished: its answer is in the thread
            return str(state.values["messages"][-1].content)
        start: MessagesState | None = None
        if not state.values:
            start = {"messages": [HumanMessage(REQUEST)]}
        result = await graph.ainvoke(start, config, durability="sync")
        return str(result["messages"][-1].content)


@pytest.mark.parametrize("check", SCENARIO_TESTS, ids=lambda check: check.__name__)
async def test_langgraph_runs_the_scenario(check: ScenarioCheck, tmp_path: Path) -> None:
    await check(LangGraphTrip(), tmp_path)
