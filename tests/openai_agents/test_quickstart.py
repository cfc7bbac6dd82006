"""The README's OpenAI Agents SDK quickstart runs as written (tests/quickstarts.py), the
SDK's own model provider answering with a scripted model instead of OpenAI's: the tool
is booked once, and a second run of the same execution asks no model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agents import Model
from agents.models.multi_provider import MultiProvider

from tests.openai_agents.fakes import OrderModel
from tests.quickstarts import inside, run_quickstart


def test_the_openai_agents_quickstart_books_once_and_resumes_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path.parent / f"{tmp_path.name}-model.log"  # the model's calls, out of the way
    asked: list[str | None] = []

    def scripted(self: MultiProvider, model_name: str | None) -> Model:
        asked.append(model_name)
        return OrderModel(log, ["LH1"], tool="book", arguments={"flight": "LH1"})

    monkeypatch.setattr(MultiProvider, "get_model", scripted)  # what `Agent(...)` runs on
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # no key: no trace leaves either
    out, names = run_quickstart("openai-agents", tmp_path)
    assert out == "done: booked LH1 (key trip-1/oai:tool:call-LH1)\n"
    calls = len(log.read_text().splitlines())
    assert calls == 2  # the tool call, then the answer
    with inside(tmp_path) as again:
        asyncio.run(names["main"]())
    assert again.getvalue() == out
    assert len(log.read_text().splitlines()) == calls  # answered from the log
