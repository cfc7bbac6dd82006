"""How a run lies in the execution log, read back: its own record and its steps by
position. Runs, replays, diffs, forks and retention all read runs this way."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._core.engine import CheckpointEngine
from .._core.errors import (
    ExecutionNotFoundError,
    InvalidNodeError,
    StepFailedError,
    StepNotFoundError,
)
from .._core.model import ErrorInfo, ExecutionNode, NodeRecord, NodeType, Status


def run_node_id(execution_id: str) -> str:
    return f"{execution_id}/run"


def step_node_id(execution_id: str, position: int) -> str:
    return f"{execution_id}/{position}"


FINISHED = (Status.SUCCESS, Status.FAILED)


@dataclass(frozen=True)
class RecordedRun:
    """A run's record (`header`: the agent, its arguments, its result) and the latest
    version of each of its steps, by position."""

    execution_id: str
    header: ExecutionNode | None
    steps: dict[int, ExecutionNode]

    @property
    def agent(self) -> str:
        return "" if self.header is None else str(self.header.metadata.get("agent", ""))

    def position(self, step: int | str) -> int:
        """The position of `step`: a position, a step's node id, or a step's name (its
        first call). StepNotFoundError listing the steps when none matches."""
        if isinstance(step, int) and not isinstance(step, bool):
            if step in self.steps:
                return step
        elif isinstance(step, str):
            for position, node in sorted(self.steps.items()):
                if step in (node.id, node.metadata.get("step")):
                    return position
        shown = ", ".join(
            f"{position}: {node.metadata.get('step')!r}"
            for position, node in sorted(self.steps.items())
        )
        raise StepNotFoundError(
            f"execution {self.execution_id!r} has no step {step!r}; name one by position, "
            f"node id or name: {shown or 'it has no steps'}"
        )


async def read_run(engine: CheckpointEngine, execution_id: str) -> RecordedRun:
    """The run as recorded (`header` None when the execution is not a run, or is new)."""
    return run_of(execution_id, await engine.versions(execution_id))


def run_of(execution_id: str, versions: list[ExecutionNode]) -> RecordedRun:
    """The run that these versions (an execution's log, in order) record."""
    latest: dict[str, ExecutionNode] = {}
    for version in versions:
        latest[version.id] = version
    header = latest.pop(run_node_id(execution_id), None)
    steps: dict[int, ExecutionNode] = {}
    for node in latest.values():
        position = node.metadata.get("position")
        if isinstance(position, int) and node.id == step_node_id(execution_id, position):
            steps[position] = node
    return RecordedRun(execution_id, header, steps)


async def read_recorded_run(engine: CheckpointEngine, execution_id: str) -> RecordedRun:
    """As read_run, for a run that must exist: ExecutionNotFoundError otherwise."""
    run = await read_run(engine, execution_id)
    if run.header is None:
        raise ExecutionNotFoundError(
            f"no run {execution_id!r} is recorded in {engine.store!r}"
            + ("" if not run.steps else " (it has steps but no record of its run)")
        )
    return run


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is taken as UTC already."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_model_step(node: ExecutionNode) -> bool:
    """A step that called a model: it recorded a model name or token counts."""
    return node.model is not None or node.prompt_tokens is not None


def call_input(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A step's input as recorded: its arguments."""
    return {"args": list(args), "kwargs": kwargs}


def canonical(value: Any) -> str:
    """`value` as JSON with sorted keys, for comparing what was recorded with what is
    asked now (tuples and lists compare equal, as they do once stored)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def record_error(node: ExecutionNode, exc: BaseException) -> None:
    """Set the node FAILED with `exc`, and what it takes to raise it again on resume."""
    node.status = Status.FAILED
    node.error = ErrorInfo.from_exception(exc)
    cls = type(exc)
    args = list(exc.args)
    node.metadata = {
        **node.metadata,
        "error_class": f"{cls.__module__}:{cls.__qualname__}",
        "error_args": args if storable(args) else None,
    }


def rebuild_error(node: ExecutionNode, name: str) -> BaseException:
    """The recorded exception, rebuilt when its class is already loaded (nothing is
    imported from stored data); StepFailedError carrying its name otherwise."""
    info = node.error or ErrorInfo("Exception", "failed")
    where = str(node.metadata.get("error_class", ""))
    module, _, qualname = where.partition(":")
    cls: Any = sys.modules.get(module)
    for part in qualname.split(".") if qualname else []:
        cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        args = node.metadata.get("error_args")
        with contextlib.suppress(Exception):
            return cls(*args) if isinstance(args, list) else cls(info.message)
    return StepFailedError(
        f"{name!r} failed before with {info.type}: {info.message}", type_name=info.type
    )


def storable(value: Any) -> bool:
    """Whether every store can keep `value` as JSON."""
    try:
        NodeRecord.from_node(ExecutionNode(execution_id="-", type=NodeType.MEMORY, input=value))
    except InvalidNodeError:
        return False
    return True


# -- steps as tools show them (the command line, the web UI) -------------------------------


def step_name(node: ExecutionNode) -> str:
    """What a step is called: its name in the run (or the name a framework gave it), else
    its node id."""
    for key in ("step", "name"):
        if node.metadata.get(key) is not None:
            return str(node.metadata[key])
    return node.id


def step_kind(node: ExecutionNode) -> str:
    """step, tool, model, ... as recorded, else the node's type."""
    return str(node.metadata.get("kind") or node.type.value.lower())


def step_position(node: ExecutionNode) -> int | None:
    """Its place in its run, or None for a node that is not a step of a run."""
    position = node.metadata.get("position")
    return position if isinstance(position, int) and not isinstance(position, bool) else None


def step_agent(node: ExecutionNode) -> str | None:
    """The framework's agent that made the call (an adapter records it), if one did."""
    agent = node.metadata.get("agent")
    return agent if isinstance(agent, str) and agent else None


def human_reason(needs_human: Any) -> str:
    """Why a run waits for a person, from its record's `needs_human`: what
    Runtime.needs_human was told, or the tool left in doubt that stopped it."""
    if not isinstance(needs_human, dict):
        return "a tool is in doubt: started, its outcome never recorded; it may have acted"
    if needs_human.get("why"):
        return str(needs_human["why"])
    return (
        f"tool {needs_human.get('step')!r} (key {needs_human.get('idempotency_key')!r}) is in "
        "doubt: started, its outcome never recorded; it may have acted"
    )


def state_view(state: bytes) -> tuple[str, Any]:
    """A state as a person reads it: ("json", the parsed value) when it is JSON, ("text",
    the string) when it is UTF-8, else ("binary", None)."""
    try:
        text = state.decode("utf-8")
    except UnicodeDecodeError:
        return "binary", None
    try:
        return "json", json.loads(text)
    except ValueError:
        return "text", text


def step_tree(nodes: list[ExecutionNode]) -> list[tuple[int, ExecutionNode]]:
    """The nodes as a tree by parent, depth first, as (depth, node): children in the
    order of their position in the run, else in the order they were first saved. A node
    whose parent is missing, or in a loop of parents, is listed at the top."""
    ids = {node.id for node in nodes}
    children: dict[str | None, list[ExecutionNode]] = {}
    for node in nodes:
        parent = node.parent_id if node.parent_id in ids and node.parent_id != node.id else None
        children.setdefault(parent, []).append(node)
    first_seen = {node.id: index for index, node in enumerate(nodes)}

    def order(node: ExecutionNode) -> tuple[int, int]:
        position = step_position(node)
        return (0, first_seen[node.id]) if position is None else (1, position)

    found: list[tuple[int, ExecutionNode]] = []
    seen: set[str] = set()
    stack = [(0, node) for node in reversed(sorted(children.get(None, []), key=order))]
    while stack:  # not recursive: a chain of thousands of nodes is a fine log
        depth, node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        found.append((depth, node))
        below = sorted(children.get(node.id, []), key=order)
        stack.extend((depth + 1, child) for child in reversed(below))
    found.extend((0, node) for node in nodes if node.id not in seen)
    return found
