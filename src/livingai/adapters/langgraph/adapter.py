"""LangGraph runs recorded in livingai: graph nodes, model calls and tools become
ExecutionNodes of the thread's execution (thread id = execution id), so that `livingai
show`, `costs`, recovery and MOCK_TOOLS replay work on them.

Two parts. A callback handler (`LangGraphAdapter.config(thread_id)` puts it in the
graph's config) records what LangChain reports: each graph node run, each model call
(model, tokens, cost, latency) and each tool call. A tool wrapped by
`LangGraphAdapter.tool` does more than be recorded: its calls go through
`Runtime.call_tool`, the protocol of `run.tool` (write-ahead intent, idempotency key,
in-doubt policies), because a callback cannot stop a tool from running twice.

Node ids are deterministic, so a thread resumed after a crash writes new versions of the
same nodes: `<thread>/lga:<checkpoint ns>` for a graph node run (LangGraph's task id is
in the namespace, the same when the thread resumes from the same checkpoint),
`.../model:<n>` for its n-th model call, `.../tool:<tool call id>` for a tool call
(`.../tool:<name>:<digest of the arguments>` for a tool called without one).
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, AsyncCallbackManagerForToolRun
from langchain_core.messages import AIMessage, BaseMessage, ToolCall
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig, patch_config
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.tools.base import ArgsSchema
from langchain_core.utils.pydantic import TypeBaseModel
from langgraph.errors import GraphBubbleUp

from livingai import (
    CheckpointEngine,
    ConfigError,
    ErrorInfo,
    ExecutionNode,
    NodeType,
    PriceTable,
    Runtime,
    Status,
    StepContext,
)
from livingai.adapters.recordings import (
    RecordedTools,
    digest,
    plain,
    prices_of,
    runtime_of,
    serving,
)

PREFIX = "lga:"  # this adapter's nodes; the checkpointer's are "lg:"
REPLAY_OF = "livingai_replay_of"  # in `configurable`: the thread whose tool results to serve
WRAPPED = "livingai_tool"  # in a wrapped tool's metadata: its calls record themselves

# The tool call a wrapped tool is running for, from its ToolCall (None when called with
# plain arguments): set by ainvoke, read by _arun, which LangChain calls in between.
_tool_call_id: ContextVar[str | None] = ContextVar("livingai_tool_call_id", default=None)


class LangGraphAdapter:
    """Records LangGraph runs into livingai (see the module docstring).

    `source` is a Runtime, or an engine (a Runtime is made over it). `prices` turns the
    models' tokens into costs (default: the runtime's price table).

        adapter = LangGraphAdapter(engine)
        tools = [adapter.tool(search), adapter.tool(book, retry_with_key=True)]
        result = await graph.ainvoke(inputs, adapter.config("trip-1"))

    Graphs must run async (ainvoke, astream): the engine lives on the event loop.
    """

    def __init__(
        self, source: CheckpointEngine | Runtime, *, prices: PriceTable | None = None
    ) -> None:
        self.runtime = runtime_of(source, "LangGraphAdapter")
        self.prices = prices_of(self.runtime, prices)
        self.recordings = RecordedTools(self.runtime.engine, "thread")  # MOCK_TOOLS replays

    def __repr__(self) -> str:
        return f"LangGraphAdapter({self.runtime.engine!r})"

    @property
    def engine(self) -> CheckpointEngine:
        return self.runtime.engine

    def config(self, thread_id: str, *, replay_of: str | None = None) -> RunnableConfig:
        """The config to run a graph with: the thread, and the handler recording into
        it. With `replay_of` (a recorded thread), the wrapped tools return that
        thread's recorded results instead of running (MOCK_TOOLS); the rest runs."""
        configurable: dict[str, Any] = {"thread_id": _thread(thread_id)}
        if replay_of is not None:
            configurable[REPLAY_OF] = _thread(replay_of)
        return {"configurable": configurable, "callbacks": [self.callbacks(thread_id)]}

    def callbacks(self, thread_id: str) -> GraphRecorder:
        """The callback handler that records a graph's runs into execution `thread_id`,
        for a config made by hand."""
        return GraphRecorder(self, _thread(thread_id))

    def tool(
        self,
        tool: BaseTool | Callable[..., Any],
        *,
        retry_with_key: bool = False,
        reconcile: Callable[[StepContext], Any] | None = None,
    ) -> BaseTool:
        """A LangChain tool (for a ToolNode, or to call from a node) whose calls are
        `run.tool`'s: the intent (name, arguments, idempotency key) stored durably before
        the real tool runs, the outcome after; a call whose outcome is recorded returns
        it without running; one started and never finished is in doubt: InDoubtError,
        or run again with the same key (`retry_with_key`), or looked up (`reconcile`).
        A recorded failure is not final: LangGraph runs a failed node again, and the tool
        with it, under the same key. The tool reads its key from
        `current_step().idempotency_key`; its result must be JSON."""
        if isinstance(tool, BaseTool):
            inner = tool
        elif inspect.iscoroutinefunction(tool):
            inner = StructuredTool.from_function(coroutine=tool)
        elif callable(tool):
            inner = StructuredTool.from_function(tool)
        else:
            raise ConfigError(f"adapter.tool wraps a LangChain tool or a function; got {tool!r}")
        return DurableTool(
            name=inner.name,
            description=inner.description,
            args_schema=inner.args_schema,
            return_direct=inner.return_direct,
            metadata={**(inner.metadata or {}), WRAPPED: True},
            tags=inner.tags,
            inner=inner,
            adapter=self,
            retry_with_key=retry_with_key,
            reconcile=reconcile,
        )

    async def call_tool(
        self,
        tool: DurableTool,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None,
    ) -> Any:
        """One call of a wrapped tool (DurableTool runs its calls here), through
        Runtime.call_tool: see `tool`."""
        configurable = config.get("configurable") or {}
        if configurable.get("thread_id") is None:
            raise ConfigError(
                f"tool {tool.name!r} records into the graph's thread, and none was given: "
                "run the graph with adapter.config(thread_id)"
            )
        thread = str(configurable["thread_id"])
        langgraph = config.get("metadata") or {}
        ns = str(langgraph.get("langgraph_checkpoint_ns") or "")
        call = {"input": plain(args[0])} if args else model_arguments(tool, kwargs)
        tool_call_id = _tool_call_id.get()
        node_id = tool_node_id(thread, ns, tool.name, tool_call_id, call)
        metadata: dict[str, Any] = {
            "tool_call_id": tool_call_id,
            "langgraph_node": langgraph.get("langgraph_node"),
            "checkpoint_ns": ns,
        }
        child = (
            config
            if run_manager is None
            else patch_config(config, callbacks=run_manager.get_child())
        )

        async def real(**_: Any) -> Any:
            return await tool.inner.ainvoke(args[0] if args else kwargs, child)

        fn: Callable[..., Any] = real
        replay_of = configurable.get(REPLAY_OF)
        if replay_of is not None:
            recorded = await self.recordings.find(str(replay_of), thread, tool.name, call)
            metadata.update(mocked=True, replayed_from=recorded.id, replay_of=str(replay_of))
            fn = serving(recorded, str(replay_of))
        return await self.runtime.call_tool(
            thread,
            node_id,
            tool.name,
            fn,
            (),
            call,
            retry_with_key=tool.retry_with_key,
            reconcile=tool.reconcile,
            retry_failed=True,
            parent_id=task_node_id(thread, ns) if ns else None,
            metadata=metadata,
        )


class DurableTool(BaseTool):
    """A LangChain tool whose calls are recorded as `run.tool`'s (LangGraphAdapter.tool).
    It has the schema of the tool it wraps, so a model and a ToolNode see that tool."""

    inner: BaseTool
    adapter: LangGraphAdapter
    retry_with_key: bool = False
    reconcile: Callable[[StepContext], Any] | None = None

    def get_input_schema(self, config: RunnableConfig | None = None) -> TypeBaseModel:
        return self.inner.get_input_schema(config)

    async def ainvoke(
        self,
        input: str | dict[str, Any] | ToolCall,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        """As BaseTool's; it keeps the tool call's id for the call's idempotency key."""
        call_id = None
        if isinstance(input, dict) and input.get("type") == "tool_call" and input.get("id"):
            call_id = str(input["id"])
        token = _tool_call_id.set(call_id)
        try:
            return await super().ainvoke(input, config, **kwargs)
        finally:
            _tool_call_id.reset(token)

    async def _arun(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        return await self.adapter.call_tool(self, args, kwargs, config, run_manager)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(
            f"tool {self.name!r} is recorded durably only when the graph runs async: call "
            "ainvoke or astream, not invoke or stream"
        )


class GraphRecorder(AsyncCallbackHandler):
    """Records what LangChain reports of a graph's runs into one execution: each graph
    node run (MEMORY), model call (PROMPT, with model, tokens, cost and latency) and tool
    call (TOOL) as a node, RUNNING when it starts, then SUCCESS or FAILED. Wrapped tools
    record themselves."""

    def __init__(self, adapter: LangGraphAdapter, thread_id: str) -> None:
        self.adapter = adapter
        self.thread_id = thread_id
        self._open: dict[UUID, tuple[ExecutionNode, float]] = {}  # run id -> node, start
        self._models: Counter[str] = Counter()  # model calls so far, per graph node run
        self._wrapped: set[UUID] = set()  # wrapped tools' runs: they record themselves

    def __repr__(self) -> str:
        return f"GraphRecorder({self.thread_id!r})"

    # -- graph node runs ------------------------------------------------------------------

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A graph node run is the chain LangGraph tags with its step; the chains it
        runs inside carry the same metadata, not the tag."""
        metadata = metadata or {}
        ns = str(metadata.get("langgraph_checkpoint_ns") or "")
        if not ns or not any(tag.startswith("graph:step:") for tag in tags or ()):
            return
        self._models[ns] = 0  # run again, it makes the same calls again
        parent_ns = ns.rpartition("|")[0]
        node = ExecutionNode(
            id=task_node_id(self.thread_id, ns),
            execution_id=self.thread_id,
            type=NodeType.MEMORY,
            parent_id=task_node_id(self.thread_id, parent_ns) if parent_ns else None,
            status=Status.RUNNING,
            metadata={
                "step": str(metadata.get("langgraph_node") or kwargs.get("name") or ns),
                "kind": "node",
                "langgraph_step": metadata.get("langgraph_step"),
                "langgraph_triggers": plain(metadata.get("langgraph_triggers")),
                "checkpoint_ns": ns,
            },
        )
        await self._start(run_id, node)

    async def on_chain_end(
        self,
        outputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        await self._end(run_id, outputs)

    async def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        await self._fail(run_id, error)

    # -- model calls ----------------------------------------------------------------------

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        await self._model_start(serialized, messages, run_id, metadata, kwargs)

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        await self._model_start(serialized, prompts, run_id, metadata, kwargs)

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        opened = self._open.get(run_id)
        if opened is None:
            return
        node = opened[0]
        model, prompt, completion = usage_of(response)
        node.model = model or node.metadata.get("requested_model")
        if prompt is not None or completion is not None:
            node.prompt_tokens, node.completion_tokens = prompt or 0, completion or 0
            node.cost_tokens = node.prompt_tokens + node.completion_tokens
            if node.model is not None:
                node.cost = self.adapter.prices.cost(
                    node.model, node.prompt_tokens, node.completion_tokens
                )
        replies = [
            plain(getattr(g, "message", g.text)) for batch in response.generations for g in batch
        ]
        await self._end(run_id, replies[0] if len(replies) == 1 else replies)

    async def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        await self._fail(run_id, error)

    async def _model_start(
        self,
        serialized: dict[str, Any],
        prompt: Sequence[Any],
        run_id: UUID,
        metadata: dict[str, Any] | None,
        extra: dict[str, Any],
    ) -> None:
        metadata = metadata or {}
        ns = str(metadata.get("langgraph_checkpoint_ns") or "")
        number = self._models[ns]
        self._models[ns] += 1
        node = ExecutionNode(
            id=f"{task_node_id(self.thread_id, ns)}/model:{number}",
            execution_id=self.thread_id,
            type=NodeType.PROMPT,
            parent_id=task_node_id(self.thread_id, ns) if ns else None,
            status=Status.RUNNING,
            input=plain(prompt[0] if len(prompt) == 1 else prompt),
            metadata={
                "step": str(extra.get("name") or serialized.get("name") or "model"),
                "kind": "model",
                "requested_model": requested_model(metadata, extra),
                "langgraph_node": metadata.get("langgraph_node"),
                "checkpoint_ns": ns,
            },
        )
        await self._start(run_id, node)  # no model on this version: usage is the outcome's

    # -- tools that are not wrapped ----------------------------------------------------------

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        if metadata.get(WRAPPED) or parent_run_id in self._wrapped:
            self._wrapped.add(run_id)  # it, and the tool it wraps, record themselves
            return
        ns = str(metadata.get("langgraph_checkpoint_ns") or "")
        name = str(serialized.get("name") or kwargs.get("name") or "tool")
        call = plain(inputs) if inputs is not None else {"input": input_str}
        tool_call_id = kwargs.get("tool_call_id")
        node = ExecutionNode(
            id=tool_node_id(self.thread_id, ns, name, tool_call_id, call),
            execution_id=self.thread_id,
            type=NodeType.TOOL,
            parent_id=task_node_id(self.thread_id, ns) if ns else None,
            status=Status.RUNNING,
            input={"args": [], "kwargs": call},
            metadata={
                "step": name,
                "kind": "tool",
                "idempotent": False,
                "wrapped": False,  # not run.tool's protocol: only recorded
                "tool_call_id": tool_call_id,
                "langgraph_node": metadata.get("langgraph_node"),
                "checkpoint_ns": ns,
            },
        )
        await self._start(run_id, node)

    async def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._wrapped.discard(run_id)
        content = output.content if isinstance(output, BaseMessage) else output
        await self._end(run_id, plain(content))

    async def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._wrapped.discard(run_id)
        await self._fail(run_id, error)

    # -- saving ---------------------------------------------------------------------------

    async def _start(self, run_id: UUID, node: ExecutionNode) -> None:
        self._open[run_id] = (node, time.perf_counter())
        await self.adapter.engine.save(node)

    async def _end(self, run_id: UUID, output: Any) -> None:
        opened = self._open.pop(run_id, None)
        if opened is None:
            return
        node, started = opened
        node.status, node.output = Status.SUCCESS, plain(output)
        await self._finish(node, started)

    async def _fail(self, run_id: UUID, error: BaseException) -> None:
        opened = self._open.pop(run_id, None)
        if opened is None:
            return
        node, started = opened
        if isinstance(error, GraphBubbleUp):  # an interrupt: it runs again when resumed
            node.status = Status.PENDING
            node.metadata = {**node.metadata, "interrupted": True}
            node.output = plain(list(error.args))
        else:
            node.status, node.error = Status.FAILED, ErrorInfo.from_exception(error)
        await self._finish(node, started)

    async def _finish(self, node: ExecutionNode, started: float) -> None:
        node.completed_at = datetime.now(UTC)
        node.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        await self.adapter.engine.save(node)


# -- helpers ------------------------------------------------------------------------------


def task_node_id(thread: str, ns: str) -> str:
    """The node of a graph node run: its checkpoint namespace holds LangGraph's task id."""
    return f"{thread}/{PREFIX}{ns or 'root'}"


def tool_node_id(
    thread: str, ns: str, name: str, tool_call_id: str | None, call: Mapping[str, Any]
) -> str:
    """A tool call's node, and so its idempotency key: the same when the node that makes
    it runs again from the same checkpoint."""
    if tool_call_id:
        return f"{task_node_id(thread, ns)}/tool:{tool_call_id}"
    return f"{task_node_id(thread, ns)}/tool:{name}:{digest(call)}"


def model_arguments(tool: BaseTool, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments a model gave the tool, as JSON: those injected by LangGraph (the
    state, the store, the runtime) are left out."""
    schema: ArgsSchema = tool.tool_call_schema
    if isinstance(schema, dict):
        names = set(schema.get("properties", {}))
    else:
        names = set(getattr(schema, "model_fields", {}))
    return {key: plain(value) for key, value in kwargs.items() if key in names}


def requested_model(metadata: Mapping[str, Any], extra: Mapping[str, Any]) -> str | None:
    """The model a client asked for, as LangChain reports it."""
    params = extra.get("invocation_params") or {}
    return _text(params, "model", "model_name", "model_id") or _text(metadata, "ls_model_name")


def usage_of(response: LLMResult) -> tuple[str | None, int | None, int | None]:
    """(model, prompt tokens, completion tokens) of a model call: from the replies'
    `usage_metadata` and `response_metadata`, else from the client's `llm_output`."""
    model: str | None = None
    prompt: int | None = None
    completion: int | None = None
    for batch in response.generations:
        for generation in batch:
            message = getattr(generation, "message", None)
            if not isinstance(message, BaseMessage):
                continue
            model = model or _text(message.response_metadata, "model_name", "model")
            if isinstance(message, AIMessage) and message.usage_metadata:
                prompt = (prompt or 0) + message.usage_metadata.get("input_tokens", 0)
                completion = (completion or 0) + message.usage_metadata.get("output_tokens", 0)
    output = response.llm_output or {}
    if prompt is None and completion is None:
        usage = output.get("token_usage") or output.get("usage") or {}
        if isinstance(usage, Mapping):
            prompt = _count(usage, "prompt_tokens", "input_tokens")
            completion = _count(usage, "completion_tokens", "output_tokens")
    return model or _text(output, "model_name", "model"), prompt, completion


def _text(values: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _count(usage: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _thread(thread_id: Any) -> str:
    if not isinstance(thread_id, str) or not thread_id:
        raise ConfigError(f"a thread id is a non-empty string; got {thread_id!r}")
    return thread_id
