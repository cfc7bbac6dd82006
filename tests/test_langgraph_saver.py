"""LivingAISaver's own promises, beyond LangGraph's conformance suite: what it stores (a
value once per version, a growing list by its new items), what it refuses to read
(pickle, classes off the allowlist), retention that keeps what a kept checkpoint needs,
sync calls that cannot deadlock, and heads that other processes see move."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph

from livingai import (
    CheckpointCorruptError,
    ConfigError,
    ExecutionNode,
    InvalidNodeError,
    SQLiteStore,
)
from livingai.adapters.langgraph import LivingAISaver, layout
from livingai.adapters.langgraph.saver import MAX_CHAIN
from livingai.adapters.langgraph.values import SINGLE, Entry
from tests.langgraph_support import SAVER_KINDS, Backend, backend

DOCUMENT = " ".join(f"word{i % 997}x{i % 13}" for i in range(12_000))  # about 100 KB


class Chat(TypedDict, total=False):
    document: str
    messages: Annotated[list[Any], add_messages]


def chat_graph(saver: LivingAISaver) -> CompiledStateGraph[Any, Any, Any, Any]:
    def reply(state: Chat) -> dict[str, Any]:
        return {"messages": [AIMessage(f"reply {len(state['messages'])}")]}

    graph = StateGraph(Chat)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    graph.add_edge("reply", END)
    return graph.compile(checkpointer=saver)


async def chat(saver: LivingAISaver, thread: str, turns: int) -> RunnableConfig:
    graph = chat_graph(saver)
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    for turn in range(turns):
        update: dict[str, Any] = {"messages": [HumanMessage(f"turn {turn}")]}
        if turn == 0:
            update["document"] = DOCUMENT
        await graph.ainvoke(update, config)
    return config


@pytest.fixture(params=SAVER_KINDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from backend(str(request.param), tmp_path)


@pytest.fixture
async def saver(where: Backend) -> AsyncIterator[LivingAISaver]:
    opened = LivingAISaver(where.store())
    yield opened
    await opened.aclose()


async def saver_nodes(saver: LivingAISaver, thread: str, kind: str) -> list[ExecutionNode]:
    return [n for n in await saver.engine.list_nodes(thread) if f"/{kind}" in n.id]


# -- what is stored ------------------------------------------------------------------------


async def test_an_unchanged_value_is_stored_once_and_a_growing_list_by_its_additions(
    saver: LivingAISaver,
) -> None:
    config = await chat(saver, "chat", 12)
    state = await chat_graph(saver).aget_state(config)
    assert state.values["document"] == DOCUMENT
    assert [m.content for m in state.values["messages"]][-2:] == ["turn 11", "reply 23"]

    entries = await stored_entries(saver, "chat")
    documents = [e for e in entries if e.channel == "document"]
    assert len(documents) == 1  # twelve turns, one copy
    lists = [e for e in entries if e.channel == "messages"]
    assert len(lists) == 24
    # Each version adds to the one before it rather than repeating it, but for one whole
    # copy every MAX_CHAIN + 1 versions, which bounds the reads a version takes.
    assert sum(e.base is None for e in lists) == -(-len(lists) // (MAX_CHAIN + 1))
    stored = sum(len(data) for e in lists for _, data in e.items)
    whole = sum(len(saver.serde.dumps_typed(state.values["messages"][:n])[1]) for n in range(1, 25))
    assert stored < whole / 4  # linear in the conversation, not quadratic


async def stored_entries(saver: LivingAISaver, thread: str) -> list[Entry]:
    """Every value entry the thread's checkpoints hold."""
    entries = []
    for node in await saver_nodes(saver, thread, layout.CHECKPOINT):
        state = await saver.engine.decode_state(node)
        assert state is not None
        entries += [Entry.unpack(part) for part in layout.unpack(state)[5:]]
    return entries


async def test_a_second_saver_sees_the_head_move(where: Backend) -> None:
    """A head is read from the store, not a cache: a thread that another process (here,
    another saver with its own engine) moved on is read where it is now."""
    first, second = LivingAISaver(where.store()), LivingAISaver(where.store())
    try:
        config = await chat(first, "shared", 1)
        seen = await second.aget_tuple(config)
        assert seen is not None
        await chat(first, "shared", 2)  # two more turns: six messages in all
        moved = await second.aget_tuple(config)
        assert moved is not None
        assert moved.checkpoint["id"] > seen.checkpoint["id"]
        assert len(moved.checkpoint["channel_values"]["messages"]) == 6
    finally:
        await first.aclose()
        await second.aclose()


# -- what is never read ------------------------------------------------------------------------


@dataclass
class Booking:
    flight: str
    made: ClassVar[int] = 0

    def __post_init__(self) -> None:
        Booking.made += 1


def put_config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


async def put_value(saver: LivingAISaver, thread: str, channel: str, value: object) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {channel: value}
    checkpoint["channel_versions"] = {channel: saver.get_next_version(None, None)}
    await saver.aput(put_config(thread), checkpoint, {"step": 0}, checkpoint["channel_versions"])
    return checkpoint["id"]


async def test_a_class_off_the_allowlist_is_an_error_naming_where_it_was(where: Backend) -> None:
    writer = LivingAISaver(where.store(), allowed_types=[Booking])
    reader = LivingAISaver(where.store())
    try:
        checkpoint_id = await put_value(writer, "t-unsafe", "booking", Booking("LH 400"))
        got = await writer.aget_tuple(put_config("t-unsafe"))
        assert got is not None
        assert got.checkpoint["channel_values"]["booking"] == Booking("LH 400")
        made = Booking.made
        with pytest.raises(CheckpointCorruptError) as caught:
            await reader.aget_tuple(put_config("t-unsafe"))
        message = str(caught.value)
        for part in ("'t-unsafe'", checkpoint_id, "'booking'", "Booking", "allowed_types"):
            assert part in message
        assert Booking.made == made  # never constructed
    finally:
        await writer.aclose()
        await reader.aclose()


pickled: list[str] = []


def mark_unpickled() -> str:
    pickled.append("ran")
    return "pwned"


class Payload:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (mark_unpickled, ())


async def test_pickle_in_the_store_is_refused_and_never_run(saver: LivingAISaver) -> None:
    import pickle

    checkpoint_id = await put_value(saver, "t-pickle", "notes", "harmless")
    (node,) = await saver_nodes(saver, "t-pickle", layout.CHECKPOINT)
    state = await saver.engine.decode_state(node)
    assert state is not None
    forged = Entry("notes", SINGLE, [("pickle", pickle.dumps(Payload()))])
    node.checkpoint = None
    await saver.engine.save(node, layout.pack([*layout.unpack(state)[:5], forged.pack()]))
    fresh = LivingAISaver(saver.engine)
    with pytest.raises(CheckpointCorruptError, match="never read") as caught:
        await fresh.aget_tuple(put_config("t-pickle"))
    assert checkpoint_id in str(caught.value)
    assert "'notes'" in str(caught.value)
    assert pickled == []


async def test_an_unserialisable_value_is_refused_naming_it_and_stores_nothing(
    saver: LivingAISaver,
) -> None:
    with pytest.raises(InvalidNodeError, match=r"'t-bad'.*channel 'socket'"):
        await put_value(saver, "t-bad", "socket", threading.Lock())
    assert await saver.aget_tuple(put_config("t-bad")) is None


# -- retention -----------------------------------------------------------------------------


async def test_keep_last_keeps_what_the_kept_checkpoints_need(where: Backend) -> None:
    saver = LivingAISaver(where.store(), keep_last=3)
    try:
        config = await chat(saver, "kept", 8)
        await saver.aretain()
        listed = [item async for item in saver.alist(config)]
        assert len(listed) == 3
        # The document was stored by the first checkpoint, long deleted; the message list
        # builds on versions whose checkpoints are gone: both still read back whole.
        state = await chat_graph(saver).aget_state(config)
        assert state.values["document"] == DOCUMENT
        assert len(state.values["messages"]) == 16
        for item in listed:
            assert "messages" in item.checkpoint["channel_values"]
        # Values the kept checkpoints inherited from deleted ones (the document, the list
        # the oldest kept one extends) moved to nodes of their own, once each; nothing
        # else of the deleted checkpoints is left.
        moved = [n.input["channel"] for n in await saver_nodes(saver, "kept", layout.VALUE)]
        assert "document" in moved
        assert len(moved) == len(set(moved))
        assert len(await saver_nodes(saver, "kept", layout.CHECKPOINT)) == 3
        writes = await saver_nodes(saver, "kept", layout.WRITES)
        kept_ids = {item.checkpoint["id"] for item in listed}
        assert {n.input["checkpoint_id"] for n in writes} <= kept_ids
    finally:
        await saver.aclose()


async def test_ttl_deletes_threads_untouched_for_longer(saver: LivingAISaver) -> None:
    aged = LivingAISaver(saver.engine, ttl=timedelta(hours=1))
    await chat(aged, "old", 1)
    soon = datetime.now(UTC) + timedelta(minutes=30)
    assert await aged.aretain(now=soon) == {"threads_deleted": 0, "checkpoints_deleted": 0}
    assert await aged.aget_tuple(put_config("old")) is not None
    later = datetime.now(UTC) + timedelta(hours=2)
    assert (await aged.aretain(now=later))["threads_deleted"] == 1
    assert await aged.aget_tuple(put_config("old")) is None


async def test_pruning_keeps_the_ancestors_a_delta_channel_rebuilds_from(
    saver: LivingAISaver,
) -> None:
    ids: list[str] = []
    config = put_config("t-delta")
    counters = [None, {"log": (0, 0)}, {"log": (1, 1)}, {"log": (2, 2)}]
    for counter in counters:
        checkpoint = empty_checkpoint()
        metadata: dict[str, Any] = {"step": len(ids)}
        if counter is not None:
            metadata["counters_since_delta_snapshot"] = counter
        config = await saver.aput(config, checkpoint, metadata, {})  # type: ignore[arg-type]
        ids.append(checkpoint["id"])
    await saver.aprune(["t-delta"])
    left = [item.checkpoint["id"] async for item in saver.alist(put_config("t-delta"))]
    # The newest two rebuild the channel from their parents, back to the snapshot at ids[1].
    assert left == ids[:0:-1]


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep_last"):
        LivingAISaver(SQLiteStore(tmp_path / "a.db"), keep_last=0)
    with pytest.raises(ConfigError, match="ttl"):
        LivingAISaver(SQLiteStore(tmp_path / "a.db"), ttl=timedelta(0))


async def test_a_config_without_a_thread_is_a_clear_error(saver: LivingAISaver) -> None:
    with pytest.raises(ValueError, match="thread_id"):
        await saver.aget_tuple({"configurable": {}})


# -- sync and async ------------------------------------------------------------------------


async def test_a_sync_call_on_the_loop_thread_raises_naming_the_async_method(
    saver: LivingAISaver,
) -> None:
    with pytest.raises(RuntimeError, match=r"await saver\.aget_tuple"):
        saver.get_tuple(put_config("t"))
    with pytest.raises(RuntimeError, match=r"await saver\.aput"):
        saver.put(put_config("t"), empty_checkpoint(), {}, {})


async def test_sync_calls_from_another_thread_run_on_the_savers_loop(
    saver: LivingAISaver,
) -> None:
    config = await chat(saver, "mixed", 1)
    # graph.invoke from a worker thread, while this loop keeps the engine
    result = await asyncio.to_thread(
        chat_graph(saver).invoke, {"messages": [HumanMessage("from a thread")]}, config
    )
    assert [m.content for m in result["messages"]][-2:] == ["from a thread", "reply 3"]


def test_a_sync_only_saver_runs_its_engine_on_a_loop_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    with LivingAISaver.from_url(f"sqlite:///{path}") as saver:
        graph = chat_graph(saver)
        config: RunnableConfig = {"configurable": {"thread_id": "sync"}}
        graph.invoke({"messages": [HumanMessage("hello")], "document": "d"}, config)
        graph.invoke({"messages": [HumanMessage("again")]}, config)
        assert len(list(saver.list(config))) == 6  # input, step 0, step 1 per invoke
    saver.close()  # closing again is a no-op

    async def reopen() -> list[str]:
        async with LivingAISaver.from_url(f"sqlite:///{path}") as again:
            state = await chat_graph(again).aget_state(config)
            return [str(m.content) for m in state.values["messages"]]

    assert asyncio.run(reopen()) == ["hello", "reply 1", "again", "reply 3"]


def test_graphs_on_many_threads_share_the_savers_one_loop(tmp_path: Path) -> None:
    """The first sync calls may come from several threads at once: one loop serves all."""

    def loops() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "livingai-langgraph"}

    before = loops()
    with LivingAISaver.from_url(f"sqlite:///{tmp_path / 'threads.db'}") as saver:
        graph = chat_graph(saver)
        start = threading.Barrier(8)

        def chat_once(n: int) -> int:
            start.wait(timeout=10)
            config: RunnableConfig = {"configurable": {"thread_id": f"t{n}"}}
            return len(graph.invoke({"messages": [HumanMessage(f"hi {n}")]}, config)["messages"])

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(chat_once, range(8))) == [2] * 8
        assert len(loops() - before) == 1
    assert loops() - before == set()  # and closing stopped it
