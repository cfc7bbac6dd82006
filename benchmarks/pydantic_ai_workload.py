"""One Pydantic AI benchmark child in its own process: bare, ours or DBOS.

Started by path (benchmarks/pydantic_ai.py), under a python with Pydantic AI:
`.venv-pydantic-ai` for bare and ours, `.bench/dbos-pydantic-ai-venv` for DBOS (which has
neither the `benchmarks` package nor our `livingai`). Pydantic AI is imported at the top,
each system's package lazily. It reads one JSON argument and prints one JSON line.

The agent is the same for the three systems and so is the clock. A `FunctionModel`
(no network, no key) asks for the `book` tool until the conversation holds `turns` tool
results, then answers; the tool does no I/O. So a run is `turns` turns, each a model
request and a tool call, then a last model request that answers. A turn's time is
measured in the tool, by the same code for every system: from the run's start (turn 1) or
the previous tool's return, to this tool's return. The turns tile the run up to its last
model request, whatever each system does between them (recording the model's response,
the tool's intent, its outcome).

The systems: **bare** (`agent.run`, nothing kept); **ours** (`LivingAIDurability.run`, the
tool given to `durability.tool(book, retry_with_key=True)`: write-ahead intent and an
idempotency key); **dbos** (`DBOSDurability`, `agent.run` inside a `@DBOS.workflow`, the
tool a `@DBOS.step`, as Pydantic AI's docs tell its users to make a tool with side
effects: DBOS does not wrap function tools itself).

Modes:
    run     a warm-up run outside the clock, then `runs` runs at once; prints every turn's
            time, the total, and per run its output and how many times its tool ran.
    verify  (ours, DBOS) in a fresh process on the same store: what the store holds of
            each run (model requests and tool calls with an outcome, tools whose intent
            came first, the run's status), then each run started again with the same id,
            counting model requests and tool calls made again (none should be).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

# Started by path, so its folder leads sys.path, and benchmarks/pydantic_ai.py there would
# be found as `pydantic_ai`: the folder goes, before Pydantic AI is imported.
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from pydantic_ai import Agent, Tool  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from pydantic_ai.messages import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    AgentInfo,
    FunctionModel,
)

AGENT = "bench"  # the agent's name: DBOS and ours name their steps after it
TOOL = "book"
DBOS_APP = "livingai-bench-pydantic-ai"


class Clock:
    """Per run: its start, then the time each tool call returned, and how many times its
    tool ran; and every model request in this process (verify counts a re-run's)."""

    def __init__(self) -> None:
        self.stamps: dict[int, list[float]] = {}
        self.tool_calls: Counter[int] = Counter()
        self.model_calls = 0

    def start(self, run: int) -> None:
        self.stamps[run] = [time.perf_counter()]

    def turns_ms(self) -> list[float]:
        out: list[float] = []
        for stamps in self.stamps.values():
            out += [(b - a) * 1000.0 for a, b in itertools.pairwise(stamps)]
        return out

    def calls(self) -> int:
        return self.model_calls + sum(self.tool_calls.values())


CLOCK = Clock()


def prompt(run: int) -> str:
    return f"book the trip of run {run}"


def expected_output(run: int, turns: int) -> str:
    return f"run {run}: {turns} legs booked"


def run_of(messages: Sequence[ModelMessage]) -> int:
    """The run a conversation belongs to, from its first user prompt."""
    for message in messages:
        for part in getattr(message, "parts", ()):
            if isinstance(part, UserPromptPart):
                return int(str(part.content).split()[-1])
    raise ValueError("the conversation has no user prompt")


def turn_model(turns: int) -> FunctionModel:
    """Asks for `book` until the conversation holds `turns` tool results, then answers;
    decided from the conversation alone, so a resumed run asks it the same."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        CLOCK.model_calls += 1
        run = run_of(messages)
        done = sum(
            isinstance(part, ToolReturnPart)
            for message in messages
            for part in getattr(message, "parts", ())
        )
        if done < turns:
            arguments = {"run": run, "turn": done + 1}
            return ModelResponse(
                parts=[ToolCallPart(TOOL, arguments, tool_call_id=f"call-{done + 1}")]
            )
        return ModelResponse(parts=[TextPart(expected_output(run, turns))])

    return FunctionModel(respond, model_name="scripted")


async def book(run: int, turn: int) -> str:
    """Book one leg of the trip (does no work): stamps its return for the run's clock."""
    CLOCK.tool_calls[run] += 1
    stamps = CLOCK.stamps.get(run)
    if stamps is not None:
        stamps.append(time.perf_counter())
    return f"leg {turn} of run {run} booked"


# -- the three systems -----------------------------------------------------------------------


class System:
    """What the run and verify modes need of a system."""

    version = "?"

    def __init__(self, turns: int) -> None:
        self.turns = turns

    async def start(self, run: int, execution_id: str) -> str:
        raise NotImplementedError

    async def durable(self) -> None:
        """Until every write is in the store: the clock stops after this."""

    async def close(self) -> None:
        pass

    async def recorded(self, execution_id: str) -> dict[str, Any]:
        """What the store holds of one run: model requests, tool calls, its status."""
        raise NotImplementedError


def _versions(*names: str) -> str:
    metadata = importlib.import_module("importlib.metadata")
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


class Bare(System):
    """The agent alone: `agent.run`, nothing kept."""

    def __init__(self, turns: int) -> None:
        super().__init__(turns)
        self.version = _versions("pydantic-ai-slim")
        self.agent: Any = Agent(turn_model(turns), name=AGENT, tools=[Tool(book)])

    async def start(self, run: int, execution_id: str) -> str:
        result = await self.agent.run(prompt(run))
        return str(result.output)


class Ours(System):
    """LivingAIDurability on livingai's Runtime, on one store URL."""

    def __init__(self, url: str, turns: int) -> None:
        super().__init__(turns)
        livingai: Any = importlib.import_module("livingai")
        adapter: Any = importlib.import_module("livingai.adapters.pydantic_ai")
        self.version = f"livingai {livingai.__version__}, {_versions('pydantic-ai-slim')}"
        self.engine: Any = livingai.CheckpointEngine(livingai.open_store(url))
        self.runtime: Any = livingai.Runtime(self.engine, worker_id="bench", lease_seconds=30.0)
        self.durability: Any = adapter.LivingAIDurability(self.runtime)
        tool = self.durability.tool(book, retry_with_key=True)
        self.agent: Any = Agent(
            turn_model(turns), name=AGENT, tools=[tool], capabilities=[self.durability]
        )

    async def start(self, run: int, execution_id: str) -> str:
        result = await self.durability.run(self.agent, prompt(run), execution_id=execution_id)
        return str(result.output)

    async def durable(self) -> None:
        await self.engine.flush()

    async def close(self) -> None:
        await self.runtime.close()

    async def recorded(self, execution_id: str) -> dict[str, Any]:
        """The run's model requests and tool calls with a successful outcome stored
        (PROMPT and TOOL nodes), tools whose write-ahead intent (a RUNNING version) was
        stored before it, and the status of its run record (a MEMORY node)."""
        nodes: dict[str, list[Any]] = {}
        for version in await self.engine.versions(execution_id):
            nodes.setdefault(version.id, []).append(version)
        counts = {"PROMPT": 0, "TOOL": 0}
        intents = 0
        status = "missing"
        for versions in nodes.values():
            statuses = [str(v.status) for v in versions]
            kind = str(versions[0].type)
            if kind == "MEMORY" and versions[-1].metadata.get("run") is True:
                status = statuses[-1]
            elif kind in counts and "SUCCESS" in statuses:
                counts[kind] += 1
                if kind == "TOOL" and "RUNNING" in statuses:
                    intents += statuses.index("RUNNING") < statuses.index("SUCCESS")
        return {
            "models": counts["PROMPT"],
            "tools": counts["TOOL"],
            "intents": intents,
            "status": status,
        }


class Dbos(System):
    """Pydantic AI's DBOSDurability: `agent.run` inside a DBOS workflow, model requests
    DBOS steps (made by the capability), the tool a DBOS step (decorated by hand, as the
    docs say). DBOS is a process-wide singleton, launched and destroyed off the loop."""

    def __init__(self, store: dict[str, Any], turns: int) -> None:
        super().__init__(turns)
        self.dbos: Any = importlib.import_module("dbos")
        durable: Any = importlib.import_module("pydantic_ai.durable_exec.dbos")
        self.version = _versions("dbos", "pydantic-ai-slim")
        DBOS = self.dbos.DBOS
        config: dict[str, Any] = {
            "name": DBOS_APP,
            "system_database_url": store["url"],
            "application_version": "bench",  # the same in the verify process
            "run_admin_server": False,
            "log_level": "WARNING",
        }
        if store.get("schema"):
            config["dbos_system_schema"] = store["schema"]
        DBOS(config=config)
        # Decorated by hand (not with @) so the types stay checked without dbos installed.
        step = DBOS.step(name="bench_book")(book)
        self.agent: Any = Agent(
            turn_model(turns),
            name=AGENT,
            tools=[Tool(step, name=TOOL)],
            capabilities=[durable.DBOSDurability()],
        )

        async def bench_trip(text: str) -> str:
            result = await self.agent.run(text)
            return str(result.output)

        self.workflow: Any = DBOS.workflow(name="bench_pydantic_ai_trip")(bench_trip)
        DBOS.launch()

    async def start(self, run: int, execution_id: str) -> str:
        with self.dbos.SetWorkflowID(execution_id):
            result: str = await self.workflow(prompt(run))
        return result

    def destroy(self) -> None:
        self.dbos.DBOS.destroy(destroy_registry=True)

    async def recorded(self, execution_id: str) -> dict[str, Any]:
        """The steps DBOS holds for the run (model requests and tool calls), its status."""
        steps = await self.dbos.DBOS.list_workflow_steps_async(execution_id)
        names = [str(step["function_name"]) for step in steps]
        status = await self.dbos.DBOS.get_workflow_status_async(execution_id)
        return {
            "models": sum("model.request" in name for name in names),
            "tools": sum(name == "bench_book" for name in names),
            "intents": 0,  # DBOS stores a step's output after it ran, nothing before
            "status": "missing" if status is None else str(status.status),
        }


# -- the modes -----------------------------------------------------------------------------


def execution_ids(prefix: str, runs: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(runs)]


Start = Callable[[int, str], Awaitable[str]]


async def timed(start: Start, ids: Sequence[str], concurrent: bool) -> tuple[float, list[Any]]:
    """Every run, all at once or one by one; the wall time and each output (or error)."""

    async def one(i: int, eid: str) -> str:
        CLOCK.start(i)
        return await start(i, eid)

    started = time.perf_counter()
    if concurrent:
        results = await asyncio.gather(
            *(one(i, eid) for i, eid in enumerate(ids)), return_exceptions=True
        )
    else:
        results = []
        for i, eid in enumerate(ids):
            try:
                results.append(await one(i, eid))
            except Exception as exc:
                results.append(exc)
    return time.perf_counter() - started, list(results)


def failures(results: Sequence[Any], turns: int) -> list[str]:
    """Runs that raised or answered something else than run i's answer."""
    out = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            out.append(f"run {i} raised {type(result).__name__}: {result}")
        elif result != expected_output(i, turns):
            out.append(f"run {i} answered {result!r}, expected {expected_output(i, turns)!r}")
    return out


async def measure(system: System, args: dict[str, Any]) -> dict[str, Any]:
    """A warm-up run (tables, connections, code paths), then the measured runs at once."""
    await system.start(-1, f"{args['prefix']}-warmup")
    await system.durable()
    CLOCK.stamps.clear()
    CLOCK.tool_calls.clear()
    ids = execution_ids(args["prefix"], args["runs"])
    started = time.perf_counter()
    _, results = await timed(system.start, ids, concurrent=True)
    await system.durable()
    total = time.perf_counter() - started
    return {
        "version": system.version,
        "total_s": total,
        "samples_ms": [round(ms, 5) for ms in CLOCK.turns_ms()],
        "tool_calls": [CLOCK.tool_calls[i] for i in range(len(ids))],
        "answered": [r == expected_output(i, system.turns) for i, r in enumerate(results)],
        "failures": failures(results, system.turns),
    }


async def verify(system: System, args: dict[str, Any]) -> dict[str, Any]:
    """Each run as the store holds it, then each started again: nothing should run."""
    ids = execution_ids(args["prefix"], args["runs"])
    recorded = [await system.recorded(eid) for eid in ids]
    before = CLOCK.calls()
    _, results = await timed(system.start, ids, concurrent=False)
    again = CLOCK.calls() - before
    problems = failures(results, system.turns) + [
        f"run {i} is {r['status']}" for i, r in enumerate(recorded) if r["status"] != "SUCCESS"
    ]
    return {"recorded": recorded, "again": again, "failures": problems}


def work(args: dict[str, Any]) -> dict[str, Any]:
    """One mode for one system. DBOS is launched and destroyed outside the event loop;
    bare and ours are made on it."""
    mode = measure if args["mode"] == "run" else verify
    turns = int(args["turns"])
    if args["system"] == "dbos":
        dbos = Dbos(args["store"], turns)
        try:
            return asyncio.run(mode(dbos, args))
        finally:
            dbos.destroy()

    async def on_loop() -> dict[str, Any]:
        system = Bare(turns) if args["system"] == "bare" else Ours(args["store"]["url"], turns)
        try:
            return await mode(system, args)
        finally:
            await system.close()

    return asyncio.run(on_loop())


def main(argv: Sequence[str]) -> int:
    args: dict[str, Any] = json.loads(argv[1])
    # DBOS, Pydantic AI and our stores may print to stdout; the result is the last line.
    with contextlib.redirect_stdout(sys.stderr):
        result = work(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
