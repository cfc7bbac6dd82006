"""The commands that read the store: list, show, diff, costs, export, stats."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, cast

import click

from livingai import (
    MAX_PAGE,
    CheckpointCorruptError,
    ExecutionNode,
    ExecutionNotFoundError,
    Runtime,
    Status,
    SummaryPage,
    UsageBy,
    UsageRow,
    step_tree,
)

from . import render, tree
from .params import Moment
from .session import Settings, json_option


@click.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in Status], case_sensitive=False),
    help="Only runs with this status (RUNNING while unfinished).",
)
@click.option("--agent", metavar="NAME", help="Only runs of this agent (its function's name).")
@click.option("--since", type=Moment(), help="Only executions started at or after this time.")
@click.option("--until", type=Moment(), help="Only executions started before this time.")
@click.option(
    "--min-cost",
    type=click.FloatRange(min=0),
    metavar="DOLLARS",
    help="Only executions whose model calls cost at least this much (within the page).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_PAGE),
    default=50,
    show_default=True,
    help=f"At most this many executions (1-{MAX_PAGE}).",
)
@click.option("--cursor", metavar="CURSOR", help="The page after the one that printed it.")
@json_option
@click.pass_obj
def list_executions(
    settings: Settings,
    status: str | None,
    agent: str | None,
    since: datetime | None,
    until: datetime | None,
    min_cost: float | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List executions, newest first, a page at a time.

    One line each: agent, status, steps, tokens, cost, and what needs attention (tools
    in doubt, runs that need a human), replays and forks. Only the page is read, from
    the store's index, however many executions it holds; when more follow, the last
    line gives the --cursor of the next page (--json: its "cursor")."""
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> SummaryPage:
        with io.working("reading executions"):
            return await runtime.executions_page(
                limit=limit,
                cursor=cursor,
                status=status,
                agent=agent,
                since=since,
                until=until,
                min_cost=min_cost,
            )

    found = settings.run(io, body)
    if as_json:
        io.data(found.to_dict())
        return
    io.show(render.executions_table(found.summaries))
    if found.cursor is not None:
        io.line(f"more: livingai list --cursor {found.cursor} (with the same filters)")


@click.command()
@click.argument("execution")
@click.option(
    "--state",
    "with_state",
    is_flag=True,
    help="Decode the checkpoints: each node's newest state, as JSON or text when it "
    "decodes, else its size and first bytes in hex.",
)
@json_option
@click.pass_obj
def show(settings: Settings, execution: str, with_state: bool, as_json: bool) -> None:
    """Show one execution step by step.

    The step tree of EXECUTION: each step's kind, status, model, tokens, cost and
    latency; tools (side effects) and those in doubt marked; the run's result."""
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> tuple[list[ExecutionNode], dict[str, dict[str, Any]]]:
        engine = runtime.engine
        states: dict[str, dict[str, Any]] = {}
        if not with_state:
            nodes = await engine.list_nodes(execution)
        else:
            latest: dict[str, ExecutionNode] = {}
            checkpointed: dict[str, ExecutionNode] = {}
            for version in await engine.versions(execution):  # in save order
                latest[version.id] = version
                if version.checkpoint is not None:
                    checkpointed[version.id] = version  # a node's state is its newest
            nodes = list(latest.values())
            for node_id, version in checkpointed.items():
                states[node_id] = await _state(runtime, version)
        if not nodes:
            raise ExecutionNotFoundError(
                f"no execution {execution!r} is stored in {engine.store!r}"
            )
        return nodes, states

    nodes, states = settings.run(io, body)
    drawn = step_tree(nodes)
    run_node = f"{execution}/run"
    if as_json:
        io.data(tree.show_dict(execution, run_node, drawn, states, with_state))
    else:
        io.show(tree.show_view(execution, run_node, drawn, states))


async def _state(runtime: Runtime, version: ExecutionNode) -> dict[str, Any]:
    try:
        state = await runtime.engine.decode_state(version)
    except CheckpointCorruptError as exc:
        return {"bytes": len(version.checkpoint or b""), "kind": "corrupt", "error": str(exc)}
    return tree.describe_state(state or b"")


@click.command()
@click.argument("a")
@click.argument("b")
@json_option
@click.pass_obj
def diff(settings: Settings, a: str, b: str, as_json: bool) -> None:
    """Compare two executions step by step.

    A and B side by side: what changed, where they first went different ways, and
    what each spent."""
    io = settings.io(as_json)
    compared = settings.run(io, lambda runtime: runtime.diff(a, b))
    if as_json:
        click.echo(compared.to_json())
    else:
        io.show(render.diff_text(compared.to_text()))


@click.command()
@click.option(
    "--by",
    type=click.Choice(["execution", "model", "day", "total"]),
    default="execution",
    show_default=True,
    help="How to group the sums (days in UTC).",
)
@click.option("--since", type=Moment(), help="Only model calls made at or after this time.")
@click.option("--until", type=Moment(), help="Only model calls made before this time.")
@click.option(
    "--execution",
    "executions",
    multiple=True,
    metavar="ID",
    help="Only this execution (repeat for more).",
)
@json_option
@click.pass_obj
def costs(
    settings: Settings,
    by: str,
    since: datetime | None,
    until: datetime | None,
    executions: Sequence[str],
    as_json: bool,
) -> None:
    """Add up the tokens and dollars of model calls."""
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> list[UsageRow]:
        return await runtime.engine.usage(
            cast(UsageBy, by),  # one of the choices above
            execution_ids=list(executions) or None,
            since=since,
            until=until,
        )

    rows = settings.run(io, body)
    if as_json:
        io.data([render.usage_dict(row) for row in rows])
    else:
        io.show(render.usage_table(rows, by))


@click.command()
@click.argument("executions", nargs=-1, metavar="[EXECUTION]...")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file (replaced once the export is complete) instead of stdout.",
)
@json_option
@click.pass_obj
def export(
    settings: Settings, executions: Sequence[str], output: Path | None, as_json: bool
) -> None:
    """Export the log as JSON lines.

    Every version of every node of the EXECUTIONs (default: all), one JSON object a
    line, in save order, checkpoints in base64. With --output, a summary goes to
    stdout."""
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> tuple[int, int]:
        engine = runtime.engine
        known = await engine.list_executions()
        wanted = list(dict.fromkeys(executions)) if executions else known
        stored = set(known)
        for execution_id in wanted:
            if execution_id not in stored:
                raise ExecutionNotFoundError(
                    f"no execution {execution_id!r} is stored in {engine.store!r}"
                )
        versions = 0
        with _sink(output) as sink, io.working("exporting", total=len(wanted)) as advance:
            for execution_id in wanted:  # one execution in memory at a time
                for node in await engine.versions(execution_id):
                    sink.write(json.dumps(node.to_dict()) + "\n")
                    versions += 1
                advance()
        return len(wanted), versions

    exported, versions = settings.run(io, body)
    if output is None:
        return
    if as_json:
        io.data({"executions": exported, "versions": versions, "output": str(output)})
    else:
        io.line(f"exported {versions:,} versions of {exported:,} executions to {output}")


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[TextIO]:
    """stdout, or a file written beside `output` and moved over it once complete."""
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as file:
            yield file
        os.replace(partial, output)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


@click.command()
@json_option
@click.pass_obj
def stats(settings: Settings, as_json: bool) -> None:
    """Summarise what the store holds.

    Executions by status, what needs attention, the model calls' tokens and cost, and
    the store's limits."""
    io = settings.io(as_json)

    async def body(runtime: Runtime) -> dict[str, Any]:
        with io.working("reading executions"):
            summaries = await runtime.executions()
            total = await runtime.engine.usage("total")
        engine = runtime.engine
        return render.stats_dict(
            repr(engine.store), summaries, total[0] if total else None, engine.limits
        )

    found = settings.run(io, body)
    if as_json:
        io.data(found)
    else:
        io.show(render.stats_view(found))
