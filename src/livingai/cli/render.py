"""Rich renderings for a terminal, and the JSON shapes the commands print with --json.
No I/O here: every function takes what the store said and returns something to print."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from livingai import (
    ExecutionNode,
    ExecutionSummary,
    GcReport,
    PendingRun,
    RecoveredRun,
    Status,
    StoreLimits,
    UsageRow,
    human_reason,
)

STATUS_STYLE = {
    Status.SUCCESS: "green",
    Status.FAILED: "bold red",
    Status.RUNNING: "yellow",
    Status.PENDING: "dim",
}
OUTCOME_STYLE = {
    "finished": "green",
    "failed": "bold red",
    "diverged": "bold red",
    "in_doubt": "bold magenta",
    "needs_human": "bold magenta",
    "leased": "yellow",
    "not_registered": "yellow",
}
TEXT_PREVIEW_CHARS = 160


# -- small formats -------------------------------------------------------------------------


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.6f}"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def tokens(prompt: int | None, completion: int | None) -> str:
    if not prompt and not completion:
        return "-"
    return f"{prompt or 0:,}+{completion or 0:,}"


def millis(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:,.2f} s" if value >= 1000 else f"{value:,.1f} ms"


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def took(start: datetime, end: datetime | None) -> str:
    return "-" if end is None else millis((end - start).total_seconds() * 1000)


def short(value: Any, limit: int = TEXT_PREVIEW_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status_text(status: Status) -> Text:
    return Text(status.value, style=STATUS_STYLE.get(status, ""))


def outcome_text(outcome: str) -> Text:
    return Text(outcome, style=OUTCOME_STYLE.get(outcome, ""))


def error_of(node: ExecutionNode) -> str | None:
    if node.error is None:
        return None
    return f"{node.error.type}: {node.error.message}"


def limit_value(value: int) -> int | None:
    return None if value >= sys.maxsize else value


def size(value: int | None) -> str:
    if value is None:
        return "no limit"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit} ({value:,} bytes)"
    return f"{value:,} bytes"


# -- list ----------------------------------------------------------------------------------


def notes_of(summary: ExecutionSummary) -> Text:
    text = Text()
    if summary.in_doubt:
        text.append(f"{summary.in_doubt} in doubt ", style="bold magenta")
    if summary.needs_human:
        text.append("needs a human ", style="bold magenta")
    if summary.replay_of:
        text.append(f"replay of {summary.replay_of} ", style="cyan")
    if summary.forked_from:
        text.append(f"fork of {summary.forked_from} ", style="cyan")
    return text


def executions_table(summaries: Sequence[ExecutionSummary]) -> RenderableType:
    if not summaries:
        return Text("no executions match", style="dim")
    table = Table(caption=f"{len(summaries)} executions", caption_justify="left")
    table.add_column("execution", overflow="fold", no_wrap=True)
    table.add_column("agent")
    table.add_column("status")
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("took", justify="right")
    table.add_column("steps", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("notes")
    for one in summaries:
        table.add_row(
            one.execution_id,
            one.agent or "-",
            status_text(one.status),
            when(one.started_at),
            took(one.started_at, one.ended_at),
            str(one.steps),
            tokens(one.prompt_tokens, one.completion_tokens),
            money(one.cost) if one.cost else "-",
            notes_of(one),
        )
    return table


# -- diff ----------------------------------------------------------------------------------


def diff_text(text: str) -> Text:
    styles = {"~": "yellow", "+": "green", "-": "red", "=": "dim"}
    out = Text()
    for line in text.splitlines():
        style = styles.get(line[:1], "")
        if line.startswith("first divergence"):
            style = "bold yellow"
        out.append(line + "\n", style=style)
    out.rstrip()
    return out


# -- costs ---------------------------------------------------------------------------------


def usage_dict(row: UsageRow) -> dict[str, Any]:
    return dataclasses.asdict(row)


def usage_table(rows: Sequence[UsageRow], by: str) -> RenderableType:
    if not rows:
        return Text("no model calls recorded (none matched)", style="dim")
    table = Table()
    table.add_column(by, overflow="fold")
    table.add_column("calls", justify="right")
    table.add_column("prompt tokens", justify="right")
    table.add_column("completion tokens", justify="right")
    table.add_column("cost", justify="right")
    for row in rows:
        table.add_row(
            row.key or "(no model)",
            count(row.calls),
            count(row.prompt_tokens),
            count(row.completion_tokens),
            money(row.cost),
        )
    if len(rows) > 1:
        table.add_section()
        table.add_row(
            Text("total", style="bold"),
            count(sum(r.calls for r in rows)),
            count(sum(r.prompt_tokens for r in rows)),
            count(sum(r.completion_tokens for r in rows)),
            money(sum(r.cost for r in rows)),
        )
    return table


# -- gc, pending, recover, replay ----------------------------------------------------------


def gc_view(report: GcReport) -> RenderableType:
    verb = "would delete" if report.dry_run else "deleted"
    parts: list[RenderableType] = [
        Text(
            f"{verb} {len(report.deleted)} executions ({report.versions_deleted:,} versions); "
            f"{'would drop' if report.dry_run else 'dropped'} "
            f"{report.checkpoints_dropped:,} state blobs",
            style="bold",
        )
    ]
    for execution_id in report.deleted:
        parts.append(Text(f"  - {execution_id}"))
    if report.kept:
        kept = Table(title="kept whole", title_justify="left")
        kept.add_column("execution", overflow="fold")
        kept.add_column("why")
        for execution_id, why in report.kept.items():
            kept.add_row(execution_id, why)
        parts.append(kept)
    if report.dry_run:
        parts.append(Text("dry run: nothing was changed", style="dim"))
    return Group(*parts)


def pending_table(runs: Sequence[PendingRun]) -> RenderableType:
    if not runs:
        return Text("no pending runs: every run finished or is owned by a live worker")
    table = Table(caption=f"{len(runs)} pending runs", caption_justify="left")
    table.add_column("execution", overflow="fold", no_wrap=True)
    table.add_column("agent")
    table.add_column("arguments")
    table.add_column("needs a human")
    for run in runs:
        human = run.needs_human
        table.add_row(
            run.execution_id,
            run.agent or "-",
            short({"args": run.args, "kwargs": run.kwargs}, 80),
            Text(human_reason(human) if human else "", style="bold magenta"),
        )
    return table


def error_text(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def recovered_table(runs: Sequence[RecoveredRun]) -> RenderableType:
    if not runs:
        return Text("nothing to recover: no pending runs")
    table = Table(caption=f"{len(runs)} runs", caption_justify="left")
    table.add_column("execution", overflow="fold", no_wrap=True)
    table.add_column("agent")
    table.add_column("outcome")
    table.add_column("result or error")
    for run in runs:
        detail = error_text(run.error) if run.error is not None else short(run.result, 100)
        table.add_row(run.execution_id, run.agent or "-", outcome_text(run.outcome), detail)
    return table


def replay_view(outcome: Mapping[str, Any]) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("replay", Text(str(outcome["execution_id"]), style="bold"))
    grid.add_row("of", str(outcome["replay_of"]))
    grid.add_row("mode", str(outcome["mode"]))
    grid.add_row("outcome", outcome_text(str(outcome["outcome"])))
    if outcome["error"] is None:
        grid.add_row("result", short(outcome["result"], 1000))
    else:
        grid.add_row("error", Text(str(outcome["error"]), style="red"))
    return grid


# -- stats ---------------------------------------------------------------------------------


def limits_dict(limits: StoreLimits) -> dict[str, int | None]:
    return {
        "max_id_bytes": limit_value(limits.max_id_bytes),
        "max_body_bytes": limit_value(limits.max_body_bytes),
        "max_state_bytes": limit_value(limits.max_state_bytes),
    }


def stats_dict(
    store: str,
    summaries: Sequence[ExecutionSummary],
    total: UsageRow | None,
    limits: StoreLimits,
) -> dict[str, Any]:
    by_status = {status.value: 0 for status in Status}
    for one in summaries:
        by_status[one.status.value] += 1
    return {
        "store": store,
        "executions": len(summaries),
        "by_status": by_status,
        "runs": sum(1 for one in summaries if one.agent),
        "replays": sum(1 for one in summaries if one.replay_of),
        "forks": sum(1 for one in summaries if one.forked_from),
        "in_doubt": sum(one.in_doubt for one in summaries),
        "needs_human": sum(1 for one in summaries if one.needs_human),
        "usage": {
            "calls": 0 if total is None else total.calls,
            "prompt_tokens": 0 if total is None else total.prompt_tokens,
            "completion_tokens": 0 if total is None else total.completion_tokens,
            "cost": 0.0 if total is None else total.cost,
        },
        "limits": limits_dict(limits),
    }


def stats_view(stats: Mapping[str, Any]) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("store", str(stats["store"]))
    grid.add_row("executions", count(stats["executions"]))
    statuses = Text()
    for status in Status:
        number = stats["by_status"][status.value]
        if number:
            statuses.append(f"{status.value} {number:,}  ", style=STATUS_STYLE[status])
    grid.add_row("by status", statuses)
    grid.add_row(
        "of which",
        f"{stats['runs']:,} runs, {stats['replays']:,} replays, {stats['forks']:,} forks",
    )
    attention = (
        f"tools in doubt: {stats['in_doubt']:,}; runs that need a human: {stats['needs_human']:,}"
    )
    style = "bold magenta" if stats["in_doubt"] or stats["needs_human"] else ""
    grid.add_row("attention", Text(attention, style=style))
    usage = stats["usage"]
    grid.add_row(
        "model calls",
        f"{usage['calls']:,} calls, "
        f"{tokens(usage['prompt_tokens'], usage['completion_tokens'])} tokens, "
        f"{money(usage['cost'])}",
    )
    limits = stats["limits"]
    grid.add_row("limit: ids", size(limits["max_id_bytes"]))
    grid.add_row("limit: input/output/metadata", size(limits["max_body_bytes"]))
    grid.add_row("limit: one state", size(limits["max_state_bytes"]))
    return grid
