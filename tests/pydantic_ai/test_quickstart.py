"""The README's Pydantic AI quickstart runs as written (tests/quickstarts.py), with a
scripted FunctionModel where it names "openai:gpt-5" (Pydantic AI's `infer_model`, which
`Agent(...)` and its durable_exec layer build models by name with, answers with it): the
flight is booked once, and a second run of the same execution makes no model request."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import models
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import livingai.adapters.pydantic_ai  # noqa: F401  (loads Pydantic AI's durable_exec)
from tests.pydantic_ai.fakes import returns
from tests.quickstarts import inside, run_quickstart


def test_the_pydantic_ai_quickstart_books_once_and_resumes_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[int] = []
    named: list[Any] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        requests.append(1)
        done = returns(messages)
        if not done:
            return ModelResponse(parts=[ToolCallPart("book", {"flight": "LH1"}, "call-1")])
        return ModelResponse(parts=[TextPart(f"done: {done['call-1']}")])

    def scripted(model: Any, *args: Any, **kwargs: Any) -> FunctionModel:
        named.append(model)
        return FunctionModel(answer, model_name="scripted")

    real = models.infer_model
    for module in list(sys.modules.values()):  # wherever Pydantic AI imported it by name
        name = getattr(module, "__name__", "")
        if name.startswith("pydantic_ai") and getattr(module, "infer_model", None) is real:
            monkeypatch.setattr(module, "infer_model", scripted)
    out, names = run_quickstart("pydantic-ai", tmp_path)
    assert named[0] == "openai:gpt-5"
    assert out.startswith("done: booked LH1 (key trip-1/pai:1:tool:"), out
    assert len(requests) == 2  # the tool call, then the answer
    with inside(tmp_path) as again:
        asyncio.run(names["main"]())
    assert again.getvalue() == out
    assert len(requests) == 2  # every request served from the log
