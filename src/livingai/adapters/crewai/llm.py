"""RecordingLLM: the LLM a crew's agents call in an adapter kickoff, in front of their
own. Each call is a step at `<execution>/crew:llm:<digest of the call>:<n>`: served from
the log when recorded (the model is not asked again), otherwise made and recorded with
its model, tokens, cost and latency. Outside an adapter kickoff it only passes calls on.

CrewAI calls `llm.call` from its own threads (sync, even in `akickoff`), so the call is
made there and the node saved on the engine's loop (scope.py)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from crewai.llms.base_llm import BaseLLM, call_stop_override
from crewai.utilities.agent_utils import extract_tool_call_info, is_tool_call_list
from pydantic import BaseModel, Field, PrivateAttr

from livingai import ExecutionNode, NodeType, Status
from livingai.adapters.recordings import (
    ModelUsage,
    model_done,
    model_failed,
    model_started,
    plain,
)

from .scope import Scope, current


class RecordingLLM(BaseLLM):
    """`inner`, each call recorded in an adapter kickoff (see the module docstring). The
    adapter makes one per model object: the inner model's token counters are read before
    and after each call, so calls through it are made one at a time (`lock`), and the
    usage read is theirs alone."""

    inner: BaseLLM = Field(exclude=True)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, inner: BaseLLM, **fields: Any) -> None:
        fields.setdefault("model", inner.model)
        fields.setdefault("provider", inner.provider)
        fields.setdefault("stop", list(inner.stop))
        super().__init__(**{"inner": inner, **fields})

    # What the agent's executor asks of its LLM, answered by the one behind.
    def supports_function_calling(self) -> bool:
        probe = getattr(self.inner, "supports_function_calling", None)
        return bool(probe()) if callable(probe) else False

    def supports_stop_words(self) -> bool:
        return self.inner.supports_stop_words()

    def get_context_window_size(self) -> int:
        return self.inner.get_context_window_size()

    def supports_multimodal(self) -> bool:
        return self.inner.supports_multimodal()

    def get_input_tokens_count(self, *args: Any, **kwargs: Any) -> int:
        return self.inner.get_input_tokens_count(*args, **kwargs)

    def count(self, usage: dict[str, Any]) -> None:
        """Add a call's tokens to this LLM's counters, which CrewAI sums per crew."""
        self._track_token_usage_internal(usage)

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        scope = current.get()
        if scope is None:  # not in an adapter kickoff: as the LLM would
            with call_stop_override(self.inner, self.stop_sequences or None):
                return self.inner.call(messages, *args, **kwargs)
        return _recorded(self, scope, messages, args, kwargs)

    # CrewAI retries a subclass's calls on rate limits: the LLM behind does that itself.
    call._crewai_rate_limit_wrapped = True  # type: ignore[attr-defined]

    async def acall(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        return self.call(messages, *args, **kwargs)

    acall._crewai_rate_limit_wrapped = True  # type: ignore[attr-defined]


_CALL_ARGS = ("tools", "callbacks", "available_functions", "from_task", "from_agent")


def _recorded(
    llm: RecordingLLM, scope: Scope, messages: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    given = dict(zip(_CALL_ARGS, args, strict=False)) | kwargs
    task, agent = given.get("from_task"), given.get("from_agent")
    place = scope.tasks.get(str(getattr(task, "id", None)))
    role = getattr(agent, "role", None)
    shown = plain(messages)
    node_id = scope.node_id(
        "llm", {"task": None if place is None else place[:2], "agent": role, "messages": shown}
    )
    response_model = given.get("response_model")
    recorded = scope.known.get(node_id)
    if recorded is not None and recorded.status is Status.SUCCESS:
        used = recorded.metadata.get("usage")
        if isinstance(used, dict):  # CrewAI's own token counts include the served call
            llm.count(used)
        return decode(recorded.output, response_model)
    node = ExecutionNode(
        id=node_id,
        execution_id=scope.execution_id,
        type=NodeType.PROMPT,
        parent_id=scope.parent_of(place),
        input={"messages": shown, "tools": _tool_names(given.get("tools"))},
        metadata={
            "step": f"llm {llm.inner.model}",
            "agent": role,
            "task": None if place is None else place.name,
        },
    )
    model_started(node)
    inner = llm.inner
    with llm._lock:
        before = inner.get_token_usage_summary()
        started = time.perf_counter()
        try:
            with call_stop_override(inner, llm.stop_sequences or None):
                response = inner.call(messages, *args, **kwargs)
        except Exception as exc:
            model_failed(node, exc, started)
            scope.wait(lambda: scope.adapter.engine.save(node, fence=scope.fence))
            raise
        used = inner.get_token_usage_summary().delta_since(before)
    usage = {
        "prompt_tokens": used.prompt_tokens,
        "completion_tokens": used.completion_tokens,
        "cached_prompt_tokens": used.cached_prompt_tokens,
        "reasoning_tokens": used.reasoning_tokens,
        "successful_requests": used.successful_requests,
    }
    llm.count(usage)
    node.metadata["usage"] = usage
    model_done(
        node,
        encode(response),
        ModelUsage(
            inner.model,
            used.prompt_tokens,
            used.completion_tokens,
            used.cached_prompt_tokens,
            used.reasoning_tokens,
        ),
        scope.adapter.prices,
        started,
    )
    # Not waited for, as recordings.model_call does: a crash before it commits asks again.
    scope.wait(lambda: scope.adapter.engine.save(node, fence=scope.fence, wait=False))
    return response


def encode(response: Any) -> dict[str, Any]:
    """What an LLM call answered, as JSON: text, tool calls (OpenAI's shape, which
    CrewAI reads from every provider), a structured output, or another value."""
    if isinstance(response, str):
        return {"text": response}
    if isinstance(response, list) and response and is_tool_call_list(response):
        calls = []
        for call in response:
            info = extract_tool_call_info(call)
            if info is None:
                return {"value": plain(response)}
            call_id, name, arguments = info
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            calls.append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}
            )
        return {"tool_calls": calls}
    if isinstance(response, BaseModel):
        return {"structured": response.model_dump(mode="json")}
    return {"value": plain(response)}


def decode(output: Any, response_model: Any = None) -> Any:
    """The response `encode` recorded, as CrewAI takes it."""
    if not isinstance(output, dict):
        return output
    if "text" in output:
        return output["text"]
    if "tool_calls" in output:
        return [dict(call) for call in output["tool_calls"]]
    if "structured" in output:
        structured = output["structured"]
        if isinstance(response_model, type) and issubclass(response_model, BaseModel):
            return response_model.model_validate(structured)
        return structured
    return output.get("value")


def _tool_names(tools: Any) -> list[str]:
    names = []
    for tool in tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else getattr(tool, "name", None)
        names.append(str(name))
    return names
