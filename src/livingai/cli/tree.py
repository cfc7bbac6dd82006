"""`show`: an execution's nodes as a tree (a run's steps under its record), with their
states decoded; as rich for a terminal and as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from livingai import ExecutionNode, NodeType, Status

from .render import (
    error_of,
    in_doubt,
    kind_of,
    millis,
    money,
    name_of,
    position_of,
    short,
    status_text,
    tokens,
)

STATE_PREVIEW_BYTES = 32  # of a binary state, shown in hex
MAX_DRAWN_DEPTH = 8  # deeper nodes (a chain of parents) are drawn at this depth


def describe_state(state: bytes) -> dict[str, Any]:
    """A state as JSON: parsed when it is JSON, text when it is UTF-8, else its size and
    the hex of its first bytes."""
    info: dict[str, Any] = {"bytes": len(state)}
    try:
        text = state.decode("utf-8")
    except UnicodeDecodeError:
        info.update(kind="binary", hex=state[:STATE_PREVIEW_BYTES].hex())
        return info
    try:
        info.update(kind="json", value=json.loads(text))
    except ValueError:
        info.update(kind="text", value=text)
    return info


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


def ordered(nodes: Sequence[ExecutionNode]) -> list[tuple[int, ExecutionNode]]:
    """The nodes as a tree by parent, depth first: (depth, node). Children in the order
    of their position (a run's steps), else in the order they were first saved."""
    ids = {node.id for node in nodes}
    children: dict[str | None, list[ExecutionNode]] = {}
    for node in nodes:
        parent = node.parent_id if node.parent_id in ids and node.parent_id != node.id else None
        children.setdefault(parent, []).append(node)
    first_seen = {node.id: index for index, node in enumerate(nodes)}

    def key(node: ExecutionNode) -> tuple[int, int]:
        position = position_of(node)
        if position is None:
            return (0, first_seen[node.id])
        return (1, position)

    found: list[tuple[int, ExecutionNode]] = []
    seen: set[str] = set()
    stack = [(0, node) for node in reversed(sorted(children.get(None, []), key=key))]
    while stack:  # not recursive: a chain of thousands of nodes is a fine log
        depth, node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        found.append((depth, node))
        below = sorted(children.get(node.id, []), key=key)
        stack.extend((depth + 1, child) for child in reversed(below))
    for node in nodes:  # a parent loop leaves nodes out of the walk: list them at the top
        if node.id not in seen:
            found.append((0, node))
    return found


def node_dict(
    node: ExecutionNode, depth: int, state: Mapping[str, Any] | None, with_state: bool
) -> dict[str, Any]:
    shown = node.to_dict()
    blob = shown.pop("checkpoint")
    shown["checkpoint_bytes"] = None if blob is None else len(node.checkpoint or b"")
    shown["depth"] = depth
    shown["in_doubt"] = in_doubt(node)
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
        "in_doubt": sum(1 for node in steps if in_doubt(node)),
    }


def node_label(node: ExecutionNode) -> Text:
    text = Text()
    position = position_of(node)
    if position is not None:
        text.append(f"{position:>2} ", style="dim")
    text.append(name_of(node), style="bold")
    if node.type is NodeType.TOOL:
        text.append("  tool", style="magenta")
        text.append(" (side effect)", style="dim magenta")
    else:
        text.append(f"  {kind_of(node)}", style="cyan")
    text.append("  ")
    text.append_text(status_text(node.status))
    if in_doubt(node):
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
