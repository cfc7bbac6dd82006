"""Which execution a crew is running in, for the LLMs and tools it calls from its own
threads (a context variable: CrewAI copies the context into the threads it starts), and
how those threads wait for the engine's loop."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from livingai import ExecutionNode, Lease, LivingAIError, NodeType, Run, Status
from livingai.adapters.recordings import digest

if TYPE_CHECKING:
    from .adapter import CrewAIAdapter

T = TypeVar("T")


class Place(NamedTuple):
    """A task of the crew as its calls are keyed: its position in the crew, its key
    (stable: CrewAI derives it from the task's text) and name, and its agent's role."""

    position: int
    key: str
    name: str
    role: str | None


class Stop(BaseException):
    """What ends a kickoff from inside a CrewAI thread when livingai refuses a call (a
    tool in doubt, a lost lease, a store down, a replay that diverged, a result it cannot
    store). CrewAI turns every Exception a tool raises into text for the model, and
    retries an agent's failures, so this passes as a BaseException; the kickoff then
    raises `error`."""

    def __init__(self, error: LivingAIError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class Scope:
    """One kickoff being recorded: a durable run, or (run None) a finished one read back
    from its log. `known`: its nodes as read when it began (under the run's lease), where
    its calls are looked up; `tasks`: the crew's tasks by CrewAI's id (random on each
    construction, so mapped to their places)."""

    adapter: CrewAIAdapter
    execution_id: str
    run: Run | None
    replay_of: str | None
    loop: asyncio.AbstractEventLoop
    known: dict[str, ExecutionNode]
    tasks: dict[str, Place]
    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    begun: set[int] = field(default_factory=set)  # the tasks whose node this kickoff saw

    @property
    def fence(self) -> Lease | None:
        return None if self.run is None else self.run.lease

    def node_id(self, kind: str, call: Any) -> str:
        """`<execution>/crew:<kind>:<digest of the call>:<n>`, its n-th such call: the
        same after a resume, which makes the same calls (served from the log)."""
        stem = f"{self.execution_id}/crew:{kind}:{digest(call)}"
        return f"{stem}:{self.occurrence(stem)}"

    def occurrence(self, stem: str) -> int:
        """How many calls named `stem` this kickoff made, this one included."""
        with self.lock:  # parallel calls run on threads of their own
            self.calls[stem] += 1
            return self.calls[stem]

    def parent_of(self, place: Place | None) -> str:
        """The node a call of the task at `place` sits under: the task's, saved as
        running the first time one of its calls is made (from a crew thread), or the
        run's for a call made outside a task."""
        if place is None:
            return f"{self.execution_id}/run"
        node_id = task_node_id(self.execution_id, place.position)
        with self.lock:
            first = place.position not in self.begun
            self.begun.add(place.position)
        if first and node_id not in self.known and self.run is not None:
            node = task_node(self.execution_id, place, Status.RUNNING)
            self.wait(lambda: self.adapter.engine.save(node, fence=self.fence))
        return node_id

    def wait(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` on the engine's loop, waited for from a crew thread. A livingai error
        stops the kickoff (Stop)."""

        async def run() -> T:
            return await work()

        try:
            return asyncio.run_coroutine_threadsafe(run(), self.loop).result()
        except LivingAIError as exc:
            raise Stop(exc) from exc

    async def wait_async(self, work: Callable[[], Awaitable[T]]) -> T:
        """`wait` from a coroutine on another loop (a flow's async method)."""

        async def run() -> T:
            return await work()

        try:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))
        except LivingAIError as exc:
            raise Stop(exc) from exc


def task_node_id(execution_id: str, position: int) -> str:
    return f"{execution_id}/crew:task:{position}"


def task_node(
    execution_id: str, place: Place, status: Status, output: str | None = None
) -> ExecutionNode:
    """A task of the crew as the log shows it: its calls sit under it."""
    return ExecutionNode(
        id=task_node_id(execution_id, place.position),
        execution_id=execution_id,
        type=NodeType.BRANCH,
        status=status,
        parent_id=f"{execution_id}/run",
        input={"task": place.name, "key": place.key},
        output=output,
        metadata={"kind": "task", "step": f"task {place.name}", "agent": place.role},
    )


current: ContextVar[Scope | None] = ContextVar("livingai_crewai", default=None)
