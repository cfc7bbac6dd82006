"""What the UI may change, for the forms and the API alike: replay an execution with its
registered agent, fork it before a step, resume a pending run. Every input is checked
before anything runs, and each error names what was wrong."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastapi import HTTPException

from livingai import (
    ExecutionNotFoundError,
    InDoubtError,
    LeaseHeldError,
    NeedsHumanError,
    ReplayDivergedError,
    ReplayMode,
    StepNotFoundError,
)

from .data import BadInput
from .state import Ui

MODES = {
    "mock_tools": ReplayMode.MOCK_TOOLS,
    "from_node": ReplayMode.FROM_NODE,
    "counterfactual": ReplayMode.COUNTERFACTUAL,
}
RESUME_WAIT_SECONDS = 2.0  # a resumed run that ends by then is reported; else it is watched


def step_of(value: Any) -> int | str | None:
    """A step named by position (a number) or by name or node id; None when not given."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def json_value(text: str | None) -> Any:
    """The counterfactual value a form gives as JSON text."""
    if text is None or not text.strip():
        raise BadInput(
            "value: the counterfactual mode needs a value, as JSON (a tool's new result, "
            "or a step's new input)"
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(
            f"value: not valid JSON ({exc}); a string is written in double quotes, "
            'e.g. "Pick the cheapest", a list as [1, 2]'
        ) from None


async def agent_for(ui: Ui, execution_id: str) -> tuple[str, Any]:
    """The name and code of the agent that ran `execution_id`, when it is registered."""
    runtime = ui.open_runtime()
    found = await runtime.executions(ids=[execution_id])
    if not found:
        raise ExecutionNotFoundError(f"no execution {execution_id!r} is stored")
    name = found[0].agent
    if not name:
        raise HTTPException(
            409,
            f"execution {execution_id!r} is not a run of an agent: there is nothing to run again",
        )
    agent = ui.agents.get(name)
    if agent is None:
        raise HTTPException(
            409,
            f"agent {name!r} is not registered with this UI: start it with "
            "--agent module:function (or create_app(..., agents=[...]))",
        )
    return name, agent


async def replay(
    ui: Ui,
    execution_id: str,
    mode: str,
    step: int | str | None,
    value: Any = None,
    has_value: bool = False,
    mock_llm: bool = False,
) -> dict[str, Any]:
    """Replay `execution_id` with its registered agent; how the new execution ended."""
    chosen = MODES.get(str(mode).strip().lower())
    if chosen is None:
        raise BadInput(f"mode: must be one of {', '.join(MODES)}; got {mode!r}")
    if chosen is not ReplayMode.MOCK_TOOLS and step is None:
        raise BadInput(
            f"step: {mode} needs the step to start from or to change (a position or a name)"
        )
    if chosen is ReplayMode.COUNTERFACTUAL and not has_value:
        raise BadInput("value: the counterfactual mode needs a value, as JSON")
    _, agent = await agent_for(ui, execution_id)
    runtime = ui.open_runtime()
    counterfactual: tuple[int | str, Any] | None = None
    if chosen is ReplayMode.COUNTERFACTUAL and step is not None:
        counterfactual = (step, value)
    replay_id = uuid.uuid4().hex
    task = ui.start(
        runtime.replay(
            execution_id,
            chosen,
            agent=agent,
            from_step=step if chosen is ReplayMode.FROM_NODE else None,
            counterfactual=counterfactual,
            mock_llm=mock_llm,
            replay_id=replay_id,
        ),
        f"livingai-ui-replay-{replay_id}",
    )
    done, _ = await asyncio.wait({task}, timeout=RESUME_WAIT_SECONDS)
    running = {"execution_id": replay_id, "replay_of": execution_id, "mode": chosen.value}
    if not done:  # its page shows it live
        return {**running, "outcome": "running", "result": None, "error": None}
    try:
        replayed = task.result()
    except StepNotFoundError as exc:
        raise StepNotFoundError(f"step: {exc}") from None
    except ReplayDivergedError as exc:
        if not exc.execution_id:
            raise
        return {**running, "outcome": "diverged", "result": None, "error": str(exc)}
    return {**replayed.to_dict(), "outcome": "finished" if replayed.error is None else "failed"}


async def fork(ui: Ui, execution_id: str, step: int | str | None, run: bool) -> dict[str, Any]:
    """Fork `execution_id` before `step`; with `run`, resume the fork with its agent."""
    if step is None:
        raise BadInput("step: name the step to fork before (a position or a name)")
    runtime = ui.open_runtime()
    if run:
        await agent_for(ui, execution_id)  # refused before anything is written
    try:
        fork_id = await runtime.fork(execution_id, step)
    except StepNotFoundError as exc:
        raise StepNotFoundError(f"step: {exc}") from None
    outcome: dict[str, Any] = {"execution_id": fork_id, "forked_from": execution_id, "step": step}
    if run:
        outcome.update(await resume(ui, fork_id))
        outcome["execution_id"] = fork_id
    return outcome


async def resume(ui: Ui, execution_id: str) -> dict[str, Any]:
    """Resume a pending run with its registered agent, in the background; its outcome
    when it ends within RESUME_WAIT_SECONDS, else "running" (its page shows it live)."""
    runtime = ui.open_runtime()
    waiting = next(
        (run for run in await runtime.pending() if run.execution_id == execution_id), None
    )
    if waiting is None:
        if not await runtime.executions(ids=[execution_id]):
            raise ExecutionNotFoundError(f"no execution {execution_id!r} is stored")
        raise HTTPException(
            409,
            f"execution {execution_id!r} is not pending: it is finished, not a run, or a "
            "live worker is running it",
        )
    _, agent = await agent_for(ui, execution_id)
    task = ui.start(
        runtime.run(agent, *waiting.args, execution_id=execution_id, **waiting.kwargs),
        f"livingai-ui-resume-{execution_id}",
    )
    done, _ = await asyncio.wait({task}, timeout=RESUME_WAIT_SECONDS)
    if not done:
        return {"execution_id": execution_id, "outcome": "running", "result": None, "error": None}
    error = task.exception()
    outcome = (
        "finished"
        if error is None
        else "in_doubt"
        if isinstance(error, InDoubtError)
        else "needs_human"
        if isinstance(error, NeedsHumanError)
        else "leased"
        if isinstance(error, LeaseHeldError)
        else "failed"
    )
    return {
        "execution_id": execution_id,
        "outcome": outcome,
        "result": task.result() if error is None else None,
        "error": None if error is None else ui.scrub(f"{type(error).__name__}: {error}"),
    }
