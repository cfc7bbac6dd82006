"""One line per execution: what ran, how it ended, what it cost. For listing runs (the
`livingai list` command, the replay UI) without reading their whole logs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._core.engine import CheckpointEngine
from .._core.errors import ConfigError
from .._core.model import ExecutionNode, NodeType, Status
from .layout import run_node_id, utc


@dataclass(frozen=True)
class ExecutionSummary:
    """An execution at a glance. `status` is the run's own (RUNNING while unfinished);
    for an execution that is not a run, RUNNING while a node is unfinished, else FAILED
    when one failed, else SUCCESS."""

    execution_id: str
    agent: str  # "" when the execution is not a run
    status: Status
    started_at: datetime
    ended_at: datetime | None
    steps: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    in_doubt: int  # tools started whose outcome was never recorded
    needs_human: bool
    replay_of: str | None
    forked_from: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "agent": self.agent,
            "status": self.status.value,
            "started_at": self.started_at.isoformat(),
            "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
            "steps": self.steps,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "in_doubt": self.in_doubt,
            "needs_human": self.needs_human,
            "replay_of": self.replay_of,
            "forked_from": self.forked_from,
        }


async def summaries(
    engine: CheckpointEngine,
    *,
    status: Status | str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_cost: float | None = None,
    ids: Sequence[str] | None = None,
) -> list[ExecutionSummary]:
    """Every execution (or those of `ids` that are stored: a page of a long list needs
    only its own), oldest first, filtered: by status, by agent, started in
    [since, until) (naive: UTC), costing at least `min_cost`."""
    wanted = None if status is None else _status(status)
    if ids is not None:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
    rows = await engine.usage("execution", execution_ids=ids)
    usage = {row.key: row for row in rows}
    found = []
    for execution_id in await engine.list_executions() if ids is None else ids:
        nodes = await engine.list_nodes(execution_id)
        if not nodes:
            continue
        row = usage.get(execution_id)
        one = _summary(
            execution_id,
            nodes,
            prompt_tokens=0 if row is None else row.prompt_tokens,
            completion_tokens=0 if row is None else row.completion_tokens,
            cost=0.0 if row is None else row.cost,
        )
        if (
            (wanted is None or one.status is wanted)
            and (agent is None or one.agent == agent)
            and (since is None or one.started_at >= utc(since))
            and (until is None or one.started_at < utc(until))
            and (min_cost is None or one.cost >= min_cost)
        ):
            found.append(one)
    found.sort(key=lambda one: one.started_at)
    return found


@dataclass(frozen=True)
class SummaryPage:
    """A page of executions, newest first; `cursor` asks for the next (None: none)."""

    summaries: list[ExecutionSummary]
    cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"executions": [s.to_dict() for s in self.summaries], "cursor": self.cursor}


async def page(
    engine: CheckpointEngine,
    *,
    limit: int = 50,
    cursor: str | None = None,
    status: Status | str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_cost: float | None = None,
) -> SummaryPage:
    """A page of the store's index of executions (engine.list_page: status and agent
    are a run's, filtered by the store), each summarised; `min_cost` filters within
    the page, so a page may hold fewer than `limit` and still have a next one."""
    found = await engine.list_page(
        limit=limit, cursor=cursor, status=status, agent=agent, since=since, until=until
    )
    ids = [entry.execution_id for entry in found.entries]
    summarised = {s.execution_id: s for s in await summaries(engine, ids=ids, min_cost=min_cost)}
    return SummaryPage([summarised[x] for x in ids if x in summarised], found.cursor)


def _status(status: Status | str) -> Status:
    try:
        return Status(str(status).upper())
    except ValueError:
        names = ", ".join(member.value for member in Status)
        raise ConfigError(f"status must be one of {names}; got {status!r}") from None


def _summary(
    execution_id: str,
    nodes: Sequence[ExecutionNode],
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cost: float,
) -> ExecutionSummary:
    header = next((node for node in nodes if node.id == run_node_id(execution_id)), None)
    steps = [node for node in nodes if node is not header]
    if header is not None:
        status = header.status
    elif any(node.status in (Status.PENDING, Status.RUNNING) for node in steps):
        status = Status.RUNNING
    elif any(node.status is Status.FAILED for node in steps):
        status = Status.FAILED
    else:
        status = Status.SUCCESS
    metadata = {} if header is None else header.metadata
    unfinished = status in (Status.PENDING, Status.RUNNING)
    return ExecutionSummary(
        execution_id=execution_id,
        agent=str(metadata.get("agent", "")),
        status=status,
        started_at=min(utc(node.created_at) for node in nodes),
        ended_at=None
        if unfinished
        else max(utc(node.completed_at or node.created_at) for node in nodes),
        steps=len(steps),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
        in_doubt=sum(
            1 for node in steps if node.type is NodeType.TOOL and node.status is Status.RUNNING
        ),
        needs_human=bool(metadata.get("needs_human")),
        replay_of=metadata.get("replay_of"),
        forked_from=metadata.get("forked_from"),
    )
