"""LivingAISession, the OpenAI Agents SDK `Session` on livingai's stores: one conformance
over every store (order, limit, pop, clear, a second session object seeing the same
items), writers at once in one process and in several, interrupted tool calls, bad
input, the log's layout, and the SDK's Runner driving it.

Run as `python -m tests.openai_agents.test_session URL SESSION WRITER ROUNDS` it is one of
the writer processes of test_processes_add_and_pop_at_once: it says "ready", waits for a
line on stdin, then adds and pops, and prints what it popped as JSON on one line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from agents import Agent, RunConfig, Runner
from agents.items import TResponseInputItem
from agents.memory import Session, SessionABC, SessionSettings
from agents.testing import ScriptedModel, assistant_message

from livingai import (
    CheckpointEngine,
    CheckpointStore,
    ConfigError,
    InvalidNodeError,
    LeaseHeldError,
    MemoryStore,
    NodeRecord,
    NodeType,
    Status,
)
from livingai.adapters.openai_agents.session import (
    INTERRUPTED_OUTPUT,
    LivingAISession,
    execution_id_of,
)
from tests.conftest import StoreFactory
from tests.services import ROOT
from tests.store_urls import KINDS, fresh_store_url

Item = dict[str, Any]
NO_TRACES = RunConfig(tracing_disabled=True)


def message(text: str, role: str = "user") -> Item:
    return {"role": role, "content": text}


def call(call_id: str, name: str = "charge") -> Item:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"}


def output(call_id: str, text: str = "done") -> Item:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def interrupted(call_id: str) -> Item:
    return {"type": "function_call_output", "call_id": call_id, "output": INTERRUPTED_OUTPUT}


def items(*values: Item) -> list[TResponseInputItem]:
    return cast(list[TResponseInputItem], list(values))


def texts(found: Sequence[TResponseInputItem]) -> list[str]:
    return [str(cast(Item, item)["content"]) for item in found]


@asynccontextmanager
async def session_on(
    store: CheckpointStore, session_id: str = "chat", **options: Any
) -> AsyncIterator[LivingAISession]:
    async with LivingAISession(store, session_id, **options) as session:
        yield session


# -- the conformance, on every store ---------------------------------------------------------


async def test_it_is_an_sdk_session(store_factory: StoreFactory) -> None:
    async with session_on(store_factory(), "user-1") as session:
        assert isinstance(session, SessionABC)
        assert isinstance(session, Session)
        assert session.session_id == "user-1"
        assert session.session_settings == SessionSettings()
        assert await session.get_items() == []


async def test_items_come_back_in_the_order_added(store_factory: StoreFactory) -> None:
    async with session_on(store_factory()) as session:
        await session.add_items(items(message("a"), message("b", "assistant")))
        await session.add_items([])  # nothing to add: nothing stored
        await session.add_items(items(message("c")))
        await session.add_items(items(message("d", "assistant"), message("e"), message("f")))
        found = await session.get_items()
        assert texts(found) == ["a", "b", "c", "d", "e", "f"]
        assert found[1] == message("b", "assistant")
        assert len(await session.engine.versions(session.execution_id)) == 3


async def test_limit_gives_the_latest_items_oldest_first(store_factory: StoreFactory) -> None:
    async with session_on(store_factory(), session_settings={"limit": 2}) as session:
        await session.add_items(items(*(message(str(n)) for n in range(5))))
        assert texts(await session.get_items(3)) == ["2", "3", "4"]
        assert texts(await session.get_items(1)) == ["4"]
        assert texts(await session.get_items(5)) == ["0", "1", "2", "3", "4"]
        assert texts(await session.get_items(50)) == ["0", "1", "2", "3", "4"]
        assert await session.get_items(0) == []
        assert texts(await session.get_items()) == ["3", "4"]  # session_settings.limit
        session.session_settings = SessionSettings()
        assert texts(await session.get_items()) == ["0", "1", "2", "3", "4"]


async def test_pop_item_takes_the_most_recent_one(store_factory: StoreFactory) -> None:
    async with session_on(store_factory()) as session:
        assert await session.pop_item() is None
        await session.add_items(items(message("a"), message("b")))
        await session.add_items(items(message("c")))
        assert await session.pop_item() == message("c")
        assert await session.pop_item() == message("b")
        assert texts(await session.get_items()) == ["a"]
        await session.add_items(items(message("d")))
        assert texts(await session.get_items()) == ["a", "d"]
        assert await session.pop_item() == message("d")
        assert await session.pop_item() == message("a")
        assert await session.pop_item() is None
        assert await session.get_items() == []
        assert await session.engine.leases() == []  # every lease it took, released


async def test_clear_session_empties_it_and_it_goes_on(store_factory: StoreFactory) -> None:
    async with session_on(store_factory()) as session:
        await session.add_items(items(message("a"), message("b")))
        await session.clear_session()
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.clear_session()  # clearing an empty session is fine
        await session.add_items(items(message("c")))
        assert texts(await session.get_items()) == ["c"]
        assert await session.pop_item() == message("c")
        assert await session.get_items() == []


async def test_sessions_are_apart(store_factory: StoreFactory) -> None:
    engine = CheckpointEngine(store_factory())
    async with engine:
        one, two = LivingAISession(engine, "one"), LivingAISession(engine, "two")
        await one.add_items(items(message("1")))
        await two.add_items(items(message("2")))
        await two.clear_session()
        assert texts(await one.get_items()) == ["1"]
        assert await one.pop_item() == message("1")
        assert await two.get_items() == []
        await one.close()  # an engine it was given is not its to close
        assert not engine.closed


async def test_a_second_session_object_sees_the_same_items(
    persistent_factory: StoreFactory,
) -> None:
    async with session_on(persistent_factory(), "user-7") as first:
        await first.add_items(items(message("a"), message("b"), message("c")))
        assert await first.pop_item() == message("c")
    async with session_on(persistent_factory(), "user-7") as second:
        assert texts(await second.get_items()) == ["a", "b"]
        await second.add_items(items(message("d")))
        assert await second.pop_item() == message("d")
        await second.clear_session()
        await second.add_items(items(message("e")))
    async with session_on(persistent_factory(), "user-7") as third:
        assert texts(await third.get_items()) == ["e"]


# -- writers at once ---------------------------------------------------------------------------


def tagged(writer: str, call_number: int, size: int) -> list[TResponseInputItem]:
    return items(*(message(f"{writer}:{call_number}:{k}") for k in range(size)))


def check_history(
    final: Sequence[TResponseInputItem],
    popped: Sequence[TResponseInputItem | None],
    added: dict[str, int],
) -> None:
    """Every item added is either still there or was popped once; and what is left of
    each add_items call is the start of its items, contiguous and in order (a pop takes
    the newest item, so only a call's end can go)."""
    assert None not in popped
    left, gone = texts(final), texts(cast(list[TResponseInputItem], popped))
    assert len(set(gone)) == len(gone), "an item was popped twice"
    assert not set(left) & set(gone)
    assert len(set(left)) == len(left), "an item is there twice"
    expected = {f"{call_id}:{k}" for call_id, size in added.items() for k in range(size)}
    assert set(left) | set(gone) == expected
    places: dict[str, list[int]] = {}
    for place, text in enumerate(left):
        call_id, k = text.rsplit(":", 1)
        places.setdefault(call_id, []).append(place)
        assert int(k) == len(places[call_id]) - 1, f"{text}: out of order, or not a prefix"
    for call_id, found in places.items():
        assert found == list(range(found[0], found[0] + len(found))), f"{call_id} is split"


async def test_writers_at_once_in_one_process(store_factory: StoreFactory) -> None:
    """20 add_items and 20 pop_item calls at once through four engines on one store: the
    lease, not one engine's lock, keeps the pops apart."""
    store = store_factory()
    engines = [CheckpointEngine(store) for _ in range(4)]
    try:
        sessions = [LivingAISession(engine, "busy") for engine in engines]
        await sessions[0].add_items(tagged("seed", 0, 20))
        added = {"seed:0": 20}
        work: list[Any] = []
        for n in range(20):
            session = sessions[n % len(sessions)]
            added[f"w{n}:0"] = 3
            work.append(session.add_items(tagged(f"w{n}", 0, 3)))
            work.append(session.pop_item())
        results = await asyncio.wait_for(asyncio.gather(*work), timeout=45)
        popped = [result for result in results[1::2]]
        check_history(await sessions[1].get_items(), popped, added)
        assert len(popped) == 20
    finally:
        for engine in engines:
            await engine.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_processes_add_and_pop_at_once(kind: str, tmp_path: Path) -> None:
    """Four processes, each adding 3 items and popping one, ten times, all at once."""
    writers, rounds = 4, 10
    with fresh_store_url(kind, tmp_path, "livingai_test_oai_session") as url:
        async with LivingAISession.from_url(url, "shared") as session:
            await session.get_items()  # the store's schema is made before they start
            children = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.openai_agents.test_session",
                    url,
                    "shared",
                    f"w{n}",
                    str(rounds),
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                for n in range(writers)
            ]
            outputs: list[bytes] = []
            try:
                for child in children:
                    assert child.stdout is not None
                    line = await asyncio.wait_for(child.stdout.readline(), timeout=40)
                    if line != b"ready\n":
                        _, err = await asyncio.wait_for(child.communicate(), timeout=10)
                        pytest.fail(f"a writer did not start: {err.decode()[-2000:]}")
                for child in children:  # all of them at once, now
                    assert child.stdin is not None
                    child.stdin.write(b"go\n")
                    await child.stdin.drain()
                for child in children:
                    out, err = await asyncio.wait_for(child.communicate(), timeout=40)
                    assert child.returncode == 0, err.decode()[-2000:]
                    outputs.append(out)
            finally:
                for child in children:
                    if child.returncode is None:
                        child.kill()
                        await child.wait()
            popped = [item for out in outputs for item in json.loads(out.splitlines()[-1])]
            added = {f"w{n}:{r}": 3 for n in range(writers) for r in range(rounds)}
            check_history(await session.get_items(), popped, added)
            assert len(popped) == writers * rounds


async def _writer(url: str, session_id: str, writer: str, rounds: int) -> None:
    async with LivingAISession.from_url(url, session_id) as session:
        await session.get_items()  # connected
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        popped = []
        for call_number in range(rounds):
            await session.add_items(tagged(writer, call_number, 3))
            popped.append(await session.pop_item())
        print(json.dumps(popped), flush=True)


async def test_a_held_lease_makes_pop_wait_then_give_up() -> None:
    async with session_on(MemoryStore(), "held", wait_seconds=0.2) as session:
        await session.add_items(items(message("a")))
        lease = await session.engine.acquire_lease(session.execution_id, "someone", 30)
        with pytest.raises(LeaseHeldError, match=r"session 'held': another writer \(someone\)"):
            await session.pop_item()
        assert texts(await session.get_items()) == ["a"]
        await session.engine.release_lease(lease)
        assert await session.pop_item() == message("a")


class GatedStore(MemoryStore):
    """A memory store whose appends wait at a gate while it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def append(self, records: Sequence[NodeRecord], *, fences: Any = None) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        await super().append(records, fences=fences)


async def test_a_cancelled_pop_finishes_before_it_raises() -> None:
    store = GatedStore()
    async with session_on(store, "cancelled") as session:
        await session.add_items(items(message("a"), message("b")))
        store.gate.clear()
        pop = asyncio.ensure_future(session.pop_item())
        await asyncio.wait_for(store.waiting.wait(), timeout=10)  # its tombstone is writing
        pop.cancel()
        store.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(pop, timeout=10)
        # By the time the caller hears of the cancellation the pop is whole: stored, and
        # its lease released.
        stored = await store.list_versions(session.execution_id)
        assert [record.to_node().metadata["session_op"] for record in stored] == ["add", "pop"]
        assert await store.leases() == []
        assert texts(await session.get_items()) == ["a"]


# -- interrupted tool calls --------------------------------------------------------------------


async def test_a_call_without_its_output_gets_an_interrupted_one() -> None:
    async with session_on(MemoryStore()) as session:
        await session.add_items(items(message("pay"), call("c1")))
        assert await session.get_items() == [message("pay"), call("c1"), interrupted("c1")]
        assert await session.get_items(1) == [interrupted("c1")]
        assert await session.get_items(2) == [call("c1"), interrupted("c1")]
        # Only shown, never stored:
        versions = await session.engine.versions(session.execution_id)
        assert [v.output for v in versions] == [[message("pay"), call("c1")]]
        await session.add_items(items(message("and?")))
        assert await session.get_items() == [
            message("pay"),
            call("c1"),
            interrupted("c1"),
            message("and?"),
        ]
        # Its real output, added later, replaces it.
        await session.add_items(items(output("c1", "charged")))
        assert await session.get_items() == [
            message("pay"),
            call("c1"),
            message("and?"),
            output("c1", "charged"),
        ]


async def test_popping_the_call_removes_its_interrupted_output() -> None:
    async with session_on(MemoryStore()) as session:
        await session.add_items(items(message("pay"), call("c1")))
        assert await session.pop_item() == call("c1")
        assert await session.get_items() == [message("pay")]


async def test_parallel_and_custom_calls_each_get_their_own() -> None:
    custom = {"type": "custom_tool_call", "call_id": "k1", "name": "patch", "input": "x"}
    async with session_on(MemoryStore()) as session:
        await session.add_items(
            items(output("c0"), call("c0"), call("c1"), call("c2"), output("c2"), custom)
        )
        assert await session.get_items() == [
            output("c0"),
            call("c0"),
            interrupted("c0"),  # an output before the call does not answer it
            call("c1"),
            interrupted("c1"),
            call("c2"),
            output("c2"),
            custom,
            {"type": "custom_tool_call_output", "call_id": "k1", "output": INTERRUPTED_OUTPUT},
        ]


async def test_answered_calls_are_untouched(store_factory: StoreFactory) -> None:
    history = items(message("pay"), call("c1"), call("c2"), output("c2"), output("c1"))
    async with session_on(store_factory()) as session:
        await session.add_items(history)
        await session.add_items(items(message("paid", "assistant")))
        assert await session.get_items() == [*history, message("paid", "assistant")]


def test_the_interrupted_text_is_pinned() -> None:
    assert INTERRUPTED_OUTPUT == (
        "interrupted: this tool call was cut short before it returned a result, so it may "
        "or may not have acted; check before calling it again"
    )


# -- bad input ---------------------------------------------------------------------------------


class NoLeases:
    """A store with the CheckpointStore methods and no leases."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.append = self.inner.append
        self.read = self.inner.read
        self.list_nodes = self.inner.list_nodes
        self.list_versions = self.inner.list_versions
        self.latest_checkpoint = self.inner.latest_checkpoint
        self.list_executions = self.inner.list_executions
        self.history = self.inner.history
        self.close = self.inner.close


@pytest.mark.parametrize(
    ("session_id", "why"),
    [
        ("", "session_id must be a non-empty string; got ''"),
        (None, "session_id must be a non-empty string; got None"),
        (7, "session_id must be a non-empty string; got 7"),
        ("a\x00b", "session_id 'a\\\\x00b' cannot be stored"),
        ("x" * 2000, "session_id is too long: 'session:xxx"),
    ],
)
def test_a_bad_session_id_is_refused(session_id: Any, why: str) -> None:
    with pytest.raises(ConfigError, match=why.replace("(", r"\(")):
        LivingAISession(MemoryStore(), session_id)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"a CheckpointEngine or a CheckpointStore; got 'x\.db'"):
        LivingAISession(cast(Any, "x.db"), "s")
    with pytest.raises(ConfigError, match="keeps no leases; LivingAISession needs"):
        LivingAISession(cast(Any, NoLeases()), "s")
    for bad in (0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ConfigError, match="lease_seconds must be a number of seconds > 0"):
            LivingAISession(MemoryStore(), "s", lease_seconds=cast(Any, bad))
    with pytest.raises(ConfigError, match="wait_seconds must be"):
        LivingAISession(MemoryStore(), "s", wait_seconds=0)


@pytest.mark.parametrize(
    ("bad", "error", "why"),
    [
        (("a",), TypeError, " takes a list of items \\(dicts\\); got tuple"),
        ([message("ok"), "hi"], TypeError, "item 1 must be a dict .* got str; nothing"),
        ([message("ok"), {"tags": {1, 2}}], InvalidNodeError, "item 1 must be JSON.*set"),
        ([{"score": float("nan")}], InvalidNodeError, "item 0 is not valid JSON"),
        ([message("ok"), {1: "x"}], InvalidNodeError, "item 1 .*key"),
        ([message("ok"), {"text": "a\x00b"}], InvalidNodeError, "item 1 .*nothing was stored"),
    ],
)
async def test_bad_items_are_refused_and_nothing_is_stored(
    bad: Any, error: type[Exception], why: str
) -> None:
    async with session_on(MemoryStore()) as session:
        with pytest.raises(error, match=f"session 'chat': add_items.*{why}"):
            await session.add_items(bad)
        assert await session.engine.versions(session.execution_id) == []


async def test_a_bad_limit_is_refused() -> None:
    async with session_on(MemoryStore()) as session:
        for bad in (-1, 1.5, "3", True):
            with pytest.raises(ConfigError, match="limit must be None or a whole number >= 0"):
                await session.get_items(cast(Any, bad))


# -- the log -----------------------------------------------------------------------------------


async def test_the_log_layout_is_pinned() -> None:
    """What each operation appends (these names are data: stored sessions are read by
    them), and that nothing is ever deleted."""
    async with session_on(MemoryStore(), "user-1") as session:
        assert session.execution_id == execution_id_of("user-1") == "session:user-1"
        await session.add_items(items(message("a"), message("b")))
        await session.pop_item()
        await session.clear_session()
        add, pop, clear = await session.engine.versions("session:user-1")
        for seq, (node, op) in enumerate(((add, "add"), (pop, "pop"), (clear, "clear")), 1):
            assert node.execution_id == "session:user-1"
            assert node.type is NodeType.MEMORY
            assert node.status is Status.SUCCESS
            assert node.metadata == {"session_op": op, "session_seq": seq, "name": f"session.{op}"}
        assert add.output == [message("a"), message("b")]
        assert pop.input == {"node": add.id, "index": 1}
        assert pop.output == message("b")
        assert clear.input is None
        assert clear.output is None


# -- the SDK drives it -------------------------------------------------------------------------


async def test_the_runner_sends_the_first_turn_with_the_second(
    store_factory: StoreFactory,
) -> None:
    model = ScriptedModel([[assistant_message("hello 1")], [assistant_message("hello 2")]])
    agent = Agent(name="greeter", instructions="Greet.", model=model)
    async with session_on(store_factory(), "runner") as session:
        first = await Runner.run(agent, "hi", session=session, run_config=NO_TRACES)
        assert first.final_output == "hello 1"
        second = await Runner.run(agent, "again", session=session, run_config=NO_TRACES)
        assert second.final_output == "hello 2"
        model.assert_complete()
        sent = cast(list[Item], model.calls[1].input)
        assert [(item.get("role"), _text(item)) for item in sent] == [
            ("user", "hi"),
            ("assistant", "hello 1"),
            ("user", "again"),
        ]
        stored = cast(list[Item], await session.get_items())
        assert [_text(item) for item in stored] == ["hi", "hello 1", "again", "hello 2"]


async def test_the_runner_sends_the_interrupted_output() -> None:
    """A run that died in a tool left its call alone in the session: the next run sends
    the model the call and the explicit interrupted output (the SDK would drop both)."""
    model = ScriptedModel([[assistant_message("I will check first")]])
    agent = Agent(name="payer", instructions="Pay.", model=model)
    async with session_on(MemoryStore(), "crashed") as session:
        await session.add_items(items(message("pay the bill"), call("c1", "pay")))
        await Runner.run(agent, "did it go through?", session=session, run_config=NO_TRACES)
        sent = cast(list[Item], model.calls[0].input)
        assert call("c1", "pay") in sent
        assert sent[sent.index(call("c1", "pay")) + 1] == interrupted("c1")


def _text(item: Item) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    assert isinstance(content, list)
    return "".join(str(part.get("text", "")) for part in content)


if __name__ == "__main__":
    url, session_id, writer, rounds = sys.argv[1:5]
    asyncio.run(_writer(url, session_id, writer, int(rounds)))
