"""The run's models, recorded: each model call in an adapter run is a step found by its
input, served from the log when recorded (a streamed call as events rebuilt from it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agents import (
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelProvider,
    ModelSettings,
    ModelTracing,
    Tool,
    Usage,
)
from agents.exceptions import ModelBehaviorError
from agents.items import (
    ModelResponse,
    TResponseInputItem,
    TResponseOutputItem,
    TResponseStreamEvent,
)
from agents.run_config import CallModelData, CallModelInputFilter, ModelInputData
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseUsage,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import TypeAdapter

from livingai import (
    ExecutionNode,
    NodeType,
    Status,
)
from livingai.adapters.recordings import (
    ModelUsage,
    digest,
    model_call,
    plain,
)

from .scope import Scope, current, speaker

_OUTPUT: TypeAdapter[list[TResponseOutputItem]] = TypeAdapter(list[TResponseOutputItem])


def naming_turns(inner: CallModelInputFilter | None) -> CallModelInputFilter:
    """The run config's model input filter (`inner`, when it has one) that also says
    whose turn it is, so each model call is recorded by agent name. The SDK calls it
    right before each model call, in the run loop's task, and passes the run config on
    to the runs of agents used as tools, so their turns are named too."""

    def name_turn(data: CallModelData[Any]) -> ModelInputData | Awaitable[ModelInputData]:
        found = speaker.get()
        if found is not None:
            found.agent = data.agent.name
        return data.model_data if inner is None else inner(data)

    return name_turn


class RecordingProvider(ModelProvider):
    """The run's provider, whose models record their calls."""

    def __init__(self, inner: ModelProvider) -> None:
        self.inner = inner

    def get_model(self, model_name: str | None) -> Model:
        model = self.inner.get_model(model_name)
        if isinstance(model, RecordingModel):
            return model
        return RecordingModel(model, model_name or model_name_of(model))

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingModel(Model):
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
        scope = current.get()

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
        node = _model_node(
            scope, self.name, system_instructions, input, tools, output_schema, handoffs
        )
        made: Callable[[], Awaitable[ModelResponse]] = call
        usage: Callable[[ModelResponse], ModelUsage | None] = self._usage
        if scope.models_from is not None:  # runtime.replay(..., mock_llm=True)
            recorded = await _recorded_turn(scope, node.id)
            if recorded is not None:
                node.metadata.update(mocked=True, replayed_from=recorded.id)
                served = _decode(recorded.output)

                async def serve() -> ModelResponse:
                    return served

                made, usage = serve, _no_usage  # served, not paid for
        return await model_call(
            scope.adapter.runtime,
            node,
            made,
            encode=_encode,
            decode=_decode,
            usage=usage,
            prices=scope.adapter.prices,
            fence=scope.fence,
            known=scope.known,
        )

    async def stream_response(
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
    ) -> AsyncIterator[TResponseStreamEvent]:
        """The inner model's events, each passed on as it comes, the turn recorded (at
        get_response's node) from its `response.completed`; a recorded turn is served
        as events rebuilt from the log, without calling the model."""
        scope = current.get()

        def stream() -> AsyncIterator[TResponseStreamEvent]:
            return self.inner.stream_response(
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
            async for event in stream():
                yield event
            return
        node = _model_node(
            scope, self.name, system_instructions, input, tools, output_schema, handoffs
        )
        relay = _Relay(stream)
        recording = asyncio.ensure_future(
            model_call(
                scope.adapter.runtime,
                node,
                relay.call,
                encode=_encode,
                decode=_decode,
                usage=self._usage,
                prices=scope.adapter.prices,
                fence=scope.fence,
                known=scope.known,
            )
        )
        async for event in relay.events(recording, self.name):
            yield event

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


async def _recorded_turn(scope: Scope, node_id: str) -> ExecutionNode | None:
    """The same call's turn in the execution a replay serves model calls from (the same
    input, the same occurrence), when it succeeded there."""
    assert scope.models_from is not None
    original = scope.models_from + node_id.removeprefix(scope.execution_id)
    loaded = await scope.adapter.engine.load(original)
    if loaded is None or loaded.node.status is not Status.SUCCESS:
        return None
    return loaded.node


def _no_usage(_: ModelResponse) -> None:
    return None


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


def model_name_of(model: Model) -> str | None:
    name = getattr(model, "model", None)
    return name if isinstance(name, str) and name else None


def _model_node(
    scope: Scope,
    model: str | None,
    system_instructions: str | None,
    input: str | list[TResponseInputItem],
    tools: list[Tool],
    output_schema: AgentOutputSchemaBase | None,
    handoffs: list[Handoff[Any, Any]],
) -> ExecutionNode:
    """The step of a model call (get_response or stream_response) with this input:
    `<execution>/oai:model:<digest of the call>:<n>`, its n-th call with that input."""
    asked = {
        "system_instructions": system_instructions,
        "input": _without_none(plain(input)),
        "tools": sorted(tool.name for tool in tools),
        "handoffs": sorted(handoff.tool_name for handoff in handoffs),
        "output": None if output_schema is None else output_schema.name(),
    }
    key = digest(asked)
    found = speaker.get()
    agent = None if found is None else found.agent
    scope.calls[key] += 1
    return ExecutionNode(
        id=f"{scope.execution_id}/oai:model:{key}:{scope.calls[key]}",
        execution_id=scope.execution_id,
        type=NodeType.PROMPT,
        parent_id=f"{scope.execution_id}/run",
        input=asked,
        model=model,
        metadata={"step": model or "model", "model": model, "agent": agent},
    )


class _Relay:
    """One streamed model call: `call`, the call model_call times and records, drains
    the model's stream into a queue, and `events` yields from it as the events come."""

    def __init__(self, stream: Callable[[], AsyncIterator[TResponseStreamEvent]]) -> None:
        self.stream = stream
        self.called = False
        self.queue: asyncio.Queue[TResponseStreamEvent | None] = asyncio.Queue()

    async def call(self) -> ModelResponse:
        self.called = True
        completed: Response | None = None
        done: list[TResponseOutputItem] = []
        events = self.stream()
        try:
            async for event in events:
                self.queue.put_nowait(event)
                if isinstance(event, ResponseCompletedEvent):
                    completed = event.response
                elif isinstance(event, ResponseOutputItemDoneEvent):
                    done.append(event.item)
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
        if completed is None:
            raise ModelBehaviorError(
                "the model's stream ended without a response.completed event: there is no "
                "turn to record"
            )
        return _streamed_response(completed, done)

    async def events(
        self, recording: asyncio.Future[ModelResponse], model: str | None
    ) -> AsyncIterator[TResponseStreamEvent]:
        """The model's events, then (its error raised) the end of the recording; a turn
        served from the log, rebuilt."""
        recording.add_done_callback(lambda _: self.queue.put_nowait(None))
        try:
            while (event := await self.queue.get()) is not None:
                yield event
            response = await recording
        finally:
            if not recording.done():  # the runner stopped reading: the call is not recorded
                recording.cancel()
        if not self.called:
            for event in _replayed(response, model):
                yield event


def _streamed_response(response: Response, items: list[TResponseOutputItem]) -> ModelResponse:
    """The turn a stream's `response.completed` ends, as get_response returns it (its
    items from the `output_item.done` events when the completed response lists none, as
    the SDK's runner takes them)."""
    used = response.usage
    usage = Usage(requests=1)
    if used is not None:
        usage = Usage(
            requests=1,
            input_tokens=used.input_tokens,
            input_tokens_details=used.input_tokens_details,
            output_tokens=used.output_tokens,
            output_tokens_details=used.output_tokens_details,
            total_tokens=used.total_tokens,
        )
    return ModelResponse(
        output=list(response.output) or items, usage=usage, response_id=response.id
    )


def _replayed(response: ModelResponse, model: str | None) -> list[TResponseStreamEvent]:
    """A recorded turn's events, rebuilt for the runner and the caller:
    `response.created`, each output item's `added` and `done` (a text part in one
    `output_text.delta`), and `response.completed` with the recorded output and usage."""
    usage = response.usage
    final = Response(
        id=response.response_id or "",
        created_at=0,
        model=model or "recorded",
        object="response",
        output=list(response.output),
        parallel_tool_calls=False,
        tool_choice="auto",
        tools=[],
        status="completed",
        usage=ResponseUsage(
            input_tokens=usage.input_tokens,
            input_tokens_details=usage.input_tokens_details,
            output_tokens=usage.output_tokens,
            output_tokens_details=usage.output_tokens_details,
            total_tokens=usage.total_tokens,
        ),
    )
    if response.response_id is None:
        object.__setattr__(final, "id", None)  # as recorded: a turn may have no id
    begun = final.model_copy(update={"output": [], "status": "in_progress", "usage": None})
    events: list[TResponseStreamEvent] = [
        ResponseCreatedEvent(response=begun, sequence_number=0, type="response.created")
    ]
    for index, item in enumerate(final.output):
        events.append(
            ResponseOutputItemAddedEvent(
                item=item,
                output_index=index,
                sequence_number=len(events),
                type="response.output_item.added",
            )
        )
        if isinstance(item, ResponseOutputMessage):
            for part, content in enumerate(item.content):
                if isinstance(content, ResponseOutputText):
                    events.append(
                        ResponseTextDeltaEvent(
                            content_index=part,
                            delta=content.text,
                            item_id=item.id,
                            logprobs=[],
                            output_index=index,
                            sequence_number=len(events),
                            type="response.output_text.delta",
                        )
                    )
        events.append(
            ResponseOutputItemDoneEvent(
                item=item,
                output_index=index,
                sequence_number=len(events),
                type="response.output_item.done",
            )
        )
    events.append(
        ResponseCompletedEvent(
            response=final, sequence_number=len(events), type="response.completed"
        )
    )
    return events
