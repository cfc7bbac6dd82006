"""Human approval that survives a restart: a run stopped on a `needs_approval` tool is
stored as waiting for a human (its RunState in the log, `runtime.pending()`, `livingai
pending` and the web UI show it); another process approves or rejects by execution id
and goes on with it in the same durable execution. SQLite in tmp_path, a fake model."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import RunResult
from click.testing import CliRunner
from fastapi.testclient import TestClient

from livingai import (
    CheckpointEngine,
    ConfigError,
    ExecutionNotFoundError,
    NeedsHumanError,
    Runtime,
    SQLiteStore,
    Status,
    StepNotFoundError,
)
from livingai.adapters.openai_agents import OpenAIAgentsAdapter, PendingApproval
from livingai.cli import cli
from livingai.web import create_app
from tests.openai_agents.approvals_child import RUN, Crash, lines, travel_agent

ROOT = Path(__file__).resolve().parents[2]
CALL = "c-LH1"
WAITING = {"tool": "book", "call_id": CALL, "arguments": {"flight": "LH1"}, "agent": "travel"}
WHY = f"waiting for approval: book (call {CALL})"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    found = tmp_path / "logs"
    found.mkdir()
    return found


def opened(db: Path) -> Runtime:
    """A fresh engine over the file: what a restarted process has."""
    return Runtime(CheckpointEngine(SQLiteStore(db)), worker_id="approvals-test")


@pytest.fixture
async def runtime(db: Path) -> AsyncIterator[Runtime]:
    async with opened(db) as runtime:
        yield runtime


async def stop(runtime: Runtime, logs: Path, flights: list[str], execution_id: str) -> RunResult:
    adapter = OpenAIAgentsAdapter(runtime)
    agent = travel_agent(adapter, logs, flights)
    return await adapter.run(agent, "book my flights", execution_id=execution_id, run_config=RUN)


def child(db: Path, logs: Path, execution_id: str, *decision: str) -> dict[str, Any]:
    """Another process decides and goes on with the run; what it printed."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.openai_agents.approvals_child",
            str(db),
            str(logs),
            execution_id,
            *decision,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return printed


async def test_a_run_stopped_for_approval_waits_for_a_human(runtime: Runtime, logs: Path) -> None:
    result = await stop(runtime, logs, ["LH1"], "trip-1")
    assert [(i.name, i.call_id) for i in result.interruptions] == [("book", CALL)]
    assert result.final_output is None
    assert lines(logs / "tool.log") == []  # not run before someone says so
    (pending,) = await runtime.pending()
    assert pending.execution_id == "trip-1"
    assert pending.agent == "openai_agents:travel"
    assert pending.needs_human == {"approvals": [WAITING], "why": WHY}
    header = await runtime.engine.load("trip-1/run")
    assert header is not None
    assert header.node.status is Status.RUNNING
    stored = await runtime.engine.load("trip-1/oai:approval")
    assert stored is not None
    assert stored.state is not None
    assert stored.node.status is Status.PENDING
    assert json.loads(stored.state)["current_step"]["type"] == "next_step_interruption"
    adapter = OpenAIAgentsAdapter(runtime)
    assert await adapter.pending_approvals("trip-1") == [
        PendingApproval("trip-1", CALL, "book", {"flight": "LH1"}, "travel")
    ]
    # recovery does not go past it: nobody decided
    adapter.register(travel_agent(adapter, logs, ["LH1"]), run_config=RUN)
    (recovered,) = await runtime.recover_pending()
    assert recovered.outcome == "needs_human"
    assert isinstance(recovered.error, NeedsHumanError)
    assert recovered.error.why == WHY
    assert lines(logs / "tool.log") == []
    assert len(lines(logs / "model.log")) == 1  # the stop was served from the log


async def test_another_process_approves_and_the_run_finishes(db: Path, logs: Path) -> None:
    async with opened(db) as runtime:
        await stop(runtime, logs, ["LH1"], "trip-2")
    printed = child(db, logs, "trip-2", "approve")
    assert [(c["call_id"], c["decision"]) for c in printed["decided"]] == [(CALL, "approved")]
    assert printed["final_output"] == "done: booked LH1"
    assert printed["interruptions"] == []
    assert lines(logs / "tool.log") == ["LH1"]  # exactly once
    assert len(lines(logs / "model.log")) == 2  # the call that stopped, the one after
    async with opened(db) as runtime:
        assert await runtime.pending() == []
        header = await runtime.engine.load("trip-2/run")
        assert header is not None
        assert header.node.status is Status.SUCCESS
        assert header.node.output == "done: booked LH1"
        assert "needs_human" not in header.node.metadata
        decision = await runtime.engine.load(f"trip-2/oai:approval:{CALL}")
        assert decision is not None
        assert decision.node.output["decision"] == "approved"
        tool = await runtime.engine.load(f"trip-2/oai:tool:{CALL}")
        assert tool is not None
        assert tool.node.status is Status.SUCCESS
        # run again: every call served from the log, nothing runs
        again = await stop(runtime, logs, ["LH1"], "trip-2")
        assert again.final_output == "done: booked LH1"
        adapter = OpenAIAgentsAdapter(runtime)
        with pytest.raises(StepNotFoundError, match=r"'trip-2'.*finished \(SUCCESS\)"):
            await adapter.approve("trip-2", CALL)
    assert lines(logs / "tool.log") == ["LH1"]
    assert len(lines(logs / "model.log")) == 2


async def test_a_rejected_call_never_runs_and_the_model_is_told(db: Path, logs: Path) -> None:
    async with opened(db) as runtime:
        await stop(runtime, logs, ["LH1"], "trip-3")
    printed = child(db, logs, "trip-3", "reject", "too expensive, pick a train")
    assert printed["decided"][0]["decision"] == "rejected"
    assert printed["final_output"] == "done: too expensive, pick a train"
    assert lines(logs / "tool.log") == []
    async with opened(db) as runtime:
        assert await runtime.pending() == []
        assert await runtime.engine.load(f"trip-3/oai:tool:{CALL}") is None  # never called


async def test_a_crash_after_the_approved_tool_does_not_run_it_again(
    runtime: Runtime, db: Path, logs: Path
) -> None:
    await stop(runtime, logs, ["LH1"], "trip-4")
    adapter = OpenAIAgentsAdapter(runtime)
    await adapter.approve("trip-4", CALL)
    crashing = travel_agent(adapter, logs, ["LH1"], crash_once=True)
    with pytest.raises(Crash):
        await adapter.resume("trip-4", crashing, run_config=RUN)
    assert lines(logs / "tool.log") == ["LH1"]
    # a restarted process goes on from the same stop: the tool's outcome is served
    async with opened(db) as fresh:
        again = OpenAIAgentsAdapter(fresh)
        result = await again.resume("trip-4", travel_agent(again, logs, ["LH1"]), run_config=RUN)
    assert result.final_output == "done: booked LH1"
    assert lines(logs / "tool.log") == ["LH1"]


async def test_decisions_per_call_and_a_second_stop(runtime: Runtime, logs: Path) -> None:
    """Two calls waiting: each decided on its own; one left undecided stops the run again
    after the decided one ran; `call_id=None` takes every call still undecided."""
    await stop(runtime, logs, ["LH1", "BA2"], "trip-5")
    adapter = OpenAIAgentsAdapter(runtime)
    assert [c.call_id for c in await adapter.pending_approvals("trip-5")] == [CALL, "c-BA2"]
    await adapter.approve("trip-5", CALL)
    assert [c.decision for c in await adapter.pending_approvals("trip-5")] == ["approved", None]
    agent = travel_agent(adapter, logs, ["LH1", "BA2"])
    result = await adapter.resume("trip-5", agent, run_config=RUN)
    assert [i.call_id for i in result.interruptions] == ["c-BA2"]  # stopped again on it
    assert lines(logs / "tool.log") == ["LH1"]
    (pending,) = await runtime.pending()
    assert pending.needs_human["why"] == "waiting for approval: book (call c-BA2)"
    assert [c.call_id for c in await adapter.pending_approvals("trip-5")] == ["c-BA2"]
    (decided,) = await adapter.reject("trip-5", message="not that one")
    assert (decided.call_id, decided.decision, decided.message) == (
        "c-BA2",
        "rejected",
        "not that one",
    )
    assert await adapter.approve("trip-5") == []  # nothing undecided is left
    result = await adapter.resume("trip-5", agent, run_config=RUN)
    assert result.final_output == "done: booked LH1; not that one"
    assert lines(logs / "tool.log") == ["LH1"]


async def test_approving_what_does_not_wait_is_a_clear_error(runtime: Runtime, logs: Path) -> None:
    adapter = OpenAIAgentsAdapter(runtime)
    with pytest.raises(ExecutionNotFoundError, match="'nowhere'"):
        await adapter.approve("nowhere", CALL)
    with pytest.raises(ExecutionNotFoundError, match="'nowhere'"):
        await adapter.resume("nowhere", travel_agent(adapter, logs, ["LH1"]))
    await stop(runtime, logs, ["LH1"], "trip-6")
    with pytest.raises(StepNotFoundError, match=r"no tool call 'c-XX'.*'c-LH1' \(book\)"):
        await adapter.reject("trip-6", "c-XX")
    with pytest.raises(ConfigError, match="call_id must be"):
        await adapter.approve("trip-6", 7)  # type: ignore[arg-type]
    assert (await adapter.pending_approvals("trip-6"))[0].decision is None  # nothing recorded

    # a run that never stopped for approval
    plain = travel_agent(adapter, logs, [])  # answers at once
    await adapter.run(plain, "hello", execution_id="chat", run_config=RUN)
    assert await adapter.pending_approvals("chat") == []
    with pytest.raises(StepNotFoundError, match="'chat' has no tool call waiting"):
        await adapter.approve("chat")


def test_livingai_pending_and_the_web_ui_show_what_waits(db: Path, logs: Path) -> None:
    async def stopped() -> None:
        async with opened(db) as runtime:
            await stop(runtime, logs, ["LH1"], "trip-7")

    asyncio.run(stopped())
    url = f"sqlite:///{db}"
    shown = CliRunner().invoke(cli, ["--store", url, "pending"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "trip-7" in shown.stdout
    assert WHY in shown.stdout
    as_json = CliRunner().invoke(cli, ["--store", url, "pending", "--json"])
    (row,) = json.loads(as_json.stdout)
    assert row["needs_human"]["approvals"] == [WAITING]
    with TestClient(create_app(url)) as client:
        page = client.get("/pending").text
        assert WHY in page
        assert "in doubt" not in page.split('<table id="pending">', 1)[1]
        execution = client.get("/executions/trip-7").text
        assert f"Needs a human: {WHY}." in execution
        assert "outcome never recorded" not in execution


async def test_a_streamed_run_stops_for_approval_as_a_run_does(
    runtime: Runtime, logs: Path
) -> None:
    """run_streamed on a needs_approval tool: the stream ends with the interruption, the
    run waits for a human (not finished), and an approval goes on with it."""
    adapter = OpenAIAgentsAdapter(runtime)
    agent = travel_agent(adapter, logs, ["LH1"])
    streamed = adapter.run_streamed(agent, "book my flights", execution_id="s-1", run_config=RUN)
    async for _ in streamed.stream_events():
        pass
    assert [(i.name, i.call_id) for i in streamed.interruptions] == [("book", CALL)]
    header = await runtime.engine.load("s-1/run")
    assert header is not None
    assert header.node.status is Status.RUNNING
    (pending,) = await runtime.pending()
    assert pending.needs_human == {"approvals": [WAITING], "why": WHY}
    await adapter.approve("s-1")
    result = await adapter.resume("s-1", agent, run_config=RUN)
    assert result.interruptions == []
    assert lines(logs / "tool.log") == ["LH1"]
