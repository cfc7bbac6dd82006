"""RecoveryEngine: where a crashed execution resumes, which steps may run again, which
must not, and which are in doubt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .._core.engine import CheckpointEngine
from .._core.errors import CheckpointCorruptError, ExecutionNotFoundError
from .._core.model import ExecutionNode, Status

NodeHandler = Callable[[ExecutionNode], Awaitable[Any]]


@dataclass(frozen=True)
class RecoveryPlan:
    """What to do with a crashed execution, judging each step by its latest version.

    Resume from `resume_node` (the node's latest version) with `state` (from its newest
    checkpoint). Of the steps with a version after that checkpoint, `replay_nodes` may
    run again: idempotent ones, and tools that never started (PENDING); `skipped_nodes`
    must not: tools that finished (SUCCESS or FAILED), steps marked not idempotent.
    `in_doubt_nodes` are tools whose latest version is RUNNING, wherever they are in the
    log: they started and their outcome was never recorded, so they may or may not have
    acted; decide before running them again (with their idempotency key, or by looking
    the effect up). `warnings` says, in words, what the plan had to work around: a
    version that cannot be read (listed as a FAILED node, never replayed), a checkpoint
    whose state is corrupt (the plan resumes from the previous good one).
    """

    execution_id: str
    resume_node: ExecutionNode | None
    state: bytes | None
    replay_nodes: list[ExecutionNode] = field(default_factory=list)
    skipped_nodes: list[ExecutionNode] = field(default_factory=list)
    in_doubt_nodes: list[ExecutionNode] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def resume_node_id(self) -> str | None:
        return None if self.resume_node is None else self.resume_node.id


class RecoveryEngine:
    """Plans the recovery of an execution from what its engine's store holds, and drives
    it for users who recover by hand (Runtime does all of it for durable runs)."""

    def __init__(self, engine: CheckpointEngine) -> None:
        self.engine = engine

    async def plan(self, execution_id: str) -> RecoveryPlan:
        """Resume from the latest checkpoint that reads back; the steps "after" it are
        those with a version saved after it. ExecutionNotFoundError when nothing of the
        execution is stored."""
        versions = await self.engine.versions(execution_id)
        if not versions:
            raise ExecutionNotFoundError(
                f"execution {execution_id!r} has no stored nodes in {self.engine.store!r}"
            )
        latest = {version.id: version for version in versions}  # first-seen order
        warnings = [
            f"node {v.id} cannot be read; it is taken as a step not to run again: "
            f"{v.error.message if v.error else 'corrupt'}"
            for v in latest.values()
            if v.metadata.get("corrupt") is True
        ]
        checkpoint: ExecutionNode | None = None
        state: bytes | None = None
        later = versions
        for index in reversed(range(len(versions))):
            candidate = versions[index]
            if candidate.checkpoint is None:
                continue
            try:
                state = await self.engine.decode_state(candidate)
            except CheckpointCorruptError as exc:
                warnings.append(f"{exc}; resuming from an earlier checkpoint")
                continue
            checkpoint, later = candidate, versions[index + 1 :]
            break
        in_doubt = [node for node in latest.values() if node.is_in_doubt()]
        after = [
            latest[node_id]
            for node_id in dict.fromkeys(v.id for v in later)
            if checkpoint is None or node_id != checkpoint.id
        ]
        replay, skipped = [], []
        for node in after:
            if node.is_in_doubt():
                continue
            if node.is_idempotent() or node.status is Status.PENDING:
                replay.append(node)
            else:
                skipped.append(node)
        return RecoveryPlan(
            execution_id=execution_id,
            resume_node=None if checkpoint is None else latest[checkpoint.id],
            state=state,
            replay_nodes=replay,
            skipped_nodes=skipped,
            in_doubt_nodes=in_doubt,
            warnings=warnings,
        )

    async def replay(self, plan: RecoveryPlan, handler: NodeHandler) -> list[Any]:
        """Run `handler` on each of the plan's replayable nodes, in order (never on a
        skipped or in-doubt one); their results, in that order."""
        return [await handler(node) for node in plan.replay_nodes]

    async def recover(self, execution_id: str, handler: NodeHandler) -> RecoveryPlan:
        """plan(), then replay() with `handler`; the plan it followed."""
        plan = await self.plan(execution_id)
        await self.replay(plan, handler)
        return plan
