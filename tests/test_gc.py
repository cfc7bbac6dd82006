"""Retention through Runtime.gc: old finished executions go, old state blobs are dropped,
and nothing still needed is touched (an unfinished run, a leased one, what a kept
replay or fork points at), on every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from livingai import (
    CheckpointEngine,
    ConfigError,
    ExecutionNode,
    NodeType,
    ReplayMode,
    Run,
    Runtime,
    Status,
)
from tests.conftest import StoreFactory


class Crash(BaseException):
    """A kill, seen from inside: no outcome is recorded."""


def agent_of(calls: list[str], crash: bool = False) -> Any:
    async def stepper(run: Run, name: str) -> str:
        await run.step("one", calls.append, f"{name}:one")
        if crash:
            raise Crash
        await run.tool("two", calls.append, f"{name}:two")
        return name

    return stepper


@pytest.fixture
async def runtime(store_factory: StoreFactory) -> AsyncIterator[Runtime]:
    async with Runtime(CheckpointEngine(store_factory()), worker_id="tester") as opened:
        yield opened


async def scene(runtime: Runtime) -> tuple[datetime, str]:
    """Executions of every kind gc must tell apart; the moment between the old ones and
    the new; the replay made after that moment."""
    calls: list[str] = []
    for name in ("done", "replayed", "forked", "leased"):
        await runtime.run(agent_of(calls), name, execution_id=name)
    with pytest.raises(Crash):
        await runtime.run(agent_of(calls, crash=True), "crashed", execution_id="crashed")
    fork = await runtime.fork("forked", "two")  # not run: unfinished
    assert fork != "forked"
    await runtime.engine.acquire_lease("leased", "someone-else", 60)
    cutoff = datetime.now(UTC)
    replay = await runtime.replay("replayed", ReplayMode.MOCK_TOOLS, agent=agent_of(calls))
    return cutoff, replay.execution_id


async def test_gc_deletes_old_finished_runs_and_keeps_what_is_still_needed(
    runtime: Runtime,
) -> None:
    cutoff, replay = await scene(runtime)
    everything = set(await runtime.engine.list_executions())

    dry = await runtime.gc(finished_before=cutoff, dry_run=True)
    assert dry.deleted == ["done"]
    assert dry.versions_deleted == len(await runtime.engine.versions("done"))
    assert set(await runtime.engine.list_executions()) == everything  # nothing went

    report = await runtime.gc(finished_before=cutoff)
    assert report.deleted == ["done"]
    assert report.versions_deleted == dry.versions_deleted
    assert "unfinished" in report.kept["crashed"]
    assert "lease" in report.kept["leased"]
    assert replay in report.kept["replayed"]  # the replay, newer, points at it
    fork = next(
        x
        for x in everything
        if x not in {"done", "replayed", "forked", "leased", "crashed", replay}
    )
    assert fork in report.kept["forked"]
    assert "unfinished" in report.kept[fork]
    assert set(await runtime.engine.list_executions()) == everything - {"done"}
    assert await runtime.engine.versions("done") == []
    assert await runtime.engine.load("done/run") is None
    assert "done" not in {row.key for row in await runtime.engine.usage("execution")}

    # what was kept still works: the crashed run resumes, the fork runs, the replay's
    # original replays again
    calls: list[str] = []
    assert await runtime.run(agent_of(calls), execution_id="crashed") == "crashed"
    assert await runtime.run(agent_of(calls), execution_id=fork) == "forked"
    assert calls == ["crashed:two", "forked:two"]
    again = await runtime.replay("replayed", ReplayMode.MOCK_TOOLS, agent=agent_of(calls))
    assert again.result == "replayed"


async def test_a_replay_that_goes_takes_nothing_with_it_but_its_original_may_go_then(
    runtime: Runtime,
) -> None:
    _, replay = await scene(runtime)
    report = await runtime.gc(finished_before=datetime.now(UTC))
    assert {"done", "replayed", replay} <= set(report.deleted)
    assert "forked" in report.kept  # its fork is still unfinished
    assert "crashed" in report.kept


async def test_gc_keeps_the_newest_checkpoints_of_finished_executions_only(
    runtime: Runtime,
) -> None:
    engine = runtime.engine
    for execution_id, status in (("finished", Status.SUCCESS), ("running", Status.RUNNING)):
        for version in range(5):
            node = ExecutionNode(
                id=f"{execution_id}/agent",
                execution_id=execution_id,
                type=NodeType.MEMORY,
                status=status if version == 4 else Status.RUNNING,
            )
            await engine.save(node, f"state {version}".encode(), durable=True)

    dry = await runtime.gc(keep_checkpoints=2, dry_run=True)
    assert dry.checkpoints_dropped == 3
    report = await runtime.gc(keep_checkpoints=2)
    assert report.checkpoints_dropped == 3
    assert report.deleted == []
    blobs = [v.checkpoint is not None for v in await engine.versions("finished")]
    assert blobs == [False, False, False, True, True]
    latest = await engine.latest("finished")
    assert latest is not None
    assert latest.state == b"state 4"
    assert all(v.checkpoint is not None for v in await engine.versions("running"))
    assert (await runtime.gc(keep_checkpoints=2)).checkpoints_dropped == 0


async def test_gc_refuses_unclear_requests(runtime: Runtime) -> None:
    with pytest.raises(ConfigError, match="keep_checkpoints, finished_before, or both"):
        await runtime.gc()
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        await runtime.gc(keep_checkpoints=-1)
    with pytest.raises(ConfigError, match="finished_before must be a datetime"):
        await runtime.gc(finished_before="2026-01-01")  # type: ignore[arg-type]
