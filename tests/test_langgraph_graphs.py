"""LivingAISaver under real LangGraph graphs, on SQLite, Redis and PostgreSQL.

Every graph is a real StateGraph; the chat models are fakes (tests/langgraph_support.py)
that need no key and no network. Nodes count their calls, so a test sees what really ran
again after an interrupt, a failure, a fork or a crash. Where a test reads state back it
also does so through a second saver over a new store object on the same data, so nothing
is answered from the first one's memory.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import operator
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability, StateSnapshot, interrupt

from livingai import SQLiteStore
from livingai.adapters.langgraph import LivingAISaver
from tests.langgraph_support import SAVER_KINDS, Backend, EchoModel, backend, contents
from tests.services import ROOT, unique_name

Graph = CompiledStateGraph[Any, Any, Any, Any]
Saver = BaseCheckpointSaver[Any]
Calls = Counter[str]

WAIT_SECONDS = 20.0  # the bound on every wait for another process or task


class Savers:
    """LivingAISavers over one backend, each on a store object of its own (so one never
    answers from what another holds in memory); all closed at the end."""

    def __init__(self, where: Backend) -> None:
        self.backend = where
        self.opened: list[LivingAISaver] = []

    def open(self) -> LivingAISaver:
        saver = LivingAISaver(self.backend.store())
        self.opened.append(saver)
        return saver

    async def close(self) -> None:
        for saver in self.opened:
            await saver.aclose()


@pytest.fixture(params=SAVER_KINDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from backend(str(request.param), tmp_path)


@pytest.fixture
async def savers(where: Backend) -> AsyncIterator[Savers]:
    opened = Savers(where)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def saver(savers: Savers) -> Saver:
    return savers.open()


def new_thread() -> RunnableConfig:
    return {"configurable": {"thread_id": unique_name("thread")}}


def checkpoint_id(config: RunnableConfig | None) -> str | None:
    return None if config is None else str(config["configurable"]["checkpoint_id"])


def step(snapshot: StateSnapshot) -> int:
    assert snapshot.metadata is not None
    return int(snapshot.metadata["step"])


def source(snapshot: StateSnapshot) -> str:
    assert snapshot.metadata is not None
    return str(snapshot.metadata["source"])


async def history(graph: Graph, config: RunnableConfig, **options: Any) -> list[StateSnapshot]:
    return [snapshot async for snapshot in graph.aget_state_history(config, **options)]


def assert_one_tree(snapshots: list[StateSnapshot]) -> None:
    """Distinct checkpoints, each one's parent listed (the first has none)."""
    ids = [checkpoint_id(s.config) for s in snapshots]
    assert len(set(ids)) == len(ids), ids
    roots = [s for s in snapshots if s.parent_config is None]
    assert len(roots) == 1, [checkpoint_id(s.config) for s in roots]
    for snapshot in snapshots:
        if snapshot.parent_config is not None:
            assert checkpoint_id(snapshot.parent_config) in ids


# -- graphs ------------------------------------------------------------------------------


def chat_graph(saver: Saver) -> Graph:
    model = EchoModel()

    async def chat(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=saver)


class Log(TypedDict):
    log: Annotated[list[str], operator.add]


TRIP = ["plan", "search", "book"]


def linear_graph(saver: Saver, calls: Calls) -> Graph:
    """plan -> search -> book, each appending its name to the log."""
    builder = StateGraph(Log)

    def node(name: str) -> Any:
        def run(state: Log) -> dict[str, Any]:
            calls[name] += 1
            return {"log": [name]}

        return run

    for name in TRIP:
        builder.add_node(name, node(name))
    builder.add_edge(START, TRIP[0])
    for first, then in itertools.pairwise(TRIP):
        builder.add_edge(first, then)
    builder.add_edge(TRIP[-1], END)
    return builder.compile(checkpointer=saver)


class Article(TypedDict):
    draft: str
    log: Annotated[list[str], operator.add]


def review_graph(saver: Saver, calls: Calls) -> Graph:
    """write -> review (two interrupts: a verdict, then a title) -> publish."""

    def write(state: Article) -> dict[str, Any]:
        calls["write"] += 1
        return {"draft": f"draft of {state['draft']}", "log": ["write"]}

    def review(state: Article) -> dict[str, Any]:
        calls["review"] += 1
        verdict = interrupt({"question": "publish?", "draft": state["draft"]})
        title = interrupt({"question": "title?"})
        return {"log": [f"review:{verdict}:{title}"]}

    def publish(state: Article) -> dict[str, Any]:
        calls["publish"] += 1
        return {"log": ["publish"]}

    builder = StateGraph(Article)
    builder.add_node("write", write)
    builder.add_node("review", review)
    builder.add_node("publish", publish)
    builder.add_edge(START, "write")
    builder.add_edge("write", "review")
    builder.add_edge("review", "publish")
    builder.add_edge("publish", END)
    return builder.compile(checkpointer=saver)


# -- conversation ------------------------------------------------------------------------


async def test_a_conversation_accumulates_across_turns(savers: Savers) -> None:
    graph = chat_graph(savers.open())
    config = new_thread()
    expected: list[tuple[str, str]] = []
    result: dict[str, Any] = {}
    for turn, text in enumerate(["hello", "book a flight", "to Lisbon"], 1):
        result = await graph.ainvoke({"messages": [HumanMessage(text)]}, config)
        expected += [("human", text), ("ai", f"echo #{turn}: {text}")]
        assert contents(result["messages"]) == expected
        snapshot = await graph.aget_state(config)
        assert snapshot.values["messages"] == result["messages"]  # ids and all
        assert snapshot.next == ()
    ids = [message.id for message in result["messages"]]
    assert None not in ids
    assert len(set(ids)) == len(ids)

    reopened = chat_graph(savers.open())
    snapshot = await reopened.aget_state(config)
    assert snapshot.values["messages"] == result["messages"]
    assert (await reopened.aget_state(new_thread())).values == {}  # threads are apart

    result = await reopened.ainvoke({"messages": [HumanMessage("again")]}, config)
    assert contents(result["messages"]) == [*expected, ("human", "again"), ("ai", "echo #4: again")]
    assert (await graph.aget_state(config)).values["messages"] == result["messages"]


# -- interrupts --------------------------------------------------------------------------


async def test_interrupts_pause_and_resume_with_the_answers(savers: Savers) -> None:
    calls: Calls = Counter()
    graph = review_graph(savers.open(), calls)
    config = new_thread()

    result = await graph.ainvoke({"draft": "trip", "log": []}, config)
    first = {"question": "publish?", "draft": "draft of trip"}
    assert [i.value for i in result["__interrupt__"]] == [first]
    for reader in (graph, review_graph(savers.open(), calls)):
        snapshot = await reader.aget_state(config)
        assert snapshot.next == ("review",)
        assert snapshot.values == {"draft": "draft of trip", "log": ["write"]}
        assert [i.value for i in snapshot.interrupts] == [first]
        assert [(t.name, [i.value for i in t.interrupts]) for t in snapshot.tasks] == [
            ("review", [first])
        ]

    result = await graph.ainvoke(Command(resume="yes"), config)
    assert [i.value for i in result["__interrupt__"]] == [{"question": "title?"}]
    snapshot = await graph.aget_state(config)
    assert snapshot.next == ("review",)
    assert [i.value for i in snapshot.interrupts] == [{"question": "title?"}]

    # The last answer through another saver: the first answer must come from the store.
    result = await review_graph(savers.open(), calls).ainvoke(Command(resume="Lisbon"), config)
    assert "__interrupt__" not in result
    assert result["log"] == ["write", "review:yes:Lisbon", "publish"]
    assert calls == {"write": 1, "review": 3, "publish": 1}  # review re-runs per answer
    snapshot = await graph.aget_state(config)
    assert (snapshot.next, snapshot.interrupts) == ((), ())
    assert snapshot.values["log"] == result["log"]


# -- time travel -------------------------------------------------------------------------


async def test_history_lists_every_checkpoint_newest_first(savers: Savers) -> None:
    calls: Calls = Counter()
    graph = linear_graph(savers.open(), calls)
    config = new_thread()
    await graph.ainvoke({"log": ["start"]}, config)

    snapshots = await history(linear_graph(savers.open(), calls), config)
    assert [step(s) for s in snapshots] == [3, 2, 1, 0, -1]
    assert [source(s) for s in snapshots] == ["loop", "loop", "loop", "loop", "input"]
    assert [s.next for s in snapshots] == [(), ("book",), ("search",), ("plan",), ("__start__",)]
    assert [s.values.get("log") for s in snapshots] == [
        ["start", "plan", "search", "book"],
        ["start", "plan", "search"],
        ["start", "plan"],
        ["start"],
        [],
    ]
    for newer, older in itertools.pairwise(snapshots):
        assert checkpoint_id(newer.parent_config) == checkpoint_id(older.config)
    assert snapshots[-1].parent_config is None
    ids = [str(checkpoint_id(s.config)) for s in snapshots]
    assert ids == sorted(ids, reverse=True)  # checkpoint ids sort by time

    assert checkpoint_id((await graph.aget_state(config)).config) == ids[0]
    for snapshot in snapshots:  # each one read back by its own id
        again = await graph.aget_state(snapshot.config)
        assert (again.values, again.next) == (snapshot.values, snapshot.next)
    assert [checkpoint_id(s.config) for s in await history(graph, config, limit=2)] == ids[:2]
    assert [
        checkpoint_id(s.config) for s in await history(graph, config, before=snapshots[1].config)
    ] == ids[2:]


async def test_resuming_from_an_old_checkpoint_branches(savers: Savers) -> None:
    calls: Calls = Counter()
    graph = linear_graph(savers.open(), calls)
    config = new_thread()
    await graph.ainvoke({"log": ["start"]}, config)
    original = await history(graph, config)
    before_search = original[2]
    assert before_search.next == ("search",)

    result = await graph.ainvoke(None, before_search.config)
    assert result["log"] == ["start", "plan", "search", "book"]
    assert calls == {"plan": 1, "search": 2, "book": 2}  # only what followed re-ran

    snapshots = await history(linear_graph(savers.open(), calls), config)
    assert len(snapshots) == len(original) + 3
    assert_one_tree(snapshots)
    old_ids = {checkpoint_id(s.config) for s in original}
    branch = [s for s in snapshots if checkpoint_id(s.config) not in old_ids]
    assert [source(s) for s in branch] == ["loop", "loop", "fork"]
    assert [s.next for s in branch] == [(), ("book",), ("search",)]
    assert checkpoint_id(branch[-1].parent_config) == checkpoint_id(before_search.config)
    for newer, older in itertools.pairwise(branch):
        assert checkpoint_id(newer.parent_config) == checkpoint_id(older.config)
    assert checkpoint_id(snapshots[0].config) == checkpoint_id(branch[0].config)  # latest
    for snapshot in original:  # the first branch is as it was
        again = await graph.aget_state(snapshot.config)
        assert (again.values, again.next) == (snapshot.values, snapshot.next)
        assert checkpoint_id(again.parent_config) == checkpoint_id(snapshot.parent_config)


async def test_update_state_forks_and_leaves_the_original_branch(savers: Savers) -> None:
    calls: Calls = Counter()
    graph = linear_graph(savers.open(), calls)
    config = new_thread()
    await graph.ainvoke({"log": ["start"]}, config)
    original = await history(graph, config)
    before_book = original[1]
    assert before_book.next == ("book",)

    fork = await graph.aupdate_state(before_book.config, {"log": ["edited"]}, as_node="search")
    forked = await linear_graph(savers.open(), calls).aget_state(fork)
    assert checkpoint_id(forked.parent_config) == checkpoint_id(before_book.config)
    assert forked.values["log"] == ["start", "plan", "search", "edited"]
    assert forked.next == ("book",)
    assert source(forked) == "update"
    assert checkpoint_id((await graph.aget_state(config)).config) == checkpoint_id(fork)

    again = await graph.aget_state(before_book.config)
    assert (again.values, again.next) == (before_book.values, before_book.next)
    old_end = await graph.aget_state(original[0].config)
    assert old_end.values["log"] == ["start", "plan", "search", "book"]

    result = await graph.ainvoke(None, fork)
    assert result["log"] == ["start", "plan", "search", "edited", "book"]
    assert calls == {"plan": 1, "search": 1, "book": 2}
    snapshots = await history(graph, config)
    assert len(snapshots) == len(original) + 2
    assert_one_tree(snapshots)
    assert checkpoint_id(snapshots[0].parent_config) == checkpoint_id(fork)


# -- subgraphs ---------------------------------------------------------------------------


class Trip(TypedDict):
    topic: str
    answer: str
    log: Annotated[list[str], operator.add]


class Research(TypedDict):
    topic: str
    answer: str
    notes: Annotated[list[str], operator.add]


def nested_graph(saver: Saver, calls: Calls) -> Graph:
    """prepare -> research (a subgraph: gather -> approve, which interrupts -> write) ->
    finish. The subgraph's `notes` are its own; `topic` and `answer` are shared."""

    def gather(state: Research) -> dict[str, Any]:
        calls["gather"] += 1
        return {"notes": [f"found {state['topic']}"]}

    def approve(state: Research) -> dict[str, Any]:
        calls["approve"] += 1
        verdict = interrupt({"approve": state["notes"]})
        return {"notes": [f"approved:{verdict}"]}

    def write(state: Research) -> dict[str, Any]:
        calls["write"] += 1
        return {"answer": " / ".join(state["notes"])}

    inner = StateGraph(Research)
    inner.add_node("gather", gather)
    inner.add_node("approve", approve)
    inner.add_node("write", write)
    inner.add_edge(START, "gather")
    inner.add_edge("gather", "approve")
    inner.add_edge("approve", "write")
    inner.add_edge("write", END)

    def prepare(state: Trip) -> dict[str, Any]:
        calls["prepare"] += 1
        return {"topic": state["topic"].upper(), "log": ["prepare"]}

    def finish(state: Trip) -> dict[str, Any]:
        calls["finish"] += 1
        return {"log": [f"finish:{state['answer']}"]}

    outer = StateGraph(Trip)
    outer.add_node("prepare", prepare)
    outer.add_node("research", inner.compile())
    outer.add_node("finish", finish)
    outer.add_edge(START, "prepare")
    outer.add_edge("prepare", "research")
    outer.add_edge("research", "finish")
    outer.add_edge("finish", END)
    return outer.compile(checkpointer=saver)


async def test_a_subgraph_keeps_its_own_state_and_interrupts(savers: Savers) -> None:
    calls: Calls = Counter()
    graph = nested_graph(savers.open(), calls)
    config = new_thread()

    result = await graph.ainvoke({"topic": "lisbon", "answer": "", "log": []}, config)
    question = {"approve": ["found LISBON"]}
    assert [i.value for i in result["__interrupt__"]] == [question]

    for reader in (graph, nested_graph(savers.open(), calls)):
        snapshot = await reader.aget_state(config, subgraphs=True)
        assert snapshot.next == ("research",)
        assert snapshot.values == {"topic": "LISBON", "answer": "", "log": ["prepare"]}
        assert [i.value for i in snapshot.interrupts] == [question]
        (task,) = snapshot.tasks
        assert task.name == "research"
        inner = task.state
        assert isinstance(inner, StateSnapshot)
        assert inner.values == {"topic": "LISBON", "answer": "", "notes": ["found LISBON"]}
        assert inner.next == ("approve",)
        assert [i.value for i in inner.interrupts] == [question]
        namespace = str(inner.config["configurable"]["checkpoint_ns"])
        assert namespace.startswith("research:")
        direct = await reader.aget_state(inner.config)  # the namespace read on its own
        assert (direct.values, direct.next) == (inner.values, inner.next)
        in_namespace: RunnableConfig = {
            "configurable": {**config["configurable"], "checkpoint_ns": namespace}
        }
        inner_history = await history(reader, in_namespace)
        assert [s.next for s in inner_history] == [("approve",), ("gather",), ("__start__",)]
        assert_one_tree(inner_history)

    result = await nested_graph(savers.open(), calls).ainvoke(Command(resume="ok"), config)
    assert result == {
        "topic": "LISBON",
        "answer": "found LISBON / approved:ok",
        "log": ["prepare", "finish:found LISBON / approved:ok"],
    }
    assert calls == {"prepare": 1, "gather": 1, "approve": 2, "write": 1, "finish": 1}
    snapshot = await graph.aget_state(config, subgraphs=True)
    assert (snapshot.next, snapshot.tasks, snapshot.interrupts) == ((), (), ())
    assert snapshot.values == result


# -- parallel branches -------------------------------------------------------------------


async def stored_write(saver: Saver, config: RunnableConfig, value: object) -> None:
    """Wait until the thread's latest checkpoint has a pending write of `value`."""
    latest: RunnableConfig = {"configurable": {**config["configurable"], "checkpoint_ns": ""}}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while True:
        found = await saver.aget_tuple(latest)
        if found is not None and any(w[2] == value for w in found.pending_writes or ()):
            return
        if loop.time() > deadline:
            raise AssertionError(f"no pending write of {value!r} was stored")
        await asyncio.sleep(0.005)  # polling, bounded by the deadline


def fan_out_graph(saver: Saver, calls: Calls, config: RunnableConfig) -> Graph:
    """START -> (good, flaky) in one super-step -> join. The first flaky call fails, once
    good's write is stored (so the failure cannot cancel good before it is kept)."""
    good_done = asyncio.Event()

    async def good(state: Log) -> dict[str, Any]:
        calls["good"] += 1
        good_done.set()
        return {"log": ["good"]}

    async def flaky(state: Log) -> dict[str, Any]:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            await asyncio.wait_for(good_done.wait(), WAIT_SECONDS)
            await stored_write(saver, config, ["good"])
            raise RuntimeError("flaky branch failed")
        return {"log": ["flaky"]}

    def join(state: Log) -> dict[str, Any]:
        calls["join"] += 1
        return {"log": ["join"]}

    builder = StateGraph(Log)
    builder.add_node("good", good)
    builder.add_node("flaky", flaky)
    builder.add_node("join", join)
    builder.add_edge(START, "good")
    builder.add_edge(START, "flaky")
    builder.add_edge(["good", "flaky"], "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=saver)


async def test_a_failed_branch_reruns_alone(savers: Savers) -> None:
    calls: Calls = Counter()
    config = new_thread()
    saver = savers.open()
    graph = fan_out_graph(saver, calls, config)
    with pytest.raises(RuntimeError, match="flaky branch failed"):
        await graph.ainvoke({"log": ["start"]}, config)

    reopened = fan_out_graph(savers.open(), calls, config)
    snapshot = await reopened.aget_state(config)
    assert snapshot.values == {"log": ["start", "good"]}  # good's write is applied
    assert snapshot.next == ("flaky",)
    tasks = {task.name: task for task in snapshot.tasks}
    assert tasks["good"].result == {"log": ["good"]}  # kept as a pending write
    assert tasks["good"].error is None
    assert "flaky branch failed" in str(tasks["flaky"].error)

    result = await reopened.ainvoke(None, config)
    assert sorted(result["log"]) == sorted(["start", "good", "flaky", "join"])
    assert result["log"][-1] == "join"
    assert calls == {"good": 1, "flaky": 2, "join": 1}  # good did not run again
    assert (await graph.aget_state(config)).next == ()


# -- durability --------------------------------------------------------------------------


@pytest.mark.parametrize(("durability", "checkpoints"), [("sync", 5), ("async", 5), ("exit", 1)])
async def test_durability_modes_agree_on_the_result(
    savers: Savers, durability: Durability, checkpoints: int
) -> None:
    calls: Calls = Counter()
    graph = linear_graph(savers.open(), calls)
    config = new_thread()
    result = await graph.ainvoke({"log": ["start"]}, config, durability=durability)
    assert result == {"log": ["start", *TRIP]}
    assert calls == dict.fromkeys(TRIP, 1)

    snapshots = await history(linear_graph(savers.open(), calls), config)
    assert len(snapshots) == checkpoints
    assert_one_tree(snapshots)
    latest = snapshots[0]
    assert (latest.values, latest.next, step(latest)) == (result, (), len(TRIP))

    result = await graph.ainvoke({"log": ["again"]}, config, durability=durability)
    assert result == {"log": ["start", *TRIP, "again", *TRIP]}
    snapshots = await history(graph, config)
    assert len(snapshots) == 2 * checkpoints
    assert_one_tree(snapshots)


# -- async and sync APIs -----------------------------------------------------------------


async def test_astream_yields_each_update_and_stores_them(savers: Savers) -> None:
    calls: Calls = Counter()
    graph = linear_graph(savers.open(), calls)
    config = new_thread()
    updates = [u async for u in graph.astream({"log": ["start"]}, config, stream_mode="updates")]
    assert updates == [{name: {"log": [name]}} for name in TRIP]
    snapshot = await linear_graph(savers.open(), calls).aget_state(config)
    assert snapshot.values == {"log": ["start", *TRIP]}

    review = review_graph(savers.open(), calls)
    config = new_thread()
    chunks = [c async for c in review.astream({"draft": "x", "log": []}, config)]
    assert [i.value for i in chunks[-1]["__interrupt__"]] == [
        {"question": "publish?", "draft": "draft of x"}
    ]
    for answer in ("yes", "T"):
        chunks = [c async for c in review.astream(Command(resume=answer), config)]
    assert chunks[-1] == {"publish": {"log": ["publish"]}}
    snapshot = await review_graph(savers.open(), calls).aget_state(config)
    assert snapshot.values["log"] == ["write", "review:yes:T", "publish"]


def run_sync_graphs(saver: Saver) -> None:
    """The sync API end to end: invoke, get_state, history, update_state, interrupts."""
    calls: Calls = Counter()
    graph = linear_graph(saver, calls)
    config = new_thread()
    assert graph.invoke({"log": ["start"]}, config) == {"log": ["start", *TRIP]}
    assert graph.get_state(config).values == {"log": ["start", *TRIP]}
    snapshots = list(graph.get_state_history(config))
    assert [step(s) for s in snapshots] == [3, 2, 1, 0, -1]
    fork = graph.update_state(snapshots[1].config, {"log": ["edited"]}, as_node="search")
    assert graph.invoke(None, fork)["log"] == ["start", "plan", "search", "edited", "book"]
    assert graph.get_state(snapshots[0].config).values == {"log": ["start", *TRIP]}
    assert calls == {"plan": 1, "search": 1, "book": 2}

    review = review_graph(saver, calls)
    config = new_thread()
    assert "__interrupt__" in review.invoke({"draft": "x", "log": []}, config)
    assert review.get_state(config).next == ("review",)
    assert "__interrupt__" in review.invoke(Command(resume="yes"), config)
    result = review.invoke(Command(resume="T"), config)
    assert result["log"] == ["write", "review:yes:T", "publish"]


def test_the_sync_api_works_from_a_plain_thread(tmp_path: Path) -> None:
    def run() -> None:
        with LivingAISaver(SQLiteStore(tmp_path / "sync.db")) as saver:
            run_sync_graphs(saver)
        with LivingAISaver(SQLiteStore(tmp_path / "sync.db")) as reopened:
            threads = {t.config["configurable"]["thread_id"] for t in reopened.list(None)}
            assert len(threads) == 2

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result(timeout=WAIT_SECONDS)
    # Whatever the closed savers left behind (an event loop, a socket) is reported now, as
    # a ResourceWarning of this test, not of whichever test the garbage collector runs in.
    gc.collect()


async def test_sync_calls_from_a_worker_thread_share_the_saver(savers: Savers) -> None:
    """LangGraph runs sync code in threads while the loop runs: a sync call from one
    works, on the saver an async caller uses too."""
    saver = savers.open()
    await asyncio.to_thread(run_sync_graphs, saver)
    listed = [t async for t in saver.alist(None)]
    assert len({t.config["configurable"]["thread_id"] for t in listed}) == 2


async def test_a_sync_call_on_the_loop_thread_names_the_async_method(saver: Saver) -> None:
    config = new_thread()
    graph = linear_graph(saver, Counter())
    await graph.ainvoke({"log": []}, config)
    stored = [checkpoint_id(s.config) for s in await history(graph, config)]
    with pytest.raises(RuntimeError, match=r"saver\.aget_tuple\("):
        saver.get_tuple(config)
    with pytest.raises(RuntimeError, match=r"saver\.alist\("):
        list(saver.list(config))
    tuple_ = await saver.aget_tuple(config)
    assert tuple_ is not None
    with pytest.raises(RuntimeError, match=r"saver\.aput\("):
        saver.put(tuple_.config, tuple_.checkpoint, tuple_.metadata, {})
    with pytest.raises(RuntimeError, match=r"saver\.aput_writes\("):
        saver.put_writes(tuple_.config, [("log", ["x"])], "task")
    with pytest.raises(RuntimeError, match=r"aget_tuple"):
        graph.invoke({"log": []}, config)
    with pytest.raises(RuntimeError, match=r"aget_tuple"):
        graph.get_state(config)
    snapshots = await history(graph, config)  # the refused calls wrote nothing
    assert [checkpoint_id(s.config) for s in snapshots] == stored
    assert snapshots[0].values == {"log": TRIP}


# -- crash -------------------------------------------------------------------------------


def wait_for_file(path: Path, child: subprocess.Popen[bytes], log: Path) -> None:
    """Poll for `path` (bounded); fail early, with the child's output, if it exits."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        if child.poll() is not None:
            raise AssertionError(f"the child exited ({child.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path.name} after {WAIT_SECONDS}s:\n{log.read_text()}")
        time.sleep(0.01)  # polling, bounded by the deadline


def child(where: Backend, thread_id: str, work: Path, mode: str) -> list[str]:
    return [sys.executable, "-m", "tests.langgraph_child", mode, where.url, thread_id, str(work)]


@pytest.mark.crash
def test_a_killed_run_resumes_without_repeating_the_tool(where: Backend, tmp_path: Path) -> None:
    thread_id = unique_name("crash")
    marker, calls_file = tmp_path / "reached", tmp_path / "tool-calls"
    log = tmp_path / "crash-child.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            child(where, thread_id, tmp_path, "crash"), cwd=ROOT, stdout=out, stderr=out
        )
        try:
            wait_for_file(marker, process, log)
            process.send_signal(signal.SIGKILL)
            assert process.wait(WAIT_SECONDS) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(WAIT_SECONDS)
    assert calls_file.read_text().splitlines() == ["booked"]
    marker.unlink()

    resumed = subprocess.run(
        child(where, thread_id, tmp_path, "resume"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout.splitlines()[-1])
    assert report["before"] == ["slow"]  # the kill came after the tool step was stored
    assert report["next"] == []
    assert report["messages"] == [
        ["human", "book the trip"],
        ["ai", ""],
        ["tool", "appended booked"],
        ["ai", "done: appended booked"],
    ]
    assert report["slow"] == ["slow"]
    assert marker.exists()  # the slow node ran again: it had not finished
    assert calls_file.read_text().splitlines() == ["booked"]  # the tool ran exactly once
