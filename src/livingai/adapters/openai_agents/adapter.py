"""OpenAI Agents SDK runs as livingai durable runs: a crashed run resumes without paying
for a recorded model turn again or repeating a side effect.

`OpenAIAgentsAdapter.run(agent, input, execution_id=...)` runs `Runner.run` inside a
durable run (lease, fencing, `livingai pending`, `recover`). It translates two of the
SDK's seams, on a copy of the agent graph (the start agent and its handoffs):

- Models: every `Model` the run asks for (by name from the run's provider, or given on
  an agent or the run config) is wrapped, so each model call is a step at node
  `<execution>/oai:model:<digest of the call>:<n>` (its n-th call with that input):
  served from the log when recorded, made and recorded (response, model, tokens, cost,
  latency) otherwise. A resumed run replays the same inputs, so it finds the same nodes.
  Agents used as tools inherit the run config, so their model calls are recorded too
  when their models are asked for by name (a `Model` object on such an agent is not).
- Function tools: each call goes through `Runtime.call_tool` at node
  `<execution>/oai:tool:<tool call id>` (the model's call id: recorded with the turn, so
  the same on resume), which is also its idempotency key. Tools given to `adapter.tool`
  get its policy (at most once by default); the others run again when in doubt (at least
  once, like a step) and a completed one is served on resume. Parallel calls stay
  parallel: each has its own node.

With `replay_of`, the models run live and each tool call is served from that execution's
recording (MOCK_TOOLS): the n-th call of a tool with the same arguments gets the n-th
recorded result; one the recording lacks raises ReplayDivergedError.

Also recorded: each model call's agent (the run config's model input filter names it),
each handoff taken (`<execution>/oai:handoff:<n>`), and a session given to the run, whose
calls are steps of it (run_session.py). Each attempt reads the execution's nodes once and
looks every call up there (scope.py). A run stopped on tools that need approval waits for
a human, durably, and goes on after a restart: `pending_approvals`, `approve`, `reject`,
`resume` (see approvals.py). `run_streamed` is in streaming.py, the models in models.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from agents import (
    Agent,
    Handoff,
    Model,
    RunConfig,
    Runner,
    RunResult,
    RunResultStreaming,
)
from agents import (
    handoff as handoff_to,
)
from agents.exceptions import AgentsException
from agents.items import (
    TResponseInputItem,
)
from agents.models.multi_provider import MultiProvider
from agents.tool import FunctionTool
from agents.tool_context import ToolContext

from livingai import (
    CheckpointEngine,
    ConfigError,
    ExecutionNode,
    NeedsHumanError,
    NodeType,
    PriceTable,
    Run,
    Runtime,
    Status,
    StepContext,
)
from livingai.adapters.base import FrameworkAdapter
from livingai.adapters.decisions import Decisions
from livingai.adapters.recordings import (
    check_recorded,
    plain,
    replay_plan,
    serving,
    started_input,
)

from . import approvals
from .approvals import PendingApproval
from .models import RecordingModel, RecordingProvider, model_name_of, naming_turns
from .run_session import recorded_session
from .scope import Scope, Speaker, current, livingai_cause, speaker
from .session import LivingAISession
from .streaming import StreamedRun


@dataclass(frozen=True)
class _Policy:
    """What adapter.tool said about a tool."""

    retry_with_key: bool
    reconcile: Callable[[StepContext], Any] | None


class OpenAIAgentsAdapter(FrameworkAdapter):
    """Runs OpenAI Agents SDK agents durably (see the module docstring).

    `source` is a Runtime, or an engine (a Runtime is made over it). `prices` turns the
    models' tokens into costs (default: the runtime's price table).

        adapter = OpenAIAgentsAdapter(engine)
        agent = Agent(name="travel", tools=[search, adapter.tool(book, retry_with_key=True)])
        result = await adapter.run(agent, "Book me a flight", execution_id="trip-1")
    """

    thread_name = "livingai-openai-agents"  # run_sync's loop

    def __init__(
        self, source: Runtime | CheckpointEngine, *, prices: PriceTable | None = None
    ) -> None:
        super().__init__(source, prices=prices)
        self._recording_tools: dict[int, FunctionTool] = {}  # made here, by id (kept alive)
        self.decisions = Decisions(self.runtime, "oai")  # approvals (approvals.py)

    def session(self, session_id: str, **options: Any) -> LivingAISession:
        """An SDK `Session` kept in this adapter's store, beside its runs
        (`Runner.run(..., session=adapter.session("user-42"))`; see LivingAISession for
        `options`). It shares the adapter's engine, so closing it leaves the engine open."""
        return LivingAISession(self.engine, session_id, **options)

    def tool(
        self,
        tool: FunctionTool,
        *,
        retry_with_key: bool = False,
        reconcile: Callable[[StepContext], Any] | None = None,
    ) -> FunctionTool:
        """`tool` with `run.tool`'s protocol in adapter runs: its intent (name, arguments,
        idempotency key) stored durably before it runs, its outcome after; a call whose
        outcome is recorded returns it without running; one started and never finished is
        in doubt: InDoubtError, or run again with the same key (`retry_with_key`), or
        looked up (`reconcile`). The tool reads its key from
        `current_step().idempotency_key`; its result must be JSON."""
        if not isinstance(tool, FunctionTool):
            raise ConfigError(
                f"adapter.tool wraps a FunctionTool (from @function_tool); got {tool!r}"
            )
        if reconcile is not None and not callable(reconcile):
            raise ConfigError(f"reconcile must be a function of the step; got {reconcile!r}")
        # Wrapped here, not only in a run's copy of the graph: an agent run as a tool runs
        # the agent `as_tool` was called on, whose tools are the ones given here.
        wrapped = self._recording(tool, _Policy(retry_with_key, reconcile))
        self._recording_tools[id(wrapped)] = wrapped
        return wrapped

    # -- running ------------------------------------------------------------------------

    async def run(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        *,
        execution_id: str,
        replay_of: str | None = None,
        **runner_kwargs: Any,
    ) -> RunResult:
        """`Runner.run(agent, input, **runner_kwargs)` as durable execution
        `execution_id`: started, or resumed where it stopped (recorded model turns and
        tool calls served from the log). Returns the SDK's RunResult; a finished
        execution is run again from the log alone. The agent is registered, so that
        `runtime.recover_pending()` can resume it."""
        _check_start("run", agent, execution_id)
        if replay_of is not None:
            await check_recorded(self.engine, replay_of)
        durable = self.register(agent, replay_of=replay_of, **runner_kwargs)
        ran, result = await self._durably(
            durable, plain(input), execution_id, stopped=NeedsHumanError
        )
        if ran:  # a run stopped for approval: the result says on what
            return cast(RunResult, result)
        # Finished before: the same run once more, every call served from its log.
        begun = await started_input(self.engine, execution_id, input)
        scope = await Scope.open(self, execution_id, None, replay_of)
        return await self._run_sdk(agent, begun, scope, runner_kwargs)

    def run_sync(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        *,
        execution_id: str,
        replay_of: str | None = None,
        **runner_kwargs: Any,
    ) -> RunResult:
        """`run` for code without an event loop. The engine then lives on a loop of the
        adapter's own (in a thread of its own), so use this adapter's engine through
        run_sync only."""
        return self._home.wait(
            lambda: self.run(
                agent, input, execution_id=execution_id, replay_of=replay_of, **runner_kwargs
            ),
            "OpenAIAgentsAdapter.run_sync()",
            "use `await adapter.run(...)` there",
        )

    def run_streamed(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        *,
        execution_id: str,
        replay_of: str | None = None,
        **runner_kwargs: Any,
    ) -> StreamedRun:
        """`Runner.run_streamed(agent, input, **runner_kwargs)` as durable execution
        `execution_id`, recorded as `run` records it (the same nodes: each resumes the
        other's runs). Called from a running event loop, as the SDK's, it returns at once
        a StreamedRun: the SDK's events reach its `stream_events()` as they happen, and
        it ends once the run's end is recorded. A model turn recorded before (a resumed
        or finished run) is not asked for again: its events are rebuilt from the log in
        one piece, since streams are recorded by turn, not token by token. The run goes
        on whether or not its events are read; `cancel()` stops it, unfinished."""
        _check_start("run_streamed", agent, execution_id)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigError(
                "run_streamed starts the run on the running event loop, as "
                "Runner.run_streamed does: call it from async code"
            ) from None
        streamed = StreamedRun(execution_id)
        streamed.start(_streaming(self, agent, input, replay_of, runner_kwargs, streamed))
        return streamed

    def register(
        self, agent: Agent[Any], *, replay_of: str | None = None, **runner_kwargs: Any
    ) -> Callable[..., Awaitable[Any]]:
        """The durable agent function that runs `agent` (registered with the runtime
        under `openai_agents:<agent name>`, so recover_pending() resumes its runs)."""

        async def durable(run: Run, input: str | list[TResponseInputItem]) -> Any:
            adapter = self._for(run.runtime)
            scope = await Scope.open(adapter, run.execution_id, run, replay_of)
            if run.script is not None:  # runtime.replay of an adapter run
                scope.replay_of, scope.models_from = replay_plan(run)
            elif replay_of is not None:
                await adapter.runtime.link_replay(run, replay_of)
            result = await adapter._run_sdk(agent, input, scope, runner_kwargs)
            self._hand(run.execution_id, result)
            await approvals.stop_if_interrupted(scope, result)  # raises when it waits for one
            return plain(result.final_output)

        durable.__name__ = durable.__qualname__ = f"openai_agents:{agent.name}"
        return self.runtime.agent(durable)

    def _adopt(self, other: OpenAIAgentsAdapter) -> None:
        other._recording_tools = self._recording_tools  # adapter.tool's, known as such

    async def _run_sdk(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        scope: Scope,
        runner_kwargs: dict[str, Any],
    ) -> RunResult:
        kwargs = dict(runner_kwargs)
        starting, config = self._prepare(agent, kwargs.pop("run_config", None))
        if "session" in kwargs:
            kwargs["session"] = recorded_session(kwargs["session"], scope)
        token, spoken = current.set(scope), speaker.set(Speaker())
        try:
            start = await approvals.continued(scope, starting, input)  # a stop for approval?
            return await Runner.run(starting, start, run_config=config, **kwargs)
        except AgentsException as exc:
            cause = livingai_cause(exc)
            if cause is None:
                raise
            raise cause from exc
        finally:
            current.reset(token)
            speaker.reset(spoken)

    # -- the agent graph, recorded ------------------------------------------------------

    def _prepare(self, agent: Agent[Any], config: RunConfig | None) -> tuple[Agent[Any], RunConfig]:
        """A copy of the agent graph whose models and tools record, and a run config
        whose provider's models do."""
        config = RunConfig() if config is None else config
        provider = config.model_provider or MultiProvider()
        changes: dict[str, Any] = {
            "model_provider": RecordingProvider(provider),
            "call_model_input_filter": naming_turns(config.call_model_input_filter),
        }
        if isinstance(config.model, Model):
            changes["model"] = RecordingModel(config.model, model_name_of(config.model))
        copies: dict[int, Agent[Any]] = {}
        return self._copy(agent, copies), dataclasses.replace(config, **changes)

    def _copy(self, agent: Agent[Any], copies: dict[int, Agent[Any]]) -> Agent[Any]:
        if id(agent) in copies:
            return copies[id(agent)]
        changes: dict[str, Any] = {}
        if isinstance(agent.model, Model) and not isinstance(agent.model, RecordingModel):
            changes["model"] = RecordingModel(agent.model, model_name_of(agent.model))
        copy = agent.clone(**changes)
        copies[id(agent)] = copy  # before the handoffs: they may lead back here
        copy.tools = [self._recorded_tool(tool) for tool in agent.tools]
        copy.handoffs = [self._recorded_handoff(h, copies) for h in agent.handoffs]
        return copy

    def _recorded_handoff(
        self, handoff: Agent[Any] | Handoff[Any, Any], copies: dict[int, Agent[Any]]
    ) -> Agent[Any] | Handoff[Any, Any]:
        """A handoff to the copy of its agent, recorded (BRANCH node, from and to agent
        names) when it is taken; an agent is made a handoff as the SDK would make it."""
        made = handoff_to(self._copy(handoff, copies)) if isinstance(handoff, Agent) else handoff
        invoke = made.on_invoke_handoff

        async def recorded(context: Any, arguments: str) -> Agent[Any]:
            target = self._copy(await invoke(context, arguments), copies)
            scope = current.get()
            if scope is not None and scope.run is not None:
                scope.calls["handoff"] += 1
                found = speaker.get()
                node = ExecutionNode(
                    id=f"{scope.execution_id}/oai:handoff:{scope.calls['handoff']}",
                    execution_id=scope.execution_id,
                    type=NodeType.BRANCH,
                    status=Status.SUCCESS,
                    parent_id=f"{scope.execution_id}/run",
                    input={"tool": made.tool_name, "arguments": _arguments(arguments)},
                    output={"to": target.name},
                    metadata={
                        "kind": "handoff",
                        "step": f"handoff to {target.name}",
                        "agent": None if found is None else found.agent,
                    },
                )
                await self.engine.save(node, fence=scope.fence)
            return target

        return dataclasses.replace(made, on_invoke_handoff=recorded)

    def _recorded_tool(self, tool: Any) -> Any:
        if not isinstance(tool, FunctionTool):
            return tool  # hosted tools run on the provider's side: the model turn records them
        if id(tool) in self._recording_tools:
            return tool  # adapter.tool's
        return self._recording(tool, None)

    def _recording(self, tool: FunctionTool, policy: _Policy | None) -> FunctionTool:
        """`tool`, each call in an adapter run made through Runtime.call_tool."""
        invoke = tool.on_invoke_tool

        async def recorded(context: ToolContext[Any], arguments: str) -> Any:
            scope = current.get()
            if scope is None:  # not in an adapter run: as the SDK would
                return await invoke(context, arguments)
            spoken = speaker.set(Speaker())  # an agent run as this tool speaks for itself
            try:
                return await scope.adapter._call_tool(
                    scope, tool.name, context, arguments, lambda: invoke(context, arguments), policy
                )
            finally:
                speaker.reset(spoken)

        return dataclasses.replace(tool, on_invoke_tool=recorded)

    async def _call_tool(
        self,
        scope: Scope,
        name: str,
        context: ToolContext[Any],
        arguments: str,
        invoke: Callable[[], Awaitable[Any]],
        policy: _Policy | None,
    ) -> Any:
        """One tool call, through Runtime.call_tool at the node of its call id."""
        call = {"arguments": _arguments(arguments)}
        node_id = f"{scope.execution_id}/oai:tool:{context.tool_call_id}"
        metadata: dict[str, Any] = {
            "tool_call_id": context.tool_call_id,
            "agent": getattr(context.agent, "name", None),
            "wrapped": policy is not None,
        }

        async def real(**_: Any) -> Any:
            return await invoke()

        fn: Callable[..., Awaitable[Any]] = real
        if scope.replay_of is not None:
            recorded = await self.recordings.find(scope.replay_of, scope.execution_id, name, call)
            metadata.update(mocked=True, replayed_from=recorded.id, replay_of=scope.replay_of)
            fn = serving(recorded, scope.replay_of)
        return await self.runtime.call_tool(
            scope.execution_id,
            node_id,
            name,
            fn,
            (),
            call,
            retry_with_key=False if policy is None else policy.retry_with_key,
            reconcile=None if policy is None else policy.reconcile,
            at_least_once=policy is None,  # a tool not wrapped: like a step
            parent_id=f"{scope.execution_id}/run",
            metadata=metadata,
            known=scope.known,
            fence=scope.fence,
        )

    # -- human approval (approvals.py) --------------------------------------------------

    async def pending_approvals(self, execution_id: str) -> list[PendingApproval]:
        """The tool calls run `execution_id` stopped on for approval, each with the
        decision recorded so far (None: undecided); [] when it is not waiting."""
        return await self.decisions.pending(execution_id)

    async def approve(
        self, execution_id: str, call_id: str | None = None, *, always: bool = False
    ) -> list[PendingApproval]:
        """Approve call `call_id` (None: every call waiting undecided) of the stopped
        run, durably, from any process; `resume` goes on with it."""
        return await self.decisions.decide(execution_id, call_id, "approved", always=always)

    async def reject(
        self,
        execution_id: str,
        call_id: str | None = None,
        *,
        message: str | None = None,
        always: bool = False,
    ) -> list[PendingApproval]:
        """Reject call `call_id` (None: every call waiting undecided), durably: it never
        runs, and the model is told `message` (None: the SDK's default)."""
        return await self.decisions.decide(
            execution_id, call_id, "rejected", message=message, always=always
        )

    async def resume(self, execution_id: str, agent: Agent[Any], **runner_kwargs: Any) -> RunResult:
        """Go on with run `execution_id` (its recorded input, `agent` as it was started
        with): from its stop for approval with the decisions recorded, in the same
        durable execution. The result has `interruptions` again when it stops again."""
        input = await approvals.recorded_input(self, execution_id)
        return await self.run(agent, input, execution_id=execution_id, **runner_kwargs)


# The StreamedRun a streaming durable run passes its events to, set in its own task.
_listener: ContextVar[StreamedRun | None] = ContextVar(
    "livingai_openai_agents_stream", default=None
)


async def _streaming(
    adapter: OpenAIAgentsAdapter,
    agent: Agent[Any],
    input: str | list[TResponseInputItem],
    replay_of: str | None,
    runner_kwargs: dict[str, Any],
    streamed: StreamedRun,
) -> None:
    """The task behind a StreamedRun: the durable run (under the name `run` gives it),
    whose agent function streams into `streamed`. Called by recover_pending instead,
    with no one to stream to, it runs as `run`'s does."""
    if replay_of is not None:
        await check_recorded(adapter.engine, replay_of)
    recorded = adapter.register(agent, replay_of=replay_of, **runner_kwargs)

    async def durable(run: Run, input: str | list[TResponseInputItem]) -> Any:
        if _listener.get() is not streamed or run.execution_id != streamed.execution_id:
            return await recorded(run, input)
        scope = await Scope.open(adapter, run.execution_id, run, replay_of)
        result = await _stream_sdk(adapter, agent, input, scope, runner_kwargs, streamed)
        await approvals.stop_if_interrupted(scope, result)  # raises when it waits for one
        return plain(result.final_output)

    durable.__name__ = durable.__qualname__ = recorded.__name__
    _listener.set(streamed)
    execution_id = streamed.execution_id
    try:
        await adapter.runtime.run(durable, plain(input), execution_id=execution_id)
    except NeedsHumanError:  # stopped for approval: its result's interruptions say on what
        if streamed.result is None:
            raise
    finally:
        adapter.runtime.agent(recorded)  # recover_pending resumes with the plain one
    if streamed.result is None:
        # Finished before: the same run once more, every call served from its log.
        begun = await started_input(adapter.engine, execution_id, input)
        scope = await Scope.open(adapter, execution_id, None, replay_of)
        await _stream_sdk(adapter, agent, begun, scope, runner_kwargs, streamed)


async def _stream_sdk(
    adapter: OpenAIAgentsAdapter,
    agent: Agent[Any],
    input: str | list[TResponseInputItem],
    scope: Scope,
    runner_kwargs: dict[str, Any],
    streamed: StreamedRun,
) -> RunResultStreaming:
    """`Runner.run_streamed` in `scope` (its run loop task copies the scope when it is
    made), each event passed on to `streamed` as it comes."""
    kwargs = dict(runner_kwargs)
    starting, config = adapter._prepare(agent, kwargs.pop("run_config", None))
    if "session" in kwargs:
        kwargs["session"] = recorded_session(kwargs["session"], scope)
    token, spoken = current.set(scope), speaker.set(Speaker())
    try:
        result = Runner.run_streamed(starting, input, run_config=config, **kwargs)
    finally:
        current.reset(token)
        speaker.reset(spoken)
    streamed.result = result
    try:
        async for event in result.stream_events():
            streamed.put(event)
        failed = result.run_loop_exception
        if failed is not None:
            raise failed
    except AgentsException as exc:
        cause = livingai_cause(exc)
        if cause is None:
            raise
        raise cause from exc
    return result


def _check_start(method: str, agent: object, execution_id: object) -> None:
    if not isinstance(agent, Agent):
        raise ConfigError(f"adapter.{method} runs an Agent; got {agent!r}")
    if not isinstance(execution_id, str) or not execution_id:
        raise ConfigError(f"execution_id must be a non-empty string; got {execution_id!r}")


def _arguments(arguments: str) -> Any:
    """A tool call's arguments as JSON holds them (the raw text when it is not JSON)."""
    try:
        return json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return arguments
