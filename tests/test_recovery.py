"""RecoveryEngine.plan: resume point, idempotent replays, side effects skipped."""

from __future__ import annotations

from typing import Any

import pytest

from livingai import (
    CheckpointEngine,
    ExecutionNode,
    ExecutionNotFoundError,
    NodeType,
    RecoveryEngine,
    Status,
)
from tests.conftest import StoreFactory


def node(kind: NodeType, **fields: Any) -> ExecutionNode:
    return ExecutionNode(execution_id="trip", type=kind, status=Status.SUCCESS, **fields)


async def test_plan_resumes_from_latest_checkpoint_and_skips_side_effects(
    store_factory: StoreFactory,
) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        plan_step = node(NodeType.PROMPT)
        early_tool = node(NodeType.TOOL)  # before the checkpoint: not part of the plan
        resume = node(NodeType.MEMORY)
        charge = node(NodeType.TOOL, output={"receipt": "R-1"})
        lookup = node(NodeType.TOOL, metadata={"idempotent": True})
        summary = node(NodeType.PROMPT, metadata={"idempotent": False})
        think = node(NodeType.PROMPT)
        await engine.save(plan_step, state=b"s0")
        await engine.save(early_tool)
        await engine.save(resume, state=b"s1")
        for later in (charge, lookup, summary, think):
            await engine.save(later)
        plan = await RecoveryEngine(engine).plan("trip")
        assert plan.resume_node_id == resume.id
        assert plan.state == b"s1"
        assert [n.id for n in plan.replay_nodes] == [lookup.id, think.id]
        assert [n.id for n in plan.skipped_nodes] == [charge.id, summary.id]
        assert plan.skipped_nodes[0].output == {"receipt": "R-1"}


async def test_plan_without_checkpoint_covers_every_step(store_factory: StoreFactory) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        tool = node(NodeType.TOOL)
        prompt = node(NodeType.PROMPT)
        await engine.save(tool)
        await engine.save(prompt)
        plan = await RecoveryEngine(engine).plan("trip")
        assert plan.resume_node is None
        assert plan.state is None
        assert [n.id for n in plan.replay_nodes] == [prompt.id]
        assert [n.id for n in plan.skipped_nodes] == [tool.id]


async def test_plan_of_a_missing_execution_names_it(store_factory: StoreFactory) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        with pytest.raises(ExecutionNotFoundError, match="'nowhere'"):
            await RecoveryEngine(engine).plan("nowhere")


async def test_plan_from_a_fresh_engine_reads_the_store(persistent_factory: StoreFactory) -> None:
    async with CheckpointEngine(persistent_factory()) as engine:
        first = node(NodeType.PROMPT)
        await engine.save(first, state=b"disk")
        await engine.save(node(NodeType.TOOL))
    async with CheckpointEngine(persistent_factory()) as fresh:
        plan = await RecoveryEngine(fresh).plan("trip")
        assert plan.resume_node_id == first.id
        assert plan.state == b"disk"
        assert len(plan.skipped_nodes) == 1


async def test_a_tool_finished_after_the_checkpoint_is_skipped(store_factory: StoreFactory) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        charge = node(NodeType.TOOL)
        charge.status = Status.RUNNING
        await engine.save(charge)
        checkpoint = node(NodeType.PROMPT)
        await engine.save(checkpoint, state=b"mid")
        charge.status = Status.SUCCESS
        charge.output = {"receipt": "R-9"}
        await engine.save(charge)  # first seen before the checkpoint, finished after it
        plan = await RecoveryEngine(engine).plan("trip")
        assert plan.resume_node_id == checkpoint.id
        assert [n.id for n in plan.skipped_nodes] == [charge.id]
        assert plan.skipped_nodes[0].output == {"receipt": "R-9"}


async def test_a_step_before_a_newer_checkpoint_of_an_old_node_is_not_after_it(
    store_factory: StoreFactory,
) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        thinker = node(NodeType.PROMPT)
        await engine.save(thinker, state=b"old")
        await engine.save(node(NodeType.TOOL))  # ran before the newer state was taken
        await engine.save(thinker, state=b"new")
        plan = await RecoveryEngine(engine).plan("trip")
        assert plan.resume_node_id == thinker.id
        assert plan.state == b"new"
        assert plan.skipped_nodes == []
        assert plan.replay_nodes == []


# -- each step judged by its latest version ------------------------------------------------


def tool(**fields: Any) -> ExecutionNode:
    return ExecutionNode(execution_id="trip", type=NodeType.TOOL, **fields)


async def test_tools_are_told_apart_by_how_far_they_got(store_factory: StoreFactory) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        await engine.save(node(NodeType.PROMPT), state=b"s")
        started = tool(status=Status.RUNNING)  # in doubt: it may have acted
        never = tool(status=Status.PENDING)  # queued, never started: safe to run
        failed = tool(status=Status.FAILED)  # it ran and said it failed: do not repeat
        done = tool(status=Status.SUCCESS)
        for step_node in (started, never, failed, done):
            await engine.save(step_node)
        plan = await RecoveryEngine(engine).plan("trip")
        assert [n.id for n in plan.in_doubt_nodes] == [started.id]
        assert [n.id for n in plan.replay_nodes] == [never.id]
        assert [n.id for n in plan.skipped_nodes] == [failed.id, done.id]


async def test_a_running_tool_before_a_later_checkpoint_is_still_in_doubt(
    store_factory: StoreFactory,
) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        charge = tool(status=Status.RUNNING)
        await engine.save(charge)
        await engine.save(node(NodeType.PROMPT), state=b"after the charge started")
        plan = await RecoveryEngine(engine).plan("trip")
        assert [n.id for n in plan.in_doubt_nodes] == [charge.id]
        assert plan.skipped_nodes == []


async def test_the_resume_node_is_its_latest_version_not_the_checkpointed_one(
    store_factory: StoreFactory,
) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        thinker = node(NodeType.PROMPT)
        thinker.status = Status.RUNNING
        await engine.save(thinker, state=b"mid-thought")
        thinker.status = Status.SUCCESS
        thinker.output = "done"
        await engine.save(thinker)  # it finished later, without a new state
        plan = await RecoveryEngine(engine).plan("trip")
        assert plan.resume_node is not None
        assert (plan.resume_node.status, plan.resume_node.output) == (Status.SUCCESS, "done")
        assert plan.state == b"mid-thought"
        assert plan.replay_nodes == plan.skipped_nodes == plan.in_doubt_nodes == []


async def test_replay_and_recover_drive_a_handler_over_the_replayable_steps(
    store_factory: StoreFactory,
) -> None:
    async with CheckpointEngine(store_factory()) as engine:
        await engine.save(node(NodeType.PROMPT), state=b"s")
        first, second = node(NodeType.MEMORY), node(NodeType.PROMPT)
        charge = tool(status=Status.SUCCESS)
        for step_node in (first, charge, second):
            await engine.save(step_node)
        handled: list[str] = []

        async def handler(step_node: ExecutionNode) -> str:
            handled.append(step_node.id)
            return f"redone {step_node.type}"

        recovery = RecoveryEngine(engine)
        plan = await recovery.plan("trip")
        assert await recovery.replay(plan, handler) == ["redone MEMORY", "redone PROMPT"]
        assert handled == [first.id, second.id]  # never the tool that already charged
        again = await recovery.recover("trip", handler)
        assert again.replay_nodes == plan.replay_nodes
        assert handled == [first.id, second.id, first.id, second.id]
