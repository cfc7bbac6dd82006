"""Deferred tool calls that survive a restart: a run in LivingAIDurability whose agent
stops on calls that need approval (`requires_approval=True`, `ApprovalRequired`) or a
result from elsewhere (`CallDeferred`, external tools) is stored as waiting for a human
(the stop and the decisions as every adapter stores them, decisions.py, prefix "pai"),
so that any process can decide (`durability.approve` / `reject` / `answer`) and go on
with it (`durability.resume`, `recover_pending()`, `livingai recover`).

Going on runs the agent from the top in the same durable execution: recorded model
requests and tool calls are served from the log, so it comes back to the same calls;
LivingAIDurability's `handle_deferred_tool_calls` hook then answers each with its recorded
decision, inline, as Pydantic AI lets a capability do. An approved call runs its tool
through Runtime.call_tool as every tool does; a rejected one never runs and the model
gets the message; a call still undecided stops the run again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic_ai import DeferredToolRequests, DeferredToolResults, ToolDenied
from pydantic_ai.messages import ToolCallPart

from livingai import NeedsHumanError

if TYPE_CHECKING:
    from .durability import AgentRun


async def answers(scope: AgentRun, requests: DeferredToolRequests) -> DeferredToolResults | None:
    """The recorded decisions on `requests`' calls (None: none is decided); the calls
    with none are noted on `scope`, where a stop finds them."""
    decisions = scope.shell.decisions
    results = DeferredToolResults()
    decided: dict[str, str] = {}
    for call, kind in _calls(requests):
        decision = await decisions.decision(scope.execution_id, call.tool_call_id)
        made = None if decision is None else decision["decision"]
        if made == "approved" and kind == "approval":
            results.approvals[call.tool_call_id] = True
        elif made == "rejected" and kind == "approval":
            message = decision.get("message") if decision else None
            results.approvals[call.tool_call_id] = ToolDenied(message) if message else False
        elif made == "answered" and kind != "approval":
            results.calls[call.tool_call_id] = decision.get("result") if decision else None
        else:
            scope.waiting[call.tool_call_id] = _waiting(call, kind, scope.agent_name)
            continue
        decided[call.tool_call_id] = str(made)
    if not decided:
        return None
    if scope.run is not None:
        loaded = await decisions.load_stop(scope.execution_id)
        if loaded is not None:
            await decisions.went_on(scope.run, loaded.node, decided)
    return results


async def stop(scope: AgentRun, requests: DeferredToolRequests | None = None) -> NeedsHumanError:
    """Store the run's stop on the calls it waits on (`requests`, the run's output, or
    those `answers` noted), and mark the run as waiting for a human; raise the result."""
    assert scope.run is not None
    if requests is not None:
        for call, kind in _calls(requests):
            scope.waiting.setdefault(call.tool_call_id, _waiting(call, kind, scope.agent_name))
    return await scope.shell.decisions.stop(scope.run, list(scope.waiting.values()))


def _calls(requests: DeferredToolRequests) -> list[tuple[ToolCallPart, str]]:
    """Each call waiting, with what it waits for: "approval", "external" or "question"."""
    return [(call, requests.kind(call.tool_call_id)) for call in requests.approvals] + [
        (call, requests.kind(call.tool_call_id)) for call in requests.calls
    ]


def _waiting(call: ToolCallPart, kind: str, agent: str | None) -> dict[str, Any]:
    return {
        "tool": call.tool_name,
        "call_id": call.tool_call_id,
        "arguments": call.args_as_dict(),
        "agent": agent,
        "kind": kind,
    }
