"""The commands that run agents or change the store: replay, fork, gc, pending, recover."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from livingai import (
    ExecutionNotFoundError,
    GcReport,
    PendingRun,
    RecoveredRun,
    ReplayDivergedError,
    Runtime,
)

from . import render
from .params import Agent, AgentParam, Counterfactual, Moment, StepParam
from .session import Settings, json_option

MODES = ("full", "from_node", "mock_tools", "counterfactual")


def check_replay_options(
    mode: str, from_step: object, counterfactual: object, real_tools: bool
) -> None:
    """Each mode with its own options only: a usage error naming the flag otherwise."""
    if (mode == "from_node") != (from_step is not None):
        raise click.UsageError(
            "--mode from_node replays from a step: give --from-step (a position or a name)"
            if mode == "from_node"
            else f"--from-step is for --mode from_node, not {mode}"
        )
    if (mode == "counterfactual") != (counterfactual is not None):
        raise click.UsageError(
            "--mode counterfactual changes one step: give --counterfactual STEP=JSON"
            if mode == "counterfactual"
            else f"--counterfactual is for --mode counterfactual, not {mode}"
        )
    if real_tools and mode != "counterfactual":
        raise click.UsageError(f"--real-tools is for --mode counterfactual, not {mode}")


@click.command()
@click.argument("execution")
@click.option(
    "--mode",
    type=click.Choice(MODES, case_sensitive=False),
    required=True,
    help="full: everything runs again, tools too. from_node: recorded before --from-step, "
    "for real from it on. mock_tools: every tool served from the recording, the rest "
    "runs again. counterfactual: one step's result (a tool) or input (a step) replaced.",
)
@click.option("--from-step", type=StepParam(), help="from_node: the step to run from.")
@click.option(
    "--counterfactual",
    type=Counterfactual(),
    help="counterfactual: STEP=JSON, the step (a position or a name) and its new value.",
)
@click.option("--mock-llm", is_flag=True, help="Serve the recorded model answers too.")
@click.option(
    "--real-tools",
    is_flag=True,
    help="counterfactual: call the real tool when the recording has no answer for a call.",
)
@click.option(
    "--agent",
    type=AgentParam(),
    help="The agent's code, as an import path (the current directory is on the path).",
)
@json_option
@click.pass_obj
def replay(
    settings: Settings,
    execution: str,
    mode: str,
    from_step: int | str | None,
    counterfactual: tuple[int | str, Any] | None,
    mock_llm: bool,
    real_tools: bool,
    agent: Agent | None,
    as_json: bool,
) -> None:
    """Replay an execution with the agent's code.

    The agent (--agent) runs again against the recording of EXECUTION, as a new
    execution linked to it; the original is never changed. Prints the new execution and
    how the agent ended (exit status 1 when it failed or diverged from the recording)."""
    check_replay_options(mode, from_step, counterfactual, real_tools)
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> dict[str, Any]:
        if agent is None:
            loaded = await runtime.engine.load(f"{execution}/run")
            if loaded is None:
                raise ExecutionNotFoundError(
                    f"no run {execution!r} is recorded in {runtime.engine.store!r}"
                )
            raise click.UsageError(
                "a replay runs the agent's code again: name it with --agent "
                f"module:function (execution {execution!r} was run by agent "
                f"{loaded.node.metadata.get('agent')!r})"
            )
        outcome: dict[str, Any] = {"replay_of": execution, "mode": mode.upper()}
        try:
            with io.working(f"replaying {execution} ({mode})"):
                replayed = await runtime.replay(
                    execution,
                    mode,
                    agent=agent,
                    from_step=from_step,
                    counterfactual=counterfactual,
                    mock_llm=mock_llm,
                    real_tools=real_tools,
                )
        except ReplayDivergedError as exc:
            if not exc.execution_id:
                raise
            return {
                "execution_id": exc.execution_id,
                **outcome,
                "outcome": "diverged",
                "result": None,
                "error": str(exc),
            }
        return {
            **replayed.to_dict(),
            "outcome": "finished" if replayed.error is None else "failed",
        }

    outcome = settings.run(io, body)
    if as_json:
        io.data(outcome)
    else:
        io.show(render.replay_view(outcome))
    if outcome["outcome"] != "finished":
        first = str(outcome["error"]).splitlines()[0]
        raise click.ClickException(
            f"replay {outcome['execution_id']} of {execution} {outcome['outcome']}: {first}"
        )


@click.command()
@click.argument("execution")
@click.argument("step", type=StepParam())
@json_option
@click.pass_obj
def fork(settings: Settings, execution: str, step: int | str, as_json: bool) -> None:
    """Fork an execution before a step.

    A new execution holding a copy of EXECUTION's steps before STEP (a position or a
    name); prints its id. It is pending until an agent runs it: `livingai recover`."""
    io = settings.io(as_json)
    forked = settings.run(io, lambda runtime: runtime.fork(execution, step))
    if as_json:
        io.data({"execution_id": forked, "forked_from": execution, "step": step})
    else:
        io.line(forked)
        io.note("run it from that step with: livingai recover --agent module:function")


@click.command()
@click.option(
    "--keep-checkpoints",
    type=click.IntRange(min=0),
    metavar="N",
    help="Drop the state blobs of all but the newest N checkpointed versions of each "
    "execution (the versions stay).",
)
@click.option(
    "--finished-before",
    type=Moment(),
    metavar="TIME",
    help="Delete the finished executions that ended before this time (or age: 30d).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would go.")
@json_option
@click.pass_obj
def gc(
    settings: Settings,
    keep_checkpoints: int | None,
    finished_before: datetime | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete old executions and old state blobs.

    Finished executions that ended before --finished-before go; only the newest
    --keep-checkpoints state blobs of each execution stay. Unfinished and leased
    executions, and those a kept replay or fork points at, are kept whole."""
    if keep_checkpoints is None and finished_before is None:
        raise click.UsageError("gc needs --keep-checkpoints N, --finished-before TIME, or both")
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> GcReport:
        with io.working("collecting" if not dry_run else "looking for what would go"):
            return await runtime.gc(
                keep_checkpoints=keep_checkpoints,
                finished_before=finished_before,
                dry_run=dry_run,
            )

    report = settings.run(io, body)
    if as_json:
        io.data(report.to_dict())
    else:
        io.show(render.gc_view(report))


@click.command()
@json_option
@click.pass_obj
def pending(settings: Settings, as_json: bool) -> None:
    """List the runs a crash left behind.

    Runs that are unfinished and owned by no live worker: crashed, given up, or forked
    and not run yet."""
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> list[PendingRun]:
        with io.working("looking for pending runs"):
            return await runtime.pending()

    found = settings.run(io, body)
    if as_json:
        io.data([run.to_dict() for run in found])
    else:
        io.show(render.pending_table(found))


@click.command()
@click.option(
    "--agent",
    "agents",
    type=AgentParam(),
    multiple=True,
    required=True,
    help="An agent's code as module:function (repeat for more); runs are matched to "
    "agents by the function's name.",
)
@json_option
@click.pass_obj
def recover(settings: Settings, agents: Sequence[Agent], as_json: bool) -> None:
    """Resume every pending run.

    Each runs here with its agent (--agent) and is reported as finished, failed,
    in_doubt (a tool may have acted: a human decides), leased (another worker took it)
    or not_registered (no --agent of that name)."""
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> list[RecoveredRun]:
        for agent in agents:
            runtime.agent(agent)
        with io.working("recovering pending runs"):
            return await runtime.recover_pending()

    found = settings.run(io, body)
    if as_json:
        io.data([run.to_dict() for run in found])
    else:
        io.show(render.recovered_table(found))
