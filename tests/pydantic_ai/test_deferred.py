"""Deferred tool calls that survive a restart, and durable sleep: a run stopped on a call
that needs approval (or a result from elsewhere) is stored as waiting for a human; another
process approves, rejects or answers by execution id and goes on with it in the same
durable execution, the recorded model turn not asked again. A wait of the agent graph
records when it ends, so a resumed run waits only for what is left. SQLite in tmp_path,
scripted models."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

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
from livingai.adapters.pydantic_ai import LivingAIDurability
from livingai.adapters.pydantic_ai import durability as durability_module
from tests.pydantic_ai.approvals_child import travel_agent
from tests.pydantic_ai.fakes import lines
from tests.services import ROOT

WHY = "waiting for approval: book (call c-LH1)"


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
    return Runtime(CheckpointEngine(SQLiteStore(db)), worker_id="deferred-test")


@pytest.fixture
async def runtime(db: Path) -> AsyncIterator[Runtime]:
    async with opened(db) as runtime:
        yield runtime


async def stop(
    runtime: Runtime, logs: Path, execution_id: str, how: str = "requires", flights: str = "LH1"
) -> Any:
    durability = LivingAIDurability(runtime)
    agent = travel_agent(durability, logs, flights.split(","), how, deferrable=True)
    return await durability.run(agent, "book my flights", execution_id=execution_id)


def decide(db: Path, logs: Path, execution_id: str, how: str, *decision: str) -> dict[str, Any]:
    """Another process decides and goes on with the run; what it printed."""
    arguments = [str(db), str(logs), execution_id, how, "LH1", *decision]
    done = subprocess.run(
        [sys.executable, "-m", "tests.pydantic_ai.approvals_child", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return printed


async def test_a_run_stopped_for_approval_waits_for_a_human(runtime: Runtime, logs: Path) -> None:
    result = await stop(runtime, logs, "trip-1")
    assert isinstance(result.output, DeferredToolRequests)  # as Pydantic AI gives it
    assert [call.tool_call_id for call in result.output.approvals] == ["c-LH1"]
    assert lines(logs / "tool.log") == []  # not run before someone says so
    (pending,) = await runtime.pending()
    assert (pending.execution_id, pending.agent) == ("trip-1", "pydantic_ai:travel")
    waiting = {
        "tool": "book",
        "call_id": "c-LH1",
        "arguments": {"flight": "LH1"},
        "agent": "travel",
        "kind": "approval",
    }
    assert pending.needs_human == {"approvals": [waiting], "why": WHY}
    header = await runtime.engine.load("trip-1/run")
    assert header is not None
    assert header.node.status is Status.RUNNING  # unfinished, not failed
    durability = LivingAIDurability(runtime)
    (call,) = await durability.pending_approvals("trip-1")
    assert (call.call_id, call.tool, call.arguments, call.decision) == (
        "c-LH1",
        "book",
        {"flight": "LH1"},
        None,
    )
    # recovery does not go past it: nobody decided; the recorded turn is served
    (recovered,) = await runtime.recover_pending()
    assert recovered.outcome == "needs_human"
    assert isinstance(recovered.error, NeedsHumanError)
    assert recovered.error.why == WHY
    assert lines(logs / "tool.log") == []
    assert len(lines(logs / "model.log")) == 1


async def test_another_process_approves_and_the_run_finishes(db: Path, logs: Path) -> None:
    async with opened(db) as runtime:
        await stop(runtime, logs, "trip-2")
    printed = decide(db, logs, "trip-2", "requires", "approve")
    assert [(c["call_id"], c["decision"]) for c in printed["decided"]] == [("c-LH1", "approved")]
    assert printed["output"] == "done: booked LH1"
    assert lines(logs / "tool.log") == ["LH1 "]  # exactly once
    assert len(lines(logs / "model.log")) == 2  # the turn that stopped, the one after
    async with opened(db) as runtime:
        assert await runtime.pending() == []
        header = await runtime.engine.load("trip-2/run")
        assert header is not None
        assert (header.node.status, header.node.output) == (Status.SUCCESS, "done: booked LH1")
        assert "needs_human" not in header.node.metadata
        stop_node = await runtime.engine.load("trip-2/pai:approval")
        assert stop_node is not None
        assert stop_node.node.status is Status.SUCCESS  # a run went on from it
        assert stop_node.node.output["decided"] == {"c-LH1": "approved"}
        durability = LivingAIDurability(runtime)
        again = await stop(runtime, logs, "trip-2")  # finished: every call from the log
        assert again.output == "done: booked LH1"
        with pytest.raises(StepNotFoundError, match=r"'trip-2'.*finished \(SUCCESS\)"):
            await durability.approve("trip-2")
    assert lines(logs / "tool.log") == ["LH1 "]
    assert len(lines(logs / "model.log")) == 2


async def test_a_rejected_call_never_runs_and_the_model_is_told(db: Path, logs: Path) -> None:
    async with opened(db) as runtime:
        await stop(runtime, logs, "trip-3")
    printed = decide(db, logs, "trip-3", "requires", "reject", "too expensive, take a train")
    assert printed["decided"][0]["decision"] == "rejected"
    assert printed["output"] == "done: too expensive, take a train"
    assert lines(logs / "tool.log") == []


async def test_a_wrapped_tool_raising_approval_required_runs_once_when_approved(
    db: Path, logs: Path
) -> None:
    async with opened(db) as runtime:
        await stop(runtime, logs, "trip-4", how="raises")
    printed = decide(db, logs, "trip-4", "raises", "approve")
    assert printed["output"] == "done: booked LH1"
    # the call asked again, approved, under a key of its own that a resume keeps
    assert lines(logs / "tool.log") == ["LH1 trip-4/pai:1:tool:1:c-LH1:2"]
    async with opened(db) as runtime:
        again = await stop(runtime, logs, "trip-4", how="raises")
        assert again.output == "done: booked LH1"
    assert len(lines(logs / "tool.log")) == 1


async def test_a_call_left_to_someone_else_is_answered_with_its_result(
    db: Path, logs: Path
) -> None:
    async with opened(db) as runtime:
        result = await stop(runtime, logs, "trip-5", how="external")
        assert [call.tool_call_id for call in result.output.calls] == ["c-LH1"]
        (pending,) = await runtime.pending()
        assert pending.needs_human["why"] == "waiting for a decision: book (call c-LH1)"
        durability = LivingAIDurability(runtime)
        with pytest.raises(ConfigError, match="waits for a result: answer it"):
            await durability.approve("trip-5", "c-LH1")
    printed = decide(db, logs, "trip-5", "external", "answer", "booked LH1 by phone")
    assert printed["decided"][0]["result"] == "booked LH1 by phone"
    assert printed["output"] == "done: booked LH1 by phone"


async def test_without_deferred_output_the_run_raises_and_waits(
    runtime: Runtime, logs: Path
) -> None:
    durability = LivingAIDurability(runtime)
    agent = travel_agent(durability, logs, ["LH1", "BA2"], "requires", deferrable=False)
    with pytest.raises(NeedsHumanError, match="waiting for approval: book"):
        await durability.run(agent, "book my flights", execution_id="trip-6")
    assert [c.call_id for c in await durability.pending_approvals("trip-6")] == ["c-LH1", "c-BA2"]
    await durability.approve("trip-6", "c-LH1")
    # one call still undecided: the run stops again, the approved one not run before
    with pytest.raises(NeedsHumanError, match=r"book \(call c-BA2\)"):
        await durability.resume(agent, "trip-6")
    await durability.reject("trip-6", "c-BA2", message="no seats")
    result = await durability.resume(agent, "trip-6")
    assert result.output == "done: booked LH1; no seats"
    assert lines(logs / "tool.log") == ["LH1 "]
    assert len(lines(logs / "model.log")) == 2


async def test_bad_decisions_are_refused_and_nothing_is_stored(
    runtime: Runtime, logs: Path
) -> None:
    durability = LivingAIDurability(runtime)
    with pytest.raises(ExecutionNotFoundError, match="'nowhere'"):
        await durability.approve("nowhere")
    with pytest.raises(ExecutionNotFoundError, match="'nowhere'"):
        await durability.resume(
            travel_agent(durability, logs, ["LH1"], "requires", True), "nowhere"
        )
    await stop(runtime, logs, "trip-7")
    before = await runtime.engine.list_nodes("trip-7")
    with pytest.raises(StepNotFoundError, match=r"no tool call 'c-XX'.*'c-LH1' \(book\)"):
        await durability.approve("trip-7", "c-XX")
    with pytest.raises(ConfigError, match="call_id must be"):
        await durability.approve("trip-7", "")
    with pytest.raises(ConfigError, match="waits for approval: approve or reject it"):
        await durability.answer("trip-7", "c-LH1", "a result")
    assert await runtime.engine.list_nodes("trip-7") == before


# -- durable sleep -------------------------------------------------------------------------


class PollingModel(FunctionModel):
    """A model whose first response is a background job, polled after `delay` seconds."""

    def __init__(self, delay: float, log: Path) -> None:
        def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            with log.open("a") as out:
                out.write("request\n")
            if len(messages) == 1:
                return ModelResponse(parts=[], state="suspended", provider_response_id="job-1")
            return ModelResponse(parts=[TextPart("the job is done")])

        super().__init__(answer, model_name="scripted")
        self.delay = delay

    def continuation_delay(self, response: ModelResponse) -> float | None:
        return self.delay


async def test_a_durable_sleep_interrupted_waits_only_for_what_is_left(
    db: Path, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[tuple[float, float]] = []  # (seconds asked, when)
    waiting = asyncio.Event()

    async def noted(seconds: float) -> None:
        waits.append((seconds, time.time()))
        waiting.set()
        await asyncio.sleep(min(seconds, 0.01) if waits[1:] else seconds)

    monkeypatch.setattr(durability_module, "wait", noted)
    delay = 60.0  # the first process is cut in its wait: it never ends by itself
    async with opened(db) as runtime:
        durability = LivingAIDurability(runtime)
        agent = Agent(
            PollingModel(delay, logs / "model.log"), name="poller", capabilities=[durability]
        )
        started = asyncio.create_task(durability.run(agent, "poll", execution_id="sleep-1"))
        await waiting.wait()
        started.cancel()  # the process "dies" in its wait
        with pytest.raises(asyncio.CancelledError):
            await started
    async with opened(db) as runtime:
        (sleep,) = [
            n for n in await runtime.engine.list_nodes("sleep-1") if "/pai:1:sleep:" in n.id
        ]
        assert sleep.status is Status.RUNNING
        wake_at = sleep.input["wake_at"]
        assert sleep.input["seconds"] == delay
        assert wake_at == pytest.approx(waits[0][1] + delay, abs=1.0)
        durability = LivingAIDurability(runtime)
        agent = Agent(
            PollingModel(delay, logs / "model.log"), name="poller", capabilities=[durability]
        )
        result = await durability.run(agent, "poll", execution_id="sleep-1")
        assert result.output == "the job is done"
        asked, when = waits[1]
        assert asked == pytest.approx(wake_at - when, abs=0.05)  # the rest, not `delay` again
        (done,) = [n for n in await runtime.engine.list_nodes("sleep-1") if "/pai:1:sleep:" in n.id]
        assert (done.status, done.input["wake_at"]) == (Status.SUCCESS, wake_at)
    assert len(lines(logs / "model.log")) == 2  # the job's submission was not made again
