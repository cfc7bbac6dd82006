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
  when their models are asked for by name.
- Function tools: each call goes through `Runtime.call_tool` at node
  `<execution>/oai:tool:<tool call id>` (the model's call id: recorded with the turn, so
  the same on resume), which is also its idempotency key. Tools given to `adapter.tool`
  get its policy (at most once by default); the others run again when in doubt (at least
  once, like a step) and a completed one is served on resume. Parallel calls stay
  parallel: each has its own node.

With `replay_of`, the models run live and each tool call is served from that execution's
recording (MOCK_TOOLS): the n-th call of a tool with the same arguments gets the n-th
recorded result; one the recording lacks raises ReplayDivergedError.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agents import (
    Agent,
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelProvider,
    ModelSettings,
    ModelTracing,
    RunConfig,
    Runner,
    RunResult,
    Tool,
    Usage,
)
from agents.exceptions import AgentsException
from agents.items import ModelResponse, TResponseInputItem, TResponseOutputItem
from agents.models.multi_provider import MultiProvider
from agents.tool import FunctionTool
from agents.tool_context import ToolContext
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import TypeAdapter

from livingai import (
    CheckpointEngine,
    ConfigError,
    ExecutionNode,
    ExecutionNotFoundError,
    Lease,
    LivingAIError,
    NodeType,
    PriceTable,
    Run,
    Runtime,
    StepContext,
)
from livingai.adapters.recordings import (
    ModelUsage,
    RecordedTools,
    digest,
    model_call,
    plain,
    prices_of,
    runtime_of,
    serving,
)

_OUTPUT: TypeAdapter[list[TResponseOutputItem]] = TypeAdapter(list[TResponseOutputItem])


@dataclass
class _Scope:
    """The execution the SDK is running in, for the models and tools it calls: a durable
    run, or (run None) a finished one read back from its log."""

    adapter: OpenAIAgentsAdapter
    execution_id: str
    run: Run | None
    replay_of: str | None
    calls: Counter[str] = field(default_factory=Counter)  # model calls made, by digest

    @property
    def fence(self) -> Lease | None:
        return None if self.run is None else self.run.lease


_scope: ContextVar[_Scope | None] = ContextVar("livingai_openai_agents", default=None)


@dataclass(frozen=True)
class _Policy:
    """What adapter.tool said about a tool."""

    retry_with_key: bool
    reconcile: Callable[[StepContext], Any] | None


class OpenAIAgentsAdapter:
    """Runs OpenAI Agents SDK agents durably (see the module docstring).

    `source` is a Runtime, or an engine (a Runtime is made over it). `prices` turns the
    models' tokens into costs (default: the runtime's price table).

        adapter = OpenAIAgentsAdapter(engine)
        agent = Agent(name="travel", tools=[search, adapter.tool(book, retry_with_key=True)])
        result = await adapter.run(agent, "Book me a flight", execution_id="trip-1")
    """

    def __init__(
        self, source: Runtime | CheckpointEngine, *, prices: PriceTable | None = None
    ) -> None:
        self.runtime = runtime_of(source, "OpenAIAgentsAdapter")
        self.prices = prices_of(self.runtime, prices)
        self.recordings = RecordedTools(self.runtime.engine)
        self._policies: dict[int, tuple[FunctionTool, _Policy]] = {}
        self._results: dict[str, RunResult] = {}  # by execution id, as run() hands it back
        self._loop: asyncio.AbstractEventLoop | None = None  # run_sync's own

    def __repr__(self) -> str:
        return f"OpenAIAgentsAdapter({self.runtime.engine!r})"

    @property
    def engine(self) -> CheckpointEngine:
        return self.runtime.engine

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
        wrapped = dataclasses.replace(tool)
        self._policies[id(wrapped)] = (wrapped, _Policy(retry_with_key, reconcile))
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
        if not isinstance(agent, Agent):
            raise ConfigError(f"adapter.run runs an Agent; got {agent!r}")
        if not isinstance(execution_id, str) or not execution_id:
            raise ConfigError(f"execution_id must be a non-empty string; got {execution_id!r}")
        if replay_of is not None:
            await self._check_recorded(replay_of)
        durable = self.register(agent, replay_of=replay_of, **runner_kwargs)
        self._results.pop(execution_id, None)
        try:
            await self.runtime.run(durable, plain(input), execution_id=execution_id)
            found = self._results.get(execution_id)
            if found is not None:
                return found
        finally:
            self._results.pop(execution_id, None)
        # Finished before: the same run once more, every call served from its log.
        header = await self.engine.load(f"{execution_id}/run")
        recorded = [] if header is None else header.node.input.get("args", [])
        scope = _Scope(self, execution_id, None, replay_of)
        return await self._run_sdk(agent, recorded[0] if recorded else input, scope, runner_kwargs)

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
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigError(
                "run_sync was called from a running event loop: await adapter.run(...) there"
            )
        coroutine = self.run(
            agent, input, execution_id=execution_id, replay_of=replay_of, **runner_kwargs
        )
        return asyncio.run_coroutine_threadsafe(coroutine, self._own_loop()).result()

    def register(
        self, agent: Agent[Any], *, replay_of: str | None = None, **runner_kwargs: Any
    ) -> Callable[..., Awaitable[Any]]:
        """The durable agent function that runs `agent` (registered with the runtime
        under `openai_agents:<agent name>`, so recover_pending() resumes its runs)."""

        async def durable(run: Run, input: str | list[TResponseInputItem]) -> Any:
            scope = _Scope(self, run.execution_id, run, replay_of)
            result = await self._run_sdk(agent, input, scope, runner_kwargs)
            self._results[run.execution_id] = result
            return plain(result.final_output)

        durable.__name__ = durable.__qualname__ = f"openai_agents:{agent.name}"
        return self.runtime.agent(durable)

    async def _run_sdk(
        self,
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
        scope: _Scope,
        runner_kwargs: dict[str, Any],
    ) -> RunResult:
        kwargs = dict(runner_kwargs)
        starting, config = self._prepare(agent, kwargs.pop("run_config", None))
        token = _scope.set(scope)
        try:
            return await Runner.run(starting, input, run_config=config, **kwargs)
        except AgentsException as exc:
            cause = _livingai_cause(exc)
            if cause is None:
                raise
            raise cause from exc
        finally:
            _scope.reset(token)

    # -- the agent graph, recorded ------------------------------------------------------

    def _prepare(self, agent: Agent[Any], config: RunConfig | None) -> tuple[Agent[Any], RunConfig]:
        """A copy of the agent graph whose models and tools record, and a run config
        whose provider's models do."""
        config = RunConfig() if config is None else config
        provider = config.model_provider or MultiProvider()
        changes: dict[str, Any] = {"model_provider": _RecordingProvider(provider)}
        if isinstance(config.model, Model):
            changes["model"] = _RecordingModel(config.model, _model_name(config.model))
        copies: dict[int, Agent[Any]] = {}
        return self._copy(agent, copies), dataclasses.replace(config, **changes)

    def _copy(self, agent: Agent[Any], copies: dict[int, Agent[Any]]) -> Agent[Any]:
        if id(agent) in copies:
            return copies[id(agent)]
        changes: dict[str, Any] = {}
        if isinstance(agent.model, Model) and not isinstance(agent.model, _RecordingModel):
            changes["model"] = _RecordingModel(agent.model, _model_name(agent.model))
        copy = agent.clone(**changes)
        copies[id(agent)] = copy  # before the handoffs: they may lead back here
        copy.tools = [self._recorded_tool(tool) for tool in agent.tools]
        copy.handoffs = [self._recorded_handoff(h, copies) for h in agent.handoffs]
        return copy

    def _recorded_handoff(
        self, handoff: Agent[Any] | Handoff[Any, Any], copies: dict[int, Agent[Any]]
    ) -> Agent[Any] | Handoff[Any, Any]:
        if isinstance(handoff, Agent):
            return self._copy(handoff, copies)
        invoke = handoff.on_invoke_handoff

        async def to_copy(context: Any, arguments: str) -> Agent[Any]:
            return self._copy(await invoke(context, arguments), copies)

        return dataclasses.replace(handoff, on_invoke_handoff=to_copy)

    def _recorded_tool(self, tool: Any) -> Any:
        if not isinstance(tool, FunctionTool):
            return tool  # hosted tools run on the provider's side: the model turn records them
        known = self._policies.get(id(tool))
        policy = known[1] if known is not None and known[0] is tool else None
        invoke = tool.on_invoke_tool

        async def recorded(context: ToolContext[Any], arguments: str) -> Any:
            scope = _scope.get()
            if scope is None:  # not in an adapter run: as the SDK would
                return await invoke(context, arguments)
            return await scope.adapter._call_tool(
                scope, tool.name, context, arguments, lambda: invoke(context, arguments), policy
            )

        return dataclasses.replace(tool, on_invoke_tool=recorded)

    async def _call_tool(
        self,
        scope: _Scope,
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
            retry_with_key=True if policy is None else policy.retry_with_key,
            reconcile=None if policy is None else policy.reconcile,
            parent_id=f"{scope.execution_id}/run",
            metadata=metadata,
        )

    async def _check_recorded(self, execution_id: str) -> None:
        if not await self.engine.list_nodes(execution_id):
            raise ExecutionNotFoundError(
                f"no execution {execution_id!r} is recorded in {self.engine.store!r} to replay"
            )

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="livingai-openai-agents", daemon=True
            ).start()
            self._loop = loop
        return self._loop


# -- models -------------------------------------------------------------------------------


class _RecordingProvider(ModelProvider):
    """The run's provider, whose models record their calls."""

    def __init__(self, inner: ModelProvider) -> None:
        self.inner = inner

    def get_model(self, model_name: str | None) -> Model:
        model = self.inner.get_model(model_name)
        if isinstance(model, _RecordingModel):
            return model
        return _RecordingModel(model, model_name or _model_name(model))

    async def aclose(self) -> None:
        await self.inner.aclose()


class _RecordingModel(Model):
    """A model whose calls, in an adapter run, are steps served on resume."""

    def __init__(self, inner: Model, name: str | None) -> None:
        self.inner = inner
        self.name = name

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        scope = _scope.get()

        def call() -> Awaitable[ModelResponse]:
            return self.inner.get_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )

        if scope is None:
            return await call()
        asked = {
            "system_instructions": system_instructions,
            "input": _without_none(plain(input)),
            "tools": sorted(tool.name for tool in tools),
            "handoffs": sorted(handoff.tool_name for handoff in handoffs),
            "output": None if output_schema is None else output_schema.name(),
        }
        key = digest(asked)
        scope.calls[key] += 1
        node = ExecutionNode(
            id=f"{scope.execution_id}/oai:model:{key}:{scope.calls[key]}",
            execution_id=scope.execution_id,
            type=NodeType.PROMPT,
            parent_id=f"{scope.execution_id}/run",
            input=asked,
            model=self.name,
            metadata={"step": self.name or "model", "model": self.name},
        )
        return await model_call(
            scope.adapter.runtime,
            node,
            call,
            encode=_encode,
            decode=_decode,
            usage=self._usage,
            prices=scope.adapter.prices,
            fence=scope.fence,
        )

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return self.inner.stream_response(*args, **kwargs)

    async def close(self) -> None:
        await self.inner.close()

    def _usage(self, response: ModelResponse) -> ModelUsage:
        usage = response.usage
        return ModelUsage(
            model=self.name,
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            cached_tokens=usage.input_tokens_details.cached_tokens or 0,
            reasoning_tokens=usage.output_tokens_details.reasoning_tokens or 0,
        )


def _encode(response: ModelResponse) -> dict[str, Any]:
    usage = response.usage
    return {
        "output": _OUTPUT.dump_python(response.output, mode="json", by_alias=True),
        "usage": {
            "requests": usage.requests,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "cached_tokens": usage.input_tokens_details.cached_tokens or 0,
            "reasoning_tokens": usage.output_tokens_details.reasoning_tokens or 0,
        },
        "response_id": response.response_id,
    }


def _decode(recorded: Any) -> ModelResponse:
    usage = recorded["usage"]
    return ModelResponse(
        output=_OUTPUT.validate_python(recorded["output"]),
        usage=Usage(
            requests=usage["requests"],
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            total_tokens=usage["total_tokens"],
            input_tokens_details=InputTokensDetails(
                cached_tokens=usage["cached_tokens"], cache_write_tokens=0
            ),
            output_tokens_details=OutputTokensDetails(reasoning_tokens=usage["reasoning_tokens"]),
        ),
        response_id=recorded.get("response_id"),
    )


def _without_none(value: Any) -> Any:
    """`value` without the None fields of its objects: an item the SDK built from a live
    response and the same item read back from the log differ only in those, and the
    model call's node is found by its input."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def _model_name(model: Model) -> str | None:
    name = getattr(model, "model", None)
    return name if isinstance(name, str) and name else None


def _arguments(arguments: str) -> Any:
    """A tool call's arguments as JSON holds them (the raw text when it is not JSON)."""
    try:
        return json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return arguments


def _livingai_cause(exc: BaseException) -> LivingAIError | None:
    """The livingai error the SDK wrapped as its own (a tool in doubt, a lost lease, an
    outage, a replay that diverged): it decides how the durable run ends, so it goes
    through as itself."""
    seen: BaseException | None = exc.__cause__
    while seen is not None:
        if isinstance(seen, LivingAIError):
            return seen
        seen = seen.__cause__
    return None
