"""Retention: a log that only grows fills its disk, so old executions go and old state
blobs are dropped, on request, without breaking anything still needed.

Never touched: an unfinished execution (it may still be recovered), one whose lease is
live (a worker runs it), and one that a kept replay or fork points at (`replay_of`,
`forked_from`), however old. Deleting is the one exception to the append-only log (see
RetentionStore).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._core.engine import CheckpointEngine
from .._core.errors import ConfigError, check_setting
from .._core.model import ExecutionNode, Status
from .layout import FINISHED, run_of, utc

logger = logging.getLogger("livingai")

LINKS = ("replay_of", "forked_from")


@dataclass(frozen=True)
class GcReport:
    """What gc() deleted (or, with dry_run, would delete), and what it kept and why."""

    deleted: list[str] = field(default_factory=list)  # executions
    versions_deleted: int = 0
    checkpoints_dropped: int = 0
    kept: dict[str, str] = field(default_factory=dict)  # execution -> why it was not touched
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Seen:
    """What gc needs to know of one execution."""

    execution_id: str
    finished: bool
    ended_at: datetime
    links: list[str]
    versions: list[ExecutionNode]


async def collect(
    engine: CheckpointEngine,
    *,
    keep_checkpoints: int | None = None,
    finished_before: datetime | None = None,
    dry_run: bool = False,
) -> GcReport:
    """Delete the finished executions that ended before `finished_before`, and drop the
    state blobs of all but the newest `keep_checkpoints` checkpointed versions of each
    execution left; the executions named in the module docstring are kept whole."""
    if keep_checkpoints is None and finished_before is None:
        raise ConfigError("gc needs keep_checkpoints, finished_before, or both")
    if keep_checkpoints is not None:
        check_setting("keep_checkpoints", keep_checkpoints, minimum=0, whole=True)
    if finished_before is not None and not isinstance(finished_before, datetime):
        raise ConfigError(f"finished_before must be a datetime; got {finished_before!r}")
    cutoff = None if finished_before is None else utc(finished_before)
    await engine.flush()
    leased = {lease.execution_id for lease in await engine.leases()}
    seen = [await _see(engine, x) for x in await engine.list_executions()]
    kept: dict[str, str] = {}
    for one in seen:
        if one.execution_id in leased:
            kept[one.execution_id] = "a worker holds its lease"
        elif not one.finished:
            kept[one.execution_id] = "unfinished: it may still be recovered"
    doomed = {
        one.execution_id
        for one in seen
        if cutoff is not None and one.execution_id not in kept and one.ended_at < cutoff
    }
    by_id = {one.execution_id: one for one in seen}
    changed = True
    while changed:  # what a kept execution points at is kept, and so on down the chain
        changed = False
        for one in seen:
            if one.execution_id in doomed:
                continue
            for target in one.links:
                if target in by_id and target not in kept:
                    kept[target] = f"{one.execution_id!r} (a replay or fork) points at it"
                    doomed.discard(target)
                    changed = True
    deleted = [one.execution_id for one in seen if one.execution_id in doomed]
    versions_deleted = sum(len(by_id[x].versions) for x in deleted)
    dropped = 0
    if keep_checkpoints is not None:
        for one in seen:
            if one.execution_id in doomed or one.execution_id in kept:
                continue
            checkpointed = sum(1 for v in one.versions if v.checkpoint is not None)
            extra = max(0, checkpointed - keep_checkpoints)
            if extra and not dry_run:
                extra = await engine.drop_checkpoints(one.execution_id, keep_checkpoints)
            dropped += extra
    if deleted and not dry_run:
        versions_deleted = await engine.delete_executions(deleted)
        logger.info("gc deleted %d executions (%d versions)", len(deleted), versions_deleted)
    return GcReport(deleted, versions_deleted, dropped, kept, dry_run)


async def _see(engine: CheckpointEngine, execution_id: str) -> _Seen:
    versions = await engine.versions(execution_id)
    run = run_of(execution_id, versions)
    latest = {node.id: node for node in versions}.values()
    if run.header is not None:
        finished = run.header.status in FINISHED
        links = [str(run.header.metadata[k]) for k in LINKS if run.header.metadata.get(k)]
    else:
        finished = all(node.status not in (Status.PENDING, Status.RUNNING) for node in latest)
        links = []
    ended = max((node.completed_at or node.created_at for node in latest), default=None)
    return _Seen(execution_id, finished, utc(ended or datetime.now(UTC)), links, versions)
