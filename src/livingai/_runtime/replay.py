"""Replay of recorded executions, to debug them: no API key and no live system needed,
the recording is enough.

Four modes. FULL runs everything again for real. FROM_NODE serves the recorded outputs
before a step and runs it and what follows for real. MOCK_TOOLS serves every tool's
recorded result and runs everything else again. COUNTERFACTUAL asks "what if": a
tool's result, or a step's input, is replaced; what comes before it is served from the
recording, what follows runs again, with its tools served from the recording where the
recording has the call.

Two ways in. `Runtime.replay` runs the agent's code (the recorded version or a new one)
against the recording, step by step (see ReplayScript). `ReplaySession` walks any
execution's nodes through a handler, node by node. Either way the replay is recorded as
a new execution linked to the original (`replay_of`); the original is never changed.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .._core.engine import CheckpointEngine
from .._core.errors import (
    CheckpointCorruptError,
    ConfigError,
    ExecutionNotFoundError,
    ReplayDivergedError,
    StepNotFoundError,
)
from .._core.model import (
    ErrorInfo,
    ExecutionNode,
    NodeRecord,
    NodeType,
    Status,
    corrupt_node,
    new_id,
    utcnow,
)
from .._core.store import CheckpointStore
from .layout import (
    FINISHED,
    RecordedRun,
    call_input,
    canonical,
    is_model_step,
    run_node_id,
    storable,
)


class ReplayMode(StrEnum):
    FULL = "FULL"  # everything runs again, for real: tools too
    FROM_NODE = "FROM_NODE"  # recorded before the step, for real from it on
    MOCK_TOOLS = "MOCK_TOOLS"  # tools served from the recording, the rest runs again
    COUNTERFACTUAL = "COUNTERFACTUAL"  # one result or input replaced: "what if"


def replay_mode(mode: ReplayMode | str) -> ReplayMode:
    """`mode`, also given by name in any case ("mock_tools")."""
    if isinstance(mode, ReplayMode):
        return mode
    if isinstance(mode, str) and mode.upper() in ReplayMode.__members__:
        return ReplayMode[mode.upper()]
    raise ConfigError(f"mode must be one of {', '.join(ReplayMode.__members__)}; got {mode!r}")


def check_arguments(
    mode: ReplayMode, from_step: object, counterfactual: object, real_tools: bool
) -> None:
    """ConfigError when a mode lacks its argument or is given another mode's."""
    if (mode is ReplayMode.FROM_NODE) != (from_step is not None):
        raise ConfigError(
            "FROM_NODE replays from a step: pass from_step (a position, node id or name)"
            if mode is ReplayMode.FROM_NODE
            else f"from_step is for FROM_NODE replays, not {mode.value}"
        )
    if (mode is ReplayMode.COUNTERFACTUAL) != (counterfactual is not None):
        raise ConfigError(
            "COUNTERFACTUAL replays change one step: pass counterfactual=(step, value)"
            if mode is ReplayMode.COUNTERFACTUAL
            else f"counterfactual is for COUNTERFACTUAL replays, not {mode.value}"
        )
    if real_tools and mode is not ReplayMode.COUNTERFACTUAL:
        raise ConfigError(
            f"real_tools is for COUNTERFACTUAL replays; {mode.value} "
            + (
                "never calls a real tool"
                if mode is ReplayMode.MOCK_TOOLS
                else "decides which tools run by itself"
            )
        )


def split_counterfactual(counterfactual: object) -> tuple[Any, Any]:
    """(step, value) out of `counterfactual`, or ConfigError."""
    if not isinstance(counterfactual, tuple | list) or len(counterfactual) != 2:
        raise ConfigError(
            "counterfactual must be a pair (step, value): the step by position, node id "
            f"or name, and its new result (a tool) or input (a step); got {counterfactual!r}"
        )
    step, value = counterfactual
    if not storable(value):
        raise ConfigError(f"the counterfactual value must be JSON, as steps are; got {value!r}")
    return step, value


# -- replaying an agent's code ---------------------------------------------------------


@dataclass(frozen=True)
class Serve:
    """Answer the call without running it: with what `recorded` returned (or raised),
    or with `output` when the call is the counterfactual one."""

    recorded: ExecutionNode
    output: Any
    counterfactual: bool = False


@dataclass(frozen=True)
class Execute:
    """Run the call, with these arguments (the counterfactual's, for the replaced step)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    counterfactual: bool = False


class ReplayScript:
    """Decides, call by call, whether a replayed agent's step or tool runs or is served
    from the recording (see the module docstring). Calls are matched to the recording
    by position and name; a tool is only served for the same arguments, and with
    `mock_llm` a model step too. A call the recording cannot serve when it must raises
    ReplayDivergedError, and the first one is kept in `diverged`, so that an agent that
    catches it does not hide it."""

    def __init__(
        self,
        original: RecordedRun,
        mode: ReplayMode,
        *,
        pivot: int | None = None,
        value: Any = None,
        mock_llm: bool = False,
        real_tools: bool = False,
    ) -> None:
        self.original = original
        self.mode = mode
        self.pivot = pivot  # the FROM_NODE step, or the COUNTERFACTUAL one
        self.value = value
        self.mock_llm = mock_llm
        self.real_tools = real_tools
        self.model_steps = {
            str(node.metadata.get("step"))
            for node in original.steps.values()
            if is_model_step(node)
        }
        self.diverged: ReplayDivergedError | None = None

    @classmethod
    def plan(
        cls,
        original: RecordedRun,
        mode: ReplayMode | str,
        *,
        from_step: int | str | None = None,
        counterfactual: tuple[int | str, Any] | None = None,
        mock_llm: bool = False,
        real_tools: bool = False,
    ) -> ReplayScript:
        """The script of a replay of `original`, its arguments checked."""
        mode = replay_mode(mode)
        check_arguments(mode, from_step, counterfactual, real_tools)
        pivot, value = None, None
        if from_step is not None:
            pivot = original.position(from_step)
        if counterfactual is not None:
            step, value = split_counterfactual(counterfactual)
            pivot = original.position(step)
        return cls(
            original, mode, pivot=pivot, value=value, mock_llm=mock_llm, real_tools=real_tools
        )

    def settings(self) -> dict[str, Any]:
        """What the replay's own record keeps of it: enough to resume it after a crash."""
        return {
            "mode": self.mode.value,
            "step": self.pivot,
            "value": self.value,
            "mock_llm": self.mock_llm,
            "real_tools": self.real_tools,
        }

    @classmethod
    def from_settings(cls, original: RecordedRun, settings: dict[str, Any]) -> ReplayScript:
        return cls(
            original,
            replay_mode(settings["mode"]),
            pivot=settings.get("step"),
            value=settings.get("value"),
            mock_llm=bool(settings.get("mock_llm")),
            real_tools=bool(settings.get("real_tools")),
        )

    def decide(
        self,
        kind: str,
        position: int,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Serve | Execute:
        try:
            return self._decide(kind, position, name, args, kwargs)
        except ReplayDivergedError as exc:
            if self.diverged is None:
                self.diverged = exc
            raise

    def _decide(
        self,
        kind: str,
        position: int,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Serve | Execute:
        recorded = self.original.steps.get(position)
        same = recorded is not None and (
            recorded.metadata.get("kind"),
            recorded.metadata.get("step"),
        ) == (kind, name)
        if self.pivot is not None and position <= self.pivot:
            if not same or recorded is None:
                raise self._diverged(
                    kind, position, name, args, kwargs, "the recording has another call there"
                )
            if position < self.pivot:
                return self._serve(recorded)
            if self.mode is ReplayMode.FROM_NODE:
                return Execute(args, kwargs)
            if kind == "tool":  # the counterfactual result
                return Serve(recorded, self.value, counterfactual=True)
            new_args, new_kwargs = counterfactual_input(self.value, args, kwargs)
            return Execute(new_args, new_kwargs, counterfactual=True)
        if self.mock_llm and kind == "step" and name in self.model_steps:
            if not same or recorded is None or not is_model_step(recorded):
                raise self._diverged(
                    kind, position, name, args, kwargs, "the recording has no such model call"
                )
            if canonical(call_input(args, kwargs)) != canonical(recorded.input):
                raise ReplayDivergedError(
                    f"replay of {self.original.execution_id!r}: model step {name!r} at "
                    f"position {position} asks something else than the recording (with "
                    "mock_llm=True only the recorded requests have answers):\n"
                    + _difference(recorded.input, call_input(args, kwargs))
                )
            return self._serve(recorded)
        mocks_tools = self.mode is ReplayMode.MOCK_TOOLS or (
            self.mode is ReplayMode.COUNTERFACTUAL and self.pivot is not None
        )
        if kind == "tool" and mocks_tools:
            if (
                same
                and recorded is not None
                and canonical(call_input(args, kwargs)) == canonical(recorded.input)
            ):
                return self._serve(recorded)
            if self.real_tools:
                return Execute(args, kwargs)
            raise self._diverged(
                kind,
                position,
                name,
                args,
                kwargs,
                "the real tool was not called"
                + ("" if self.mode is ReplayMode.MOCK_TOOLS else " (real_tools=True calls it)"),
            )
        return Execute(args, kwargs)

    def _serve(self, recorded: ExecutionNode) -> Serve:
        if recorded.status not in FINISHED:
            raise ReplayDivergedError(
                f"replay of {self.original.execution_id!r}: {recorded.metadata.get('kind')} "
                f"{recorded.metadata.get('step')!r} at position "
                f"{recorded.metadata.get('position')} has no recorded outcome "
                f"({recorded.status.value}: it never finished, or is in doubt), so the "
                "recording cannot answer it"
            )
        return Serve(recorded, recorded.output)

    def _diverged(
        self,
        kind: str,
        position: int,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        why: str,
    ) -> ReplayDivergedError:
        asked = _call_text(kind, name, call_input(args, kwargs))
        closest = self._closest(kind, position, name)
        found = (
            "it has no calls"
            if closest is None
            else f"the closest recorded call is {_call_text_of(closest)} at position "
            f"{closest.metadata.get('position')}"
        )
        return ReplayDivergedError(
            f"replay of {self.original.execution_id!r} ({self.mode.value}): at position "
            f"{position} the agent made the call {asked}, which the recording does not "
            f"have; {found}; {why}"
        )

    def _closest(self, kind: str, position: int, name: str) -> ExecutionNode | None:
        """The recorded call most like the one asked: the same name nearest in position,
        else the call at that position, else the nearest call of the same kind."""
        steps = self.original.steps

        def nearest(nodes: list[ExecutionNode]) -> ExecutionNode | None:
            return min(
                nodes,
                key=lambda n: abs(int(n.metadata.get("position", 0)) - position),
                default=None,
            )

        return (
            nearest([n for n in steps.values() if n.metadata.get("step") == name])
            or steps.get(position)
            or nearest([n for n in steps.values() if n.metadata.get("kind") == kind])
        )


def counterfactual_input(
    value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A step's arguments with the counterfactual value in: a dict of "args" and
    "kwargs" replaces them all; any other value replaces the first argument."""
    if isinstance(value, dict) and value and set(value) <= {"args", "kwargs"}:
        return tuple(value.get("args", [])), dict(value.get("kwargs", {}))
    return (value, *args[1:]), kwargs


def _call_text(kind: str, name: str, call: Any) -> str:
    shown = json.dumps(call, sort_keys=True, default=repr)
    return f"{kind} {name!r} with {shown if len(shown) <= 300 else shown[:297] + '...'}"


def _call_text_of(node: ExecutionNode) -> str:
    return _call_text(str(node.metadata.get("kind")), str(node.metadata.get("step")), node.input)


def _difference(recorded: Any, asked: Any) -> str:
    """A unified diff of two values as indented JSON."""
    before = json.dumps(recorded, sort_keys=True, indent=2, default=repr).splitlines()
    after = json.dumps(asked, sort_keys=True, indent=2, default=repr).splitlines()
    return "\n".join(difflib.unified_diff(before, after, "recorded", "asked now", lineterm="", n=2))


# -- replaying node by node ---------------------------------------------------------------


Handler = Callable[[ExecutionNode], Any]


@dataclass(frozen=True)
class ReplayResult:
    """One node of a replay: its output, and whether it came from the recording
    (`mocked`) or from the handler."""

    node: ExecutionNode  # as the handler saw it (with the counterfactual input, if any)
    output: Any
    mocked: bool
    error: ErrorInfo | None = None  # what the handler raised, or the recorded failure


@dataclass(frozen=True)
class ReplayReport:
    """A replay by ReplaySession, recorded as execution `execution_id`."""

    execution_id: str
    replay_of: str
    mode: ReplayMode
    results: list[ReplayResult] = field(default_factory=list)


class ReplaySession:
    """Replays an execution node by node through a handler (see the module docstring):
    the handler is called with each node that is re-executed and returns its new output;
    the others are served from the recording, `mocked`. `source` is an engine, or a
    store (it is read and written directly)."""

    def __init__(self, source: CheckpointEngine | CheckpointStore, execution_id: str) -> None:
        if not isinstance(source, CheckpointEngine | CheckpointStore):
            raise ConfigError(
                f"ReplaySession reads a CheckpointEngine or a CheckpointStore; got {source!r}"
            )
        self.source = source
        self.execution_id = execution_id

    def __repr__(self) -> str:
        return f"ReplaySession({self.source!r}, {self.execution_id!r})"

    async def nodes(self) -> list[ExecutionNode]:
        """The execution's nodes, each at its latest version, in first-seen order."""
        if isinstance(self.source, CheckpointEngine):
            nodes = await self.source.list_nodes(self.execution_id)
        else:
            nodes = [
                _readable(record) for record in await self.source.list_nodes(self.execution_id)
            ]
        if not nodes:
            raise ExecutionNotFoundError(
                f"execution {self.execution_id!r} has no stored nodes in {self.source!r}"
            )
        return nodes

    async def run(
        self,
        handler: Handler,
        mode: ReplayMode | str = ReplayMode.FULL,
        from_node_id: str | None = None,
        counterfactual: tuple[str, Any] | None = None,
    ) -> ReplayReport:
        """Replay every node in order; a handler that raises fails that node only."""
        mode = replay_mode(mode)
        check_arguments(mode, from_node_id, counterfactual, False)
        nodes = await self.nodes()
        ids = [node.id for node in nodes]
        pivot, value = None, None
        if from_node_id is not None:
            pivot = self._index(ids, from_node_id)
        if counterfactual is not None:
            node_id, value = split_counterfactual(counterfactual)
            pivot = self._index(ids, node_id)
        results = []
        for index, node in enumerate(nodes):
            if pivot is not None and index < pivot:
                results.append(_mocked(node, node.output))
            elif index == pivot and mode is ReplayMode.COUNTERFACTUAL:
                if node.type is NodeType.TOOL:
                    results.append(_mocked(node, value))
                else:
                    node.input = value
                    results.append(await _handled(handler, node))
            elif node.type is NodeType.TOOL and mode in (
                ReplayMode.MOCK_TOOLS,
                ReplayMode.COUNTERFACTUAL,
            ):
                results.append(_mocked(node, node.output))
            else:
                results.append(await _handled(handler, node))
        report = ReplayReport(new_id(), self.execution_id, mode, results)
        await self._record(report, None if pivot is None else ids[pivot])
        return report

    def _index(self, ids: Sequence[str], node_id: Any) -> int:
        if node_id in ids:
            return ids.index(node_id)
        raise StepNotFoundError(
            f"execution {self.execution_id!r} has no node {node_id!r}; its nodes: "
            + ", ".join(repr(i) for i in ids)
        )

    async def _record(self, report: ReplayReport, pivot: str | None) -> None:
        """Store the replay as a new execution: a record of the replay, and one node per
        replayed node, numbered in order."""
        x = report.execution_id
        header = ExecutionNode(
            id=run_node_id(x),
            execution_id=x,
            type=NodeType.MEMORY,
            status=Status.SUCCESS,
            completed_at=utcnow(),
            input={"replay_of": report.replay_of},
            metadata={
                "replay_of": report.replay_of,
                "replay": {"mode": report.mode.value, "node": pivot},
            },
        )
        nodes = [header]
        for position, result in enumerate(report.results):
            original = result.node
            nodes.append(
                ExecutionNode(
                    id=f"{x}/{position}",
                    execution_id=x,
                    type=original.type,
                    parent_id=header.id,
                    status=Status.FAILED if result.error else Status.SUCCESS,
                    completed_at=utcnow(),
                    input=original.input,
                    output=result.output if storable(result.output) else repr(result.output),
                    error=result.error,
                    metadata={
                        "step": str(original.metadata.get("step", original.id)),
                        "kind": "tool" if original.type is NodeType.TOOL else "step",
                        "position": position,
                        "replayed_from": original.id,
                        "mocked": result.mocked,
                    },
                )
            )
        if isinstance(self.source, CheckpointEngine):
            for node in nodes:
                await self.source.save(node)
            await self.source.flush()
        else:
            await self.source.append([NodeRecord.from_node(node) for node in nodes])


def _readable(record: NodeRecord) -> ExecutionNode:
    try:
        return record.to_node()
    except CheckpointCorruptError as exc:
        return corrupt_node(record, exc)


def _mocked(node: ExecutionNode, output: Any) -> ReplayResult:
    failed = node.status is Status.FAILED and output is node.output
    return ReplayResult(node, output, mocked=True, error=node.error if failed else None)


async def _handled(handler: Handler, node: ExecutionNode) -> ReplayResult:
    try:
        output = handler(node)
        if inspect.isawaitable(output):
            output = await output
    except Exception as exc:
        return ReplayResult(node, None, mocked=False, error=ErrorInfo.from_exception(exc))
    return ReplayResult(node, output, mocked=False)
