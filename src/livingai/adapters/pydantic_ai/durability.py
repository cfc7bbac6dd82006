"""LivingAIDurability: livingai as a Pydantic AI durable execution engine, built on
`pydantic_ai.durable_exec`'s public builder. Each model request is a step, served from
the log on resume; each tool call goes through Runtime.call_tool (write-ahead intent and
an idempotency key for tools given to `durability.tool`, at least once for the others).

Pydantic AI hands the engine one operation at a time (`execute`): its persisted name
(from the journal namer), the body that runs it, and its cache key, whose parts carry the
run context (run step, tool call id). Node ids come from the execution, the agent run's
place in it, the run step and the tool call id, so a resumed run finds the same nodes.
Outside a livingai run the capability does nothing: every call runs as it would without
it."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, RunContext, Tool
from pydantic_ai.agent import AgentRunResult, EventStreamHandler
from pydantic_ai.capabilities import WrapRunHandler
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationBackend,
    DurableOperationId,
    JournalCallableOperationBackend,
    ModelRequestId,
    RoleBasedOperationConfig,
    ToolsetCallToolId,
)
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessagesTypeAdapter

from livingai import (
    NOT_DONE,
    CheckpointEngine,
    ConfigError,
    ExecutionNode,
    ExecutionNotFoundError,
    NeedsHumanError,
    NodeType,
    PriceTable,
    Run,
    Runtime,
    Status,
    StepContext,
    current_run,
)
from livingai.adapters.base import FrameworkAdapter
from livingai.adapters.decisions import Decisions, PendingApproval
from livingai.adapters.recordings import (
    ModelUsage,
    check_recorded,
    model_call,
    plain,
    replay_plan,
    serving,
    started_input,
)

from . import deferred

T = TypeVar("T")
wait = asyncio.sleep  # how a durable sleep waits (a test notes its waits here)
ToolConfig = dict[str, Any]
CONFIG_KEY = "livingai"  # the tool metadata key of per-tool settings


@dataclass
class AgentRun:
    """One agent.run inside a livingai run: where its calls are recorded."""

    shell: Shell
    run: Run | None  # None: a finished execution read back from its log
    execution_id: str
    place: int  # which agent run of the execution this is
    known: dict[str, ExecutionNode]
    agent_name: str | None = None
    replay_of: str | None = None  # MOCK_TOOLS: every tool call served from this execution
    calls: Counter[str] = field(default_factory=Counter)
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # deferred, undecided

    def node_id(self, kind: str, *parts: object) -> str:
        stem = ":".join([f"{self.execution_id}/pai:{self.place}:{kind}", *map(str, parts)])
        self.calls[stem] += 1
        return f"{stem}:{self.calls[stem]}"


_current: ContextVar[AgentRun | None] = ContextVar("livingai_pydantic_ai", default=None)


class Shell(FrameworkAdapter):
    """The adapter shell LivingAIDurability records through (runtime, prices, the
    result hand-back; see FrameworkAdapter)."""

    thread_name = "livingai-pydantic-ai"

    def __init__(
        self, source: Runtime | CheckpointEngine, *, prices: PriceTable | None = None
    ) -> None:
        super().__init__(source, prices=prices)
        self._places: weakref.WeakKeyDictionary[Run, int] = weakref.WeakKeyDictionary()
        self.decisions = Decisions(self.runtime, "pai")  # deferred tool calls (deferred.py)

    def register(
        self, agent: Agent[Any, Any], replay_of: str | None, run_kwargs: dict[str, Any]
    ) -> Callable[..., Awaitable[Any]]:
        """The durable agent function that runs `agent` (registered with the runtime
        under `pydantic_ai:<agent name>`, so recover_pending() resumes its runs)."""

        async def durable(run: Run, prompt: str) -> Any:
            mine = self._for(run.runtime)
            scope = await _open(mine, run, run.execution_id)
            if run.script is not None:  # runtime.replay of an adapter run
                scope.replay_of = replay_plan(run)[0]
            elif replay_of is not None:
                scope.replay_of = replay_of
                await mine.runtime.link_replay(run, replay_of)
            result = await _agent_run(agent, prompt, run_kwargs, scope)
            self._hand(run.execution_id, result)
            if isinstance(result.output, DeferredToolRequests):
                raise await deferred.stop(scope, result.output)  # the caller gets the result
            return plain(result.output)

        durable.__name__ = durable.__qualname__ = f"pydantic_ai:{agent.name}"
        return self.runtime.agent(durable)

    async def run(
        self,
        agent: Agent[Any, Any],
        prompt: str,
        execution_id: str,
        replay_of: str | None,
        run_kwargs: dict[str, Any],
    ) -> Any:
        durable = self.register(agent, replay_of, run_kwargs)
        ran, result = await self._durably(durable, prompt, execution_id, stopped=NeedsHumanError)
        if ran:
            return result
        # Finished before: the same run once more, every call served from its log.
        begun = await started_input(self.engine, execution_id, prompt)
        scope = await _open(self, None, execution_id)
        scope.replay_of = replay_of
        return await _agent_run(agent, begun, run_kwargs, scope)

    async def inside(self, run: Run) -> AgentRun:
        """The next agent run inside durable run `run` (an agent function of the user's
        calling agent.run): numbered from 1 in the order the function starts them, which
        a resumed run repeats."""
        place = self._places.get(run, 0) + 1
        self._places[run] = place
        return await _open(self._for(run.runtime), run, run.execution_id, place)


async def _open(shell: Shell, run: Run | None, execution_id: str, place: int = 1) -> AgentRun:
    """Agent run `place` of `execution_id`, its nodes as recorded so far."""
    known = {node.id: node for node in await shell.engine.list_nodes(execution_id)}
    return AgentRun(shell, run, execution_id, place, known)


async def _agent_run(
    agent: Agent[Any, Any], prompt: str, run_kwargs: dict[str, Any], scope: AgentRun
) -> Any:
    scope.agent_name = agent.name
    token = _current.set(scope)
    try:
        return await _stopping(scope, agent.run(prompt, **run_kwargs))
    finally:
        _current.reset(token)


async def _stopping(scope: AgentRun, running: Awaitable[T]) -> T:
    """`running`, an agent run; one that stopped on deferred calls nobody decided, in an
    agent whose output type cannot hold them (Pydantic AI then raises UserError), stops
    the durable run for a human instead."""
    try:
        return await running
    except UserError as exc:
        if scope.waiting and scope.run is not None:
            raise await deferred.stop(scope) from exc
        raise


class LivingAIDurability(BaseDurabilityCapability[Any]):
    """Agent(model, name="travel", tools=[...], capabilities=[durability]); then
    `await durability.run(agent, prompt, execution_id="trip-1")`."""

    engine_spec = DurabilityEngineSpec(
        engine_name="livingai",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="run",
        codec=JSON_CODEC,
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-in-durable-unit",
            "dynamic": "enter-never",
        },
        tool_call_result_upgrade_lenient=False,
        journal_discovery=True,
        sequential_tools_in_durable_context=False,
        tool_config_key=CONFIG_KEY,
    )

    def __init__(
        self,
        source: Runtime | CheckpointEngine,
        *,
        prices: PriceTable | None = None,
        event_stream_handler: EventStreamHandler[Any] | None = None,
    ) -> None:
        """`event_stream_handler`: the agent's events in a durable run, as Pydantic AI's
        engines take it (agent.run's own works as well); a resumed run delivers the
        events of what it serves from the log again, except a served model request's."""
        super().__init__(event_stream_handler=event_stream_handler)
        self.shell = Shell(source, prices=prices)
        self._reconcilers: dict[str, Callable[[StepContext], Any]] = {}

    @property
    def runtime(self) -> Runtime:
        return self.shell.runtime

    @property
    def in_durable_context(self) -> bool:
        inside = _current.get() is not None or current_run() is not None
        return inside and not self.in_durable_unit

    async def wrap_run(
        self, ctx: RunContext[Any], *, handler: WrapRunHandler
    ) -> AgentRunResult[Any]:
        """An agent.run inside any livingai run (`@runtime.agent` code) is recorded too."""
        run = current_run()
        if _current.get() is not None or run is None or self.in_durable_unit:
            return await super().wrap_run(ctx, handler=handler)
        scope = await self.shell.inside(run)
        scope.agent_name = None if self.agent is None else self.agent.name
        token = _current.set(scope)
        try:
            return await _stopping(scope, super().wrap_run(ctx, handler=handler))
        finally:
            _current.reset(token)

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[Any], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        """Calls waiting for approval or a result, answered with the decisions recorded
        for them (deferred.py); the undecided ones are left, and stop the run."""
        scope = _current.get()
        if scope is None or self.in_durable_unit:
            return None
        return await deferred.answers(scope, requests)

    async def durable_sleep(self, seconds: float) -> None:
        """A wait of the agent graph (between polls of a model's background job), as a
        step recording when it ends: a run resumed after a crash waits only for what is
        left of it, and not at all for a wait it finished."""
        scope = _current.get()
        if scope is None or scope.run is None:
            await wait(max(seconds, 0.0))
            return
        await _sleep(scope, scope.run, seconds)

    def tool(
        self,
        function: Callable[..., Any],
        *,
        retry_with_key: bool = False,
        reconcile: Callable[[StepContext], Any] | None = None,
    ) -> Tool[Any]:
        """`function` as a Pydantic AI Tool with run.tool's write-ahead protocol."""
        if not callable(function):
            raise ConfigError(f"durability.tool wraps a function; got {function!r}")
        name = getattr(function, "__name__", "tool")
        if reconcile is not None:
            self._reconcilers[name] = _as_tool_return(reconcile)
        settings = {"at_most_once": True, "retry_with_key": retry_with_key}
        return Tool(function, metadata={CONFIG_KEY: settings})

    def register(self, agent: Agent[Any, Any], **run_kwargs: Any) -> Callable[..., Awaitable[Any]]:
        """The durable agent function that runs `agent` with `run_kwargs`, registered
        with the runtime as `pydantic_ai:<agent name>` (`run` registers it too): what a
        process that did not start a run needs for `runtime.recover_pending()`, and what
        `livingai recover --agent module:attribute` takes."""
        return self.shell.register(agent, None, run_kwargs)

    async def pending_approvals(self, execution_id: str) -> list[PendingApproval]:
        """The deferred calls stopped run `execution_id` waits on, with the decisions
        recorded so far (`kind`: "approval", or "external"/"question" for a result)."""
        return await self.shell.decisions.pending(execution_id)

    async def approve(self, execution_id: str, call_id: str | None = None) -> list[PendingApproval]:
        """Approve call `call_id` (None: every call waiting for approval undecided) of the
        stopped run, durably, from any process; `resume` goes on with it."""
        return await self.shell.decisions.decide(execution_id, call_id, "approved")

    async def reject(
        self, execution_id: str, call_id: str | None = None, *, message: str | None = None
    ) -> list[PendingApproval]:
        """Reject call `call_id` (None: every call waiting undecided), durably: it never
        runs, and the model is told `message` (None: Pydantic AI's default)."""
        return await self.shell.decisions.decide(execution_id, call_id, "rejected", message=message)

    async def answer(self, execution_id: str, call_id: str, result: Any) -> list[PendingApproval]:
        """Give the result of call `call_id`, which the stopped run left to be made
        elsewhere (CallDeferred, an external tool), durably: the model gets `result`
        (JSON-compatible) as the call's return."""
        return await self.shell.decisions.decide(
            execution_id, call_id, "answered", result=plain(result)
        )

    async def resume(self, agent: Agent[Any, Any], execution_id: str, **run_kwargs: Any) -> Any:
        """Go on with run `execution_id` with the prompt it was started with (`run` with
        that prompt), as after decisions on the calls it stopped on."""
        header = await self.shell.engine.load(f"{execution_id}/run")
        if header is None:
            raise ExecutionNotFoundError(
                f"no run {execution_id!r} is recorded in {self.shell.engine.store!r} to resume"
            )
        prompt = await started_input(self.shell.engine, execution_id, None)
        return await self.run(agent, prompt, execution_id=execution_id, **run_kwargs)

    async def run(
        self,
        agent: Agent[Any, Any],
        prompt: str,
        *,
        execution_id: str,
        replay_of: str | None = None,
        **run_kwargs: Any,
    ) -> Any:
        """`agent.run(prompt, **run_kwargs)` as durable execution `execution_id`: started,
        or resumed where it stopped (recorded model requests and tool calls served from
        the log). Returns Pydantic AI's AgentRunResult; a finished execution is run again
        from the log alone. The agent is registered (`pydantic_ai:<agent name>`), so that
        `runtime.recover_pending()` can resume it. With `replay_of`, the model runs live
        and every tool call is served from that execution's recording (MOCK_TOOLS): one
        the recording lacks raises ReplayDivergedError naming the closest."""
        if not isinstance(execution_id, str) or not execution_id:
            raise ConfigError(f"execution_id must be a non-empty string; got {execution_id!r}")
        if replay_of is not None:
            await check_recorded(self.shell.engine, replay_of)
        return await self.shell.run(agent, prompt, execution_id, replay_of, run_kwargs)

    def get_durable_operation_backend(self) -> DurableOperationBackend[Any]:
        def tool_config(
            operation_id: DurableOperationId, tool: object | None, tool_name: str
        ) -> ToolConfig | Literal[False]:
            tool_def = getattr(tool, "tool_def", None)
            metadata = getattr(tool_def, "metadata", None) or {}
            given = metadata.get(CONFIG_KEY, {})
            if given is False:
                return False
            return {**dict(given), "tool": tool_name}

        return _Backend(
            self,
            agent_name=self.name,
            default_model_id=self.default_model_id,
            config=RoleBasedOperationConfig(
                model={}, event={}, capability={}, tool={}, resolve_tool=tool_config
            ),
        )


def _as_tool_return(reconcile: Callable[[StepContext], Any]) -> Callable[[StepContext], Any]:
    """`reconcile`'s answer as the recorded outcome of a tool call holds it: Pydantic AI
    stores a function tool's return as {"result": ..., "kind": "tool_return"} (the JSON
    its durable_exec codec makes, pinned by its compatibility tests)."""

    def reconciled(step: StepContext) -> Any:
        found = reconcile(step)
        return found if found is NOT_DONE else {"result": plain(found), "kind": "tool_return"}

    return reconciled


class _Backend(JournalCallableOperationBackend[ToolConfig]):
    def __init__(self, durability: LivingAIDurability, **options: Any) -> None:
        super().__init__(**options)
        self.durability = durability

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: ToolConfig,
    ) -> object:
        scope = _current.get()
        if scope is None:
            return await body()
        if isinstance(operation_id, ModelRequestId):
            return await _model(scope, operation_id.model_name, name, body, cache_key)
        if isinstance(operation_id, ToolsetCallToolId):
            return await _tool(self.durability, scope, name, body, cache_key, config)
        return await body()


async def _model(
    scope: AgentRun,
    model_name: str,
    name: str,
    body: Callable[[], Awaitable[object]],
    cache_key: tuple[object, ...],
) -> object:
    messages, ctx = cache_key[1], cache_key[4]
    node_id = scope.node_id("model", getattr(ctx, "run_step", 0))
    recorded = scope.known.get(node_id)
    if recorded is not None and recorded.status is Status.SUCCESS:
        return recorded.output
    if scope.run is None:
        return await body()
    node = ExecutionNode(
        id=node_id,
        execution_id=scope.execution_id,
        type=NodeType.PROMPT,
        parent_id=f"{scope.execution_id}/run",
        input={"model": model_name, "request": _newest(messages)},
        metadata={"step": f"model {model_name}", "operation": name, "agent": scope.agent_name},
    )
    return await model_call(
        scope.shell.runtime,
        node,
        body,
        encode=lambda payload: payload,  # the JSON codec's payload, stored as it is
        decode=lambda output: output,
        usage=_usage,
        prices=scope.shell.prices,
        fence=scope.run.lease,
        known=scope.known,
    )


def _newest(messages: object) -> Any:
    """The request a model request adds to the conversation (its newest message), as
    JSON: what the model was asked this time, without the history every node repeats."""
    if not isinstance(messages, list) or not messages:
        return None
    return ModelMessagesTypeAdapter.dump_python(messages[-1:], mode="json")[0]


def _usage(payload: object) -> ModelUsage:
    """The tokens a ModelResponse (as its JSON payload) reports."""
    response = payload if isinstance(payload, dict) else {}
    usage = response.get("usage") or {}
    return ModelUsage(
        response.get("model_name"),
        int(usage.get("input_tokens", 0)),
        int(usage.get("output_tokens", 0)),
        int(usage.get("cache_read_tokens", 0)),
    )


async def _tool(
    durability: LivingAIDurability,
    scope: AgentRun,
    name: str,
    body: Callable[[], Awaitable[object]],
    cache_key: tuple[object, ...],
    config: ToolConfig,
) -> object:
    tool_name, arguments, ctx = str(cache_key[0]), cache_key[1], cache_key[2]
    node_id = scope.node_id("tool", getattr(ctx, "run_step", 0), getattr(ctx, "tool_call_id", ""))

    async def call(**_: Any) -> object:
        return await body()

    given = {"arguments": plain(arguments)}
    fn: Callable[..., Any] = call
    metadata: dict[str, Any] = {"tool": tool_name, "operation": name, "agent": scope.agent_name}
    if scope.replay_of is not None:
        recordings = scope.shell.recordings
        recorded = await recordings.find(scope.replay_of, scope.execution_id, tool_name, given)
        metadata.update(mocked=True, replayed_from=recorded.id, replay_of=scope.replay_of)
        fn = serving(recorded, scope.replay_of)
    return await scope.shell.runtime.call_tool(
        scope.execution_id,
        node_id,
        tool_name,
        fn,
        (),
        given,
        retry_with_key=bool(config.get("retry_with_key")),
        reconcile=durability._reconcilers.get(tool_name),
        at_least_once=not config.get("at_most_once"),
        parent_id=f"{scope.execution_id}/run",
        metadata=metadata,
        known=scope.known,
        fence=None if scope.run is None else scope.run.lease,
    )


async def _sleep(scope: AgentRun, run: Run, seconds: float) -> None:
    """Wait at a step holding when the wait ends (wall-clock), made before it starts."""
    node_id = scope.node_id("sleep")
    recorded = scope.known.get(node_id)
    if recorded is not None and recorded.status is Status.SUCCESS:
        return
    if recorded is not None and isinstance(recorded.input, dict) and "wake_at" in recorded.input:
        node = recorded
    else:
        node = ExecutionNode(
            id=node_id,
            execution_id=scope.execution_id,
            type=NodeType.MEMORY,
            status=Status.RUNNING,
            parent_id=f"{scope.execution_id}/run",
            input={"seconds": seconds, "wake_at": time.time() + max(seconds, 0.0)},
            metadata={"step": "durable_sleep", "kind": "sleep"},
        )
        await scope.shell.engine.save(node, durable=True, fence=run.lease)
    await wait(max(float(node.input["wake_at"]) - time.time(), 0.0))
    await scope.shell.engine.save(replace(node, status=Status.SUCCESS), fence=run.lease)
