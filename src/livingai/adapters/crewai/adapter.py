"""CrewAI crews as livingai durable runs: a crew killed mid-task resumes at the call it
was making, with no LLM call paid for twice and no tool run twice.

`CrewAIAdapter.kickoff(crew, inputs, execution_id=...)` runs `crew.kickoff` inside a
durable run (lease, fencing, `livingai pending`, `recover`), on a thread of its own (as
CrewAI's kickoff_async does, but not on the loop's shared executor). It translates two
of CrewAI's seams, on the crew's agents, in place:

- LLMs: each agent's LLM (and function-calling LLM, and the crew's manager and planning
  LLMs) is put behind a RecordingLLM (llm.py): each call is a step, served from the log
  when recorded. A resumed kickoff runs its tasks again from the first, but every call
  they made is served from the log (the tasks' outputs come out as recorded), and the
  first call not recorded is made live: fast-forward at the call, not the task.
- Tools: each agent's and task's tools are put behind a RecordingTool (tools.py): each
  call goes through Runtime.call_tool, keyed by task, agent, tool, arguments and
  occurrence (CrewAI's calls carry no id). Tools given to `adapter.tool` get its policy.

The wrappers pass calls through unchanged outside an adapter kickoff. A livingai error
inside a CrewAI thread (a tool in doubt, a lost lease, a store down, a replay that
diverged) ends the kickoff and is raised as itself: CrewAI would otherwise hand it to the
model as a tool's error text, or retry the agent.

With `replay_of`, the LLMs run live and each tool call is served from that execution's
recording (MOCK_TOOLS); one the recording lacks raises ReplayDivergedError.

A Flow kicked off the same way has its methods recorded (methods.py): a resumed flow
serves its completed methods' outputs and states from the log and runs the first one
not recorded live.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, overload

from crewai import Crew
from crewai.crews.crew_output import CrewOutput
from crewai.flow.flow import Flow
from crewai.llms.base_llm import BaseLLM
from crewai.tools.base_tool import BaseTool

from livingai import (
    ConfigError,
    Run,
    Status,
    StepContext,
)
from livingai.adapters.base import FrameworkAdapter
from livingai.adapters.recordings import (
    check_recorded,
    plain,
    replay_plan,
    started_input,
)

from .llm import RecordingLLM
from .methods import record_methods, stamp_id, state_id
from .scope import Place, Scope, Stop, current, task_node, task_node_id
from .tools import RecordingTool


class CrewAIAdapter(FrameworkAdapter):
    """Runs CrewAI crews durably (see the module docstring).

    `source` is a Runtime, or an engine (a Runtime is made over it). `prices` turns the
    LLMs' tokens into costs (default: the runtime's price table).

        adapter = CrewAIAdapter(engine)
        agent = Agent(role="booker", ..., tools=[search, adapter.tool(book, retry_with_key=True)])
        output = adapter.kickoff(Crew(agents=[agent], tasks=[...]), {"city": "Zurich"},
                                 execution_id="trip-1")
    """

    thread_name = "livingai-crewai"

    def tool(
        self,
        tool: BaseTool,
        *,
        retry_with_key: bool = False,
        reconcile: Callable[[StepContext], Any] | None = None,
    ) -> BaseTool:
        """`tool` (a BaseTool, or what `@tool` made) with `run.tool`'s protocol in
        adapter kickoffs: its intent (name, arguments, idempotency key) stored durably
        before it runs, its outcome after; a call whose outcome is recorded returns it
        without running; one started and never finished is in doubt: InDoubtError, or
        run again with the same key (`retry_with_key`), or looked up (`reconcile`). The
        tool reads its key from `current_step().idempotency_key`; its result must be JSON."""
        if not isinstance(tool, BaseTool):
            raise ConfigError(
                f"adapter.tool wraps a CrewAI BaseTool (or a @tool function); got {tool!r}"
            )
        if reconcile is not None and not callable(reconcile):
            raise ConfigError(f"reconcile must be a function of the step; got {reconcile!r}")
        inner = tool.inner if isinstance(tool, RecordingTool) else tool
        return RecordingTool.over(
            inner, wrapped=True, retry_with_key=retry_with_key, reconcile=reconcile
        )

    # -- running ------------------------------------------------------------------------

    @overload
    def kickoff(
        self,
        crew: Crew,
        inputs: dict[str, Any] | None = None,
        *,
        execution_id: str,
        replay_of: str | None = None,
    ) -> CrewOutput: ...

    @overload
    def kickoff(
        self,
        crew: Flow[Any],
        inputs: dict[str, Any] | None = None,
        *,
        execution_id: str,
        replay_of: str | None = None,
    ) -> Any: ...

    def kickoff(
        self,
        crew: Crew | Flow[Any],
        inputs: dict[str, Any] | None = None,
        *,
        execution_id: str,
        replay_of: str | None = None,
    ) -> Any:
        """`crew.kickoff(inputs)` as durable execution `execution_id`, for plain sync code
        (CrewAI's own style): started, or resumed where it stopped. Returns CrewAI's
        CrewOutput (for a Flow, the flow's final output). The engine then lives on a loop
        of the adapter's own, in a thread of its own, so use this adapter's engine through
        kickoff only (and `close()`). From
        async code, `await adapter.kickoff_async(...)` instead: called on a running
        loop's thread, this raises WrongLoopError."""
        return self._home.wait(
            lambda: self.kickoff_async(
                crew, inputs, execution_id=execution_id, replay_of=replay_of
            ),
            "CrewAIAdapter.kickoff()",
            "use `await adapter.kickoff_async(...)` there",
        )

    @overload
    async def kickoff_async(
        self,
        crew: Crew,
        inputs: dict[str, Any] | None = None,
        *,
        execution_id: str,
        replay_of: str | None = None,
    ) -> CrewOutput: ...

    @overload
    async def kickoff_async(
        self,
        crew: Flow[Any],
        inputs: dict[str, Any] | None = None,
        *,
        execution_id: str,
        replay_of: str | None = None,
    ) -> Any: ...

    async def kickoff_async(
        self,
        crew: Crew | Flow[Any],
        inputs: dict[str, Any] | None = None,
        *,
        execution_id: str,
        replay_of: str | None = None,
    ) -> Any:
        """`kickoff` from async code: the crew runs on a thread of its own (as CrewAI's
        kickoff_async runs it) while this loop records its calls. A finished execution is
        run again from the log alone. The crew is registered, so that
        `runtime.recover_pending()` can resume it."""
        _check_start(crew, inputs, execution_id, replay_of)
        if replay_of is not None:
            await check_recorded(self.engine, replay_of)
        durable = self.register(crew, replay_of=replay_of)
        ran, output = await self._durably(durable, plain(inputs or {}), execution_id)
        if ran:
            return output
        # Finished before: the same kickoff once more, every call served from its log.
        begun = await started_input(self.engine, execution_id, inputs or {})
        scope = await self._scope(crew, execution_id, None, replay_of)
        return await _kickoff(crew, begun, scope)

    def register(
        self, crew: Crew | Flow[Any], *, replay_of: str | None = None
    ) -> Callable[..., Awaitable[Any]]:
        """The durable agent function that kicks `crew` off (registered with the runtime
        under `crewai:<crew name>`, or `crewai:flow:<flow name>` for a Flow, so
        recover_pending() resumes its runs)."""

        async def durable(run: Run, inputs: dict[str, Any]) -> Any:
            adapter = self._for(run.runtime)
            scope = await adapter._scope(crew, run.execution_id, run, replay_of)
            if run.script is not None:  # runtime.replay of an adapter run
                scope.replay_of = replay_plan(run)[0]
            elif replay_of is not None:
                await adapter.runtime.link_replay(run, replay_of)
            output = await _kickoff(crew, inputs, scope)
            self._hand(run.execution_id, output)
            return output.raw if isinstance(output, CrewOutput) else plain(output)

        durable.__name__ = durable.__qualname__ = _name(crew)
        return self.runtime.agent(durable)

    async def _scope(
        self, crew: Crew | Flow[Any], execution_id: str, run: Run | None, replay_of: str | None
    ) -> Scope:
        """The scope of one kickoff, its crew's LLMs and tools (a flow's methods) made
        recording."""
        nodes = await self.engine.list_nodes(execution_id)
        known = {node.id: node for node in nodes}
        loop = asyncio.get_running_loop()
        if isinstance(crew, Flow):
            record_methods(crew)
            recorded_id = state_id(known)
            if recorded_id is not None:  # the state id the flow's methods saw
                stamp_id(crew, recorded_id)
            return Scope(self, execution_id, run, replay_of, loop, known, {})
        _record(crew)
        tasks = {
            str(task.id): Place(
                index,
                task.key,
                task.name or f"task {index + 1}",
                None if task.agent is None else task.agent.role,
            )
            for index, task in enumerate(crew.tasks)
        }
        return Scope(self, execution_id, run, replay_of, loop, known, tasks)


async def _kickoff(crew: Crew | Flow[Any], inputs: dict[str, Any], scope: Scope) -> Any:
    """`crew.kickoff(inputs)` on a thread of its own, in `scope` (the thread gets a copy
    of this context); a Stop from inside it raised as the livingai error it carries. Not
    on the loop's default executor: a kickoff holds its thread for as long as the crew
    runs, and the tools' calls (Runtime.call_tool runs sync tools there) need its threads.
    A flow's kickoff runs a loop of its own in that thread."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    token = current.set(scope)
    try:
        context = contextvars.copy_context()
    finally:
        current.reset(token)

    def settle(outcome: Any, failed: bool) -> None:
        if done.done():  # the awaiting task was cancelled meanwhile
            return
        if failed:
            done.set_exception(outcome)
        else:
            done.set_result(outcome)

    def kick() -> None:
        try:
            output = context.run(crew.kickoff, inputs=inputs)
        except BaseException as exc:  # a Stop included: it ends the kickoff
            loop.call_soon_threadsafe(settle, exc, True)
        else:
            loop.call_soon_threadsafe(settle, output, False)

    name = f"livingai-crewai {scope.execution_id}"
    threading.Thread(target=kick, name=name, daemon=True).start()
    try:
        output = await done
    except Stop as stop:
        raise stop.error from None
    if isinstance(crew, Flow):
        return output
    assert isinstance(output, CrewOutput)  # a streaming crew is refused (_check_start)
    if scope.run is not None:  # each task's node, with its output
        for task in crew.tasks:
            place = scope.tasks[str(task.id)]
            recorded = scope.known.get(task_node_id(scope.execution_id, place.position))
            if task.output is not None and (
                recorded is None or recorded.status is not Status.SUCCESS
            ):
                node = task_node(scope.execution_id, place, Status.SUCCESS, task.output.raw)
                await scope.adapter.engine.save(node, fence=scope.fence)
    return output


def _record(crew: Crew) -> None:
    """Put the crew's LLMs and tools behind recording ones (once; in place, since CrewAI
    reads them off the agents and tasks): one RecordingLLM per model object."""
    made: dict[int, RecordingLLM] = {}

    def recording(llm: Any) -> Any:
        if not isinstance(llm, BaseLLM) or isinstance(llm, RecordingLLM):
            return llm
        if id(llm) not in made:
            made[id(llm)] = RecordingLLM(llm)
        return made[id(llm)]

    def tools(given: list[BaseTool] | None) -> list[BaseTool] | None:
        if given is None:
            return None
        return [
            tool if isinstance(tool, RecordingTool) else RecordingTool.over(tool, wrapped=False)
            for tool in given
        ]

    agents = list(crew.agents) + ([crew.manager_agent] if crew.manager_agent else [])
    for agent in agents:
        agent.llm = recording(agent.llm)
        calling = vars(agent).get("function_calling_llm")  # read so: deprecated, it warns
        if isinstance(calling, BaseLLM) and not isinstance(calling, RecordingLLM):
            setattr(agent, "function_calling_llm", recording(calling))  # noqa: B010
        agent.tools = tools(agent.tools)
    for task in crew.tasks:
        if task.tools:
            task.tools = tools(task.tools)
    if isinstance(crew.manager_llm, BaseLLM):
        crew.manager_llm = recording(crew.manager_llm)
    if isinstance(crew.planning_llm, BaseLLM):
        crew.planning_llm = recording(crew.planning_llm)


def _name(crew: Crew | Flow[Any]) -> str:
    """The name its durable function is registered under."""
    if isinstance(crew, Flow):
        return f"crewai:flow:{crew.name or type(crew).__name__}"
    return f"crewai:{crew.name or 'crew'}"


def _check_start(crew: object, inputs: object, execution_id: object, replay_of: object) -> None:
    if not isinstance(crew, Crew | Flow):
        raise ConfigError(f"adapter.kickoff runs a CrewAI Crew or Flow; got {crew!r}")
    if crew.stream:
        raise ConfigError(
            f"adapter.kickoff records a {type(crew).__name__} call by call, not token by "
            "token: make it with stream=False"
        )
    if isinstance(crew, Flow) and replay_of is not None:
        raise ConfigError(
            "replay_of serves a crew's tool calls from its recording; a flow's are not "
            "matched by call: kick off the flow's crews with replay_of instead"
        )
    if inputs is not None and not isinstance(inputs, dict):
        raise ConfigError(f"inputs must be a dict (or None); got {inputs!r}")
    if not isinstance(execution_id, str) or not execution_id:
        raise ConfigError(f"execution_id must be a non-empty string; got {execution_id!r}")
