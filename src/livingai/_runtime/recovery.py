"""RecoveryEngine: where a crashed run resumes, and which steps must not run again."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._core.engine import CheckpointEngine
from .._core.errors import CheckpointCorruptError, ExecutionNotFoundError
from .._core.model import ExecutionNode


@dataclass(frozen=True)
class RecoveryPlan:
    """What to do with a crashed execution.

    Resume from `resume_node` with `state`; of the steps recorded after it,
    `replay_nodes` are idempotent and may run again, `skipped_nodes` had side effects
    (a TOOL call, unless marked idempotent) and must not. `warnings` says, in words, what
    the plan had to work around: a version that cannot be read (listed as a FAILED
    node, never replayed), a latest checkpoint whose state is corrupt (the plan resumes
    from the previous good one).
    """

    execution_id: str
    resume_node: ExecutionNode | None
    state: bytes | None
    replay_nodes: list[ExecutionNode] = field(default_factory=list)
    skipped_nodes: list[ExecutionNode] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def resume_node_id(self) -> str | None:
        return None if self.resume_node is None else self.resume_node.id


class RecoveryEngine:
    """Plans the recovery of an execution from what its engine's store holds."""

    def __init__(self, engine: CheckpointEngine) -> None:
        self.engine = engine

    async def plan(self, execution_id: str) -> RecoveryPlan:
        """Resume from the latest checkpoint; the steps "after" it are those with a version
        saved after it (a TOOL marked RUNNING before it and SUCCESS after it counts).
        With no checkpoint every recorded step is after."""
        versions = await self.engine.versions(execution_id)
        if not versions:
            raise ExecutionNotFoundError(
                f"execution {execution_id!r} has no stored nodes in {self.engine.store!r}"
            )
        warnings = [
            f"node {v.id} cannot be read; it is taken as a step not to run again: "
            f"{v.error.message if v.error else 'corrupt'}"
            for v in versions
            if v.metadata.get("corrupt") is True
        ]
        resume: ExecutionNode | None = None
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
            resume, later = candidate, versions[index + 1 :]
            break
        latest = {version.id: version for version in versions}
        after_ids = dict.fromkeys(v.id for v in later if resume is None or v.id != resume.id)
        after = [latest[node_id] for node_id in after_ids]
        return RecoveryPlan(
            execution_id=execution_id,
            resume_node=resume,
            state=state,
            replay_nodes=[node for node in after if node.is_idempotent()],
            skipped_nodes=[node for node in after if not node.is_idempotent()],
            warnings=warnings,
        )
