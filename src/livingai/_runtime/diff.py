"""Two executions side by side, step by step: what changed, and where they first went
different ways (a replay against its original, a fork against its source, yesterday's
run against today's)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._core.engine import CheckpointEngine
from .._core.errors import ExecutionNotFoundError
from .._core.model import ExecutionNode
from .layout import read_run

# What tells two runs apart: a change here is a divergence.
COMPARED = ("step", "input", "output", "status", "error")
# What a run spent: always shown side by side, never a divergence by itself.
MEASURED = ("model", "prompt_tokens", "completion_tokens", "cost", "latency_ms")


@dataclass(frozen=True)
class StepDiff:
    """One position of the two executions: the step on each side (None when one side
    has no step there), what changed, and what each spent."""

    position: int
    a: ExecutionNode | None
    b: ExecutionNode | None
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        node = self.a or self.b
        return "" if node is None else _name(node)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def measured(self, what: str) -> tuple[Any, Any]:
        return _measure(self.a, what), _measure(self.b, what)

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "step": self.name,
            "kind": _kind(self.a or self.b),
            "changed": self.changed,
            "mocked": [_mocked(self.a), _mocked(self.b)],
            "changes": {k: {"a": a, "b": b} for k, (a, b) in self.changes.items()},
            **{what: dict(zip("ab", self.measured(what), strict=True)) for what in MEASURED},
        }


@dataclass(frozen=True)
class ExecutionDiff:
    """`a` and `b` aligned step by step (by position in a run; by first-seen order in
    other executions), with the runs' results compared too."""

    a: str
    b: str
    steps: list[StepDiff]
    result: dict[str, tuple[Any, Any]]  # the runs' own outcome (status, output, error)

    @property
    def first_divergence(self) -> int | None:
        """The position of the first step that differs, or None when none does."""
        return next((step.position for step in self.steps if step.changed), None)

    @property
    def identical(self) -> bool:
        return self.first_divergence is None and not self.result

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "first_divergence": self.first_divergence,
            "result": {k: {"a": a, "b": b} for k, (a, b) in self.result.items()},
            "cost": dict(zip("ab", self._total("cost"), strict=True)),
            "steps": [step.to_dict() for step in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_text(self) -> str:
        """A plain rendering: one line per step ("=" the same, "~" changed, "-" only in
        a, "+" only in b), its changes under it, and what each side spent."""
        lines = [f"a: {self.a}", f"b: {self.b}"]
        divergence = self.first_divergence
        lines.append(
            "the steps are the same"
            if divergence is None
            else f"first divergence at step {divergence}"
        )
        for step in self.steps:
            mark = (
                "="
                if not step.changed
                else "-"
                if step.b is None
                else "+"
                if step.a is None
                else "~"
            )
            tokens = step.measured("prompt_tokens"), step.measured("completion_tokens")
            spent = "  ".join(
                text
                for text in (
                    _pair("tokens", *(_sum(p, c) for p, c in zip(*tokens, strict=True))),
                    _pair("cost", *step.measured("cost")),
                    _pair("ms", *step.measured("latency_ms")),
                )
                if text
            )
            mocked = " (mocked in b)" if _mocked(step.b) and step.a is not None else ""
            lines.append(
                f"{mark} {step.position:>3} {step.name} [{_kind(step.a or step.b)}]{mocked}"
                + (f"  {spent}" if spent else "")
            )
            for what, (a, b) in step.changes.items():
                lines.append(f"        {what}: {_short(a)} -> {_short(b)}")
        for what, (a, b) in self.result.items():
            lines.append(f"result {what}: {_short(a)} -> {_short(b)}")
        cost_a, cost_b = self._total("cost")
        lines.append(f"cost: {_money(cost_a)} -> {_money(cost_b)}")
        return "\n".join(lines)

    def _total(self, what: str) -> tuple[float, float]:
        a = sum(float(step.measured(what)[0] or 0) for step in self.steps)
        b = sum(float(step.measured(what)[1] or 0) for step in self.steps)
        return round(a, 9), round(b, 9)


async def diff_executions(engine: CheckpointEngine, a: str, b: str) -> ExecutionDiff:
    """Compare execution `a` with execution `b` (see ExecutionDiff)."""
    left, left_result = await _aligned(engine, a)
    right, right_result = await _aligned(engine, b)
    steps = []
    for position in sorted(set(left) | set(right)):
        x, y = left.get(position), right.get(position)
        steps.append(StepDiff(position, x, y, _changes(x, y)))
    result = {
        what: (left_result.get(what), right_result.get(what))
        for what in ("status", "output", "error")
        if left_result.get(what) != right_result.get(what)
    }
    return ExecutionDiff(a, b, steps, result)


async def _aligned(
    engine: CheckpointEngine, execution_id: str
) -> tuple[dict[int, ExecutionNode], dict[str, Any]]:
    """The execution's steps by position, and the run's outcome (empty if not a run)."""
    run = await read_run(engine, execution_id)
    if run.header is not None:
        header = run.header
        outcome = {
            "status": header.status.value,
            "output": header.output,
            "error": _error(header),
        }
        return run.steps, outcome
    nodes = await engine.list_nodes(execution_id)
    if not nodes:
        raise ExecutionNotFoundError(
            f"execution {execution_id!r} has no stored nodes in {engine.store!r}"
        )
    return dict(enumerate(nodes)), {}


def _changes(a: ExecutionNode | None, b: ExecutionNode | None) -> dict[str, tuple[Any, Any]]:
    if a is None or b is None:
        return {"step": (None if a is None else _name(a), None if b is None else _name(b))}
    values = {
        "step": (_name(a), _name(b)),
        "input": (a.input, b.input),
        "output": (a.output, b.output),
        "status": (a.status.value, b.status.value),
        "error": (_error(a), _error(b)),
    }
    return {what: pair for what, pair in values.items() if pair[0] != pair[1]}


def _mark(step: StepDiff) -> str:
    if not step.changed:
        return "="
    return "-" if step.b is None else "+" if step.a is None else "~"


def _name(node: ExecutionNode) -> str:
    return str(node.metadata.get("step", node.id))


def _kind(node: ExecutionNode | None) -> str:
    if node is None:
        return ""
    return str(node.metadata.get("kind", node.type.value.lower()))


def _mocked(node: ExecutionNode | None) -> bool:
    return node is not None and bool(node.metadata.get("mocked"))


def _error(node: ExecutionNode) -> str | None:
    return None if node.error is None else f"{node.error.type}: {node.error.message}"


def _measure(node: ExecutionNode | None, what: str) -> Any:
    return None if node is None else getattr(node, what)


def _sum(prompt: int | None, completion: int | None) -> int | None:
    return None if prompt is None and completion is None else (prompt or 0) + (completion or 0)


def _pair(label: str, a: Any, b: Any) -> str:
    if a is None and b is None:
        return ""
    show = _money if label == "cost" else (lambda v: "-" if v is None else f"{v:g}")
    return f"{label} {show(a)}" + ("" if a == b else f"->{show(b)}")


def _money(value: float | None) -> str:
    return "-" if value is None else "$" + f"{value:.8f}".rstrip("0").rstrip(".")


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
