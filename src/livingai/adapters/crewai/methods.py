"""A CrewAI flow's methods as steps, for flows kicked off through CrewAIAdapter: a
resumed flow does not run its completed methods again.

Each call of a method in an adapter kickoff is a node `<execution>/flow:<method>:<n>`
(its n-th call: cycles call a method again), saved as running when the method starts
and, when it returns, with its output and the flow's state after it. Kicked off again
after a crash, the flow runs from its start methods once more, and each recorded call
returns its recorded output (a router the same route; a pydantic model as its class)
and puts back the state it left, without running; the first call not recorded runs
live. A method cut off by a crash therefore runs again (at least once), but the tools it
calls through `adapter.tool` keep their protocol: a charge it made is not made again.

CrewAI calls a flow's methods through the table every Flow builds at construction
(`Flow._methods`, bound methods by name); the adapter puts a recording method in front
of each, once, in place. That table is CrewAI's own, not a published hook: a CrewAI
version without it is refused with a clear error."""

from __future__ import annotations

import asyncio
import enum
import functools
import importlib
import time
from collections.abc import Callable
from typing import Any

from crewai.flow.flow import Flow
from pydantic import BaseModel

from livingai import (
    ConfigError,
    ErrorInfo,
    ExecutionNode,
    NodeType,
    ReplayDivergedError,
    Status,
)
from livingai.adapters.recordings import plain

from .scope import Scope, Stop, current

KIND = "flow method"


def record_methods(flow: Flow[Any]) -> None:
    """Put a recording method in front of each of `flow`'s methods (once)."""
    table = getattr(flow, "_methods", None)
    if not isinstance(table, dict):
        raise ConfigError(
            f"adapter.kickoff records a flow through the method table CrewAI's Flow keeps "
            f"(Flow._methods); this CrewAI version has none on {type(flow).__name__}"
        )
    for name, method in list(table.items()):
        if not getattr(method, "_livingai_recorded", False):
            table[name] = _recording(flow, str(name), method)


def state_id(nodes: dict[str, ExecutionNode]) -> str | None:
    """The flow state's id a recorded kickoff ran with (from any method it recorded), to
    give a fresh flow object the same one before it is kicked off again."""
    for node in nodes.values():
        if node.metadata.get("kind") == KIND and isinstance(node.output, dict):
            state = node.output.get("state")
            if isinstance(state, dict) and isinstance(state.get("id"), str):
                return str(state["id"])
    return None


def stamp_id(flow: Flow[Any], given: str) -> None:
    """Give `flow`'s state the id `given` (as CrewAI's own Flow.fork does)."""
    state = flow.state
    if isinstance(state, dict):
        state["id"] = given
    else:
        object.__setattr__(state, "id", given)


def _recording(flow: Flow[Any], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(method):

        @functools.wraps(method)
        async def called_async(*args: Any, **kwargs: Any) -> Any:
            scope = current.get()
            if scope is None:  # not in an adapter kickoff: as the method would
                return await method(*args, **kwargs)
            node, served = _begin(flow, scope, name, args, kwargs)
            if node is None:
                return served
            await scope.wait_async(lambda: scope.adapter.engine.save(node, fence=scope.fence))
            started = time.perf_counter()
            try:
                result = await method(*args, **kwargs)
            except Exception as exc:
                _failed(node, exc, started)
                await scope.wait_async(lambda: scope.adapter.engine.save(node, fence=scope.fence))
                raise
            _done(flow, node, result, started)
            await scope.wait_async(lambda: scope.adapter.engine.save(node, fence=scope.fence))
            return result

        called: Callable[..., Any] = called_async
    else:

        @functools.wraps(method)
        def called_sync(*args: Any, **kwargs: Any) -> Any:
            scope = current.get()
            if scope is None:
                return method(*args, **kwargs)
            node, served = _begin(flow, scope, name, args, kwargs)
            if node is None:
                return served
            scope.wait(lambda: scope.adapter.engine.save(node, fence=scope.fence))
            started = time.perf_counter()
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                _failed(node, exc, started)
                scope.wait(lambda: scope.adapter.engine.save(node, fence=scope.fence))
                raise
            _done(flow, node, result, started)
            scope.wait(lambda: scope.adapter.engine.save(node, fence=scope.fence))
            return result

        called = called_sync
    called._livingai_recorded = True  # type: ignore[attr-defined]
    return called


def _begin(
    flow: Flow[Any], scope: Scope, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ExecutionNode | None, Any]:
    """(None, the recorded output) for a call recorded as done, its state put back; else
    (the node to record it in, None)."""
    node_id = f"{scope.execution_id}/flow:{name}:{scope.occurrence(f'flow:{name}')}"
    recorded = scope.known.get(node_id)
    if recorded is not None and recorded.status is Status.SUCCESS:
        output = recorded.output if isinstance(recorded.output, dict) else {}
        _put_back(flow, output.get("state"))
        return None, _rebuilt(output.get("output"), output.get("model"))
    if scope.run is None:  # a finished kickoff read back: every call is recorded
        raise Stop(
            ReplayDivergedError(
                f"execution {scope.execution_id!r} finished without this call of flow method "
                f"{name!r} ({node_id}): the flow kicked off is not the one recorded",
                execution_id=scope.execution_id,
            )
        )
    node = ExecutionNode(
        id=node_id,
        execution_id=scope.execution_id,
        type=NodeType.BRANCH,
        status=Status.RUNNING,
        parent_id=f"{scope.execution_id}/run",
        input={"method": name, "args": plain(list(args)), "kwargs": plain(kwargs)},
        metadata={"kind": KIND, "step": f"method {name}"},
    )
    return node, None


def _done(flow: Flow[Any], node: ExecutionNode, result: Any, started: float) -> None:
    model = type(result) if isinstance(result, BaseModel) else None
    node.status = Status.SUCCESS
    node.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
    node.output = {
        "output": plain(result.value if isinstance(result, enum.Enum) else result),
        "model": None if model is None else f"{model.__module__}:{model.__qualname__}",
        "state": _state(flow),
    }


def _failed(node: ExecutionNode, exc: BaseException, started: float) -> None:
    node.status = Status.FAILED
    node.error = ErrorInfo(type(exc).__name__, str(exc))
    node.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)


def _state(flow: Flow[Any]) -> Any:
    state = flow.state
    return plain(state.model_dump(mode="json") if isinstance(state, BaseModel) else state)


def _put_back(flow: Flow[Any], saved: Any) -> None:
    """The flow's state as a recorded method left it, in place (methods hold `self.state`)."""
    if not isinstance(saved, dict):
        return
    state = flow.state
    if isinstance(state, dict):
        state.clear()
        state.update(saved)
    elif isinstance(state, BaseModel):
        fresh = type(state).model_validate(saved)
        vars(state).update(vars(fresh))


def _rebuilt(output: Any, model: Any) -> Any:
    """A recorded output as the method returned it: a pydantic model as its class."""
    if not isinstance(model, str) or ":" not in model:
        return output
    module, _, qualname = model.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found.model_validate(output)
