"""RecordingTool: a crew's tool, each call in an adapter kickoff made through
`Runtime.call_tool` at `<execution>/crew:tool:<digest of the call>:<n>`, which is also
its idempotency key. CrewAI's tool calls carry no call id, so the call is named by what
makes it: the task (its place and key), the agent's role, the tool, the arguments, and
how many such calls came before it. A resumed kickoff makes the same calls (the LLM
turns before each are served from the log), so it finds the same nodes.

Tools given to `adapter.tool` get its policy (write-ahead intent, at most once by
default); the others are recorded as steps (outcome only, at least once), and a completed
one is served on resume. With `replay_of`, each call is served from that execution's
recording (MOCK_TOOLS)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crewai.context import get_current_task_id
from crewai.tools.base_tool import BaseTool
from pydantic import Field, PrivateAttr

from livingai import StepContext
from livingai.adapters.recordings import plain, serving

from .scope import Place, Scope, current


class RecordingTool(BaseTool):
    """`inner`, its calls recorded in adapter kickoffs; `policy` None for a tool not
    given to adapter.tool."""

    inner: BaseTool = Field(exclude=True)
    _retry_with_key: bool = PrivateAttr(default=False)
    _reconcile: Callable[[StepContext], Any] | None = PrivateAttr(default=None)
    _wrapped: bool = PrivateAttr(default=False)

    @classmethod
    def over(
        cls,
        inner: BaseTool,
        *,
        wrapped: bool,
        retry_with_key: bool = False,
        reconcile: Callable[[StepContext], Any] | None = None,
    ) -> RecordingTool:
        made = cls(
            inner=inner,
            name=inner.name,
            description=inner.description,
            args_schema=inner.args_schema,
            result_as_answer=inner.result_as_answer,
            max_usage_count=inner.max_usage_count,
            cache_function=inner.cache_function,
        )
        made._retry_with_key, made._reconcile, made._wrapped = retry_with_key, reconcile, wrapped
        return made

    @property
    def wrapped(self) -> bool:
        """Whether adapter.tool gave it its policy (else it is recorded as a step)."""
        return self._wrapped

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        scope = current.get()
        if scope is None or args:  # not in an adapter kickoff: as the tool would
            return self.inner.run(*args, **kwargs)
        place = scope.tasks.get(str(get_current_task_id()))
        parent = scope.parent_of(place)
        return scope.wait(lambda: self._call(scope, kwargs, place, parent))

    async def _call(
        self, scope: Scope, arguments: dict[str, Any], place: Place | None, parent: str
    ) -> Any:
        call = plain(arguments)
        node_id = scope.node_id(
            "tool",
            {
                "task": None if place is None else place[:2],
                "agent": None if place is None else place.role,
                "tool": self.name,
                "arguments": call,
            },
        )
        metadata: dict[str, Any] = {
            "agent": None if place is None else place.role,
            "task": None if place is None else place.name,
            "wrapped": self._wrapped,
        }
        adapter = scope.adapter
        fn: Callable[..., Any] = self.inner.run
        if scope.replay_of is not None:
            recorded = await adapter.recordings.find(
                scope.replay_of, scope.execution_id, self.name, call
            )
            metadata.update(mocked=True, replayed_from=recorded.id, replay_of=scope.replay_of)
            fn = serving(recorded, scope.replay_of)
        return await adapter.runtime.call_tool(
            scope.execution_id,
            node_id,
            self.name,
            fn,
            (),
            arguments,
            retry_with_key=self._retry_with_key,
            reconcile=self._reconcile,
            at_least_once=not self._wrapped,  # a tool not wrapped: like a step
            parent_id=parent,
            metadata=metadata,
            known=scope.known,
            fence=scope.fence,
        )
