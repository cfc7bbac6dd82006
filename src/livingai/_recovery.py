"""RecoveryEngine: where a crashed run resumes, and which steps must not run again."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._engine import CheckpointEngine
from ._errors import ExecutionNotFoundError
from ._model import ExecutionNode


@dataclass(frozen=True)
class RecoveryPlan:
    """What to do with a crashed execution.

    Resume from `resume_node` with `state`; of the steps recorded after it,
    `replay_nodes` are idempotent and may run again, `skipped_nodes` had side effects
    (a TOOL call, unless marked idempotent) and must not.
    """

    execution_id: str
    resume_node: ExecutionNode | None
    state: bytes | None
    replay_nodes: list[ExecutionNode] = field(default_factory=list)
    skipped_nodes: list[ExecutionNode] = field(default_factory=list)

    @property
    def resume_node_id(self) -> str | None:
        return None if self.resume_node is None else self.resume_node.id


class RecoveryEngine:
    """Plans the recovery of an execution from what its engine's store holds."""

    def __init__(self, engine: CheckpointEngine) -> None:
        self.engine = engine

    async def plan(self, execution_id: str) -> RecoveryPlan:
        """Resume from the latest checkpoint; with none, every recorded step is 'after'."""
        nodes = await self.engine.list_nodes(execution_id)
        if not nodes:
            raise ExecutionNotFoundError(
                f"execution {execution_id!r} has no stored nodes in {self.engine.store!r}"
            )
        latest = await self.engine.latest(execution_id)
        after = nodes
        if latest is not None:
            ids = [node.id for node in nodes]
            after = nodes[ids.index(latest.node.id) + 1 :]
        return RecoveryPlan(
            execution_id=execution_id,
            resume_node=None if latest is None else latest.node,
            state=None if latest is None else latest.state,
            replay_nodes=[node for node in after if node.is_idempotent()],
            skipped_nodes=[node for node in after if not node.is_idempotent()],
        )
