"""A person's decisions on the tool calls a stopped run waits on, stored in the run's log
so that any process can make them and any process can go on with the run: written once
for the adapters whose framework stops a run for approval (OpenAI Agents' interruptions,
Pydantic AI's deferred tool calls). Each adapter names its node prefix ("oai", "pai"):

- `<execution>/<prefix>:approval` (MEMORY; PENDING while the run waits, SUCCESS once a run
  went on from it): the calls waiting (tool, call id, arguments, agent, kind), with what
  the adapter needs to go on (its `output` beyond "waiting", its state blob). One version
  per stop; the newest is where the run goes on from.
- the run's record: `needs_human` = {"why": "waiting for approval: ...", "approvals":
  [the calls waiting]}, shown by `runtime.pending()`, `livingai pending` and the web UI.
- `<execution>/<prefix>:approval:<call id>` (MEMORY, SUCCESS): a decision (approved,
  rejected with the message the model gets, or answered with the result of a call the
  framework leaves to someone else), stored durably from any process, with no lease.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from livingai import (
    ConfigError,
    ExecutionNode,
    ExecutionNotFoundError,
    NeedsHumanError,
    NodeState,
    NodeType,
    Run,
    Runtime,
    Status,
    StepNotFoundError,
)

Decision = Literal["approved", "rejected", "answered"]
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
    message: str | None = None  # what the model is told of a rejection (None: the default)
    always: bool = False  # OpenAI Agents' always_approve / always_reject for this tool
    kind: str = "approval"  # or, for a call left to someone else, "external" / "question"
    result: Any = None  # an answered call's result

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Decisions:
    """The stops and decisions of one adapter (node prefix `prefix`) in `runtime`'s log."""

    def __init__(self, runtime: Runtime, prefix: str) -> None:
        self.runtime = runtime
        self.prefix = prefix

    def stop_id(self, execution_id: str) -> str:
        return f"{execution_id}/{self.prefix}:approval"

    def decision_id(self, execution_id: str, call_id: str) -> str:
        return f"{execution_id}/{self.prefix}:approval:{call_id}"

    # -- in the durable run ---------------------------------------------------------

    async def stop(
        self,
        run: Run,
        waiting: Sequence[Mapping[str, Any]],
        output: Mapping[str, Any] | None = None,
        state: bytes | None = None,
    ) -> NeedsHumanError:
        """Store the stop on `waiting` (with the adapter's `output` and `state`), then
        mark the run as waiting for a human; the durable run raises what this returns."""
        execution_id = run.execution_id
        calls = [dict(call) for call in waiting]
        node = ExecutionNode(
            id=self.stop_id(execution_id),
            execution_id=execution_id,
            type=NodeType.MEMORY,
            status=Status.PENDING,
            parent_id=f"{execution_id}/run",
            output={**dict(output or {}), "waiting": calls},
            metadata={"kind": "approval", "step": "approval"},
        )
        await self.runtime.engine.save(node, state, durable=True, fence=run.lease)
        return await self.runtime.needs_human(run, _why(calls), {"approvals": calls})

    async def load_stop(self, execution_id: str) -> NodeState | None:
        """The newest stop of the execution, or None when it never stopped."""
        return await self.runtime.engine.load(self.stop_id(execution_id))

    async def went_on(self, run: Run, stop: ExecutionNode, decided: Mapping[str, Any]) -> None:
        """Mark the stop as one a run went on from, with the decisions it went on with."""
        if stop.status is not Status.PENDING or not decided:
            return
        output = stop.output if isinstance(stop.output, dict) else {}
        done = dataclasses.replace(
            stop, status=Status.SUCCESS, output={**output, "decided": dict(decided)}
        )
        await self.runtime.engine.save(done, fence=run.lease)

    async def decision(self, execution_id: str, call_id: str) -> dict[str, Any] | None:
        """The decision recorded for call `call_id` of the execution, or None."""
        loaded = await self.runtime.engine.load(self.decision_id(execution_id, call_id))
        if loaded is None or not isinstance(loaded.node.output, dict):
            return None
        output: dict[str, Any] = loaded.node.output
        return output if output.get("decision") in ("approved", "rejected", "answered") else None

    # -- from any process -----------------------------------------------------------

    async def pending(self, execution_id: str) -> list[PendingApproval]:
        """The calls execution `execution_id` waits on, with their decisions so far; none
        when it is not waiting. ExecutionNotFoundError when no run is recorded."""
        waiting, _ = await self._waiting(execution_id)
        return waiting

    async def decide(
        self,
        execution_id: str,
        call_id: str | None,
        decision: Decision,
        *,
        message: str | None = None,
        always: bool = False,
        result: Any = None,
    ) -> list[PendingApproval]:
        """Record `decision` for call `call_id` (None: every call waiting with no
        decision yet) durably, and return the calls decided. Approving or rejecting is
        for calls waiting for approval; answering for the others."""
        if call_id is not None and (not isinstance(call_id, str) or not call_id):
            raise ConfigError(f"call_id must be a tool call id (a string) or None; got {call_id!r}")
        if message is not None and not isinstance(message, str):
            raise ConfigError(f"message must be a string or None; got {message!r}")
        waiting, why_not = await self._waiting(execution_id)
        if why_not is not None:
            raise StepNotFoundError(
                f"execution {execution_id!r} has no tool call waiting for a decision: {why_not}"
            )
        if call_id is None:
            chosen = [call for call in waiting if call.decision is None]
        else:
            chosen = [call for call in waiting if call.call_id == call_id]
            if not chosen:
                listed = ", ".join(f"{call.call_id!r} ({call.tool})" for call in waiting)
                raise StepNotFoundError(
                    f"execution {execution_id!r} has no tool call {call_id!r} waiting for a "
                    f"decision; the calls waiting are {listed}"
                )
        for call in chosen:
            answering = call.kind != "approval"
            if answering != (decision == "answered"):
                raise ConfigError(
                    f"execution {execution_id!r}: call {call.call_id!r} ({call.tool}) waits "
                    f"for {'a result' if answering else 'approval'}: "
                    + ("answer it with its result" if answering else "approve or reject it")
                )
        made = []
        for call in chosen:
            node = ExecutionNode(
                id=self.decision_id(execution_id, call.call_id),
                execution_id=execution_id,
                type=NodeType.MEMORY,
                status=Status.SUCCESS,
                parent_id=self.stop_id(execution_id),
                input={"tool": call.tool, "call_id": call.call_id, "arguments": call.arguments},
                output={
                    "decision": decision,
                    "message": message,
                    "always": always,
                    "result": result,
                },
                metadata={
                    "kind": "approval",
                    "step": f"{decision} {call.tool}",
                    "decided_by": self.runtime.worker_id,
                },
            )
            await self.runtime.engine.save(node, durable=True)  # on disk before it is reported
            made.append(
                dataclasses.replace(
                    call, decision=decision, message=message, always=always, result=result
                )
            )
        return made

    async def _waiting(self, execution_id: str) -> tuple[list[PendingApproval], str | None]:
        """The calls waiting, or, when there are none, why (for an error)."""
        engine = self.runtime.engine
        header = await engine.load(f"{execution_id}/run")
        if header is None:
            raise ExecutionNotFoundError(
                f"no run {execution_id!r} is recorded in {engine.store!r}: nothing waits "
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
        loaded = await self.load_stop(execution_id)
        stop = None if loaded is None else loaded.node.output
        if not isinstance(stop, dict):
            return [], f"its stop for approval ({self.stop_id(execution_id)!r}) is not stored"
        found = []
        for call in stop.get("waiting", []):
            decided = await self.decision(execution_id, str(call["call_id"]))
            found.append(
                PendingApproval(
                    execution_id=execution_id,
                    call_id=str(call["call_id"]),
                    tool=str(call["tool"]),
                    arguments=call.get("arguments"),
                    agent=call.get("agent"),
                    kind=str(call.get("kind", "approval")),
                    decision=None if decided is None else decided["decision"],
                    message=None if decided is None else decided.get("message"),
                    always=False if decided is None else bool(decided.get("always", False)),
                    result=None if decided is None else decided.get("result"),
                )
            )
        return found, None


def _why(waiting: Sequence[Mapping[str, Any]]) -> str:
    calls = ", ".join(f"{call['tool']} (call {call['call_id']})" for call in waiting)
    kinds = {call.get("kind", "approval") for call in waiting}
    what = "approval" if kinds == {"approval"} else "a decision"
    why = f"waiting for {what}: {calls}"
    return why if len(why) <= WHY_CHARS else why[: WHY_CHARS - 3] + "..."
