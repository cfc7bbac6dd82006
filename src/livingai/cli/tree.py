"""`show`: an execution's nodes as a tree (a run's steps under its record), with their
states decoded; as rich for a terminal and as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from livingai import (
    ExecutionNode,
    NodeType,
    Status,
    state_view,
    step_agent,
    step_kind,
    step_name,
    step_position,
)

from .render import error_of, millis, money, short, status_text, tokens

STATE_PREVIEW_BYTES = 32  # of a binary state, shown in hex
MAX_DRAWN_DEPTH = 8  # deeper nodes (a chain of parents) are drawn at this depth


def describe_state(state: bytes) -> dict[str, Any]:
    """A state as JSON: parsed when it is JSON, text when it is UTF-8, else its size and
    the hex of its first bytes."""
    kind, value = state_view(state)
    if kind == "binary":
        return {"bytes": len(state), "kind": kind, "hex": state[:STATE_PREVIEW_BYTES].hex()}
    return {"bytes": len(state), "kind": kind, "value": value}


def state_text(state: Mapping[str, Any]) -> Text:
    text = Text("state: ", style="blue")
    if state["kind"] == "corrupt":
        text.append(f"{state['bytes']:,} bytes, corrupt: {state['error']}", style="red")
    elif state["kind"] == "binary":
        more = "..." if state["bytes"] > STATE_PREVIEW_BYTES else ""
        text.append(f"{state['bytes']:,} bytes, binary: {state['hex']}{more}")
    else:
        text.append(f"{state['bytes']:,} bytes, {state['kind']}: ")
        text.append(short(state["value"], 400))
    return text


def node_dict(
    node: ExecutionNode, depth: int, state: Mapping[str, Any] | None, with_state: bool
) -> dict[str, Any]:
    shown = node.to_dict()
    blob = shown.pop("checkpoint")
    shown["checkpoint_bytes"] = None if blob is None else len(node.checkpoint or b"")
    shown["depth"] = depth
    shown["in_doubt"] = node.is_in_doubt()
    if with_state:
        shown["state"] = None if state is None else dict(state)
    return shown


def show_dict(
    execution_id: str,
    run_node_id: str,
    tree: Sequence[tuple[int, ExecutionNode]],
    states: Mapping[str, Mapping[str, Any]],
    with_state: bool,
) -> dict[str, Any]:
    header = next((node for _, node in tree if node.id == run_node_id), None)
    steps = [node for _, node in tree if node is not header]
    run = None
    if header is not None:
        run = {
            "agent": header.metadata.get("agent"),
            "status": header.status.value,
            "result": header.output,
            "error": error_of(header),
            "needs_human": header.metadata.get("needs_human"),
            "replay_of": header.metadata.get("replay_of"),
            "forked_from": header.metadata.get("forked_from"),
        }
    return {
        "execution_id": execution_id,
        "run": run,
        "totals": totals(steps),
        "nodes": [node_dict(node, depth, states.get(node.id), with_state) for depth, node in tree],
    }


def totals(steps: Iterable[ExecutionNode]) -> dict[str, Any]:
    steps = list(steps)
    return {
        "steps": len(steps),
        "prompt_tokens": sum(node.prompt_tokens or 0 for node in steps),
        "completion_tokens": sum(node.completion_tokens or 0 for node in steps),
        "cost": round(sum(node.cost or 0.0 for node in steps), 9),
        "in_doubt": sum(1 for node in steps if node.is_in_doubt()),
    }


def node_label(node: ExecutionNode) -> Text:
    text = Text()
    position = step_position(node)
    if position is not None:
        text.append(f"{position:>2} ", style="dim")
    text.append(step_name(node), style="bold")
    if node.type is NodeType.TOOL:
        text.append("  tool", style="magenta")
        text.append(" (side effect)", style="dim magenta")
    else:
        text.append(f"  {step_kind(node)}", style="cyan")
    agent = step_agent(node)
    if agent is not None:
        text.append(f"  by {agent}", style="green")
    text.append("  ")
    text.append_text(status_text(node.status))
    if node.is_in_doubt():
        text.append("  IN DOUBT: started, outcome never recorded", style="bold magenta")
    for flag, label in (
        ("mocked", "mocked"),
        ("counterfactual", "counterfactual"),
        ("copied_from", "copied"),
    ):
        if node.metadata.get(flag):
            text.append(f"  [{label}]", style="yellow")
    if node.model:
        text.append(f"  {node.model}", style="dim")
    if node.prompt_tokens is not None or node.completion_tokens is not None:
        text.append(f"  {tokens(node.prompt_tokens, node.completion_tokens)} tokens")
    if node.cost is not None:
        text.append(f"  {money(node.cost)}")
    if node.latency_ms is not None:
        text.append(f"  {millis(node.latency_ms)}", style="dim")
    return text


def run_label(execution_id: str, header: ExecutionNode | None) -> Text:
    text = Text("execution ", style="dim")
    text.append(execution_id, style="bold")
    if header is None:
        return text
    agent = header.metadata.get("agent")
    if agent:
        text.append(f"  agent {agent}")
    text.append("  ")
    text.append_text(status_text(header.status))
    if header.metadata.get("needs_human"):
        text.append("  NEEDS A HUMAN", style="bold magenta")
    for link, label in (("replay_of", "replay of"), ("forked_from", "fork of")):
        if header.metadata.get(link):
            text.append(f"  {label} {header.metadata[link]}", style="cyan")
    return text


def show_view(
    execution_id: str,
    run_node_id: str,
    tree: Sequence[tuple[int, ExecutionNode]],
    states: Mapping[str, Mapping[str, Any]],
) -> RenderableType:
    header = next((node for _, node in tree if node.id == run_node_id), None)
    root = Tree(run_label(execution_id, header))
    branches: list[Tree] = [root]
    for depth, node in tree:
        if node is header:
            continue
        level = min(depth if header is None else max(depth - 1, 0), MAX_DRAWN_DEPTH)
        del branches[level + 1 :]
        branch = branches[level].add(node_label(node))
        if node.error is not None:
            branch.add(Text(f"error: {short(error_of(node), 400)}", style="red"))
        state = states.get(node.id)
        if state is not None:
            branch.add(state_text(state))
        branches.append(branch)
    parts: list[RenderableType] = [root]
    if header is not None:
        state = states.get(header.id)
        if state is not None:
            parts.append(state_text(state))
        if header.status is Status.SUCCESS:
            parts.append(Text(f"result: {short(header.output, 1000)}", style="green"))
        elif header.error is not None:
            parts.append(Text(f"error: {short(error_of(header), 1000)}", style="red"))
        else:
            parts.append(Text("unfinished: no result yet", style="yellow"))
    summed = totals(node for _, node in tree if node is not header)
    line = f"{summed['steps']} {'nodes' if header is None else 'steps'}"
    if summed["prompt_tokens"] or summed["completion_tokens"]:
        line += f", {tokens(summed['prompt_tokens'], summed['completion_tokens'])} tokens"
    if summed["cost"]:
        line += f", {money(summed['cost'])}"
    if summed["in_doubt"]:
        line += f", {summed['in_doubt']} in doubt"
    parts.append(Text(line, style="dim"))
    return Group(*parts)
