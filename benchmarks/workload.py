"""One benchmark run in its own process, for whichever `livingai` is importable.

The same file runs under this repo's python (ours) and under the reference virtualenv,
which does not have the `benchmarks` package: so it imports only the standard library
and `livingai`, and it is started by path. It tells the two APIs apart by what the
engine has (`flush` is ours only). It reads one JSON argument and prints one JSON line.

Modes:
    run     make every state first, then run the agents against a fresh store (a new
            SQLite file, or a Redis key prefix / Postgres schema or database of its own,
            made by the runner), wait until everything is durable, and measure.
    verify  open the store again (this is a fresh process) and count which saved node
            ids are stored; for a tiered store, also its cold store alone.

The "store" argument says which store and where: {"kind": "sqlite", "db": path},
{"kind": "redis", "redis_url": ..., "redis_prefix": ..., "max_connections": ...},
{"kind": "postgres", "postgres_dsn": ..., "postgres_schema": ...}, or "tiered" with both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# -- state shapes ------------------------------------------------------------------------


def published_state(size: int) -> bytes:
    """The shape of the published benchmark: half incompressible, half one repeated byte."""
    return os.urandom(size // 2) + b"x" * (size - size // 2)


_WORD_TEXT = (
    "the of and to a in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will can more about said up out them some could into its then two time these "
    "may like other than first any new only people my also do made over did after most "
    "user agent tool result query search file data model error value request response api "
    "function return list table order customer account invoice payment status report page "
    "summary context memory step plan task retry budget latency token cost review update"
)
_COMMON_WORDS = _WORD_TEXT.split()
_TOOLS = (
    "web_search",
    "read_file",
    "run_sql",
    "get_weather",
    "send_email",
    "lookup_customer",
    "create_ticket",
    "fetch_url",
)


def _make_corpus(rng: random.Random, size: int) -> str:
    """Natural-language-like text: Zipf-distributed words from a mixed vocabulary, so it
    compresses roughly like prose (a repeated sentence would compress far too well)."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    made = {
        "".join(rng.choices(letters, weights=range(26, 0, -1), k=rng.randint(3, 11)))
        for _ in range(4000)
    }
    vocabulary = [*_COMMON_WORDS, *sorted(made)]
    rng.shuffle(vocabulary)
    cumulative: list[float] = []
    total = 0.0
    for rank in range(len(vocabulary)):
        total += 1.0 / (rank + 1)
        cumulative.append(total)
    words = rng.choices(vocabulary, cum_weights=cumulative, k=size // 5 + 16)
    sentences = []
    for start in range(0, len(words), 14):
        sentence = " ".join(words[start : start + 14])
        sentences.append(sentence[:1].upper() + sentence[1:] + ".")
    return " ".join(sentences)[:size]


class ChatHistory:
    """One agent's conversation, growing by at least one turn per save.

    Each state is the JSON of the most recent messages that fit the target size (older
    ones are dropped, as an agent trims its context window), plus a scratchpad string
    that pads the document to exactly the target size. Every state is valid JSON.
    """

    def __init__(self, agent: int, corpus: str, rng: random.Random) -> None:
        self.agent = agent
        self.corpus = corpus
        self.rng = rng
        self.messages: list[bytes] = []  # each message serialised once
        self.total = 0
        self.turn = 0

    def _text(self, low: int, high: int) -> str:
        length = self.rng.randint(low, high)
        start = self.rng.randrange(0, len(self.corpus) - length)
        return self.corpus[start : start + length].strip()

    def _add(self, message: dict[str, Any]) -> None:
        blob = json.dumps(message).encode()
        self.messages.append(blob)
        self.total += len(blob) + 1

    def add_turn(self) -> None:
        """A user asks, the assistant calls a tool, the tool answers, the assistant replies."""
        rng = self.rng
        call_id = f"call_{rng.getrandbits(96):024x}"
        tool = rng.choice(_TOOLS)
        self._add({"role": "user", "content": self._text(40, 600)})
        arguments = {
            "query": self._text(20, 120),
            "limit": rng.randint(1, 50),
            "filters": {"since": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"},
        }
        self._add(
            {
                "role": "assistant",
                "content": self._text(0, 300) or None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps(arguments)},
                    }
                ],
            }
        )
        results = [
            {
                "title": self._text(20, 80),
                "url": f"https://example.com/{rng.getrandbits(40):010x}",
                "score": round(rng.random(), 4),
                "snippet": self._text(100, 500),
            }
            for _ in range(rng.randint(1, 4))
        ]
        self._add(
            {
                "role": "tool",
                "tool_call_id": call_id,
                "name": tool,
                "content": json.dumps({"results": results}),
            }
        )
        self._add({"role": "assistant", "content": self._text(100, 1500)})
        self.turn += 1

    def state(self, size: int) -> bytes:
        """The next save's state: grow the conversation, keep what fits, pad to `size`."""
        self.add_turn()
        while self.total < size:
            self.add_turn()
        head = f'{{"agent":"agent-{self.agent}","turn":{self.turn},"messages":['.encode()
        middle = b'],"scratchpad":"'
        tail = b'"}'
        room = size - len(head) - len(middle) - len(tail)
        kept: list[bytes] = []
        used = 0
        for blob in reversed(self.messages):
            extra = len(blob) + (1 if kept else 0)
            if used + extra > room:
                break
            kept.append(blob)
            used += extra
        kept.reverse()
        pad = self._text(room - used, room - used).ljust(room - used, ".")
        state = head + b",".join(kept) + middle + pad.encode() + tail
        if len(state) != size:
            raise AssertionError(f"chat state is {len(state)} bytes, wanted {size}")
        return state


def sizes_for(saves: int, min_size: int, max_size: int) -> list[int]:
    """State sizes across one agent's saves: linear from min_size to max_size."""
    if saves == 1:
        return [max_size]
    step = (max_size - min_size) / (saves - 1)
    return [round(min_size + step * i) for i in range(saves)]


def make_states(shape: str, agents: int, sizes: Sequence[int], seed: int) -> list[list[bytes]]:
    """Every state of every agent, made before any clock starts; each save's bytes differ."""
    if shape == "published":
        return [[published_state(size) for size in sizes] for _ in range(agents)]
    if shape != "realistic":
        raise ValueError(f"unknown shape {shape!r}")
    rng = random.Random(seed)
    corpus = _make_corpus(rng, 8_000_000)
    histories = [ChatHistory(a, corpus, random.Random(seed * 1_000_003 + a)) for a in range(agents)]
    return [[history.state(size) for size in sizes] for history in histories]


# -- measuring ---------------------------------------------------------------------------


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Exact nearest-rank percentiles: the lists are small, so no histogram is needed."""
    if not samples:
        return {"count": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    ordered = sorted(samples)

    def rank(pct: float) -> float:
        return ordered[max(1, math.ceil(len(ordered) * pct / 100.0)) - 1]

    return {
        "count": float(len(ordered)),
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


class StallMonitor:
    """Sleeps 5 ms at a time and records how late it wakes: the longest time the event
    loop could not run anything, which is what every agent on the loop feels."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.max_late = 0.0
        self.wakeups = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            expected = time.perf_counter() + self.interval
            await asyncio.sleep(self.interval)
            self.max_late = max(self.max_late, time.perf_counter() - expected)
            self.wakeups += 1

    def stop(self) -> None:
        self._stop.set()


def disk_bytes(db: Path) -> int:
    """The database file and every SQLite side file next to it (WAL, shm, journal)."""
    total = 0
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            total += (db.parent / (db.name + suffix)).stat().st_size
    return total


def _default_pool() -> ThreadPoolExecutor:
    """A pool configured like asyncio's default executor, but one we can drain and replace."""
    return ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="asyncio")


async def _drain(pool: ThreadPoolExecutor) -> None:
    """Wait for the pool's queued and running work without blocking the loop."""
    loop = asyncio.get_running_loop()
    drained = asyncio.Event()

    def shutdown() -> None:
        pool.shutdown(wait=True)
        loop.call_soon_threadsafe(drained.set)

    threading.Thread(target=shutdown, daemon=True).start()
    await drained.wait()


# -- the two APIs and the stores --------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    """The reference's SQLite close() is plain; its server stores' close() is async."""
    return await value if inspect.isawaitable(value) else value


class System:
    """The one place that knows how ours and the reference differ, and how each opens
    each store. `spec` says which store and where (file, server URL, prefix, schema)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.lib: Any = importlib.import_module("livingai")
        self.ours = hasattr(self.lib.CheckpointEngine, "flush")
        self.spec = spec
        self.kind: str = spec["kind"]

    def node(self, execution_id: str, step: int) -> Any:
        lib = self.lib
        return lib.ExecutionNode(
            execution_id=execution_id,
            type=lib.NodeType.PROMPT,
            status=lib.Status.SUCCESS,
            output={"step": step},
        )

    def _make(self, kind: str) -> Any:
        spec = self.spec
        if kind == "sqlite":
            return self.lib.SQLiteStore(str(spec["db"]))
        if self.ours:
            if kind == "redis":
                return self.lib.RedisStore(spec["redis_url"], prefix=spec["redis_prefix"])
            if kind == "postgres":
                return self.lib.PostgresStore(spec["postgres_dsn"], schema=spec["postgres_schema"])
            if kind == "tiered":
                return self.lib.TieredStore(self._make("redis"), self._make("postgres"))
        elif kind == "redis":
            module = importlib.import_module("livingai.stores.redis")
            client = None
            if spec.get("max_connections"):
                aioredis = importlib.import_module("redis.asyncio")
                client = aioredis.Redis.from_url(
                    spec["redis_url"], max_connections=spec["max_connections"]
                )
            return module.RedisStore(spec["redis_url"], client=client)
        elif kind == "postgres":
            module = importlib.import_module("livingai.stores.postgres")
            return module.PostgresStore(spec["postgres_dsn"])
        raise ValueError(f"{'ours' if self.ours else 'the reference'} has no {kind!r} store")

    async def open_store(self, kind: str | None = None) -> Any:
        """Open a store, connected and its schema created, before any clock starts."""
        kind = kind or self.kind
        store = self._make(kind)
        if self.ours:
            await store.list_executions()  # creates the schema; the reference did in __init__
        elif kind == "postgres":
            await store.initialize()  # its pool and table
        elif kind == "redis":
            await store.list_by_execution("livingai-bench-warmup")  # one connection
        return store

    def engine(self, store: Any, budget_ms: float) -> Any:
        return self.lib.CheckpointEngine(store, overhead_budget_ms=budget_ms)

    async def close(self, engine: Any, store: Any) -> None:
        if self.ours:
            await engine.close()  # flushes, then closes the store (tiered: drains first)
        else:
            await _maybe_await(store.close())

    async def close_store(self, store: Any) -> None:
        await _maybe_await(store.close())

    async def stored_ids(self, store: Any, execution_id: str) -> set[str]:
        if self.ours:
            return {record.node_id for record in await store.list_nodes(execution_id)}
        return {node.id for node in await store.list_by_execution(execution_id)}


# -- run mode --------------------------------------------------------------------------


async def _timed_reads(
    load: Callable[[str], Awaitable[Any]], ids: Sequence[str]
) -> tuple[list[float], int]:
    """Latency of each load in ms, and how many found nothing."""
    times: list[float] = []
    misses = 0
    for node_id in ids:
        start = time.perf_counter()
        found = await load(node_id)
        times.append((time.perf_counter() - start) * 1000.0)
        misses += found is None
    return times, misses


def _cycle(ids: Sequence[str], count: int) -> Iterator[str]:
    for i in range(count):
        yield ids[i % len(ids)]


async def run(args: dict[str, Any]) -> dict[str, Any]:
    """Make the states, run the agents together, wait until durable, measure."""
    system = System(args["store"])
    agents: int = args["agents"]
    saves: int = args["saves"]
    budget_ms: float = args["budget_ms"]
    durable_timeout_s: float = args["durable_timeout_s"]
    sizes = sizes_for(saves, args["min_size"], args["max_size"])
    states = make_states(args["shape"], agents, sizes, args["seed"])

    loop = asyncio.get_running_loop()
    pool = _default_pool()
    loop.set_default_executor(pool)
    store = await system.open_store()
    engine = system.engine(store, budget_ms)
    latencies: list[list[float]] = [[] for _ in range(agents)]
    oks: list[list[bool]] = [[] for _ in range(agents)]
    ids: list[list[str]] = [[] for _ in range(agents)]

    async def agent(a: int) -> None:
        execution_id = f"agent-{a}"
        mine = states[a]
        for i in range(saves):
            node = system.node(execution_id, i)
            ids[a].append(node.id)
            start = time.perf_counter()
            ok = await engine.save(node, state=mine[i])
            latencies[a].append((time.perf_counter() - start) * 1000.0)
            oks[a].append(bool(ok))
            await asyncio.sleep(0)

    monitor = StallMonitor()
    monitor_task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0)  # the monitor is running before the first save
    start = time.perf_counter()
    outcomes = await asyncio.gather(*(agent(a) for a in range(agents)), return_exceptions=True)
    gathered = time.perf_counter()
    failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failed:
        # A save raised (the reference's Redis pool running out of connections, say):
        # report it as the run's result, after a bounded attempt to close cleanly.
        monitor.stop()
        await monitor_task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(system.close(engine, store), 30.0)
        first = failed[0]
        done = sum(map(len, oks))
        return {
            "version": str(system.lib.__version__),
            "error": f"{len(failed)} of {agents} agents raised {type(first).__name__}: "
            f"{first} ({done} of {agents * saves} saves returned)",
        }
    cold = None
    try:
        if system.ours:
            await asyncio.wait_for(engine.flush(), durable_timeout_s)
            durable = time.perf_counter()
            if system.kind == "tiered":  # durable once the hot store has it; cold behind
                await asyncio.wait_for(store.drain(), durable_timeout_s)
                cold = time.perf_counter()
        else:
            # Its timed-out writes keep running on executor threads (those not yet
            # started were cancelled and are lost): durable means those threads are done.
            # Its server stores run no threads: a timed-out write was cancelled.
            await _drain(pool)
            loop.set_default_executor(_default_pool())
            durable = time.perf_counter()
    except TimeoutError:
        stats = dataclasses.asdict(engine.stats()) if system.ours else {}
        return {
            "version": str(system.lib.__version__),
            "error": f"not durable {durable_timeout_s:.0f}s after the agents finished "
            f"(engine stats: {stats})",
        }
    monitor.stop()
    await monitor_task

    result: dict[str, Any] = {
        "version": str(system.lib.__version__),
        "module": str(system.lib.__file__),
        "api": "ours" if system.ours else "reference",
        "store": system.kind,
        "agents": agents,
        "saves": agents * saves,
        "state_bytes": sum(sizes) * agents,
        "in_budget": sum(map(sum, oks)),
        "save_ms": summarize([ms for agent_ms in latencies for ms in agent_ms]),
        "max_stall_ms": monitor.max_late * 1000.0,
        "stall_wakeups": monitor.wakeups,
        "gather_s": gathered - start,
        "durable_s": durable - start,
    }
    if cold is not None:
        result["cold_s"] = cold - start
    result["sla_pct"] = 100.0 * result["in_budget"] / max(1, result["saves"])
    db = Path(args["store"]["db"]) if system.kind == "sqlite" else None
    if system.ours:
        result["stats"] = dataclasses.asdict(engine.stats())
        if system.kind == "tiered":
            result["tiered_stats"] = dataclasses.asdict(store.stats())
        if db is not None:
            result["wal_bytes_before_close"] = disk_bytes(db)

    reads: int = args.get("reads", 0)
    flat_ids = [node_id for agent_ids in ids for node_id in agent_ids]
    if reads:
        # Hot: the most recent saves, which both engines' hot caches still hold.
        recent = flat_ids[-100:]
        hot, hot_misses = await _timed_reads(engine.load, list(_cycle(recent, reads)))
        result["hot_read_ms"] = summarize(hot)
        result["hot_read_misses"] = hot_misses

    await system.close(engine, store)
    if db is not None:
        result["disk_bytes"] = disk_bytes(db)

    if reads:
        # Cold: a fresh engine on the same file or server; each id read once, never cached.
        store = await system.open_store()
        engine = system.engine(store, budget_ms)
        cold_reads, cold_misses = await _timed_reads(engine.load, list(_cycle(flat_ids, reads)))
        result["cold_read_ms"] = summarize(cold_reads)
        result["cold_read_misses"] = cold_misses
        await system.close(engine, store)

    result["ids"] = {f"agent-{a}": ids[a] for a in range(agents)}
    return result


# -- verify mode -------------------------------------------------------------------------


async def _count_stored(system: System, kind: str, expected: dict[str, list[str]]) -> int:
    store = await system.open_store(kind)
    try:
        stored = 0
        for execution_id, node_ids in expected.items():
            present = await system.stored_ids(store, execution_id)
            stored += sum(node_id in present for node_id in node_ids)
    finally:
        await system.close_store(store)
    return stored


async def verify(args: dict[str, Any]) -> dict[str, Any]:
    """Count the saved node ids a fresh store finds: lost = saved - stored. A tiered
    store's cold store is checked alone first, before a tiered store could refill it."""
    system = System(args["store"])
    expected: dict[str, list[str]] = args["ids"]
    saved = sum(len(node_ids) for node_ids in expected.values())
    result: dict[str, Any] = {"saved": saved}
    if system.kind == "tiered":
        cold_stored = await _count_stored(system, "postgres", expected)
        result.update(cold_stored=cold_stored, cold_lost=saved - cold_stored)
    stored = await _count_stored(system, system.kind, expected)
    result.update(stored=stored, lost=saved - stored)
    return result


def main(argv: Sequence[str]) -> int:
    """Entry point of the child process: one JSON argument in, one JSON line out."""
    if len(argv) != 1:
        print("usage: workload.py '<json arguments>'", file=sys.stderr)
        return 2
    args: dict[str, Any] = json.loads(argv[0])
    ids_path = Path(args["ids_path"])
    if args["mode"] == "verify":
        args["ids"] = json.loads(ids_path.read_text())
    modes: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
        "run": run,
        "verify": verify,
    }
    result = asyncio.run(modes[args["mode"]](args))
    if "ids" in result:  # the saved node ids go to a file for the verify process
        ids_path.write_text(json.dumps(result.pop("ids")))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
