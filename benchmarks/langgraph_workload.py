"""One LangGraph checkpointer benchmark in its own process: ours (`LivingAISaver`) or a
baseline saver from langgraph-checkpoint-sqlite / -postgres.

The same file runs under this repo's python (ours) and under each baseline's virtualenv,
which has langgraph but neither the `benchmarks` package nor our `livingai`: so it imports
the standard library and langgraph at the top, each saver's package lazily, and it is
started by path. It reads one JSON argument and prints one JSON line.

Parts:
    storage  a 20-turn chat on one thread: a 100 KB document set on turn 1 and never
             changed, and a message list growing by a human message and a fake AI reply
             (about 1 KB) a turn. Prints how many checkpoints the thread has, and checks
             the final state read back through a second saver on the same store.
    speed    50 graphs at once (asyncio, one thread each), 20 super-steps each, a message
             list and a counter growing every step. The saver's aput, aput_writes and
             aget_tuple are timed as the graph calls them; prints every sample and the wall
             time, then checks every thread's final state through a second saver.

The "target" argument: an `open_store` URL (ours), a SQLite file path (SqliteSaver,
AsyncSqliteSaver) or a libpq URL (AsyncPostgresSaver).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import importlib.metadata
import json
import random
import string
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

# Started by path, this file's directory comes first on sys.path, where our own
# benchmarks/langgraph.py would shadow the langgraph package: drop it before importing.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402

DOCUMENT_SEED = "livingai-bench-lg-document"
TIMED = ("aput", "aput_writes", "aget_tuple")


@functools.cache
def words(seed: str, size: int) -> str:
    """`size` characters of made-up words, the same for the same seed: letters drawn at
    random, so the text compresses little (about 4.4 bits a character) and no system
    gains from a repetitive input. Cached: the fake model's replies cost no time once
    the warm-up made them, so the clock measures the savers and LangGraph, not this."""
    rng = random.Random(seed)
    out: list[str] = []
    length = 0
    while length < size:
        word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10)))
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of these distributions, for the output."""
    out = {}
    for package in packages:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "-"
    return out


# -- savers ----------------------------------------------------------------------------------

PACKAGES = {
    "ours": ("livingai", "langgraph", "langgraph-checkpoint"),
    "SqliteSaver": ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite"),
    "AsyncSqliteSaver": ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite"),
    "AsyncPostgresSaver": (
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-postgres",
        "psycopg",
        "psycopg-pool",
    ),
}
POOL_SIZE = 10  # AsyncPostgresSaver's psycopg AsyncConnectionPool max_size


@contextlib.asynccontextmanager
async def open_saver(system: str, target: str) -> AsyncIterator[Any]:
    """An async saver, set up, closed on exit (for ours: everything written is stored)."""
    if system == "ours":
        module = importlib.import_module("livingai.adapters.langgraph")
        async with module.LivingAISaver.from_url(target) as saver:
            yield saver
    elif system == "AsyncSqliteSaver":
        module = importlib.import_module("langgraph.checkpoint.sqlite.aio")
        async with module.AsyncSqliteSaver.from_conn_string(target) as saver:
            await saver.setup()
            yield saver
    elif system == "AsyncPostgresSaver":
        module = importlib.import_module("langgraph.checkpoint.postgres.aio")
        pool_module = importlib.import_module("psycopg_pool")
        rows = importlib.import_module("psycopg.rows")
        pool = pool_module.AsyncConnectionPool(
            conninfo=target,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": rows.dict_row},
            open=False,
        )
        async with pool:
            saver = module.AsyncPostgresSaver(pool)
            await saver.setup()
            yield saver
    else:
        raise ValueError(f"no async saver {system!r}")


@contextlib.contextmanager
def open_sync_saver(target: str) -> Iterator[Any]:
    """LangGraph's SqliteSaver on a file, set up."""
    module = importlib.import_module("langgraph.checkpoint.sqlite")
    with module.SqliteSaver.from_conn_string(target) as saver:
        saver.setup()
        yield saver


# -- storage: a 20-turn chat over a large unchanging document --------------------------------


class ChatState(TypedDict):
    document: str
    messages: Annotated[list[AnyMessage], add_messages]


def human_text(turn: int, size: int) -> str:
    return words(f"human-{turn}", size)


def reply_text(turn: int, size: int) -> str:
    return words(f"reply-{turn}", size)


def chat_graph(saver: Any, reply_bytes: int) -> Any:
    """START -> model -> END; the model is fake: a deterministic reply, no network. A
    plain function, so that SqliteSaver's synchronous `invoke` can run it too."""

    def model(state: ChatState) -> dict[str, Any]:
        turn = sum(isinstance(m, HumanMessage) for m in state["messages"])
        return {"messages": [AIMessage(reply_text(turn, reply_bytes), id=f"ai-{turn}")]}

    builder = StateGraph(ChatState)
    builder.add_node("model", model)
    builder.add_edge(START, "model")
    builder.add_edge("model", END)
    return builder.compile(checkpointer=saver)


def chat_input(turn: int, sizes: dict[str, int]) -> dict[str, Any]:
    """A turn's input: the human message, and on turn 1 the document."""
    message = HumanMessage(human_text(turn, sizes["human_bytes"]), id=f"human-{turn}")
    if turn == 1:
        return {"document": words(DOCUMENT_SEED, sizes["document_bytes"]), "messages": [message]}
    return {"messages": [message]}


CHAT_CONFIG = {"configurable": {"thread_id": "chat"}}


def chat_check(state: Any, checkpoints: int, sizes: dict[str, int]) -> dict[str, Any]:
    """What the thread holds after the chat, read back."""
    values = state.values
    return {
        "checkpoints": checkpoints,
        "messages": len(values.get("messages", [])),
        "document_ok": values.get("document") == words(DOCUMENT_SEED, sizes["document_bytes"]),
    }


async def storage_ours(target: str, sizes: dict[str, int]) -> dict[str, Any]:
    started = time.perf_counter()
    async with open_saver("ours", target) as saver:
        graph = chat_graph(saver, sizes["reply_bytes"])
        for turn in range(1, sizes["turns"] + 1):
            await graph.ainvoke(chat_input(turn, sizes), CHAT_CONFIG)
    seconds = time.perf_counter() - started
    async with open_saver("ours", target) as saver:  # read back through a fresh saver
        graph = chat_graph(saver, sizes["reply_bytes"])
        state = await graph.aget_state(CHAT_CONFIG)
        checkpoints = len([c async for c in saver.alist(CHAT_CONFIG)])
    return {**chat_check(state, checkpoints, sizes), "seconds": seconds}


def storage_sqlite_saver(target: str, sizes: dict[str, int]) -> dict[str, Any]:
    started = time.perf_counter()
    with open_sync_saver(target) as saver:
        graph = chat_graph(saver, sizes["reply_bytes"])
        for turn in range(1, sizes["turns"] + 1):
            graph.invoke(chat_input(turn, sizes), CHAT_CONFIG)
    seconds = time.perf_counter() - started
    with open_sync_saver(target) as saver:
        graph = chat_graph(saver, sizes["reply_bytes"])
        state = graph.get_state(CHAT_CONFIG)
        checkpoints = len(list(saver.list(CHAT_CONFIG)))
    return {**chat_check(state, checkpoints, sizes), "seconds": seconds}


# -- speed: many graphs at once, a growing state ----------------------------------------------


class LoopState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    counter: int


def loop_graph(saver: Any, steps: int, message_bytes: int) -> Any:
    """START -> step -> step ... (`steps` super-steps) -> END; each step appends a message
    and counts."""

    async def step(state: LoopState) -> dict[str, Any]:
        counter = state["counter"] + 1
        text = words(f"step-{counter}", message_bytes)
        return {"messages": [AIMessage(text, id=f"m-{counter}")], "counter": counter}

    def route(state: LoopState) -> str:
        return "step" if state["counter"] < steps else END

    builder = StateGraph(LoopState)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", route, ["step", END])
    return builder.compile(checkpointer=saver)


def timed(
    call: Callable[..., Awaitable[Any]], samples: list[float], found: list[bool]
) -> Callable[..., Awaitable[Any]]:
    """`call`, timing each await into `samples` (seconds), and into `found` whether it
    returned something (an aget_tuple that finds no checkpoint returns None)."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await call(*args, **kwargs)
        samples.append(time.perf_counter() - started)
        found.append(result is not None)
        return result

    return wrapper


def instrument(saver: Any) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
    """Time the saver's aput, aput_writes and aget_tuple in place (instance attributes
    over the class's methods: the same for every saver class)."""
    samples: dict[str, list[float]] = {name: [] for name in TIMED}
    found: dict[str, list[bool]] = {name: [] for name in TIMED}
    for name in TIMED:
        setattr(saver, name, timed(getattr(saver, name), samples[name], found[name]))
    return samples, found


def thread_config(name: str, steps: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}, "recursion_limit": steps + 10}


async def one_graph(graph: Any, name: str, steps: int) -> int:
    """One graph's run and its final state read back, as an app showing the result would."""
    config = thread_config(name, steps)
    await graph.ainvoke({"messages": [], "counter": 0}, config)
    state = await graph.aget_state(config)
    counter: int = state.values["counter"]
    return counter


def thread_names(graphs: int) -> list[str]:
    return [f"graph-{i}" for i in range(graphs)]


async def speed(system: str, target: str, sizes: dict[str, int]) -> dict[str, Any]:
    steps, names = sizes["steps"], thread_names(sizes["graphs"])
    async with open_saver(system, target) as saver:
        graph = loop_graph(saver, steps, sizes["message_bytes"])
        await one_graph(graph, "warm-up", steps)  # tables, connections, code paths, texts
        samples, found = instrument(saver)
        graph = loop_graph(saver, steps, sizes["message_bytes"])
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_graph(graph, name, steps) for name in names), return_exceptions=True
        )
        run_s = time.perf_counter() - started
    total_s = time.perf_counter() - started  # closed: everything written is stored
    failures = [
        f"{name}: {type(r).__name__}: {r}" if isinstance(r, BaseException) else f"{name}: {r}"
        for name, r in zip(names, results, strict=True)
        if r != steps
    ]
    checked = await speed_check(system, target, names, steps)
    return {
        "run_s": run_s,
        "total_s": total_s,
        "samples_ms": {k: [round(s * 1000.0, 4) for s in v] for k, v in samples.items()},
        "found": found["aget_tuple"],
        "failures": failures + checked["failures"],
        "checkpoints": checked["checkpoints"],
    }


async def speed_check(system: str, target: str, names: Sequence[str], steps: int) -> dict[str, Any]:
    """Every thread's final state and checkpoints, through a second saver on the store."""
    failures: list[str] = []
    checkpoints = 0
    async with open_saver(system, target) as saver:
        for name in names:
            config = thread_config(name, steps)
            found = await saver.aget_tuple(config)
            values = {} if found is None else found.checkpoint["channel_values"]
            if values.get("counter") != steps or len(values.get("messages", [])) != steps:
                failures.append(f"{name}: stored counter {values.get('counter')!r}")
            checkpoints += len([c async for c in saver.alist(config)])
    return {"failures": failures, "checkpoints": checkpoints}


# -- entry -----------------------------------------------------------------------------------


def run(args: dict[str, Any]) -> dict[str, Any]:
    system, target, sizes = args["system"], args["target"], args["sizes"]
    if args["part"] == "storage":
        if system == "ours":
            result = asyncio.run(storage_ours(target, sizes))
        else:
            result = storage_sqlite_saver(target, sizes)
    else:
        result = asyncio.run(speed(system, target, sizes))
    return {**result, "versions": versions(*PACKAGES[system])}


def main(argv: Sequence[str]) -> int:
    args: dict[str, Any] = json.loads(argv[1])
    profile = args.get("profile")
    # Stores and libraries may print to stdout; the result is the last line.
    with contextlib.redirect_stdout(sys.stderr):
        if profile:
            cprofile = importlib.import_module("cProfile")
            profiler = cprofile.Profile()
            result = profiler.runcall(run, args)
            profiler.dump_stats(profile)
        else:
            result = run(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
