"""Human approval that survives a restart, for OpenAI Agents SDK runs in the adapter.

A function tool with `needs_approval` stops `Runner.run` with `result.interruptions`. In
an adapter run that stop is stored, and the durable run ends unfinished, waiting for a
human (Runtime.needs_human, NeedsHumanError), so any process can decide later:

- `<execution>/oai:approval` (MEMORY; PENDING while the run waits, SUCCESS once a run
  went on from it): the calls waiting (tool, call id, arguments, agent) and the number of
  model calls made so far by input (where the next ones are found), with the SDK's
  `RunState.to_json()` as its state. One version per stop; the newest is where the run
  goes on from.
- the run's record: `needs_human` = {"why": "waiting for approval: ...", "approvals":
  [the calls waiting]}, shown by `runtime.pending()`, `livingai pending` and the web UI.
- `<execution>/oai:approval:<call id>` (MEMORY, SUCCESS): a decision, approved or
  rejected (with the message the model gets, and `always`), stored durably by
  `adapter.approve` / `adapter.reject` from any process, with no lease.

Run again (`adapter.resume`, `adapter.run`, `recover_pending()`), the durable run starts
from the newest stop instead of the input: `RunState.from_json` over the recorded copy of
the agent graph, the recorded decisions applied (`state.approve` / `state.reject`), then
`Runner.run(agent, state)`. An approved tool runs through `Runtime.call_tool` as every
tool does (its outcome recorded, served when run again); a rejected one never runs and
the model gets the rejection; a call with no decision yet stops the run again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agents import Agent, RunResult, RunResultStreaming
from agents.items import ToolApprovalItem, TResponseInputItem
from agents.run_state import RunState

from livingai import (
    CheckpointCorruptError,
    ConfigError,
    ExecutionNode,
    ExecutionNotFoundError,
    NodeType,
    Status,
    StepNotFoundError,
)

if TYPE_CHECKING:
    from .adapter import OpenAIAgentsAdapter
    from .scope import Scope

Decision = Literal["approved", "rejected"]
WHY_CHARS = 200  # of the one line pending() shows


@dataclass(frozen=True)
class PendingApproval:
    """A tool call a stopped run waits on, and the decision recorded for it (None: not
    decided yet)."""

    execution_id: str
    call_id: str
    tool: str
    arguments: Any
    agent: str | None = None
    decision: Decision | None = None
    message: str | None = None  # what the model is told of a rejection (None: the SDK's)
    always: bool = False  # the SDK's always_approve / always_reject for this tool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stop_node_id(execution_id: str) -> str:
    return f"{execution_id}/oai:approval"


def decision_node_id(execution_id: str, call_id: str) -> str:
    return f"{execution_id}/oai:approval:{call_id}"


# -- in the durable run -------------------------------------------------------------------


async def stop_if_interrupted(scope: Scope, result: RunResult | RunResultStreaming) -> None:
    """In a durable run whose `Runner.run` stopped on calls that need approval: store the
    stop, mark the run as waiting for a human, and raise NeedsHumanError (the run ends
    unfinished). Anything else returns."""
    run = scope.run
    if run is None or not result.interruptions:
        return
    execution_id = scope.execution_id
    waiting = [_waiting(item, n) for n, item in enumerate(result.interruptions)]
    state = json.dumps(result.to_state().to_json(), separators=(",", ":")).encode()
    stop = ExecutionNode(
        id=stop_node_id(execution_id),
        execution_id=execution_id,
        type=NodeType.MEMORY,
        status=Status.PENDING,
        parent_id=f"{execution_id}/run",
        output={"waiting": waiting, "model_calls": dict(scope.calls)},
        metadata={"kind": "approval", "step": "approval"},
    )
    runtime = scope.adapter.runtime
    await runtime.engine.save(stop, state, durable=True, fence=run.lease)  # before the mark
    raise await runtime.needs_human(run, _why(waiting), {"approvals": waiting})


async def continued(
    scope: Scope, starting: Agent[Any], input: str | list[TResponseInputItem]
) -> str | list[TResponseInputItem] | RunState[Any, Agent[Any]]:
    """What `Runner.run` starts from: the newest stop of the execution with its recorded
    decisions applied, over `starting` (the recorded copy of the agent graph); the input
    when the run never stopped for approval."""
    engine = scope.adapter.engine
    loaded = await engine.load(stop_node_id(scope.execution_id))
    if loaded is None:
        return input
    stop = loaded.node
    if loaded.state is None:
        raise CheckpointCorruptError(
            f"node {stop.id!r}: the RunState of the run's stop for approval is not stored "
            "(was it dropped by gc?); the run cannot go on from it"
        )
    state = await RunState.from_json(starting, json.loads(loaded.state))
    recorded = stop.output if isinstance(stop.output, dict) else {}
    scope.calls.clear()  # model calls before the stop: the next ones are found after them
    scope.calls.update({str(k): int(v) for k, v in recorded.get("model_calls", {}).items()})
    decided: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(state.get_interruptions()):
        call_id = _call_id(item, n)
        decision = await _decision(scope.adapter, scope.execution_id, call_id)
        if decision is None:
            continue
        decided[call_id] = decision
        always = bool(decision.get("always", False))
        if decision["decision"] == "approved":
            state.approve(item, always_approve=always)
        else:
            state.reject(item, always_reject=always, rejection_message=decision.get("message"))
    if scope.run is not None and decided and stop.status is Status.PENDING:
        went_on = dataclasses.replace(
            stop, status=Status.SUCCESS, output={**recorded, "decided": decided}
        )
        await engine.save(went_on, fence=scope.run.lease)
    return state


# -- from any process ---------------------------------------------------------------------


async def pending(adapter: OpenAIAgentsAdapter, execution_id: str) -> list[PendingApproval]:
    """The calls execution `execution_id` waits on, with their decisions so far; none
    when it is not waiting for approval. ExecutionNotFoundError when no run is recorded."""
    waiting, _ = await _waiting_calls(adapter, execution_id)
    return waiting


async def decide(
    adapter: OpenAIAgentsAdapter,
    execution_id: str,
    call_id: str | None,
    decision: Decision,
    *,
    message: str | None = None,
    always: bool = False,
) -> list[PendingApproval]:
    """Record `decision` for call `call_id` (None: every call waiting with no decision
    yet) durably, and return the calls decided."""
    if call_id is not None and (not isinstance(call_id, str) or not call_id):
        raise ConfigError(f"call_id must be a tool call id (a string) or None; got {call_id!r}")
    if message is not None and not isinstance(message, str):
        raise ConfigError(f"message must be a string or None; got {message!r}")
    waiting, why_not = await _waiting_calls(adapter, execution_id)
    if why_not is not None:
        raise StepNotFoundError(
            f"execution {execution_id!r} has no tool call waiting for approval: {why_not}"
        )
    if call_id is None:
        chosen = [call for call in waiting if call.decision is None]
    else:
        chosen = [call for call in waiting if call.call_id == call_id]
        if not chosen:
            listed = ", ".join(f"{call.call_id!r} ({call.tool})" for call in waiting)
            raise StepNotFoundError(
                f"execution {execution_id!r} has no tool call {call_id!r} waiting for "
                f"approval; the calls waiting are {listed}"
            )
    made = []
    for call in chosen:
        node = ExecutionNode(
            id=decision_node_id(execution_id, call.call_id),
            execution_id=execution_id,
            type=NodeType.MEMORY,
            status=Status.SUCCESS,
            parent_id=stop_node_id(execution_id),
            input={"tool": call.tool, "call_id": call.call_id, "arguments": call.arguments},
            output={"decision": decision, "message": message, "always": always},
            metadata={
                "kind": "approval",
                "step": f"{decision} {call.tool}",
                "decided_by": adapter.runtime.worker_id,
            },
        )
        await adapter.engine.save(node, durable=True)  # on disk before it is reported
        made.append(dataclasses.replace(call, decision=decision, message=message, always=always))
    return made


async def recorded_input(adapter: OpenAIAgentsAdapter, execution_id: str) -> Any:
    """The input execution `execution_id` was started with."""
    header = await adapter.engine.load(f"{execution_id}/run")
    start = None if header is None else header.node.input
    if not isinstance(start, dict) or not start.get("args"):
        raise ExecutionNotFoundError(
            f"no run {execution_id!r} is recorded in {adapter.engine.store!r} to resume"
        )
    return start["args"][0]


# -- helpers ------------------------------------------------------------------------------


async def _waiting_calls(
    adapter: OpenAIAgentsAdapter, execution_id: str
) -> tuple[list[PendingApproval], str | None]:
    """The calls waiting, or, when there are none, why (for an error)."""
    header = await adapter.engine.load(f"{execution_id}/run")
    if header is None:
        raise ExecutionNotFoundError(
            f"no run {execution_id!r} is recorded in {adapter.engine.store!r}: nothing waits "
            "for approval there"
        )
    run = header.node
    if run.status in (Status.SUCCESS, Status.FAILED):
        return [], f"the run finished ({run.status.value})"
    mark = run.metadata.get("needs_human")
    if not isinstance(mark, dict) or "approvals" not in mark:
        return [], (
            "the run is not stopped on one (it is running, was resumed, crashed, or "
            "stopped for another reason); run it again to go on"
        )
    loaded = await adapter.engine.load(stop_node_id(execution_id))
    stop = None if loaded is None else loaded.node.output
    if not isinstance(stop, dict):
        return [], f"its stop for approval ({stop_node_id(execution_id)!r}) is not stored"
    found = []
    for call in stop.get("waiting", []):
        decision = await _decision(adapter, execution_id, str(call["call_id"]))
        found.append(
            PendingApproval(
                execution_id=execution_id,
                call_id=str(call["call_id"]),
                tool=str(call["tool"]),
                arguments=call.get("arguments"),
                agent=call.get("agent"),
                decision=None if decision is None else decision["decision"],
                message=None if decision is None else decision.get("message"),
                always=False if decision is None else bool(decision.get("always", False)),
            )
        )
    return found, None


async def _decision(
    adapter: OpenAIAgentsAdapter, execution_id: str, call_id: str
) -> dict[str, Any] | None:
    loaded = await adapter.engine.load(decision_node_id(execution_id, call_id))
    if loaded is None or not isinstance(loaded.node.output, dict):
        return None
    output: dict[str, Any] = loaded.node.output
    return output if output.get("decision") in ("approved", "rejected") else None


def _call_id(item: ToolApprovalItem, n: int) -> str:
    """The call's id, as the model gave it (the n-th call waiting, for one without)."""
    return item.call_id or f"approval-{n}"


def _waiting(item: ToolApprovalItem, n: int) -> dict[str, Any]:
    arguments = item.arguments or ""
    try:
        parsed: Any = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        parsed = arguments
    return {
        "tool": item.qualified_name or item.name or "tool",
        "call_id": _call_id(item, n),
        "arguments": parsed,
        "agent": getattr(item.agent, "name", None),
    }


def _why(waiting: Sequence[dict[str, Any]]) -> str:
    calls = ", ".join(f"{call['tool']} (call {call['call_id']})" for call in waiting)
    why = f"waiting for approval: {calls}"
    return why if len(why) <= WHY_CHARS else why[: WHY_CHARS - 3] + "..."
