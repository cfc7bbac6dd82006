"""Human approval that survives a restart, for OpenAI Agents SDK runs in the adapter.

A function tool with `needs_approval` stops `Runner.run` with `result.interruptions`. In
an adapter run that stop is stored, and the durable run ends unfinished, waiting for a
human (Runtime.needs_human, NeedsHumanError), so any process can decide later; the stop
and the decisions are stored as every adapter stores them (decisions.py, prefix "oai"):
the stop's output also holds the number of model calls made so far by input (where the
next ones are found), and its state the SDK's `RunState.to_json()`.

Run again (`adapter.resume`, `adapter.run`, `recover_pending()`), the durable run starts
from the newest stop instead of the input: `RunState.from_json` over the recorded copy of
the agent graph, the recorded decisions applied (`state.approve` / `state.reject`), then
`Runner.run(agent, state)`. An approved tool runs through `Runtime.call_tool` as every
tool does (its outcome recorded, served when run again); a rejected one never runs and
the model gets the rejection; a call with no decision yet stops the run again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agents import Agent, RunResult, RunResultStreaming
from agents.items import ToolApprovalItem, TResponseInputItem
from agents.run_state import RunState

from livingai import CheckpointCorruptError, ExecutionNotFoundError
from livingai.adapters.decisions import PendingApproval

if TYPE_CHECKING:
    from .adapter import OpenAIAgentsAdapter
    from .scope import Scope

__all__ = ["PendingApproval", "continued", "recorded_input", "stop_if_interrupted"]


async def stop_if_interrupted(scope: Scope, result: RunResult | RunResultStreaming) -> None:
    """In a durable run whose `Runner.run` stopped on calls that need approval: store the
    stop, mark the run as waiting for a human, and raise NeedsHumanError (the run ends
    unfinished). Anything else returns."""
    run = scope.run
    if run is None or not result.interruptions:
        return
    waiting = [_waiting(item, n) for n, item in enumerate(result.interruptions)]
    state = json.dumps(result.to_state().to_json(), separators=(",", ":")).encode()
    raise await scope.adapter.decisions.stop(
        run, waiting, {"model_calls": dict(scope.calls)}, state
    )


async def continued(
    scope: Scope, starting: Agent[Any], input: str | list[TResponseInputItem]
) -> str | list[TResponseInputItem] | RunState[Any, Agent[Any]]:
    """What `Runner.run` starts from: the newest stop of the execution with its recorded
    decisions applied, over `starting` (the recorded copy of the agent graph); the input
    when the run never stopped for approval."""
    decisions = scope.adapter.decisions
    loaded = await decisions.load_stop(scope.execution_id)
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
        decision = await decisions.decision(scope.execution_id, call_id)
        if decision is None or decision["decision"] == "answered":
            continue
        decided[call_id] = decision
        always = bool(decision.get("always", False))
        if decision["decision"] == "approved":
            state.approve(item, always_approve=always)
        else:
            state.reject(item, always_reject=always, rejection_message=decision.get("message"))
    if scope.run is not None:
        await decisions.went_on(scope.run, stop, decided)
    return state


async def recorded_input(adapter: OpenAIAgentsAdapter, execution_id: str) -> Any:
    """The input execution `execution_id` was started with."""
    header = await adapter.engine.load(f"{execution_id}/run")
    start = None if header is None else header.node.input
    if not isinstance(start, dict) or not start.get("args"):
        raise ExecutionNotFoundError(
            f"no run {execution_id!r} is recorded in {adapter.engine.store!r} to resume"
        )
    return start["args"][0]


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
