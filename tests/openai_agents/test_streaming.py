"""`adapter.run_streamed`: the SDK's stream events reach the caller as they happen while
the run is recorded as `run` records it (the same nodes, so each resumes the other's
runs), and a streamed run stopped half way (cancelled, or its process killed with
SIGKILL) streams the rest when run again, recorded turns rebuilt from the log without
calling the model. A fake streaming model (tests/openai_agents/streaming_child.py), a
SQLite store in tmp_path; no network, no API key."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, StreamEvent

from livingai import (
    CheckpointEngine,
    ConfigError,
    NodeType,
    Price,
    PriceTable,
    Runtime,
    SQLiteStore,
    Status,
    open_store,
)
from livingai.adapters.openai_agents import OpenAIAgentsAdapter
from tests.openai_agents.streaming_child import (
    EXECUTION,
    MODEL,
    NO_TRACING,
    TOOL_TURNS,
    LookupModel,
    describe,
    final_text,
    log_lines,
    lookup_agent,
)
from tests.services import ROOT

TURNS = TOOL_TURNS + 1  # model calls: one a tool turn, and the answer
SECONDS = 20.0  # each child's bound


@pytest.fixture
async def adapter(tmp_path: Path) -> AsyncIterator[OpenAIAgentsAdapter]:
    prices = PriceTable({MODEL: Price(prompt=1.0, completion=2.0)})
    runtime = Runtime(
        CheckpointEngine(SQLiteStore(tmp_path / "store.db")), worker_id="stream-test", prices=prices
    )
    yield OpenAIAgentsAdapter(runtime)
    await runtime.close()


async def _drain(events: AsyncIterator[StreamEvent]) -> list[dict[str, Any]]:
    async with asyncio.timeout(SECONDS):
        return [describe(event) async for event in events]


def _count(lines: list[dict[str, Any]], **match: str) -> int:
    return sum(all(line.get(k) == v for k, v in match.items()) for line in lines)


async def _recorded(engine: CheckpointEngine, execution_id: str) -> list[tuple[Any, ...]]:
    """What the log holds for a run, without its execution id: each node's id, kind,
    status, input, output and usage."""
    return sorted(
        (
            node.id.removeprefix(execution_id),
            node.type,
            node.status,
            node.input,
            node.output,
            node.model,
            node.prompt_tokens,
            node.completion_tokens,
        )
        for node in await engine.list_nodes(execution_id)
    )


async def test_events_reach_the_caller_while_the_run_goes_on(
    adapter: OpenAIAgentsAdapter, tmp_path: Path
) -> None:
    release = asyncio.Event()

    async def gate(number: int, where: str) -> None:
        if number == TURNS and where == "delta":  # the answer, after its first word
            await release.wait()

    model = LookupModel(tmp_path / "calls.log", gate)
    streamed = adapter.run_streamed(
        lookup_agent(model), "look it up", execution_id="live", run_config=NO_TRACING
    )
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(SECONDS):
        async for event in streamed.stream_events():
            seen.append(describe(event))
            if seen[-1].get("raw") == "response.output_text.delta" and not release.is_set():
                # The answer is streaming and held open: the run has not ended, nor is
                # the answer recorded, but everything before it already reached us.
                assert not streamed.is_complete
                assert streamed.final_output is None
                assert model.calls == list(range(1, TURNS + 1))
                assert _count(seen, item="tool_output") == TOOL_TURNS
                assert seen[-1]["delta"] == "found "
                prompts = [
                    n for n in await adapter.engine.list_nodes("live") if n.type is NodeType.PROMPT
                ]
                assert len(prompts) == TOOL_TURNS
                release.set()
    assert release.is_set()
    assert streamed.is_complete
    assert streamed.final_output == final_text()
    assert "".join(line.get("delta", "") for line in seen).strip() == final_text()
    assert _count(seen, raw="response.completed") == TURNS
    assert streamed.result is not None
    assert streamed.result.is_complete


async def test_a_streamed_run_is_recorded_as_run_records_it(
    adapter: OpenAIAgentsAdapter, tmp_path: Path
) -> None:
    plain = LookupModel()
    result = await adapter.run(
        lookup_agent(plain), "look it up", execution_id="plain", run_config=NO_TRACING
    )
    assert result.final_output == final_text()
    live = LookupModel()
    streamed = adapter.run_streamed(
        lookup_agent(live), "look it up", execution_id="streamed", run_config=NO_TRACING
    )
    lines = await _drain(streamed.stream_events())
    assert streamed.final_output == final_text()
    assert live.calls == plain.calls == list(range(1, TURNS + 1))
    assert _count(lines, item="tool_output") == TOOL_TURNS

    recorded = await _recorded(adapter.engine, "streamed")
    assert recorded == await _recorded(adapter.engine, "plain")
    kinds = [(kind, status) for _, kind, status, *_ in recorded]
    assert kinds.count((NodeType.PROMPT, Status.SUCCESS)) == TURNS
    assert kinds.count((NodeType.TOOL, Status.SUCCESS)) == TOOL_TURNS
    for node in await adapter.engine.list_nodes("streamed"):
        if node.type is NodeType.PROMPT:  # the turn's usage, cost and latency
            assert (node.model, node.prompt_tokens, node.completion_tokens) == (MODEL, 100, 20)
            assert node.cost == pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)
            assert node.latency_ms is not None

    # Either way of running serves the other's finished run from its log alone.
    for execution_id in ("streamed", "plain"):
        again = LookupModel()
        replayed = adapter.run_streamed(
            lookup_agent(again), "look it up", execution_id=execution_id, run_config=NO_TRACING
        )
        lines = await _drain(replayed.stream_events())
        assert again.calls == []
        assert replayed.final_output == final_text()
        assert _count(lines, raw="response.completed") == TURNS
        assert _count(lines, item="tool_output") == TOOL_TURNS
        assert "".join(line.get("delta", "") for line in lines) == final_text()  # in one piece
    served = LookupModel()
    result = await adapter.run(
        lookup_agent(served), "look it up", execution_id="streamed", run_config=NO_TRACING
    )
    assert served.calls == []
    assert result.final_output == final_text()


async def test_a_cancelled_streamed_run_resumes_where_it_stopped(
    adapter: OpenAIAgentsAdapter, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"

    async def gate(number: int, where: str) -> None:
        if number == 3 and where == "created":
            await asyncio.Event().wait()  # held until cancelled

    first = LookupModel(log, gate)
    streamed = adapter.run_streamed(
        lookup_agent(first, log), "look it up", execution_id="cut", run_config=NO_TRACING
    )
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(SECONDS):
        async for event in streamed.stream_events():
            seen.append(describe(event))
            if _count(seen, raw="response.created") == 3:
                streamed.cancel()
    assert streamed.is_complete
    assert streamed.final_output is None
    header = await adapter.engine.load("cut/run")
    assert header is not None
    assert header.node.status is Status.RUNNING  # unfinished, not failed

    second = LookupModel(log)
    resumed = adapter.run_streamed(
        lookup_agent(second, log), "look it up", execution_id="cut", run_config=NO_TRACING
    )
    lines = await _drain(resumed.stream_events())
    assert second.calls == [3, 4, 5]  # turns 1 and 2 came from the log
    assert [line["tool"] for line in log_lines(log) if "tool" in line] == [1, 2, 3, 4]
    assert resumed.final_output == final_text()
    assert _count(lines, raw="response.completed") == TURNS
    assert _count(lines, item="tool_output") == TOOL_TURNS


def _start(url: str, log: Path, *hang_at: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.openai_agents.streaming_child", url, str(log)]
    return subprocess.Popen(
        [*command, *map(str, hang_at)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reader(child: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The child's stdout, line by line, as it prints them (None at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


async def _nodes(url: str) -> list[tuple[NodeType, Status]]:
    async with CheckpointEngine(open_store(url)) as engine:
        return [(node.type, node.status) for node in await engine.list_nodes(EXECUTION)]


@pytest.mark.crash
def test_a_streamed_run_killed_mid_run_streams_the_rest_without_calling_the_model_again(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    log = tmp_path / "calls.log"

    # First life: killed with SIGKILL while its third model call streams.
    child = _start(url, log, 3)
    lines = _reader(child)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + SECONDS
    try:
        while _count(seen, raw="response.created") < 3:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, f"the child ended early: {seen}"
            seen.append(json.loads(line))
    except queue.Empty:
        pytest.fail(f"the child did not reach its third model call in {SECONDS:.0f}s: {seen}")
    finally:
        child.kill()
        child.communicate(timeout=SECONDS)
    assert child.returncode == -9
    assert [line["model"] for line in log_lines(log) if "model" in line] == [1, 2, 3]
    # Two turns reached the caller, and the store has them: each tool's outcome is stored
    # durably, and every save before it with it.
    assert _count(seen, item="tool_output") == 2
    recorded = asyncio.run(_nodes(url))
    assert recorded.count((NodeType.PROMPT, Status.SUCCESS)) == 2
    assert recorded.count((NodeType.TOOL, Status.SUCCESS)) == 2

    # Second life: the same program streams the run to its end.
    before = len(log_lines(log))
    child = _start(url, log)
    out, err = child.communicate(timeout=SECONDS)
    assert child.returncode == 0, err
    printed = out.splitlines()
    assert printed[-1] == "done", out
    resumed = [json.loads(line) for line in printed[:-1]]
    assert resumed[-1] == {"final": final_text()}
    calls = log_lines(log)[before:]
    assert [line["model"] for line in calls if "model" in line] == [3, 4, 5]
    assert [line["tool"] for line in calls if "tool" in line] == [3, 4]
    # Every turn reached the caller again: the two recorded ones rebuilt from the log.
    assert _count(resumed, raw="response.completed") == TURNS
    assert _count(resumed, item="tool_output") == TOOL_TURNS
    assert "".join(line.get("delta", "") for line in resumed).strip() == final_text()
    assert asyncio.run(_nodes(url)).count((NodeType.PROMPT, Status.SUCCESS)) == TURNS


def test_run_streamed_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    adapter = OpenAIAgentsAdapter(CheckpointEngine(SQLiteStore(tmp_path / "store.db")))
    agent = lookup_agent(LookupModel())
    with pytest.raises(ConfigError, match="running event loop"):
        adapter.run_streamed(agent, "hi", execution_id="x")
    with pytest.raises(ConfigError, match="runs an Agent"):
        adapter.run_streamed("agent", "hi", execution_id="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="execution_id"):
        adapter.run_streamed(agent, "hi", execution_id="")
    assert isinstance(agent, Agent)
