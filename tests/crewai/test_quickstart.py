"""The README's CrewAI quickstart runs as written (tests/quickstarts.py), with a scripted
LLM where it names `LLM(model=...)`: the flight is booked once, and a second kickoff of
the same execution calls no LLM (tests/crewai/conftest.py keeps CrewAI offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import crewai
import pytest

from tests.crewai.fakes import ScriptedLLM, tool_call, tool_outputs
from tests.quickstarts import run_quickstart


def test_the_crewai_quickstart_books_once_and_kicks_off_again_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path.parent / f"{tmp_path.name}-llm.log"  # the LLM's calls, out of the way
    named: list[str] = []

    def respond(messages: list[dict[str, Any]], task: Any) -> Any:
        outputs = tool_outputs(messages)
        if not outputs:
            return [tool_call("book", {"flight": "LH1"}, "call-1")]
        return f"done: {outputs['call-1']}"

    def scripted(*, model: str, **settings: Any) -> ScriptedLLM:
        named.append(model)
        return ScriptedLLM(respond, log)

    monkeypatch.setattr(crewai, "LLM", scripted)  # `from crewai import LLM` finds this one
    out, _ = run_quickstart("crewai", tmp_path)
    assert named == ["gpt-4o-mini"]
    assert out.startswith("done: booked LH1 (key trip-1/crew:tool:"), out
    calls = len(log.read_text().splitlines())
    assert calls == 2  # the tool call, then the answer
    again, _ = run_quickstart("crewai", tmp_path)  # the whole file again: a new process's view
    assert again == out
    assert len(log.read_text().splitlines()) == calls  # every call served from the log
