"""One durable-runs benchmark in its own process: ours (livingai's Runtime) or DBOS.

The same file runs under this repo's python (ours) and under DBOS's virtualenv, which
does not have the `benchmarks` package or our `livingai`: so it imports only the
standard library at the top, each system's package lazily, and it is started by path.
It reads one JSON argument and prints one JSON line.

The agent is the same for both systems and so is the clock: 20 steps, every fifth a
tool (4 tools, 16 idempotent steps); each step and tool echoes its input and does no
I/O. The agent times every call (wall time around the awaited step) and subtracts the
step function's own time, measured inside it, so what is left is the system's overhead.

Modes:
    run     a warm-up run outside the clock (schema made, connections open, code
            paths warm), then `runs` runs, all at once (concurrent) or one after another
            (sequential); prints every step's overhead and the total time.
    verify  in a fresh process, open the same store and check that every run is there:
            each run's recorded steps (ours: also each tool's write-ahead intent), then
            run each again and count step functions called again (a durable step is not)
            and results that differ.

The "store" argument: {"url": ..., "schema": ...} where `url` is an `open_store` URL
(ours) or a DBOS `system_database_url` (DBOS); `schema` is DBOS's
`dbos_system_schema`, set only when its Postgres run could not have a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

STEPS = 20
TOOL_EVERY = 5  # steps 4, 9, 14, 19 are tools: 4 tools, 16 idempotent steps
DBOS_APP = "livingai-bench"


def is_tool(index: int) -> bool:
    return index % TOOL_EVERY == TOOL_EVERY - 1


class Cell:
    """What one run's step functions report back to its agent: their own time, and how
    many times they were called (a re-run of a durable step is a lost step)."""

    __slots__ = ("calls", "inner")

    def __init__(self) -> None:
        self.inner = 0.0
        self.calls = 0


# Set by each agent at its start, so a step function knows whose cell to write to; a
# task or thread that runs the step gets a copy of the context, with the same cell.
_CELL: contextvars.ContextVar[Cell | None] = contextvars.ContextVar("bench_cell", default=None)
CALLS = Cell()  # every step function call in this process, for verify


def echo(x: int) -> int:
    """The step's work: none. It times itself, so its time is not counted as overhead."""
    started = time.perf_counter()
    CALLS.calls += 1
    cell = _CELL.get()
    if cell is not None:
        cell.calls += 1
        cell.inner += time.perf_counter() - started
    return x


async def step_echo(x: int) -> int:
    """The idempotent steps' function. Async for both systems: both then call it on the
    loop (a plain function would go to a thread: ours and DBOS's both do that)."""
    return echo(x)


async def tool_echo(x: int) -> int:
    """The tools' function (its own: DBOS registers each step function by name; to DBOS
    a tool is just another step, with no intent recorded before it)."""
    return echo(x)


StepCall = Callable[[int, int], Awaitable[int]]


async def drive(step: StepCall, tool: StepCall, n: int, samples: list[float]) -> int:
    """The agent's body for both systems: each step timed the same way, in seconds."""
    cell = Cell()
    _CELL.set(cell)
    x = n
    for index in range(STEPS):
        cell.inner = 0.0
        started = time.perf_counter()
        x = await (tool if is_tool(index) else step)(index, x)
        samples.append(time.perf_counter() - started - cell.inner)
    return x


def execution_ids(prefix: str, runs: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(runs)]


async def _timed(
    start: Callable[[int, str], Awaitable[int]], ids: Sequence[str], concurrent: bool
) -> tuple[float, list[Any]]:
    """Every run, all at once or one by one; the wall time and each result (or error)."""
    started = time.perf_counter()
    if concurrent:
        results = await asyncio.gather(
            *(start(i, eid) for i, eid in enumerate(ids)), return_exceptions=True
        )
    else:
        results = []
        for i, eid in enumerate(ids):
            try:
                results.append(await start(i, eid))
            except Exception as exc:
                results.append(exc)
    return time.perf_counter() - started, list(results)


def _failures(results: Sequence[Any]) -> list[str]:
    """Runs that raised or returned the wrong value (run i echoes i)."""
    out = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            out.append(f"run {i} raised {type(result).__name__}: {result}")
        elif result != i:
            out.append(f"run {i} returned {result!r}, expected {i}")
    return out


# -- ours ------------------------------------------------------------------------------------


class Ours:
    """livingai's Runtime on one store URL."""

    def __init__(self, url: str) -> None:
        self.livingai: Any = importlib.import_module("livingai")
        self.engine: Any = self.livingai.CheckpointEngine(self.livingai.open_store(url))
        self.runtime: Any = self.livingai.Runtime(
            self.engine, worker_id="bench", lease_seconds=30.0
        )
        self.samples: list[float] = []

        async def bench_agent(run: Any, n: int) -> int:
            return await drive(
                lambda i, x: run.step(f"step-{i}", step_echo, x),
                lambda i, x: run.tool(f"tool-{i}", tool_echo, x),
                n,
                self.samples,
            )

        self.agent: Any = self.runtime.agent(bench_agent)

    async def start(self, n: int, execution_id: str) -> int:
        result: int = await self.runtime.run(self.agent, n, execution_id=execution_id)
        return result

    async def durable(self) -> None:
        """Until every write is in the store: the clock stops after this."""
        await self.engine.flush()

    async def close(self) -> None:
        await self.runtime.close()

    async def recorded(self, execution_id: str) -> tuple[int, int, str]:
        """How many of the run's steps and tools (PROMPT and TOOL nodes) have a successful
        outcome stored; how many tools have their write-ahead intent (a RUNNING version)
        stored before it; and the status of the run's own record (a MEMORY node)."""
        nodes: dict[str, list[Any]] = {}
        for version in await self.engine.versions(execution_id):
            nodes.setdefault(version.id, []).append(version)
        done = intents = 0
        status = "missing"
        for versions in nodes.values():
            statuses = [str(v.status) for v in versions]
            kind = str(versions[0].type)
            if kind == "MEMORY" and versions[-1].metadata.get("run") is True:
                status = statuses[-1]
            if kind not in ("PROMPT", "TOOL") or "SUCCESS" not in statuses:
                continue
            done += 1
            if kind == "TOOL" and "RUNNING" in statuses:
                intents += statuses.index("RUNNING") < statuses.index("SUCCESS")
        return done, intents, status


async def run_ours(args: dict[str, Any]) -> dict[str, Any]:
    system = Ours(args["store"]["url"])
    try:
        await system.start(0, f"{args['prefix']}-warmup")
        await system.durable()
        system.samples.clear()
        ids = execution_ids(args["prefix"], args["runs"])
        started = time.perf_counter()
        _, results = await _timed(system.start, ids, args["scenario"] == "concurrent")
        await system.durable()
        total = time.perf_counter() - started
    finally:
        await system.close()
    return {
        "version": system.livingai.__version__,
        "total_s": total,
        "samples_ms": [round(s * 1000.0, 5) for s in system.samples],
        "failures": _failures(results),
    }


async def verify_ours(args: dict[str, Any]) -> dict[str, Any]:
    system = Ours(args["store"]["url"])
    ids = execution_ids(args["prefix"], args["runs"])
    try:
        recorded = [await system.recorded(eid) for eid in ids]
        before = CALLS.calls
        _, results = await _timed(system.start, ids, concurrent=False)
        calls = CALLS.calls - before
    finally:
        await system.close()
    failures = _failures(results) + [
        f"run {i} is {status}" for i, (_, _, status) in enumerate(recorded) if status != "SUCCESS"
    ]
    return {
        "recorded": [r[0] for r in recorded],
        "tool_intents": sum(r[1] for r in recorded),
        "rerun_calls": calls,
        "rerun_failures": failures,
    }


# -- DBOS ------------------------------------------------------------------------------------


class Dbos:
    """DBOS Transact, async workflow and steps, on one system database. DBOS is a
    process-wide singleton: one per child process."""

    def __init__(self, store: dict[str, Any]) -> None:
        self.dbos: Any = importlib.import_module("dbos")
        DBOS = self.dbos.DBOS
        config: dict[str, Any] = {
            "name": DBOS_APP,
            "system_database_url": store["url"],
            "application_version": "bench",  # not a hash of this file: the same in verify
            "run_admin_server": False,  # no HTTP port: runs may overlap, and none is needed
            "log_level": "WARNING",
        }
        if store.get("schema"):
            config["dbos_system_schema"] = store["schema"]
        self.samples: list[float] = []
        # Decorated by hand (not with @) so the types stay checked without dbos installed.
        step = DBOS.step(name="bench_step")(step_echo)
        tool = DBOS.step(name="bench_tool")(tool_echo)

        async def bench_agent(n: int) -> int:
            return await drive(lambda i, x: step(x), lambda i, x: tool(x), n, self.samples)

        self.workflow: Any = DBOS.workflow(name="bench_agent")(bench_agent)
        DBOS(config=config)
        DBOS.launch()

    async def start(self, n: int, execution_id: str) -> int:
        with self.dbos.SetWorkflowID(execution_id):
            result: int = await self.workflow(n)
        return result

    def recorded(self, execution_id: str) -> tuple[int, str]:
        """How many steps DBOS holds for the run, and the run's status."""
        steps = self.dbos.DBOS.list_workflow_steps(execution_id)
        status = self.dbos.DBOS.get_workflow_status(execution_id)
        return len(steps), "missing" if status is None else str(status.status)

    def close(self) -> None:
        self.dbos.DBOS.destroy(destroy_registry=True)


def _dbos_version() -> str:
    metadata = importlib.import_module("importlib.metadata")
    version: str = metadata.version("dbos")
    return version


def run_dbos(args: dict[str, Any]) -> dict[str, Any]:
    system = Dbos(args["store"])
    try:

        async def measure() -> tuple[float, list[Any]]:
            await system.start(0, f"{args['prefix']}-warmup")
            system.samples.clear()
            ids = execution_ids(args["prefix"], args["runs"])
            return await _timed(system.start, ids, args["scenario"] == "concurrent")

        total, results = asyncio.run(measure())
    finally:
        system.close()
    return {
        "version": _dbos_version(),
        "total_s": total,
        "samples_ms": [round(s * 1000.0, 5) for s in system.samples],
        "failures": _failures(results),
    }


def verify_dbos(args: dict[str, Any]) -> dict[str, Any]:
    system = Dbos(args["store"])
    ids = execution_ids(args["prefix"], args["runs"])
    try:
        recorded = [system.recorded(eid) for eid in ids]
        before = CALLS.calls
        _, results = asyncio.run(_timed(system.start, ids, concurrent=False))
        calls = CALLS.calls - before
    finally:
        system.close()
    failures = _failures(results) + [
        f"run {i} is {status}" for i, (_, status) in enumerate(recorded) if status != "SUCCESS"
    ]
    return {
        "recorded": [r[0] for r in recorded],
        "rerun_calls": calls,
        "rerun_failures": failures,
    }


def main(argv: Sequence[str]) -> int:
    args: dict[str, Any] = json.loads(argv[1])
    work: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
        ("ours", "run"): lambda a: asyncio.run(run_ours(a)),
        ("ours", "verify"): lambda a: asyncio.run(verify_ours(a)),
        ("dbos", "run"): run_dbos,
        ("dbos", "verify"): verify_dbos,
    }
    # DBOS and our stores may print to stdout; the result is the last line.
    with contextlib.redirect_stdout(sys.stderr):
        result = work[(args["system"], args["mode"])](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
