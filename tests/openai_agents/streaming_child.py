"""A fake streaming model, and a streamed agent run in a process of its own, for
tests/openai_agents/test_streaming.py. No network, no API key.

    python -m tests.openai_agents.streaming_child STORE_URL LOG [HANG_AT]

`LookupModel` decides each turn from the conversation alone (so a fresh process asked
the same thing answers the same): while fewer than TOOL_TURNS tool outputs are in its
input it asks for the `lookup` tool, then it answers with what the lookups returned. It
streams each turn as a provider does (`response.created`, the item added, its text in
deltas, done, `response.completed`), and appends every call it makes, and every tool
call, to LOG, so that tests count them across processes.

The child runs execution `stream-1` with `adapter.run_streamed` and prints one JSON line
per event as it reaches the caller, then `{"final": ...}` and `done`. With HANG_AT, the
HANG_AT-th model call of this process stops after its `response.created` and never goes
on: the parent kills the child there.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    Model,
    ModelResponse,
    RunConfig,
    StreamEvent,
    Usage,
    function_tool,
)
from agents.items import TResponseOutputItem, TResponseStreamEvent
from agents.testing import assistant_message, function_call
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
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from livingai import CheckpointEngine, Runtime, open_store
from livingai.adapters.openai_agents import OpenAIAgentsAdapter

TOOL_TURNS = 4  # turns that call the tool; one more model call answers
MODEL = "fake-stream"
PROMPT_TOKENS, COMPLETION_TOKENS = 100, 20
EXECUTION = "stream-1"
WORKER = "stream-worker"  # the same at every start: a restart takes its run back at once
NO_TRACING = RunConfig(tracing_disabled=True)

Gate = Callable[[int, str], Awaitable[None]]  # (model call number, where in the stream)


def _kind(item: Any) -> str | None:
    kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
    return kind if isinstance(kind, str) else None


def _outputs(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    found = [i.get("output") if isinstance(i, dict) else getattr(i, "output", None) for i in items]
    return [str(o) for o, i in zip(found, items, strict=True) if _kind(i) == "function_call_output"]


def answer(outputs: list[str]) -> str:
    return "found " + ", ".join(outputs)


def final_text() -> str:
    return answer([f"item {n}" for n in range(1, TOOL_TURNS + 1)])


class LookupModel(Model):
    """Asks for `lookup` TOOL_TURNS times, one call a turn, then answers (see the module
    docstring). `gate`, when given, is awaited at points of each stream ("created",
    "delta"), for tests that hold a turn open."""

    model = MODEL

    def __init__(self, log: Path | None = None, gate: Gate | None = None) -> None:
        self.log = log
        self.gate = gate
        self.calls: list[int] = []  # the turn of each call, in this process

    def _turn(self, input: Any, streamed: bool) -> tuple[int, TResponseOutputItem]:
        outputs = _outputs(input)
        turn = len(outputs) + 1
        self.calls.append(turn)
        if self.log is not None:
            with self.log.open("a") as out:
                out.write(json.dumps({"model": turn, "streamed": streamed}) + "\n")
        if len(outputs) < TOOL_TURNS:
            return turn, function_call("lookup", {"n": turn}, call_id=f"call-{turn}")
        return turn, assistant_message(answer(outputs), item_id=f"msg-{turn}")

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        _, item = self._turn(kwargs["input"] if "input" in kwargs else args[1], False)
        usage = Usage(
            requests=1,
            input_tokens=PROMPT_TOKENS,
            output_tokens=COMPLETION_TOKENS,
            total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
        )
        return ModelResponse(output=[item], usage=usage, response_id=f"resp-{len(self.calls)}")

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        _turn, item = self._turn(kwargs["input"] if "input" in kwargs else args[1], True)
        number = len(self.calls)
        for event in _stream(item, f"resp-{number}"):
            yield event
            if self.gate is not None and event.type == "response.created":
                await self.gate(number, "created")
            if self.gate is not None and event.type == "response.output_text.delta":
                await self.gate(number, "delta")


def _stream(item: TResponseOutputItem, response_id: str) -> list[TResponseStreamEvent]:
    """The events a provider streams for a one-item response: its text word by word."""
    usage = ResponseUsage(
        input_tokens=PROMPT_TOKENS,
        input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
        output_tokens=COMPLETION_TOKENS,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
    )
    done = Response(
        id=response_id,
        created_at=0,
        model=MODEL,
        object="response",
        output=[item],
        parallel_tool_calls=False,
        tool_choice="auto",
        tools=[],
        status="completed",
        usage=usage,
    )
    begun = done.model_copy(update={"output": [], "status": "in_progress", "usage": None})
    events: list[TResponseStreamEvent] = [
        ResponseCreatedEvent(response=begun, sequence_number=0, type="response.created"),
        ResponseOutputItemAddedEvent(
            item=item, output_index=0, sequence_number=1, type="response.output_item.added"
        ),
    ]
    if isinstance(item, ResponseOutputMessage) and isinstance(item.content[0], ResponseOutputText):
        for word in item.content[0].text.split(" "):
            events.append(
                ResponseTextDeltaEvent(
                    content_index=0,
                    delta=word + " ",
                    item_id=item.id,
                    logprobs=[],
                    output_index=0,
                    sequence_number=len(events),
                    type="response.output_text.delta",
                )
            )
    events.append(
        ResponseOutputItemDoneEvent(
            item=item,
            output_index=0,
            sequence_number=len(events),
            type="response.output_item.done",
        )
    )
    events.append(
        ResponseCompletedEvent(
            response=done, sequence_number=len(events), type="response.completed"
        )
    )
    return events


def lookup_agent(model: Model, log: Path | None = None) -> Agent[Any]:
    @function_tool
    def lookup(n: int) -> str:
        """Look item n up."""
        if log is not None:
            with log.open("a") as out:
                out.write(json.dumps({"tool": n}) + "\n")
        return f"item {n}"

    return Agent(name="lookup", instructions="Look things up.", model=model, tools=[lookup])


def describe(event: StreamEvent) -> dict[str, Any]:
    """An event as the child prints it: a raw model event by its type (a text delta with
    its text), a run item by its name."""
    if event.type == "raw_response_event":
        line: dict[str, Any] = {"raw": event.data.type}
        if event.data.type == "response.output_text.delta":
            line["delta"] = event.data.delta
        return line
    if event.type == "run_item_stream_event":
        return {"item": event.name}
    return {"agent": event.new_agent.name}


def log_lines(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


async def main(url: str, log: Path, hang_at: int | None) -> None:
    async def gate(number: int, where: str) -> None:
        if number == hang_at and where == "created":
            await asyncio.Event().wait()  # never set: the parent kills this process here

    model = LookupModel(log, gate)
    async with Runtime(CheckpointEngine(open_store(url)), worker_id=WORKER) as runtime:
        adapter = OpenAIAgentsAdapter(runtime)
        streamed = adapter.run_streamed(
            lookup_agent(model, log), "look it up", execution_id=EXECUTION, run_config=NO_TRACING
        )
        async for event in streamed.stream_events():
            print(json.dumps(describe(event)), flush=True)
        print(json.dumps({"final": streamed.final_output}), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    store_url, log_path = sys.argv[1:3]
    asyncio.run(main(store_url, Path(log_path), int(sys.argv[3]) if len(sys.argv) > 3 else None))
