"""What the pages and the JSON API show, read through the public API: pages of the
executions list, one execution as a tree with its timeline, states, diffs, costs and
pending runs. Plain dicts and lists, JSON as they are, so the API serves them and the
templates render them (escaped) alike."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import Query

from livingai import (
    CheckpointCorruptError,
    ExecutionNode,
    ExecutionNotFoundError,
    ExecutionSummary,
    NodeType,
    Runtime,
    Status,
    UsageRow,
    state_view,
    step_agent,
    step_name,
    step_position,
    step_tree,
)

PAGE_SIZE = 50
SCAN_SECONDS = 0.8  # a filtered page shows what it found by then, and says so
SCAN_CHUNK = 200  # executions summarised at a time while a filter looks for matches
AGENT_SCAN_SECONDS = 2.0  # costs by agent: how long to look up executions' agents
NOT_SCANNED = "(agent not looked up in time)"  # what the rest of the costs are summed under
RELATED_SECONDS = 0.5  # looking for an execution's replays and forks
MAX_DEPTH = 8  # deeper nodes (a chain of parents) are drawn at this depth
PREVIEW_BYTES = 4096  # of a binary state, shown in base64


class BadInput(ValueError):
    """A query or form value that cannot be used; the message names it."""


STATUSES = [member.value for member in Status] + [member.value.lower() for member in Status]
StatusText = Literal[
    "", "PENDING", "RUNNING", "SUCCESS", "FAILED", "pending", "running", "success", "failed"
]
NO_NUL = "^[^\\x00]*$"  # text a store can hold (PostgreSQL's cannot hold NUL)


# -- filters and pages of the executions list ------------------------------------------------

# What a time filter takes, as the API's schema says it (MOMENT_SCHEMA): nothing (blank),
# an age before now, an RFC 3339 date, or an RFC 3339 date-time ("T" or a space).
_AGE = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]+)?)(?P<unit>[smhdw])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
AGE_PATTERN = f"^{_AGE.pattern}$"
MOMENT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*$"},
        {"type": "string", "pattern": AGE_PATTERN},
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time"},
    ],
    "description": "blank (no filter), an age before now (30m, 12h, 7d, 2w), or an RFC "
    "3339 date or date-time (UTC when it has no offset)",
}
COST_PATTERN = r"^(\s*|[0-9]{1,12}(\.[0-9]{1,12})?)$"


def moment(name: str, text: str | None) -> datetime | None:
    """A time filter's value (see MOMENT_SCHEMA); BadInput naming `name` otherwise."""
    if text is None or not text.strip():
        return None
    age = _AGE.fullmatch(text)
    if age is not None:
        now = datetime.now(UTC)
        seconds = float(age["amount"]) * _SECONDS[age["unit"]]
        if seconds >= (now - _FIRST).total_seconds():
            return _FIRST  # older than any time
        return now - timedelta(seconds=seconds)
    try:
        if _DATE.fullmatch(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        if _DATE_TIME.fullmatch(text):
            found = datetime.fromisoformat(text.upper().replace(":60", ":59", 1))
            try:
                return found.astimezone(UTC)
            except OverflowError:  # within a day of the first or the last time there is
                return _FIRST if found.year == 1 else _LAST
    except ValueError:
        pass
    raise BadInput(
        f"{name}: {text!r} is not a time; write an RFC 3339 date or date-time (2026-01-31, "
        "2026-01-31T09:30:00Z) or an age before now (30m, 12h, 7d, 2w)"
    )


def blank(text: str | None) -> str | None:
    """A form's empty field is no filter at all."""
    return None if text is None or not text.strip() else text


@dataclass
class ListQuery:
    """The executions list's query string, which the page and the API take alike."""

    status: Annotated[
        StatusText | None, Query(description="only runs with this status ('': any)")
    ] = None
    agent: Annotated[
        str | None, Query(pattern=NO_NUL, description="only runs of this agent ('': any)")
    ] = None
    since: Annotated[str | None, Query(json_schema_extra=MOMENT_SCHEMA)] = None
    until: Annotated[str | None, Query(json_schema_extra=MOMENT_SCHEMA)] = None
    min_cost: Annotated[
        str | None,
        Query(pattern=COST_PATTERN, description="only executions costing this many dollars"),
    ] = None
    q: Annotated[
        str | None, Query(pattern=NO_NUL, description="only executions whose id holds this")
    ] = None
    cursor: Annotated[
        str | None,
        Query(pattern=NO_NUL, description="where the page starts: the `next` link's cursor"),
    ] = None

    def given(self) -> dict[str, str | None]:
        """The filters as typed, for Filters.of and to show in the form again."""
        return {
            "status": self.status,
            "agent": self.agent,
            "since": self.since,
            "until": self.until,
            "min_cost": self.min_cost,
            "q": self.q,
        }


@dataclass(frozen=True)
class Filters:
    """The filters of the executions list, as given in the query string."""

    status: str | None = None
    agent: str | None = None
    since: str | None = None
    until: str | None = None
    min_cost: str | None = None
    q: str | None = None

    @classmethod
    def of(cls, **given: str | None) -> Filters:
        filters = cls(**{name: blank(value) for name, value in given.items()})
        filters.check()
        return filters

    def check(self) -> None:
        """BadInput naming the first filter that cannot be used."""
        if self.status is not None and self.status not in STATUSES:
            names = ", ".join(member.value for member in Status)
            raise BadInput(
                f"status: must be one of {names} (or in lower case); got {self.status!r}"
            )
        moment("since", self.since)
        moment("until", self.until)
        self.cost()

    def cost(self) -> float | None:
        if self.min_cost is None:
            return None
        if not re.fullmatch(COST_PATTERN, self.min_cost):
            raise BadInput(
                f"min_cost: must be a number of dollars, 0 or more (as 0.5); got {self.min_cost!r}"
            )
        return float(self.min_cost)

    def query(self) -> dict[str, str]:
        return {
            name: value
            for name, value in (
                ("status", self.status),
                ("agent", self.agent),
                ("since", self.since),
                ("until", self.until),
                ("min_cost", self.min_cost),
                ("q", self.q),
            )
            if value is not None
        }

    def link(self, path: str, **cursor: str) -> str:
        query = urlencode({**self.query(), **cursor})
        return f"{path}?{query}" if query else path

    @property
    def looks(self) -> bool:
        """Whether a filter is applied here, to the summaries of the store's pages (the
        store filters by status, agent and time itself)."""
        return self.q is not None or self.min_cost is not None


@dataclass(frozen=True)
class Page:
    """One page of the executions list, newest first: (cursor, summary) pairs, the
    cursor being the one of the page after that execution. `next` is the cursor of the
    next (older) page, `first` whether this is the newest page; `stopped` says a filter
    looked for matches until its time ran out, at `scanned` executions."""

    items: list[tuple[str, ExecutionSummary]]
    next: str | None
    first: bool
    stopped: bool
    scanned: int

    def to_dict(self, filters: Filters, path: str) -> dict[str, Any]:
        return {
            "items": [summary_dict(summary) for _, summary in self.items],
            "next": None if self.next is None else filters.link(path, cursor=self.next),
            "newest": None if self.first else filters.link(path),
            "stopped": self.stopped,
            "scanned": self.scanned,
        }


async def page(
    runtime: Runtime,
    filters: Filters,
    *,
    cursor: str | None = None,
    size: int = PAGE_SIZE,
    seconds: float = SCAN_SECONDS,
) -> Page:
    """A page of executions, newest first, from the store's index (which filters by
    status, agent and time): the page's own executions are summarised, and no more. A
    part of the id (q) or a minimum cost is looked for a chunk of the index at a time,
    walking older, until the page is full or `seconds` pass."""
    deadline = time.monotonic() + seconds
    found: list[tuple[str, ExecutionSummary]] = []
    scanned = 0
    at = cursor
    while True:
        chunk = await runtime.engine.list_page(
            limit=SCAN_CHUNK if filters.looks else size + 1 - len(found),
            cursor=at,
            status=filters.status,
            agent=filters.agent,
            since=moment("since", filters.since),
            until=moment("until", filters.until),
        )
        scanned += len(chunk.entries)
        needle = None if filters.q is None else filters.q.lower()
        entries = [e for e in chunk.entries if needle is None or needle in e.execution_id.lower()]
        summaries = {
            s.execution_id: s
            for s in await runtime.executions(
                ids=[e.execution_id for e in entries], min_cost=filters.cost()
            )
        }
        for entry in entries:
            summary = summaries.get(entry.execution_id)
            if summary is not None:
                found.append((entry.cursor, summary))
            if len(found) > size:  # one more than the page: another page follows
                return Page(found[:size], found[size - 1][0], cursor is None, False, scanned)
        if chunk.cursor is None:
            return Page(found, None, cursor is None, False, scanned)
        at = chunk.cursor
        if filters.looks and time.monotonic() > deadline:  # say so; go on from here later
            return Page(found, at, cursor is None, True, scanned)


def summary_dict(summary: ExecutionSummary) -> dict[str, Any]:
    return summary.to_dict()


# -- one execution --------------------------------------------------------------------------


def run_node_of(execution_id: str) -> str:
    """The node that records a run itself (its agent, arguments and result)."""
    return f"{execution_id}/run"


def node_path(execution_id: str, node_id: str) -> str:
    """The API path of a node's decoded state."""
    return f"/api/executions/{quote(execution_id, safe='')}/nodes/{quote(node_id, safe='')}/state"


def execution_path(execution_id: str) -> str:
    return f"/executions/{quote(execution_id, safe='')}"


def node_dict(node: ExecutionNode, depth: int, has_state: bool) -> dict[str, Any]:
    """A node as the page and the API show it."""
    error = None
    if node.error is not None:
        error = {
            "type": node.error.type,
            "message": node.error.message,
            "traceback": node.error.traceback,
        }
    return {
        "id": node.id,
        "parent_id": node.parent_id,
        "depth": depth,
        "name": step_name(node),
        "position": step_position(node),
        "kind": str(node.metadata.get("kind") or node.type.value.lower()),
        "type": node.type.value,
        "status": node.status.value,
        "side_effect": node.type is NodeType.TOOL,
        "agent": step_agent(node),
        "in_doubt": node.is_in_doubt(),
        "flags": [
            label
            for key, label in (
                ("mocked", "mocked"),
                ("counterfactual", "counterfactual"),
                ("copied_from", "copied"),
            )
            if node.metadata.get(key)
        ],
        "created_at": node.created_at.isoformat(),
        "completed_at": None if node.completed_at is None else node.completed_at.isoformat(),
        "input": node.input,
        "output": node.output,
        "error": error,
        "model": node.model,
        "prompt_tokens": node.prompt_tokens,
        "completion_tokens": node.completion_tokens,
        "cost": node.cost,
        "latency_ms": node.latency_ms,
        "metadata": node.metadata,
        "state_url": node_path(node.execution_id, node.id) if has_state else None,
    }


def nested(steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Depth-first node dicts as a tree (`children`), at most MAX_DEPTH deep: the
    template draws nested lists from it."""
    roots: list[dict[str, Any]] = []
    open_at: list[dict[str, Any]] = []  # the last node drawn at each depth
    for step in steps:
        depth = min(step["depth"], MAX_DEPTH, len(open_at))
        item = {**step, "children": []}
        del open_at[depth:]
        (open_at[-1]["children"] if open_at else roots).append(item)
        open_at.append(item)
    return roots


def timeline(steps: Sequence[dict[str, Any]], width: float = 1000.0) -> dict[str, Any]:
    """One bar per step, placed by when it started and as long as it took (its latency
    when it has no end), on a scale of `width` units."""
    if not steps:
        return {"bars": [], "width": width, "span_ms": 0.0}

    def start(step: Mapping[str, Any]) -> float:
        return datetime.fromisoformat(step["created_at"]).timestamp() * 1000

    def end(step: Mapping[str, Any]) -> float:
        if step["completed_at"] is not None:
            return datetime.fromisoformat(step["completed_at"]).timestamp() * 1000
        if step["latency_ms"] is not None:
            return start(step) + float(step["latency_ms"])
        return start(step)

    origin = min(start(step) for step in steps)
    span = max(max(end(step) for step in steps) - origin, 1.0)
    bars = []
    for row, step in enumerate(steps):
        took = max(end(step) - start(step), 0.0)
        x = (start(step) - origin) / span * width
        bars.append(
            {
                "row": row,
                "id": step["id"],
                "name": step["name"],
                "status": step["status"],
                "x": round(x, 2),
                "width": round(max(took / span * width, 2.0), 2),
                "ms": round(took, 3),
            }
        )
    return {"bars": bars, "width": width, "span_ms": round(span, 3)}


async def execution(runtime: Runtime, execution_id: str) -> dict[str, Any]:
    """An execution: its summary, the run's own record, its nodes as a depth-first
    list, and how many versions its log holds (where live updates start)."""
    versions = await runtime.engine.versions(execution_id)
    if not versions:
        raise ExecutionNotFoundError(f"no execution {execution_id!r} is stored")
    latest: dict[str, ExecutionNode] = {}
    checkpointed: set[str] = set()
    for version in versions:
        latest[version.id] = version
        if version.checkpoint is not None:
            checkpointed.add(version.id)
    found = await runtime.executions(ids=[execution_id])
    summary = found[0] if found else None
    header = latest.get(run_node_of(execution_id))
    run = None
    if header is not None:
        run = {
            "agent": header.metadata.get("agent"),
            "status": header.status.value,
            "input": header.input,
            "result": header.output,
            "error": node_dict(header, 0, False)["error"],
            "needs_human": header.metadata.get("needs_human"),
            "replay_of": header.metadata.get("replay_of"),
            "replay": header.metadata.get("replay"),
            "forked_from": header.metadata.get("forked_from"),
            "fork_step": header.metadata.get("fork_step"),
            "state_url": node_path(execution_id, header.id) if header.id in checkpointed else None,
        }
    nodes = [node for node in latest.values() if node is not header]
    drawn = [node_dict(node, depth, node.id in checkpointed) for depth, node in step_tree(nodes)]
    if header is not None:  # the status of the versions read above, as the run shown
        status = header.status.value
    else:
        status = summary.status.value if summary is not None else Status.RUNNING.value
    return {
        "execution_id": execution_id,
        "summary": None if summary is None else summary_dict(summary),
        "status": status,
        "finished": status in (Status.SUCCESS.value, Status.FAILED.value),
        "run": run,
        "nodes": drawn,
        "versions": len(versions),
    }


async def related(
    runtime: Runtime, execution_id: str, seconds: float = RELATED_SECONDS
) -> dict[str, Any]:
    """The replays and forks of an execution: found among the executions stored after
    it (they are newer), newest first, for at most `seconds`."""
    ids = await runtime.engine.list_executions()
    try:
        start = ids.index(execution_id)
    except ValueError:
        return {"replays": [], "forks": [], "complete": True}
    deadline = time.monotonic() + seconds
    replays: list[str] = []
    forks: list[str] = []
    complete = True
    later = ids[start + 1 :][::-1]
    for first in range(0, len(later), SCAN_CHUNK):
        for summary in await runtime.executions(ids=later[first : first + SCAN_CHUNK]):
            if summary.replay_of == execution_id:
                replays.append(summary.execution_id)
            if summary.forked_from == execution_id:
                forks.append(summary.execution_id)
        if time.monotonic() > deadline and first + SCAN_CHUNK < len(later):
            complete = False
            break
    return {"replays": replays, "forks": forks, "complete": complete}


async def state(runtime: Runtime, execution_id: str, node_id: str) -> dict[str, Any]:
    """A node's newest state, decoded: JSON when it is JSON, else text when it is UTF-8,
    else its size and (the start of) its bytes in base64."""
    try:
        loaded = await runtime.engine.load(node_id)
    except CheckpointCorruptError as exc:
        return {"node_id": node_id, "kind": "corrupt", "error": str(exc)}
    if loaded is None or loaded.node.execution_id != execution_id:
        raise ExecutionNotFoundError(f"execution {execution_id!r} has no node {node_id!r}")
    blob = loaded.state
    if blob is None:
        return {"node_id": node_id, "kind": "none", "bytes": 0}
    described: dict[str, Any] = {"node_id": node_id, "bytes": len(blob)}
    kind, value = state_view(blob)
    if kind == "binary":
        described.update(
            kind=kind,
            base64=base64.b64encode(blob[:PREVIEW_BYTES]).decode("ascii"),
            truncated=len(blob) > PREVIEW_BYTES,
        )
    else:
        described.update(kind=kind, value=value)
    return described


# -- diff, costs, pending ------------------------------------------------------------------


async def diff(runtime: Runtime, a: str, b: str) -> dict[str, Any]:
    compared = await runtime.diff(a, b)
    shown = compared.to_dict()
    shown["identical"] = compared.identical
    return shown


COST_GROUPS = ("day", "model", "agent")


def usage_dict(row: UsageRow) -> dict[str, Any]:
    return {
        "key": row.key,
        "calls": row.calls,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost": round(row.cost, 9),
    }


async def costs(
    runtime: Runtime, by: str, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """Tokens and dollars of model calls, grouped by day (UTC), model or agent. By
    agent, the sums of each execution are added up under the agent that ran it."""
    if by not in COST_GROUPS:
        raise BadInput(f"by: must be one of {', '.join(COST_GROUPS)}; got {by!r}")
    engine = runtime.engine
    if by != "agent":
        rows = await engine.usage("day" if by == "day" else "model", since=since, until=until)
        return [usage_dict(row) for row in sorted(rows, key=lambda row: row.key)]
    per_execution = await engine.usage("execution", since=since, until=until)
    agents: dict[str, str] = {}
    ids = [row.key for row in reversed(per_execution)]  # the newest first
    deadline = time.monotonic() + AGENT_SCAN_SECONDS
    for first in range(0, len(ids), SCAN_CHUNK):
        if time.monotonic() >= deadline:  # a big store: the rest are summed apart, unnamed
            break
        for summary in await runtime.executions(ids=ids[first : first + SCAN_CHUNK]):
            agents[summary.execution_id] = summary.agent or "(not a run)"
    sums: dict[str, UsageRow] = {}
    for row in per_execution:
        agent = agents.get(row.key, NOT_SCANNED)
        mine = UsageRow(agent, row.calls, row.prompt_tokens, row.completion_tokens, row.cost)
        sums[agent] = sums[agent] + mine if agent in sums else mine
    return [usage_dict(row) for _, row in sorted(sums.items())]


def chart(rows: Sequence[Mapping[str, Any]], width: int = 800, height: int = 200) -> dict[str, Any]:
    """A bar per row (cost by day), scaled to the most expensive, drawn as SVG by the
    template: no script, no style attribute."""
    top = max((float(row["cost"]) for row in rows), default=0.0)
    slot = width / max(len(rows), 1)
    bars = []
    for index, row in enumerate(rows):
        tall = 0.0 if top <= 0 else float(row["cost"]) / top * (height - 20)
        bars.append(
            {
                "key": row["key"],
                "cost": row["cost"],
                "x": round(index * slot + slot * 0.1, 2),
                "y": round(height - 20 - tall, 2),
                "width": round(min(max(slot * 0.8, 1.0), 60.0), 2),
                "height": round(tall, 2),
            }
        )
    return {"bars": bars, "width": width, "height": height, "top": top}


async def pending(runtime: Runtime, registered: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {**run.to_dict(), "registered": run.agent in registered} for run in await runtime.pending()
    ]


def pretty(value: Any) -> str:
    """A JSON value as indented text, for a <pre> (escaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.6f}"


def millis(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:,.2f} s" if value >= 1000 else f"{value:,.1f} ms"
