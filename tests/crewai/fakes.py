"""A scripted CrewAI LLM (no network, no key): it answers with what `respond` makes of
the messages, native tool calls included, and reports fixed token usage."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crewai.llms.base_llm import BaseLLM
from pydantic import Field

from livingai.testing.adapters import COMPLETION_TOKENS, MODEL, PROMPT_TOKENS

Respond = Callable[[list[dict[str, Any]], Any], str | list[dict[str, Any]]]


def tool_call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    """A native tool call, in the OpenAI shape CrewAI reads."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def tool_outputs(messages: list[dict[str, Any]]) -> dict[str, str]:
    """The tool results the conversation holds, by call id."""
    return {
        str(message.get("tool_call_id")): str(message.get("content"))
        for message in messages
        if message.get("role") == "tool"
    }


class ScriptedLLM(BaseLLM):
    """Answers `respond(messages, task)`; each call is counted in `log` (a file, so the
    count holds across processes) when one is given."""

    respond: Any = Field(exclude=True)
    log: Path | None = Field(default=None, exclude=True)

    def __init__(self, respond: Respond, log: Path | None = None, **fields: Any) -> None:
        fields.setdefault("model", MODEL)
        super().__init__(**{"respond": respond, "log": log, **fields})

    def supports_function_calling(self) -> bool:
        return True

    def get_context_window_size(self) -> int:
        return 128_000

    def get_input_tokens_count(self, messages: Any, *args: Any, **kwargs: Any) -> int:
        return len(str(messages)) // 4

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        shown = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
        if self.log is not None:
            with self.log.open("a") as log:
                log.write(f"{len(shown)}\n")
        answer = self.respond(list(shown), kwargs.get("from_task"))
        self._track_token_usage_internal(
            {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}
        )
        return answer

    async def acall(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        return self.call(messages, *args, **kwargs)


def llm_calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0
