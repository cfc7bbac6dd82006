"""One CrewAI benchmark child (benchmarks/crewai.py starts it by path under a python with
CrewAI): it reads one JSON argument and prints one JSON line.

The crew is the same for every system: two tasks, each of ROUNDS rounds of one LLM call
asking for one tool call, then an LLM call answering; a scripted LLM, no network. Each
call is logged by name (`<task>:<round>:llm|tool`) in `dir/calls.log`, across processes.

Systems: "bare" (the crew alone), "checkpoint" (CrewAI's own CheckpointConfig with its
JSON provider, on every event), "ours" (CrewAIAdapter over `url`). Modes:
    run      `kickoffs` kickoffs one after the other, each timed (ms)
    crash    one kickoff that prints "hanging" in the HANG_AT tool call of the second
             task and waits to be killed there
    resume   the same kickoff again after the kill (ours: the same execution; checkpoint:
             restored from its newest checkpoint; bare: from the start); prints which
             calls it made that the killed process had made already
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ARGS: dict[str, Any] = json.loads(sys.argv[1])
# Started by path, so its folder leads sys.path, and benchmarks/crewai.py there would be
# found as `crewai`: the folder goes, before CrewAI is imported.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from livingai.testing.crewai_offline import crewai_offline  # noqa: E402

crewai_offline(tempfile.mkdtemp(prefix="livingai-bench-crewai-home-"))

from crewai import Agent, CheckpointConfig, Crew, Task  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from crewai.state.provider.json_provider import JsonProvider  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from crewai.tools.base_tool import BaseTool  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from pydantic import BaseModel  # noqa: E402

ROUNDS = 5  # per task: 2 x (5 + 1) = 12 LLM calls and 10 tool calls a kickoff
HANG_AT = 3  # the crash: inside this round's tool call of the second task
CALLS = Path(ARGS["dir"]) / "calls.log"
HANGING = ARGS["mode"] == "crash"


def log(name: str) -> None:
    with CALLS.open("a") as out:
        out.write(name + "\n")


class ScriptedLLM(BaseLLM):  # type: ignore[misc, unused-ignore]
    """Round n asks for `lookup` with n; after ROUNDS results, it answers."""

    def supports_function_calling(self) -> bool:
        return True

    def get_context_window_size(self) -> int:
        return 128_000

    def get_input_tokens_count(self, messages: Any, *_: Any, **__: Any) -> int:
        return len(str(messages)) // 4

    def call(self, messages: Any, *_: Any, **kwargs: Any) -> Any:
        done = sum(1 for m in messages if m.get("role") == "tool")
        task = kwargs["from_task"].name
        log(f"{task}:{done}:llm")
        self._track_token_usage_internal({"prompt_tokens": 200, "completion_tokens": 20})
        if done < ROUNDS:
            arguments = json.dumps({"task": task, "round": done})
            function = {"name": "lookup", "arguments": arguments}
            return [{"id": f"call-{task}-{done}", "type": "function", "function": function}]
        return f"{task}: {done} lookups done"


class LookupArgs(BaseModel):
    task: str
    round: int


class Lookup(BaseTool):  # type: ignore[misc, unused-ignore]
    name: str = "lookup"
    description: str = "Look a record up."
    args_schema: type[BaseModel] = LookupArgs

    def _run(self, task: str, round: int) -> str:
        log(f"{task}:{round}:tool")
        if HANGING and task == "second" and round == HANG_AT:
            print("hanging", flush=True)
            time.sleep(120)  # killed here
        return json.dumps({"task": task, "round": round, "value": round * 7})


def crew(system: str, adapter: Any = None) -> Crew:
    """The crew; ours with its tool wrapped (`retry_with_key`: a call cut off by the kill
    runs again under its key, the one call a keyed retry is allowed)."""
    tool = Lookup() if adapter is None else adapter.tool(Lookup(), retry_with_key=True)
    agent = Agent(
        role="clerk",
        goal="Look records up",
        backstory="You look things up.",
        llm=ScriptedLLM(model="gpt-4o-mini", provider="openai"),
        tools=[tool],
    )
    tasks = [
        Task(name=name, description=f"The {name} lookups", expected_output="a summary")
        for name in ("first", "second")
    ]
    for task in tasks:
        task.agent = agent
    options: dict[str, Any] = {}
    if system == "checkpoint":
        options["checkpoint"] = CheckpointConfig(
            location=str(Path(ARGS["dir"]) / "checkpoints"),
            provider=JsonProvider(),
            on_events=["*"],
        )
    return Crew(agents=[agent], tasks=tasks, **options)


def kickoff(system: str, execution_id: str) -> Any:
    if system != "ours":
        return crew(system).kickoff()
    from livingai import CheckpointEngine, Runtime, open_store
    from livingai.adapters.crewai import (  # type: ignore[import-not-found, unused-ignore]
        CrewAIAdapter,
    )

    adapter = ADAPTERS.get("ours")
    if adapter is None:
        runtime = Runtime(CheckpointEngine(open_store(ARGS["url"])), worker_id="bench-crewai")
        adapter = ADAPTERS["ours"] = CrewAIAdapter(runtime)
    return adapter.kickoff(crew(system, adapter), execution_id=execution_id)


ADAPTERS: dict[str, Any] = {}


def restored_checkpoint() -> Any:
    """The crew CrewAI restores from its newest checkpoint, its LLM and tools put back."""
    files = sorted((Path(ARGS["dir"]) / "checkpoints").rglob("*.json"), key=os.path.getmtime)
    restored = Crew.from_checkpoint(CheckpointConfig(restore_from=str(files[-1])))
    for agent in restored.agents:
        agent.llm = ScriptedLLM(model="gpt-4o-mini", provider="openai")
        agent.tools = [Lookup()]
    return restored.kickoff()


def main() -> None:
    system, mode = ARGS["system"], ARGS["mode"]
    if mode == "run":
        times = []
        for n in range(ARGS["kickoffs"]):
            started = time.perf_counter()
            kickoff(system, f"bench-{n}")
            times.append((time.perf_counter() - started) * 1000.0)
        print(json.dumps({"kickoff_ms": times}))
    elif mode == "crash":
        kickoff(system, "crashed")
        print(json.dumps({"error": "the kickoff ended: it should have been killed"}))
    else:
        before = CALLS.read_text().splitlines()
        try:
            output = restored_checkpoint() if system == "checkpoint" else kickoff(system, "crashed")
        except Exception as exc:  # a baseline that cannot resume: say how it failed
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))
            return
        again = CALLS.read_text().splitlines()[len(before) :]
        seen = set(before)
        repeated = [name for name in again if name in seen]
        print(
            json.dumps(
                {
                    "output": str(output.raw),
                    "llm_repeated": sum(name.endswith(":llm") for name in repeated),
                    "tool_repeated": sum(name.endswith(":tool") for name in repeated),
                    "made": len(again),
                }
            )
        )
    if "ours" in ADAPTERS:
        ADAPTERS["ours"].close()


if __name__ == "__main__":
    main()
