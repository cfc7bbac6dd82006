"""A scripted Pydantic AI model (no network, no key): FunctionModel asking for `charge`
once per order, then answering with the receipts; each request counted in a file, so the
count holds across processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel


def returns(messages: list[ModelMessage]) -> dict[str, str]:
    """The tool results the conversation holds, by call id."""
    return {
        part.tool_call_id: str(part.content)
        for message in messages
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart)
    }


def order_model(orders: list[str], log: Path | None = None) -> FunctionModel:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if log is not None:
            with log.open("a") as out:
                out.write("request\n")
        done = returns(messages)
        if not done:
            calls: list[Any] = [
                ToolCallPart("charge", {"order": o, "amount": 10}, tool_call_id=f"call-{o}")
                for o in orders
            ]
            return ModelResponse(parts=calls)
        return ModelResponse(
            parts=[TextPart("done: " + "; ".join(done[f"call-{o}"] for o in orders))]
        )

    return FunctionModel(answer, model_name="scripted")


def requests(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def travel_model(flights: list[str], log: Path) -> FunctionModel:
    """Asks for `book` for each flight in one turn (call ids `c-<flight>`), then answers
    with what each call returned (a booking, a denial, an answered result)."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        with log.open("a") as out:
            out.write("request\n")
        done = returns(messages)
        if not done:
            calls: list[Any] = [
                ToolCallPart("book", {"flight": f}, tool_call_id=f"c-{f}") for f in flights
            ]
            return ModelResponse(parts=calls)
        return ModelResponse(
            parts=[TextPart("done: " + "; ".join(done[f"c-{f}"] for f in flights))]
        )

    return FunctionModel(answer, model_name="scripted")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
