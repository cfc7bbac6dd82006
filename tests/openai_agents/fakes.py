"""A fake model and provider for the OpenAI Agents SDK tests: no network, no API key.

`OrderModel` decides its answer from the conversation alone, so a fresh process asked the
same thing answers the same: with no tool output yet it asks for the `charge` tool (for
each order, in one turn: parallel calls), then it answers with the tool outputs it saw.
Every call it makes is appended to a log file, so tests count calls across processes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agents import Model, ModelProvider, ModelResponse, Usage
from agents.testing import assistant_message, function_call

MODEL = "fake-model"
PROMPT_TOKENS, COMPLETION_TOKENS = 120, 30


def _kind(item: Any) -> str | None:
    kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
    return kind if isinstance(kind, str) else None


def _output(item: Any) -> str:
    value = item.get("output") if isinstance(item, dict) else getattr(item, "output", "")
    return str(value)


class OrderModel(Model):
    """Charges each of `orders` (one tool call each, all in the first turn), then says
    what the tool answered."""

    model = MODEL

    def __init__(
        self,
        log: Path | None,
        orders: list[str],
        tool: str = "charge",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.log = log
        self.orders = orders
        self.tool = tool
        self.arguments = arguments  # of each call (default: the order and its amount)

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        items = kwargs["input"] if "input" in kwargs else args[1]
        if self.log is not None:
            with self.log.open("a") as out:
                out.write(json.dumps({"model": MODEL}) + "\n")
        outputs = (
            [_output(i) for i in items if _kind(i) == "function_call_output"]
            if isinstance(items, list)
            else []
        )
        usage = Usage(
            requests=1,
            input_tokens=PROMPT_TOKENS,
            output_tokens=COMPLETION_TOKENS,
            total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
        )
        if outputs:
            return ModelResponse([assistant_message("done: " + "; ".join(outputs))], usage, None)
        calls = [
            function_call(
                self.tool,
                {"order": order, "amount": 10} if self.arguments is None else self.arguments,
                call_id=f"call-{order}",
            )
            for order in self.orders
        ]
        return ModelResponse(calls, usage, None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the order model does not stream")


class Provider(ModelProvider):
    """Gives `model` for every name, or the model `by_name` names."""

    def __init__(self, model: Model, by_name: dict[str, Model] | None = None) -> None:
        self.model = model
        self.by_name = by_name or {}

    def get_model(self, model_name: str | None) -> Model:
        return self.by_name.get(model_name or "", self.model)


def model_calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0
