"""The LangGraph adapter, on real graphs: a travel agent (a StateGraph whose model asks
for a flight search, then books the cheapest flight, then answers; a ToolNode runs the
tools) records its graph nodes, model calls and tools into livingai, and its wrapped
tools keep run.tool's promises across crashes. The fake model is deterministic and
reports usage as providers do; the fake services count their real calls, so a test sees
what really ran. Runtime.call_tool, the protocol the wrapped tools use, is tested on
its own at the end."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from livingai import (
    CheckpointEngine,
    CheckpointStore,
    ConfigError,
    ExecutionNode,
    ExecutionNotFoundError,
    InDoubtError,
    NodeType,
    NondeterminismError,
    Price,
    PriceTable,
    RecoveryEngine,
    ReplayDivergedError,
    ReplayMode,
    ReplaySession,
    Runtime,
    SQLiteStore,
    Status,
    StepContext,
    StepFailedError,
    current_step,
)
from livingai.adapters.langgraph.adapter import LangGraphAdapter
from livingai.cli import cli
from tests.conftest import StoreFactory

FLIGHTS = [
    {"id": "LX-318", "price": 420},  # listed first, not the cheapest
    {"id": "BA-731", "price": 180},
]
PRICES = PriceTable({"acme-mini": Price(1.0, 4.0)})  # dollars per million tokens


class Crash(BaseException):
    """What a kill looks like from inside: no handler records an outcome."""


class TravelModel(BaseChatModel):
    """A stand-in for a chat model: asks for a flight search, then books a flight (the
    cheapest, or the first listed with choose="first"), then answers. Its replies carry
    tool calls, usage and the model's dated name, as a provider's do; it decides from
    the conversation alone, so a node run again asks the same."""

    model: str = "acme-mini"
    choose: str = "cheapest"
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "travel-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            dest = str(messages[0].content).split()[-1]
            reply = AIMessage("", tool_calls=[_call("search", {"dest": dest}, "call-search")])
        elif results[-1].name == "search":
            flights = json.loads(str(results[-1].content))
            chosen = flights[0] if self.choose == "first" else min(flights, key=_price)
            reply = AIMessage("", tool_calls=[_call("book", {"flight": chosen["id"]}, "call-book")])
        else:
            reply = AIMessage(f"Booked: {results[-1].content}")
        reply.usage_metadata = {
            "input_tokens": 100 * len(messages),
            "output_tokens": 20,
            "total_tokens": 100 * len(messages) + 20,
        }
        reply.response_metadata = {"model_name": f"{self.model}-2025-06"}
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def _price(flight: dict[str, Any]) -> int:
    return int(flight["price"])


class World:
    """The services the agent talks to, counting their real calls; `book` can crash
    (inside the call: the booking may have happened) or fail once."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.keys: list[str] = []
        self.crash_in_book = False
        self.fail_book_once = False
        self.reader: CheckpointStore | None = None  # a second store over the same data
        self.intents: list[str | None] = []  # the intent's status in it, seen from the call

    async def search(self, dest: str) -> list[dict[str, Any]]:
        """Search flights to a city."""
        self.calls["search"] += 1
        return [dict(flight) for flight in FLIGHTS]

    async def book(self, flight: str) -> dict[str, Any]:
        """Book a flight."""
        self.calls["book"] += 1
        step = current_step()
        self.keys.append(step.idempotency_key)
        if self.reader is not None:
            record = await self.reader.read(step.idempotency_key)
            self.intents.append(None if record is None else record.status)
        if self.crash_in_book:
            raise Crash  # the flight may be booked; the outcome is never recorded
        if self.fail_book_once:
            self.fail_book_once = False
            raise ValueError("the booking service timed out")
        return {"booking": f"BK-{flight}", "attempt": step.attempt}


def travel_graph(
    adapter: LangGraphAdapter,
    world: World,
    model: TravelModel,
    checkpointer: BaseCheckpointSaver[Any],
    *,
    retry_with_key: bool = False,
    crash_after: str = "",
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The agent: model, tools, model... until it answers. `crash_after` kills the
    process right after that tool returned: its outcome is recorded, LangGraph has not
    stored the tools node's writes."""
    crashes = [crash_after]

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    async def crash_after_tool(
        request: ToolCallRequest, execute: Callable[[ToolCallRequest], Awaitable[Any]]
    ) -> Any:
        result = await execute(request)
        if request.tool_call["name"] in crashes:
            crashes.clear()
            raise Crash
        return result

    tools = ToolNode(
        [adapter.tool(world.search), adapter.tool(world.book, retry_with_key=retry_with_key)],
        awrap_tool_call=crash_after_tool,
    )
    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def ask(dest: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(f"Book me a flight to {dest}")]}


async def tree(engine: CheckpointEngine, thread: str) -> list[ExecutionNode]:
    return await engine.list_nodes(thread)


def named(nodes: list[ExecutionNode], kind: str) -> list[str]:
    return [str(node.metadata["step"]) for node in nodes if node.metadata.get("kind") == kind]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[CheckpointEngine]:
    async with CheckpointEngine(SQLiteStore(tmp_path / "agent.db")) as opened:
        yield opened


# -- what a graph run records ----------------------------------------------------------------


@pytest.fixture
async def reader(persistent_factory: StoreFactory) -> AsyncIterator[CheckpointStore]:
    """A second store over the same data: what another process would read."""
    opened = persistent_factory()
    yield opened
    await opened.close()


async def test_a_graph_run_records_its_nodes_models_tools_and_costs(
    persistent_factory: StoreFactory, reader: CheckpointStore
) -> None:
    world = World()
    world.reader = reader
    model = TravelModel()
    async with CheckpointEngine(persistent_factory()) as engine:
        adapter = LangGraphAdapter(engine, prices=PRICES)
        graph = travel_graph(adapter, world, model, InMemorySaver())
        result = await graph.ainvoke(ask("Zurich"), adapter.config("trip-1"))
        await engine.flush()
        assert result["messages"][-1].content.startswith("Booked: ")
        assert "BK-BA-731" in result["messages"][-1].content
        assert world.calls == {"search": 1, "book": 1}
        assert world.intents == ["RUNNING"]  # durably stored before the booking ran

        nodes = await tree(engine, "trip-1")
        assert all(node.id.startswith("trip-1/lga:") for node in nodes)
        assert all(node.status is Status.SUCCESS for node in nodes)
        graph_nodes = [node for node in nodes if node.metadata.get("kind") == "node"]
        assert [n.metadata["step"] for n in graph_nodes] == ["agent", "tools"] * 2 + ["agent"]
        assert [n.metadata["langgraph_step"] for n in graph_nodes] == [1, 2, 3, 4, 5]
        assert {n.type for n in graph_nodes} == {NodeType.MEMORY}

        models = [node for node in nodes if node.type is NodeType.PROMPT]
        assert [m.model for m in models] == ["acme-mini-2025-06"] * 3  # the reply's name
        assert [m.metadata["requested_model"] for m in models] == ["acme-mini"] * 3
        assert [(m.prompt_tokens, m.completion_tokens) for m in models] == [
            (100, 20),
            (300, 20),
            (500, 20),
        ]
        assert [m.cost for m in models] == [
            pytest.approx((p * 1.0 + 20 * 4.0) / 1e6) for p in (100, 300, 500)
        ]
        assert all(m.latency_ms is not None for m in models)
        assert [m.parent_id for m in models] == [graph_nodes[i].id for i in (0, 2, 4)]
        assert models[0].input[0]["content"] == "Book me a flight to Zurich"
        assert models[1].output["tool_calls"][0]["args"] == {"flight": "BA-731"}

        tools = [node for node in nodes if node.type is NodeType.TOOL]
        assert [t.metadata["step"] for t in tools] == ["search", "book"]
        search, book = tools
        assert book.input == {"args": [], "kwargs": {"flight": "BA-731"}}
        assert book.output == {"booking": "BK-BA-731", "attempt": 1}
        assert book.metadata["idempotency_key"] == book.id == world.keys[0]
        assert book.id == f"{graph_nodes[3].id}/tool:call-book"
        assert book.parent_id == graph_nodes[3].id
        assert (book.metadata["tool_call_id"], book.metadata["idempotent"]) == ("call-book", False)
        assert search.output == FLIGHTS
        history = await engine.history(book.id)
        assert [v.status for v in history] == [Status.RUNNING, Status.SUCCESS]  # intent, outcome

        (by_model,) = await engine.usage("model")
        assert (by_model.key, by_model.calls) == ("acme-mini-2025-06", 3)
        assert (by_model.prompt_tokens, by_model.completion_tokens) == (900, 60)
        assert by_model.cost == pytest.approx((900 * 1.0 + 60 * 4.0) / 1e6)


async def test_a_node_run_again_after_a_crash_writes_new_versions_of_the_same_nodes(
    engine: CheckpointEngine,
) -> None:
    world = World()
    adapter = LangGraphAdapter(engine, prices=PRICES)
    graph = travel_graph(adapter, world, TravelModel(), InMemorySaver(), crash_after="book")
    with pytest.raises(Crash):  # the booking went through; LangGraph never stored it
        await graph.ainvoke(ask("Zurich"), adapter.config("trip-2"))
    before = {node.id for node in await tree(engine, "trip-2")}

    result = await graph.ainvoke(None, adapter.config("trip-2"))  # resume the thread

    assert "BK-BA-731" in result["messages"][-1].content
    assert world.calls == {"search": 1, "book": 1}  # the tools node ran again, book did not
    nodes = await tree(engine, "trip-2")
    assert before <= {node.id for node in nodes}
    assert len(nodes) == len({node.id for node in nodes}) == 10  # 5 node runs, 3 models, 2 tools
    (book,) = [node for node in nodes if node.metadata.get("step") == "book"]
    assert [v.status for v in await engine.history(book.id)] == [Status.RUNNING, Status.SUCCESS]
    tools_run = await engine.history(str(book.parent_id))
    assert [v.status for v in tools_run] == [
        Status.RUNNING,
        Status.FAILED,  # in-process, the crash is seen; after a real kill it stays RUNNING
        Status.RUNNING,
        Status.SUCCESS,
    ]


async def test_a_tool_that_died_in_its_call_is_in_doubt_and_not_called_again(
    engine: CheckpointEngine,
) -> None:
    world = World()
    world.crash_in_book = True
    adapter = LangGraphAdapter(engine)
    graph = travel_graph(adapter, world, TravelModel(), InMemorySaver())
    with pytest.raises(Crash):
        await graph.ainvoke(ask("Zurich"), adapter.config("trip-3"))
    world.crash_in_book = False

    with pytest.raises(InDoubtError, match="retry_with_key=True") as caught:
        await graph.ainvoke(None, adapter.config("trip-3"))

    assert world.calls["book"] == 1  # never called again
    assert caught.value.execution_id == "trip-3"
    assert caught.value.step == "book"
    assert caught.value.idempotency_key == world.keys[0]
    plan = await RecoveryEngine(engine).plan("trip-3")
    assert [node.id for node in plan.in_doubt_nodes] == [world.keys[0]]
    with pytest.raises(InDoubtError):  # and again, until someone decides
        await graph.ainvoke(None, adapter.config("trip-3"))
    assert world.calls["book"] == 1


async def test_retry_with_key_calls_an_in_doubt_tool_again_with_the_same_key(
    engine: CheckpointEngine,
) -> None:
    world = World()
    world.crash_in_book = True
    adapter = LangGraphAdapter(engine)
    saver = InMemorySaver()
    graph = travel_graph(adapter, world, TravelModel(), saver, retry_with_key=True)
    with pytest.raises(Crash):
        await graph.ainvoke(ask("Zurich"), adapter.config("trip-4"))
    world.crash_in_book = False

    result = await graph.ainvoke(None, adapter.config("trip-4"))

    assert "BK-BA-731" in result["messages"][-1].content
    assert world.calls["book"] == 2
    assert world.keys[0] == world.keys[1]  # the provider deduplicates on it
    book = await engine.load(world.keys[0])
    assert book is not None
    assert book.node.output == {"booking": "BK-BA-731", "attempt": 2}


async def test_a_failed_tool_runs_again_with_its_key_when_the_node_runs_again(
    engine: CheckpointEngine,
) -> None:
    """LangGraph runs a failed node again (resuming the thread, a retry policy): its
    tools too; a recorded failure is not final, as it is for run.tool."""
    world = World()
    world.fail_book_once = True
    adapter = LangGraphAdapter(engine)
    graph = travel_graph(adapter, world, TravelModel(), InMemorySaver())
    with pytest.raises(ValueError, match="timed out"):
        await graph.ainvoke(ask("Zurich"), adapter.config("trip-5"))
    failed = await engine.load(world.keys[0])
    assert failed is not None
    assert failed.node.status is Status.FAILED
    assert failed.node.error is not None
    assert failed.node.error.message == "the booking service timed out"
    replay = travel_graph(adapter, world, TravelModel(), InMemorySaver())
    with pytest.raises(StepFailedError, match="in the recording of 'trip-5' with ValueError"):
        await replay.ainvoke(ask("Zurich"), adapter.config("replay-5", replay_of="trip-5"))
    assert world.calls["book"] == 1  # a replay serves the recorded failure

    result = await graph.ainvoke(None, adapter.config("trip-5"))

    assert "BK-BA-731" in result["messages"][-1].content
    assert world.calls["book"] == 2
    assert world.keys == [world.keys[0]] * 2
    history = await engine.history(world.keys[0])
    assert [(v.status, v.metadata["attempt"]) for v in history] == [
        (Status.RUNNING, 1),
        (Status.FAILED, 1),
        (Status.RUNNING, 2),
        (Status.SUCCESS, 2),
    ]


# -- tools called from a node, tools not wrapped, interrupts ---------------------------------


class Trip(TypedDict, total=False):
    dest: str
    notes: list[str]


async def test_a_tool_called_from_a_node_is_keyed_by_its_task_and_arguments(
    engine: CheckpointEngine,
) -> None:
    world = World()
    adapter = LangGraphAdapter(engine)
    book = adapter.tool(world.book)
    crashes = [True]

    async def book_twice(state: Trip) -> dict[str, Any]:
        first = await book.ainvoke({"flight": "BA-731"})
        again = await book.ainvoke({"flight": "BA-731"})  # the same call: not twice
        other = await book.ainvoke({"flight": "LX-318"})
        if crashes:
            crashes.clear()
            raise Crash  # after the bookings, before LangGraph stored the node's writes
        return {"notes": [json.dumps(first), json.dumps(again), json.dumps(other)]}

    builder = StateGraph(Trip)
    builder.add_node("book", book_twice)
    builder.add_edge(START, "book")
    graph = builder.compile(checkpointer=InMemorySaver())
    with pytest.raises(Crash):
        await graph.ainvoke({"dest": "Zurich"}, adapter.config("trip-6"))
    result = await graph.ainvoke(None, adapter.config("trip-6"))

    assert world.calls["book"] == 2  # BA-731 once, LX-318 once, over both runs
    assert [json.loads(note)["booking"] for note in result["notes"]] == [
        "BK-BA-731",
        "BK-BA-731",
        "BK-LX-318",
    ]
    tools = [node for node in await tree(engine, "trip-6") if node.type is NodeType.TOOL]
    assert len(tools) == 2
    assert all(node.id.startswith("trip-6/lga:book:") for node in tools)
    assert all(node.metadata["tool_call_id"] is None for node in tools)


async def test_tools_that_are_not_wrapped_are_recorded_but_not_protected(
    engine: CheckpointEngine,
) -> None:
    world = World()
    adapter = LangGraphAdapter(engine)
    graph_builder = StateGraph(MessagesState)
    model = TravelModel()

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph_builder.add_node("agent", agent)
    graph_builder.add_node("tools", ToolNode([world.search, adapter.tool(world.book)]))
    graph_builder.add_edge(START, "agent")
    graph_builder.add_conditional_edges("agent", tools_condition)
    graph_builder.add_edge("tools", "agent")
    graph: CompiledStateGraph[Any, Any, Any, Any] = graph_builder.compile(InMemorySaver())

    await graph.ainvoke(ask("Zurich"), adapter.config("trip-7"))

    tools = [node for node in await tree(engine, "trip-7") if node.type is NodeType.TOOL]
    assert [(t.metadata["step"], t.metadata.get("wrapped")) for t in tools] == [
        ("search", False),
        ("book", None),
    ]
    search = tools[0]
    assert search.status is Status.SUCCESS
    assert search.input == {"args": [], "kwargs": {"dest": "Zurich"}}
    assert json.loads(search.output) == FLIGHTS  # as the ToolMessage carried it
    assert [v.status for v in await engine.history(tools[1].id)] == [
        Status.RUNNING,
        Status.SUCCESS,
    ]


async def test_an_interrupted_node_is_pending_then_finished_by_the_resume(
    engine: CheckpointEngine,
) -> None:
    adapter = LangGraphAdapter(engine)

    def approve(state: Trip) -> dict[str, Any]:
        answer = interrupt(f"book a flight to {state['dest']}?")
        return {"notes": [str(answer)]}

    builder = StateGraph(Trip)
    builder.add_node("approve", approve)
    builder.add_edge(START, "approve")
    graph = builder.compile(checkpointer=InMemorySaver())
    await graph.ainvoke({"dest": "Zurich"}, adapter.config("trip-8"))
    (waiting,) = await tree(engine, "trip-8")
    assert waiting.status is Status.PENDING
    assert waiting.metadata["interrupted"] is True

    result = await graph.ainvoke(Command(resume="yes"), adapter.config("trip-8"))

    assert result["notes"] == ["yes"]
    (done,) = await tree(engine, "trip-8")
    assert (done.id, done.status) == (waiting.id, Status.SUCCESS)


async def test_a_wrapped_tool_needs_the_thread_and_an_async_graph(
    engine: CheckpointEngine,
) -> None:
    world = World()
    book = LangGraphAdapter(engine).tool(world.book)
    with pytest.raises(ConfigError, match=r"adapter.config\(thread_id\)"):
        await book.ainvoke({"flight": "BA-731"})
    with pytest.raises(ConfigError, match="ainvoke or astream"):
        book.invoke({"flight": "BA-731"}, {"configurable": {"thread_id": "t"}})
    assert world.calls["book"] == 0
    with pytest.raises(ConfigError, match="a Runtime or an engine"):
        LangGraphAdapter("sqlite:///x.db")  # type: ignore[arg-type]


# -- replay --------------------------------------------------------------------------------


async def test_mock_tools_replay_serves_recorded_results_and_never_calls_a_tool(
    engine: CheckpointEngine,
) -> None:
    world = World()
    adapter = LangGraphAdapter(engine, prices=PRICES)
    await travel_graph(adapter, world, TravelModel(), InMemorySaver()).ainvoke(
        ask("Zurich"), adapter.config("trip-9")
    )
    before = json.dumps([n.to_dict() for n in await engine.versions("trip-9")], sort_keys=True)
    model = TravelModel()  # a new version of the agent's model, run for real

    replayed = await travel_graph(adapter, world, model, InMemorySaver()).ainvoke(
        ask("Zurich"), adapter.config("replay-1", replay_of="trip-9")
    )

    assert "BK-BA-731" in replayed["messages"][-1].content
    assert world.calls == {"search": 1, "book": 1}  # only the original's
    assert model.calls == 3
    tools = [node for node in await tree(engine, "replay-1") if node.type is NodeType.TOOL]
    assert [t.metadata["step"] for t in tools] == ["search", "book"]
    assert all(t.metadata["mocked"] and t.metadata["replay_of"] == "trip-9" for t in tools)
    originals = [n for n in await tree(engine, "trip-9") if n.type is NodeType.TOOL]
    assert [t.metadata["replayed_from"] for t in tools] == [t.id for t in originals]
    after = json.dumps([n.to_dict() for n in await engine.versions("trip-9")], sort_keys=True)
    assert after == before  # the recording is never written to

    buggy = TravelModel(choose="first")  # books the first flight listed: not recorded
    with pytest.raises(ReplayDivergedError) as caught:
        await travel_graph(adapter, world, buggy, InMemorySaver()).ainvoke(
            ask("Zurich"), adapter.config("replay-2", replay_of="trip-9")
        )
    message = str(caught.value)
    assert 'the call tool \'book\' with {"args":[],"kwargs":{"flight":"LX-318"}}' in message
    assert "closest recorded call is tool 'book' with" in message
    assert '"flight":"BA-731"' in message
    assert world.calls == {"search": 1, "book": 1}  # the real tool was not called


async def test_a_recorded_thread_replays_node_by_node_with_its_tools_mocked(
    engine: CheckpointEngine,
) -> None:
    world = World()
    adapter = LangGraphAdapter(engine)
    await travel_graph(adapter, world, TravelModel(), InMemorySaver()).ainvoke(
        ask("Zurich"), adapter.config("trip-10")
    )
    handled: list[str] = []

    def handler(node: ExecutionNode) -> Any:
        handled.append(node.type.value)
        return node.output

    report = await ReplaySession(engine, "trip-10").run(handler, ReplayMode.MOCK_TOOLS)

    assert "TOOL" not in handled
    assert handled.count("PROMPT") == 3
    mocked = [r for r in report.results if r.mocked]
    assert [r.node.metadata["step"] for r in mocked] == ["search", "book"]
    assert mocked[1].output == {"booking": "BK-BA-731", "attempt": 1}


async def test_replaying_an_unknown_thread_says_so(engine: CheckpointEngine) -> None:
    world = World()
    adapter = LangGraphAdapter(engine)
    graph = travel_graph(adapter, world, TravelModel(), InMemorySaver())
    with pytest.raises(ExecutionNotFoundError, match="no thread 'nowhere' is recorded"):
        await graph.ainvoke(ask("Zurich"), adapter.config("replay-3", replay_of="nowhere"))
    assert world.calls["search"] == 0


# -- the command line sees LangGraph runs ----------------------------------------------------


def test_show_and_costs_show_a_langgraph_thread(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"

    async def record() -> None:
        async with CheckpointEngine(SQLiteStore(path)) as engine:
            adapter = LangGraphAdapter(engine, prices=PRICES)
            graph = travel_graph(adapter, World(), TravelModel(), InMemorySaver())
            await graph.ainvoke(ask("Zurich"), adapter.config("trip-11"))

    asyncio.run(record())
    runner = CliRunner()
    url = f"sqlite:///{path}"

    shown = runner.invoke(cli, ["--store", url, "show", "trip-11", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["totals"]["steps"] == 10
    assert (data["totals"]["prompt_tokens"], data["totals"]["completion_tokens"]) == (900, 60)
    assert data["totals"]["cost"] == pytest.approx(0.00114)
    depths = {n["metadata"]["step"]: n["depth"] for n in data["nodes"]}
    assert (depths["agent"], depths["search"], depths["TravelModel"]) == (0, 1, 1)

    text = runner.invoke(cli, ["--store", url, "show", "trip-11"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "book  tool (side effect)  SUCCESS" in text.stdout
    assert "TravelModel  model  SUCCESS  acme-mini-2025-06  500+20 tokens" in text.stdout

    costs = runner.invoke(cli, ["--store", url, "costs", "--by", "model", "--json"])
    assert costs.exit_code == 0, costs.output
    (row,) = json.loads(costs.stdout)
    assert (row["key"], row["calls"], row["prompt_tokens"]) == ("acme-mini-2025-06", 3, 900)
    assert row["cost"] == pytest.approx(0.00114)


# -- Runtime.call_tool: run.tool's protocol at a node the caller names -----------------------


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(CheckpointEngine(SQLiteStore(tmp_path / "tools.db"))) as opened:
        yield opened


async def test_call_tool_records_intent_and_outcome_and_never_calls_twice(
    runtime: Runtime,
) -> None:
    calls: list[StepContext] = []

    async def charge(amount: int, *, currency: str) -> dict[str, Any]:
        calls.append(current_step())
        return {"receipt": f"R-{amount}-{currency}"}

    args = ("x", "x/pay", "charge", charge, (42,), {"currency": "EUR"})
    first = await runtime.call_tool(*args, parent_id="x/node", metadata={"tool_call_id": "c1"})
    again = await runtime.call_tool(*args)

    assert first == again == {"receipt": "R-42-EUR"}
    assert len(calls) == 1
    assert (calls[0].idempotency_key, calls[0].attempt, calls[0].kind) == ("x/pay", 1, "tool")
    history = await runtime.engine.history("x/pay")
    assert [v.status for v in history] == [Status.RUNNING, Status.SUCCESS]
    node = history[-1]
    assert node.input == {"args": [42], "kwargs": {"currency": "EUR"}}
    assert (node.parent_id, node.metadata["tool_call_id"]) == ("x/node", "c1")
    assert "position" not in node.metadata
    with pytest.raises(NondeterminismError, match="node 'x/pay' was asked for tool 'refund'"):
        await runtime.call_tool("x", "x/pay", "refund", charge, (42,), {"currency": "EUR"})


async def test_call_tool_applies_run_tools_policies_to_a_call_in_doubt(
    runtime: Runtime,
) -> None:
    async def crash() -> str:
        raise Crash

    with pytest.raises(Crash):
        await runtime.call_tool("y", "y/pay", "pay", crash)
    with pytest.raises(InDoubtError, match="reconcile=") as caught:
        await runtime.call_tool("y", "y/pay", "pay", crash)
    assert caught.value.idempotency_key == "y/pay"
    assert "needing a human" not in str(caught.value)  # no run record to mark

    def look_up(step: StepContext) -> str:
        return f"found {step.idempotency_key}"

    assert await runtime.call_tool("y", "y/pay", "pay", crash, reconcile=look_up) == "found y/pay"
    assert await runtime.call_tool("y", "y/pay", "pay", crash) == "found y/pay"


async def test_call_tool_keeps_a_failure_unless_told_to_run_it_again(runtime: Runtime) -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(current_step().attempt)
        if len(attempts) == 1:
            raise ValueError("timed out")
        return "done"

    with pytest.raises(ValueError, match="timed out"):
        await runtime.call_tool("z", "z/pay", "pay", flaky)
    with pytest.raises(ValueError, match="timed out"):  # rebuilt from the recording
        await runtime.call_tool("z", "z/pay", "pay", flaky)
    assert attempts == [1]
    assert await runtime.call_tool("z", "z/pay", "pay", flaky, retry_failed=True) == "done"
    assert attempts == [1, 2]
