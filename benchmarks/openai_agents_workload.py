"""One OpenAI Agents SDK benchmark run in its own process: bare, ours or DBOS.

Started by path (DBOS's virtualenv has neither the `benchmarks` package nor our
`livingai`), under a python that has the SDK: `.venv-openai-agents` for bare and ours,
`.bench/dbos-openai-agents-venv` for DBOS. The SDK is imported at the top; each system's
package lazily. It reads one JSON argument and prints one JSON line.

The agent is the same for the three systems and so is the clock. A fake model, instant and
deterministic, asks for the `lookup` tool until it has seen TURNS tool outputs, then
answers; the tool echoes its arguments and does no I/O. So a run is TURNS turns, each one
model call and one function-tool call, then a last model call that answers. A turn's time
is measured in the tool, the same code for every system: from the run's start (turn 1) or
the previous tool's return, to this tool's return. The turns tile the run up to the last
model call, whatever each system does between the model and the tool (recording the
model's response, the tool's intent, its outcome).

Modes:
    run     a warm-up run outside the clock, then `runs` runs, all at once (concurrent) or
            one after another (sequential); prints every turn's time and the total.
    verify  (ours, DBOS) in a fresh process on the same store: each run finished, with
            its tool calls and model calls recorded; then each run started again with the
            same id, counting model and tool calls made again (none should be).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import importlib
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents import (  # type: ignore[import-not-found, unused-ignore]
    Agent,
    FunctionTool,
    Model,
    ModelProvider,
    ModelResponse,
    RunConfig,
    Runner,
    Usage,
    function_tool,
    set_tracing_disabled,
)
from agents.testing import (  # type: ignore[import-not-found, unused-ignore]
    assistant_message,
    function_call,
)

TURNS = 10
TOOL = "lookup"
DBOS_APP = "livingai-bench-openai-agents"
MAX_TURNS = TURNS + 1  # the SDK counts model calls: TURNS with a tool call, one that answers
USAGE = Usage(requests=1, input_tokens=100, output_tokens=20, total_tokens=120)


class Clock:
    """Per run: its start, then the time each tool call returned; and every model and
    tool call in this process (verify counts those a re-run makes)."""

    def __init__(self) -> None:
        self.stamps: dict[int, list[float]] = {}
        self.model_calls = 0
        self.tool_calls = 0

    def start(self, run: int) -> None:
        self.stamps[run] = [time.perf_counter()]

    def turns_ms(self) -> list[float]:
        out: list[float] = []
        for stamps in self.stamps.values():
            out += [(b - a) * 1000.0 for a, b in itertools.pairwise(stamps)]
        return out


CLOCK = Clock()


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def expected_output(run: int) -> str:
    return f"run {run}: {TURNS} turns"


class TurnModel(Model):  # type: ignore[misc, unused-ignore]
    """Calls the tool until it has seen TURNS outputs, then answers; decided from the
    conversation alone, so a resumed run asks it the same."""

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        CLOCK.model_calls += 1
        items = kwargs["input"] if "input" in kwargs else args[1]
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        first = str(_field(items[0], "content"))
        run = int(first.split()[-1])
        done = sum(1 for item in items if _field(item, "type") == "function_call_output")
        if done < TURNS:
            turn = done + 1
            call = function_call(TOOL, {"run": run, "turn": turn}, call_id=f"call-{turn}")
            return ModelResponse([call], USAGE, None)
        return ModelResponse([assistant_message(expected_output(run))], USAGE, None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the benchmark model does not stream")


class TurnProvider(ModelProvider):  # type: ignore[misc, unused-ignore]
    """The fake model for every name."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def get_model(self, model_name: str | None) -> Model:
        return self.model


async def lookup(run: int, turn: int) -> str:
    """Look up a record (does no work): stamps its return for the run's clock."""
    CLOCK.tool_calls += 1
    result = f"record {run}.{turn}"
    stamps = CLOCK.stamps.get(run)
    if stamps is not None:
        stamps.append(time.perf_counter())
    return result


def make_agent(tool: Callable[..., Awaitable[str]], model: Model | None = None) -> Any:
    lookup_tool: FunctionTool = function_tool(tool, name_override=TOOL)
    if model is None:
        return Agent(name="bench", instructions="Look it up.", tools=[lookup_tool])
    return Agent(name="bench", instructions="Look it up.", tools=[lookup_tool], model=model)


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


def failures(results: Sequence[Any]) -> list[str]:
    """Runs that raised or answered something else than run i's answer."""
    out = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            out.append(f"run {i} raised {type(result).__name__}: {result}")
        elif result != expected_output(i):
            out.append(f"run {i} answered {result!r}, expected {expected_output(i)!r}")
    return out


def prompt(run: int) -> str:
    return f"look up run {run}"


# -- the three systems -----------------------------------------------------------------------


class System:
    """What the run and verify modes need of a system."""

    version = "?"

    async def start(self, run: int, execution_id: str) -> str:
        raise NotImplementedError

    async def durable(self) -> None:
        """Until every write is in the store: the clock stops after this."""

    async def close(self) -> None:
        pass

    async def recorded(self, execution_id: str) -> dict[str, Any]:
        """What the store holds of one run: model calls, tool calls, its status."""
        raise NotImplementedError


class Bare(System):
    """The SDK's Runner.run, nothing kept."""

    def __init__(self) -> None:
        metadata = importlib.import_module("importlib.metadata")
        self.version = f"openai-agents {metadata.version('openai-agents')}"
        self.agent = make_agent(lookup)
        self.config = RunConfig(model_provider=TurnProvider(TurnModel()))

    async def start(self, run: int, execution_id: str) -> str:
        result = await Runner.run(
            self.agent, prompt(run), run_config=self.config, max_turns=MAX_TURNS
        )
        return str(result.final_output)


class Ours(System):
    """OpenAIAgentsAdapter on livingai's Runtime, on one store URL."""

    def __init__(self, url: str) -> None:
        self.livingai: Any = importlib.import_module("livingai")
        adapters: Any = importlib.import_module("livingai.adapters.openai_agents")
        self.version = f"livingai {self.livingai.__version__}"
        self.engine: Any = self.livingai.CheckpointEngine(self.livingai.open_store(url))
        self.runtime: Any = self.livingai.Runtime(
            self.engine, worker_id="bench", lease_seconds=30.0
        )
        self.adapter: Any = adapters.OpenAIAgentsAdapter(self.runtime)
        self.agent = make_agent(lookup)
        self.config = RunConfig(model_provider=TurnProvider(TurnModel()))

    async def start(self, run: int, execution_id: str) -> str:
        result = await self.adapter.run(
            self.agent,
            prompt(run),
            execution_id=execution_id,
            run_config=self.config,
            max_turns=MAX_TURNS,
        )
        return str(result.final_output)

    async def durable(self) -> None:
        await self.engine.flush()

    async def close(self) -> None:
        await self.runtime.close()

    async def recorded(self, execution_id: str) -> dict[str, Any]:
        """The run's model calls and tool calls with a successful outcome stored (PROMPT
        and TOOL nodes), and the status of its run record (a MEMORY node)."""
        nodes: dict[str, list[Any]] = {}
        for version in await self.engine.versions(execution_id):
            nodes.setdefault(version.id, []).append(version)
        counts = {"PROMPT": 0, "TOOL": 0}
        status = "missing"
        for versions in nodes.values():
            statuses = [str(v.status) for v in versions]
            kind = str(versions[0].type)
            if kind == "MEMORY" and versions[-1].metadata.get("run") is True:
                status = statuses[-1]
            elif kind in counts and "SUCCESS" in statuses:
                counts[kind] += 1
        return {"models": counts["PROMPT"], "tools": counts["TOOL"], "status": status}


class Dbos(System):
    """dbos-openai-agents: DBOSRunner.run inside a DBOS workflow, the tool a DBOS step.
    DBOSRunner puts its own model provider in the run config, so the fake model is given
    on the agent (which it wraps the same way). DBOS is a process-wide singleton."""

    def __init__(self, store: dict[str, Any]) -> None:
        self.dbos: Any = importlib.import_module("dbos")
        runner: Any = importlib.import_module("dbos_openai_agents")
        metadata = importlib.import_module("importlib.metadata")
        self.version = (
            f"dbos {metadata.version('dbos')}, "
            f"dbos-openai-agents {metadata.version('dbos-openai-agents')}, "
            f"openai-agents {metadata.version('openai-agents')}"
        )
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
        # Decorated by hand (not with @) so the types stay checked without dbos installed.
        agent = make_agent(DBOS.step(name="bench_lookup")(lookup), model=TurnModel())

        async def bench_agent(text: str) -> str:
            result = await runner.DBOSRunner.run(agent, text, max_turns=MAX_TURNS)
            return str(result.final_output)

        self.workflow: Any = DBOS.workflow(name="bench_openai_agent")(bench_agent)
        DBOS(config=config)
        DBOS.launch()

    async def start(self, run: int, execution_id: str) -> str:
        with self.dbos.SetWorkflowID(execution_id):
            result: str = await self.workflow(prompt(run))
        return result

    def destroy(self) -> None:
        """Outside the event loop, as it was launched."""
        self.dbos.DBOS.destroy(destroy_registry=True)

    async def recorded(self, execution_id: str) -> dict[str, Any]:
        """The steps DBOS holds for the run (model calls and tool calls), and its status."""
        steps = await self.dbos.DBOS.list_workflow_steps_async(execution_id)
        names = [str(step["function_name"]) for step in steps]
        status = await self.dbos.DBOS.get_workflow_status_async(execution_id)
        return {
            "models": sum("model" in name for name in names),
            "tools": sum("lookup" in name for name in names),
            "status": "missing" if status is None else str(status.status),
        }


# -- the modes -----------------------------------------------------------------------------


async def measure(system: System, args: dict[str, Any]) -> dict[str, Any]:
    """A warm-up run, then the measured runs (under cProfile if asked)."""
    await system.start(0, f"{args['prefix']}-warmup")
    await system.durable()
    CLOCK.stamps.clear()
    ids = execution_ids(args["prefix"], args["runs"])
    profile = cProfile.Profile() if args.get("profile") else None
    if profile is not None:
        profile.enable()
    started = time.perf_counter()
    _, results = await timed(system.start, ids, args["scenario"] == "concurrent")
    await system.durable()
    total = time.perf_counter() - started
    if profile is not None:
        profile.disable()
        profile.dump_stats(args["profile"])
    return {
        "version": system.version,
        "total_s": total,
        "samples_ms": [round(ms, 5) for ms in CLOCK.turns_ms()],
        "failures": failures(results),
    }


async def verify(system: System, args: dict[str, Any]) -> dict[str, Any]:
    """Each run as the store holds it, then each started again: nothing should run."""
    ids = execution_ids(args["prefix"], args["runs"])
    recorded = [await system.recorded(eid) for eid in ids]
    before = CLOCK.model_calls + CLOCK.tool_calls
    _, results = await timed(system.start, ids, concurrent=False)
    again = CLOCK.model_calls + CLOCK.tool_calls - before
    problems = failures(results) + [
        f"run {i} is {r['status']}" for i, r in enumerate(recorded) if r["status"] != "SUCCESS"
    ]
    return {"recorded": recorded, "again": again, "failures": problems}


def work(args: dict[str, Any]) -> dict[str, Any]:
    """One mode for one system. DBOS is launched and destroyed outside the event loop;
    bare and ours are made on it."""
    mode = measure if args["mode"] == "run" else verify
    if args["system"] == "dbos":
        dbos = Dbos(args["store"])
        try:
            return asyncio.run(mode(dbos, args))
        finally:
            dbos.destroy()

    async def on_loop() -> dict[str, Any]:
        system = Bare() if args["system"] == "bare" else Ours(args["store"]["url"])
        try:
            return await mode(system, args)
        finally:
            await system.close()

    return asyncio.run(on_loop())


def main(argv: Sequence[str]) -> int:
    args: dict[str, Any] = json.loads(argv[1])
    set_tracing_disabled(True)  # no trace export (no network), the same for all three
    # DBOS, the SDK and our stores may print to stdout; the result is the last line.
    with contextlib.redirect_stdout(sys.stderr):
        result = work(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
